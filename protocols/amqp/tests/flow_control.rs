//! Backpressure (`connection.blocked`), `connection.update-secret` (and its
//! refusal where it does not belong) and the connection limit, over raw TCP.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use amq_protocol::protocol::{AMQPClass, basic, connection};
use common::Gateway;
use common::raw::{Login, Raw};
use gw_amqp::Config;
use gw_amqp::codec::Frame;
use gw_core::QueueSpec;

fn qos() -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
        prefetch_count: 1,
        global: false,
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_are_blocked_while_the_engine_is_under_pressure() {
    let gw = Gateway::start_pressured(Config::default()).await;
    let tenant = gw.engine.tenant("/").unwrap();
    let (queue, _) = tenant
        .declare_queue(
            "q",
            QueueSpec {
                default_group: true,
                ..Default::default()
            },
        )
        .unwrap();
    let mut raw = Raw::open(gw.addr, &Login::default()).await;
    raw.open_channel(1).await;
    gw.pressure.as_ref().unwrap().send(true).unwrap();
    // Not blocked before it publishes (a consuming connection keeps working):
    // a qos is answered.
    tokio::time::sleep(Duration::from_millis(100)).await;
    raw.method(1, qos()).await;
    assert!(matches!(
        raw.frame().await,
        Some(Frame::Method(
            1,
            AMQPClass::Basic(basic::AMQPMethod::QosOk(_))
        ))
    ));
    // One publish gets through and blocks the connection: it is told so, and
    // the qos after a second publish is not answered while blocked.
    raw.send(&Raw::publish_bytes(1, "", "q", b"one", 131_072))
        .await;
    raw.send(&Raw::publish_bytes(1, "", "q", b"two", 131_072))
        .await;
    raw.method(1, qos()).await;
    match raw.frame().await {
        Some(Frame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Blocked(b)))) => {
            assert_eq!(b.reason.as_str(), "low on disk");
        }
        other => panic!("expected connection.blocked, got {other:?}"),
    }
    let answered = tokio::time::timeout(Duration::from_millis(300), raw.frame()).await;
    assert!(answered.is_err(), "answered while blocked: {answered:?}");
    assert_eq!(queue.message_count(), 1);
    gw.pressure.as_ref().unwrap().send(false).unwrap();
    assert!(matches!(
        raw.frame().await,
        Some(Frame::Method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Unblocked(_))
        ))
    ));
    assert!(matches!(
        raw.frame().await,
        Some(Frame::Method(
            1,
            AMQPClass::Basic(basic::AMQPMethod::QosOk(_))
        ))
    ));
    assert_eq!(queue.message_count(), 2);
    gw.stop().await;
}

