//! Core AMQP semantics with lapin: basic.get, transactions, recover, channel
//! errors, consumer cancellation, dead-lettering, properties and bodies.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::lapin_util::*;
use common::{Gateway, within};
use futures::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, ExchangeKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_get_tx_and_recover() {
    let gw = Gateway::start().await;
    let conn = gw.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "g").await;
    assert!(
        ch.basic_get("g".into(), Default::default())
            .await
            .unwrap()
            .is_none()
    );
    publish(&ch, "", "g", b"one").await;
    publish(&ch, "", "g", b"two").await;
    let m = ch
        .basic_get("g".into(), Default::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.delivery.data, b"one");
    assert_eq!(m.message_count, 1);
    // Recover requeues the unacked one.
    ch.basic_recover(BasicRecoverOptions { requeue: true })
        .await
        .unwrap();
    let again = ch
        .basic_get("g".into(), Default::default())
        .await
        .unwrap()
        .unwrap();
    assert!(again.delivery.redelivered);
    again.delivery.acker.ack(Default::default()).await.unwrap();
    let two = ch
        .basic_get("g".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(two.delivery.data, b"two");

    // Transactions: publishes and acks wait for commit; rollback drops them.
    let tx = conn.create_channel().await.unwrap();
    tx.tx_select().await.unwrap();
    publish(&tx, "", "g", b"t1").await;
    assert!(
        ch.basic_get("g".into(), Default::default())
            .await
            .unwrap()
            .is_none()
    );
    tx.tx_rollback().await.unwrap();
    assert!(
        ch.basic_get("g".into(), Default::default())
            .await
            .unwrap()
            .is_none()
    );
    publish(&tx, "", "g", b"t2").await;
    tx.tx_commit().await.unwrap();
    let t2 = tx
        .basic_get("g".into(), Default::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t2.delivery.data, b"t2");
    t2.delivery.acker.ack(Default::default()).await.unwrap();
    tx.tx_rollback().await.unwrap();
    // The ack was rolled back: the message is still unacked on tx; commit of a new ack settles it.
    tx.basic_ack(t2.delivery.delivery_tag, Default::default())
        .await
        .unwrap();
    tx.tx_commit().await.unwrap();
    assert!(
        ch.basic_get("g".into(), Default::default())
            .await
            .unwrap()
            .is_none()
    );
    // confirm.select on a tx channel is refused.
    let e = tx.confirm_select(Default::default()).await.unwrap_err();
    assert_eq!(amqp_code(&e), Some(406));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_errors_close_only_the_channel() {
    let gw = Gateway::start().await;
    let conn = gw.connect().await;
    let other = gw.connect().await;
    let ch = conn.create_channel().await.unwrap();
    // 404: passive declare of a missing queue.
    let e = ch
        .queue_declare(
            "missing".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            no_args(),
        )
        .await
        .unwrap_err();
    assert_eq!(amqp_code(&e), Some(404));
    // 403: reserved names.
    let ch = conn.create_channel().await.unwrap();
    let e = ch
        .queue_declare("amq.mine".into(), Default::default(), no_args())
        .await
        .unwrap_err();
    assert_eq!(amqp_code(&e), Some(403));
    let ch = conn.create_channel().await.unwrap();
    let e = ch
        .exchange_declare(
            "amq.mine".into(),
            ExchangeKind::Direct,
            Default::default(),
            no_args(),
        )
        .await
        .unwrap_err();
    assert_eq!(amqp_code(&e), Some(403));
    // 406: inequivalent redeclare.
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "q406".into(),
        Default::default(),
        args(&[("x-message-ttl", AMQPValue::LongInt(100))]),
    )
    .await
    .unwrap();
    let e = ch
        .queue_declare(
            "q406".into(),
            Default::default(),
            args(&[("x-message-ttl", AMQPValue::LongInt(200))]),
        )
        .await
        .unwrap_err();
    assert_eq!(amqp_code(&e), Some(406));
    // 405: another connection's exclusive queue.
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "mine".into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        no_args(),
    )
    .await
    .unwrap();
    let och = other.create_channel().await.unwrap();
    let e = och
        .basic_consume("mine".into(), "".into(), Default::default(), no_args())
        .await
        .unwrap_err();
    assert_eq!(amqp_code(&e), Some(405));
    // 406: acking an unknown delivery tag.
    let ch2 = conn.create_channel().await.unwrap();
    ch2.basic_ack(77, Default::default()).await.unwrap();
    let e = ch2
        .queue_declare("after".into(), Default::default(), no_args())
        .await
        .unwrap_err();
    closed_with(&e, 406);
    // 404: publishing to a missing exchange.
    let ch3 = conn.create_channel().await.unwrap();
    publish(&ch3, "no-such-exchange", "k", b"x").await;
    let e = ch3
        .queue_declare("after".into(), Default::default(), no_args())
        .await
        .unwrap_err();
    closed_with(&e, 404);
    // The connection and the other connection still work.
    let fine = conn.create_channel().await.unwrap();
    declare(&fine, "still-fine").await;
    let fine2 = other.create_channel().await.unwrap();
    declare(&fine2, "still-fine").await;
    // The exclusive queue goes with its connection.
    conn.close(200, "bye".into()).await.unwrap();
    within(5, async {
        loop {
            let r = fine2
                .queue_declare(
                    "mine".into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    no_args(),
                )
                .await;
            if r.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_queue_cancels_its_consumers() {
    let gw = Gateway::start().await;
    let conn = gw.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "doomed").await;
    let mut c = consume(&ch, "doomed", true).await;
    let admin = conn.create_channel().await.unwrap();
    admin
        .queue_delete("doomed".into(), Default::default())
        .await
        .unwrap();
    // lapin ends the consumer stream when the server cancels it.
    let end = within(5, c.next()).await;
    assert!(end.is_none(), "{end:?}");
    // The channel stays usable.
    declare(&ch, "alive").await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_and_reject_dead_letter_with_x_death() {
    let gw = Gateway::start().await;
    let conn = gw.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.exchange_declare(
        "dlx".into(),
        ExchangeKind::Fanout,
        Default::default(),
        no_args(),
    )
    .await
    .unwrap();
    declare(&ch, "dead").await;
    ch.queue_bind(
        "dead".into(),
        "dlx".into(),
        "".into(),
        Default::default(),
        no_args(),
    )
    .await
    .unwrap();
    ch.queue_declare(
        "work".into(),
        Default::default(),
        args(&[(
            "x-dead-letter-exchange",
            AMQPValue::LongString("dlx".into()),
        )]),
    )
    .await
    .unwrap();
    publish(&ch, "", "work", b"bad").await;
    publish(&ch, "", "work", b"worse").await;
    let mut c = consume(&ch, "work", false).await;
    let a = next(&mut c).await;
    let b = next(&mut c).await;
    a.acker
        .reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    b.acker
        .nack(BasicNackOptions {
            requeue: false,
            multiple: false,
        })
        .await
        .unwrap();
    let mut dead = consume(&ch, "dead", true).await;
    let d = next(&mut dead).await;
    let death = d
        .properties
        .headers()
        .as_ref()
        .unwrap()
        .inner()
        .get("x-death")
        .cloned();
    assert!(matches!(death, Some(AMQPValue::FieldArray(_))), "{death:?}");
    next(&mut dead).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn properties_and_large_bodies_round_trip() {
    let gw = Gateway::start().await;
    let conn = gw.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "props").await;
    let mut headers = FieldTable::default();
    let mut nested = FieldTable::default();
    nested.insert("n".into(), AMQPValue::LongLongInt(-5));
    headers.insert("table".into(), AMQPValue::FieldTable(nested));
    headers.insert(
        "array".into(),
        AMQPValue::FieldArray(vec![AMQPValue::Boolean(true), AMQPValue::Double(1.5)].into()),
    );
    headers.insert(
        "dec".into(),
        AMQPValue::DecimalValue(lapin::types::DecimalValue {
            scale: 2,
            value: 314,
        }),
    );
    headers.insert("ts".into(), AMQPValue::Timestamp(1_700_000_000));
    headers.insert("bytes".into(), AMQPValue::ByteArray(vec![0u8, 255].into()));
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("gzip".into())
        .with_headers(headers)
        .with_delivery_mode(1)
        .with_priority(3)
        .with_correlation_id("corr".into())
        .with_reply_to("back".into())
        .with_expiration("60000".into())
        .with_message_id("mid".into())
        .with_timestamp(1_700_000_001)
        .with_type("kind".into())
        .with_user_id("guest".into())
        .with_app_id("app".into())
        .with_cluster_id("cl".into());
    // Bodies of 0 bytes, one frame, and many frames (frame_max 131072).
    let sizes = [0usize, 1000, 131_072 * 3 + 17];
    for size in sizes {
        let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        ch.basic_publish(
            "".into(),
            "props".into(),
            Default::default(),
            &body,
            props.clone(),
        )
        .await
        .unwrap();
    }
    let mut c = consume(&ch, "props", true).await;
    for size in sizes {
        let d = next(&mut c).await;
        assert_eq!(d.data.len(), size);
        assert!(
            d.data
                .iter()
                .enumerate()
                .all(|(i, &b)| b == (i % 251) as u8)
        );
        assert_eq!(d.properties, props);
    }
    // user_id must be the authenticated user (406 otherwise).
    ch.basic_publish(
        "".into(),
        "props".into(),
        Default::default(),
        b"x",
        BasicProperties::default().with_user_id("mallory".into()),
    )
    .await
    .unwrap();
    let e = ch
        .queue_declare("x".into(), Default::default(), no_args())
        .await
        .unwrap_err();
    closed_with(&e, 406);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_consumer_can_still_ack() {
    let gw = Gateway::start().await;
    let conn = gw.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "c").await;
    for i in 0..3u8 {
        publish(&ch, "", "c", &[i]).await;
    }
    ch.basic_qos(10, Default::default()).await.unwrap();
    let mut c = consume(&ch, "c", false).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(next(&mut c).await);
    }
    ch.basic_cancel(c.tag(), Default::default()).await.unwrap();
    for d in got {
        d.acker.ack(Default::default()).await.unwrap();
    }
    // Acked for good: nothing comes back after the channel closes.
    ch.close(200, "bye".into()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    assert!(
        ch.basic_get("c".into(), Default::default())
            .await
            .unwrap()
            .is_none()
    );
    gw.stop().await;
}
