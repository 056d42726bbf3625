//! Bad input over raw TCP: each mistake gets the spec's reply code (RabbitMQ's
//! wording), closes only what it must, and leaves other connections and stored
//! messages alone.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use amq_protocol::protocol::{AMQPClass, basic, channel, connection};
use bytes::{BufMut, BytesMut};
use common::Gateway;
use common::raw::{Login, Raw};
use gw_amqp::Config;
use gw_amqp::codec::{Frame, encode_method};
use lapin::BasicProperties;
use lapin::options::*;
use lapin::types::FieldTable;

/// A bystander: a lapin connection with 100 persistent messages in a durable queue.
async fn bystander(gw: &Gateway) -> lapin::Channel {
    let conn = gw.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(Default::default()).await.unwrap();
    ch.queue_declare(
        "safe".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    for i in 0..100u32 {
        ch.basic_publish(
            "".into(),
            "safe".into(),
            Default::default(),
            &i.to_be_bytes(),
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    std::mem::forget(conn);
    ch
}

/// The bystander's connection still works and the stored messages are all there.
async fn untouched(ch: &lapin::Channel) {
    let q = ch
        .queue_declare(
            "safe".into(),
            QueueDeclareOptions {
                durable: true,
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(q.message_count(), 100);
}

fn close_code(c: &connection::Close) -> (u16, &str) {
    (c.reply_code, c.reply_text.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_protocol_header_gets_ours_back() {
    let gw = Gateway::start().await;
    let by = bystander(&gw).await;
    for header in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"AMQP\x00\x00\x09\x00",
        b"AMQP\x03\x01\x00\x00",
    ] {
        let mut raw = Raw::connect(gw.addr).await;
        raw.send(header).await;
        assert_eq!(raw.rest().await, b"AMQP\x00\x00\x09\x01");
    }
    untouched(&by).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_is_a_frame_error() {
    let gw = Gateway::start().await;
    let by = bystander(&gw).await;
    let mut raw = Raw::open(gw.addr, &Login::default()).await;
    raw.open_channel(1).await;
    // A header announcing a 1 GiB payload: refused at once, nothing buffered.
    raw.send(&[1, 0, 1, 0x40, 0, 0, 0]).await;
    let close = raw.connection_close().await;
    assert_eq!(close.reply_code, 501, "{close:?}");
    assert!(close.reply_text.as_str().starts_with("FRAME_ERROR - "));
    // Just over the negotiated 131072 is refused too.
    let mut raw = Raw::open(gw.addr, &Login::default()).await;
    let mut big = BytesMut::new();
    big.put_u8(3);
    big.put_u16(1);
    big.put_u32(131_072 + 1);
    raw.send(&big).await;
    assert_eq!(raw.connection_close().await.reply_code, 501);
    untouched(&by).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_longer_than_its_header_is_unexpected() {
    let gw = Gateway::start().await;
    let by = bystander(&gw).await;
    let mut raw = Raw::open(gw.addr, &Login::default()).await;
    raw.open_channel(1).await;
    let mut bytes = Raw::publish_bytes(1, "", "safe", b"12345", 131_072);
    // Patch the body frame to carry 10 bytes instead of 5.
    let body_at = bytes.len() - (7 + 5 + 1);
    bytes.truncate(body_at);
    bytes.put_u8(3);
    bytes.put_u16(1);
    bytes.put_u32(10);
    bytes.extend_from_slice(b"0123456789");
    bytes.put_u8(0xCE);
    raw.send(&bytes).await;
    let close = raw.connection_close().await;
    assert_eq!(close.reply_code, 505, "{close:?}");
    untouched(&by).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_on_closed_channels_and_unknown_methods() {
    let gw = Gateway::start().await;
    let by = bystander(&gw).await;
    // A method on a channel never opened.
    let mut raw = Raw::open(gw.addr, &Login::default()).await;
    let declare = amq_protocol::protocol::queue::Declare {
        queue: "x".into(),
        ..Default::default()
    };
    raw.method(
        5,
        AMQPClass::Queue(amq_protocol::protocol::queue::AMQPMethod::Declare(
            declare.clone(),
        )),
    )
    .await;
    let c = raw.connection_close().await;
    assert_eq!(
        close_code(&c),
        (504, "CHANNEL_ERROR - expected 'channel.open'")
    );
    // A method on a channel after it was closed.
    let mut raw = Raw::open(gw.addr, &Login::default()).await;
    raw.open_channel(1).await;
    let close = channel::Close {
        reply_code: 200,
        reply_text: "bye".into(),
        class_id: 0,
        method_id: 0,
    };
    raw.method(1, AMQPClass::Channel(channel::AMQPMethod::Close(close)))
        .await;
    assert!(matches!(
        raw.frame().await,
        Some(Frame::Method(
            1,
            AMQPClass::Channel(channel::AMQPMethod::CloseOk(_))
        ))
    ));
    raw.method(
        1,
        AMQPClass::Queue(amq_protocol::protocol::queue::AMQPMethod::Declare(declare)),
    )
    .await;
    assert_eq!(raw.connection_close().await.reply_code, 504);
    // Unknown class / method ids.
    let mut raw = Raw::open(gw.addr, &Login::default()).await;
    raw.open_channel(1).await;
    raw.send(&[1, 0, 1, 0, 0, 0, 4, 0, 99, 0, 1, 0xCE]).await;
    let c = raw.connection_close().await;
    assert_eq!(c.reply_code, 540);
    assert_eq!((c.class_id, c.method_id), (99, 1));
    // Second channel.open on an open channel.
    let mut raw = Raw::open(gw.addr, &Login::default()).await;
    raw.open_channel(1).await;
    raw.method(
        1,
        AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
    )
    .await;
    assert_eq!(
        close_code(&raw.connection_close().await),
        (504, "CHANNEL_ERROR - second 'channel.open' seen")
    );
    // Unknown frame type.
    let mut raw = Raw::open(gw.addr, &Login::default()).await;
    raw.send(&[9, 0, 0, 0, 0, 0, 0, 0xCE]).await;
    assert_eq!(raw.connection_close().await.reply_code, 501);
    // immediate=true is refused as RabbitMQ does.
    let mut raw = Raw::open(gw.addr, &Login::default()).await;
    raw.open_channel(1).await;
    let mut out = BytesMut::new();
    let p = basic::Publish {
        exchange: "".into(),
        routing_key: "safe".into(),
        mandatory: false,
        immediate: true,
    };
    encode_method(
        &mut out,
        1,
        &AMQPClass::Basic(basic::AMQPMethod::Publish(p)),
    )
    .unwrap();
    gw_amqp::codec::encode_content(&mut out, 1, 60, &Default::default(), b"x", 131_072).unwrap();
    raw.send(&out).await;
    assert_eq!(
        close_code(&raw.connection_close().await),
        (540, "NOT_IMPLEMENTED - immediate=true")
    );
    untouched(&by).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_and_forbidden_vhosts() {
    let gw = Gateway::start().await;
    let by = bystander(&gw).await;
    // With authentication_failure_close: connection.close 403.
    let login = Login {
        password: "wrong",
        ..Login::default()
    };
    let (mut raw, tune) = Raw::login(gw.addr, &login).await;
    assert!(tune.is_none());
    let c = raw.connection_close().await;
    assert_eq!(
        close_code(&c),
        (
            403,
            "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile."
        )
    );
    // Without it: the socket just closes.
    let login = Login {
        password: "wrong",
        failure_close: false,
        ..Login::default()
    };
    let (mut raw, tune) = Raw::login(gw.addr, &login).await;
    assert!(tune.is_none());
    assert!(raw.rest().await.is_empty());
    // A vhost that does not exist, and one the user may not use: 530.
    gw.engine.create_tenant("other").unwrap();
    gw.engine.put_user("bob", "pw", vec![]).unwrap();
    gw.engine
        .set_permission("bob", gw_core::Permission::full("/"))
        .unwrap();
    for (user, pw, vhost, text) in [
        (
            "guest",
            "guest",
            "nope",
            "NOT_ALLOWED - vhost nope not found",
        ),
        (
            "bob",
            "pw",
            "other",
            "NOT_ALLOWED - access to vhost 'other' refused for user 'bob'",
        ),
    ] {
        let login = Login {
            user,
            password: pw,
            ..Login::default()
        };
        let (mut raw, tune) = Raw::login(gw.addr, &login).await;
        let tune = tune.unwrap();
        raw.tune_ok(tune.channel_max, tune.frame_max, 0).await;
        raw.method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
                virtual_host: vhost.into(),
            })),
        )
        .await;
        assert_eq!(close_code(&raw.connection_close().await), (530, text));
    }
    // tune-ok outside the offered limits: 530.
    let (mut raw, tune) = Raw::login(gw.addr, &Login::default()).await;
    raw.tune_ok(tune.unwrap().channel_max, 1 << 30, 0).await;
    assert_eq!(raw.connection_close().await.reply_code, 530);
    untouched(&by).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_flood_is_refused_at_channel_max() {
    let gw = Gateway::start_with(Config {
        channel_max: 8,
        ..Config::default()
    })
    .await;
    let by = bystander(&gw).await;
    let mut raw = Raw::open(gw.addr, &Login::default()).await;
    for ch in 1..=8 {
        raw.open_channel(ch).await;
    }
    raw.method(
        9,
        AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
    )
    .await;
    assert_eq!(
        close_code(&raw.connection_close().await),
        (
            530,
            "NOT_ALLOWED - number of channels opened (8) has reached the negotiated channel_max (8)"
        )
    );
    untouched(&by).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_messages_close_only_the_channel() {
    let gw = Gateway::start_with(Config {
        max_message_size: 1000,
        ..Config::default()
    })
    .await;
    let mut raw = Raw::open(gw.addr, &Login::default()).await;
    raw.open_channel(1).await;
    raw.open_channel(2).await;
    let bytes = Raw::publish_bytes(1, "", "safe", &[7u8; 2000], 131_072);
    raw.send(&bytes).await;
    let c = raw.channel_close(1).await;
    assert_eq!(c.reply_code, 406);
    assert_eq!(
        c.reply_text.as_str(),
        "PRECONDITION_FAILED - message size 2000 is larger than configured max size 1000"
    );
    // The connection and its other channel go on.
    let ok = Raw::publish_bytes(2, "", "nowhere", b"small", 131_072);
    raw.send(&ok).await;
    raw.method(
        2,
        AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
            prefetch_count: 1,
            global: false,
        })),
    )
    .await;
    assert!(matches!(
        raw.frame().await,
        Some(Frame::Method(
            2,
            AMQPClass::Basic(basic::AMQPMethod::QosOk(_))
        ))
    ));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_are_closed_after_two_heartbeats() {
    let gw = Gateway::start_with(Config {
        heartbeat: 1,
        ..Config::default()
    })
    .await;
    let login = Login {
        heartbeat: 1,
        ..Login::default()
    };
    let mut raw = Raw::open(gw.addr, &login).await;
    let started = std::time::Instant::now();
    // The server sends heartbeats, and hangs up on us since we send none.
    let mut heartbeats = 0;
    loop {
        match raw.frame().await {
            Some(Frame::Heartbeat) => heartbeats += 1,
            Some(other) => panic!("unexpected {other:?}"),
            None => break,
        }
    }
    let waited = started.elapsed();
    assert!(heartbeats >= 1, "server sent heartbeats");
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_connections_with_320() {
    let gw = Gateway::start().await;
    let mut raw = Raw::open(gw.addr, &Login::default()).await;
    let stopping = tokio::spawn(gw.stop());
    assert_eq!(
        close_code(&raw.connection_close().await),
        (
            320,
            "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'"
        )
    );
    stopping.await.unwrap();
}