fn update_secret(secret: &str) -> AMQPClass {
    AMQPClass::Connection(connection::AMQPMethod::UpdateSecret(
        connection::UpdateSecret {
            new_secret: secret.into(),
            reason: "token refresh".into(),
        },
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_secret_is_accepted_for_password_users() {
    let gw = Gateway::start().await;
    let mut raw = Raw::open(gw.addr, &Login::default()).await;
    // Any new secret, as RabbitMQ's internal backend: a password was checked
    // at login; the method is for refreshing expiring tokens.
    for secret in ["guest", "not the password", ""] {
        raw.method(0, update_secret(secret)).await;
        assert!(matches!(
            raw.frame().await,
            Some(Frame::Method(
                0,
                AMQPClass::Connection(connection::AMQPMethod::UpdateSecretOk(_))
            ))
        ));
    }
    raw.open_channel(1).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_secret_out_of_place_is_refused_like_rabbitmq() {
    let gw = Gateway::start().await;
    // Before the connection is open: 504 in the state it arrived in.
    let (mut raw, tune) = Raw::login(gw.addr, &Login::default()).await;
    assert!(tune.is_some());
    raw.method(0, update_secret("early")).await;
    let close = raw.connection_close().await;
    assert_eq!(
        (close.reply_code, close.reply_text.as_str()),
        (
            504,
            "CHANNEL_ERROR - unexpected method in connection state tuning"
        )
    );
    // On a channel other than 0: 503, the connection closes.
    let mut raw = Raw::open(gw.addr, &Login::default()).await;
    raw.open_channel(1).await;
    raw.method(1, update_secret("wrong channel")).await;
    let close = raw.connection_close().await;
    assert_eq!(
        (close.reply_code, close.reply_text.as_str()),
        (503, "COMMAND_INVALID - unimplemented method")
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_refused() {
    let gw = Gateway::start_with(Config {
        max_connections: 2,
        ..Config::default()
    })
    .await;
    let _a = Raw::open(gw.addr, &Login::default()).await;
    let _b = Raw::open(gw.addr, &Login::default()).await;
    let (mut c, tune) = Raw::login(gw.addr, &Login::default()).await;
    let tune = tune.unwrap();
    c.tune_ok(tune.channel_max, tune.frame_max, 0).await;
    c.method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
            virtual_host: "/".into(),
        })),
    )
    .await;
    let close = c.connection_close().await;
    assert_eq!(
        (close.reply_code, close.reply_text.as_str()),
        (
            530,
            "NOT_ALLOWED - connection refused: node connection limit (2) is reached"
        )
    );
    // Once one leaves, a new one gets in.
    drop(_a);
    drop(c);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _d = Raw::open(gw.addr, &Login::default()).await;
    gw.stop().await;
}

/// A publisher (without confirms) facing a disk that does not keep up is
/// paused once 16 MiB it published wait unwritten, and resumes as the store
/// catches up: its memory stays bounded although nothing else holds it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_is_paused_while_its_window_of_unwritten_bytes_is_full() {
    use amq_protocol::protocol::BasicProperties;
    use gw_amqp::codec::{decode, encode_content, encode_method};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let store = gw_core::MemoryStore::new();
    let engine = gw_core::Engine::open(gw_core::EngineConfig::in_memory(&store)).unwrap();
    let gw = Gateway::start_engine(engine, std::path::Path::new("."), Config::default()).await;
    let tenant = gw.engine.tenant("/").unwrap();
    let (queue, _) = tenant
        .declare_queue(
            "q",
            QueueSpec {
                durable: true,
                default_group: true,
                ..Default::default()
            },
        )
        .unwrap();
    let mut raw = Raw::open(gw.addr, &Login::default()).await;
    raw.open_channel(1).await;
    store.set_stalled(true);

    // 200 persistent publishes of 256 KiB (50 MiB), then a basic.qos.
    const N: usize = 200;
    let body = vec![7u8; 256 << 10];
    let persistent = BasicProperties::default().with_delivery_mode(2);
    let mut frames = bytes::BytesMut::new();
    for _ in 0..N {
        let p = basic::Publish {
            exchange: "".into(),
            routing_key: "q".into(),
            mandatory: false,
            immediate: false,
        };
        encode_method(
            &mut frames,
            1,
            &AMQPClass::Basic(basic::AMQPMethod::Publish(p)),
        )
        .unwrap();
        encode_content(&mut frames, 1, 60, &persistent, &body, 131_072).unwrap();
    }
    encode_method(&mut frames, 1, &qos()).unwrap();
    let (mut read, mut write) = raw.sock.into_split();
    let writer = tokio::spawn(async move {
        write.write_all(&frames).await.unwrap();
        write
    });

    // The count stops growing well short of everything sent.
    let mut last = usize::MAX;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = queue.message_count() as usize;
        if now == last {
            break;
        }
        last = now;
    }
    eprintln!("window full: {last} of {N} publishes of 256 KiB taken");
    assert!(
        (64..N / 2).contains(&last),
        "{last} of {N} publishes taken with the window full"
    );
    let mut buf = raw.buf;
    let answered = tokio::time::timeout(Duration::from_millis(300), read.read_buf(&mut buf)).await;
    assert!(answered.is_err(), "answered while paused: {answered:?}");

    // The disk catches up: everything is taken and the qos answered.
    store.set_stalled(false);
    let qos_ok = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(f) = decode(&mut buf, 0).unwrap() {
                return f;
            }
            assert!(read.read_buf(&mut buf).await.unwrap() > 0, "closed");
        }
    })
    .await
    .expect("qos-ok once the store caught up");
    assert!(
        matches!(
            qos_ok,
            Frame::Method(1, AMQPClass::Basic(basic::AMQPMethod::QosOk(_)))
        ),
        "{qos_ok:?}"
    );
    assert_eq!(queue.message_count() as usize, N);
    drop(writer.await.unwrap());
    gw.stop().await;
}
