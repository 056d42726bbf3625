//! Durable state survives a restart of the door and engine on the same data
//! directory (the in-process equivalent of restarting the gateway binary).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Gateway, within};
use futures::StreamExt;
use gw_amqp::Config;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, ExchangeKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_topology_and_messages_survive_a_restart() {
    let gw = Gateway::start().await;
    let conn = gw.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(Default::default()).await.unwrap();
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(
        "orders-x".into(),
        ExchangeKind::Topic,
        durable,
        FieldTable::default(),
    )
    .await
    .unwrap();
    let dq = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare("orders".into(), dq, FieldTable::default())
        .await
        .unwrap();
    ch.queue_declare("scratch".into(), Default::default(), FieldTable::default())
        .await
        .unwrap();
    ch.queue_bind(
        "orders".into(),
        "orders-x".into(),
        "order.*".into(),
        Default::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    for i in 0..50u32 {
        ch.basic_publish(
            "orders-x".into(),
            "order.new".into(),
            Default::default(),
            &i.to_be_bytes(),
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    // A transient message in the durable queue is not kept.
    ch.basic_publish(
        "".into(),
        "orders".into(),
        Default::default(),
        b"transient",
        Default::default(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    // Ten taken and left unacknowledged: they come back after the restart.
    let c2 = conn.create_channel().await.unwrap();
    c2.basic_qos(10, Default::default()).await.unwrap();
    let mut consumer = c2
        .basic_consume(
            "orders".into(),
            "".into(),
            Default::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for _ in 0..10 {
        within(5, consumer.next()).await.unwrap().unwrap();
    }
    let temp = gw.stop().await.unwrap();

    let gw = Gateway::start_on(temp.path(), Config::default()).await;
    let conn = gw.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let q = ch
        .queue_declare(
            "orders".into(),
            QueueDeclareOptions {
                durable: true,
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    // The count includes the lost transient message as a hole until a consumer
    // skips it (see `message_count_after_restart_skips_lost_transients`).
    assert!(q.message_count() >= 50, "{}", q.message_count());
    let gone = ch
        .queue_declare(
            "scratch".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await;
    assert!(gone.is_err(), "transient queues do not survive");
    // The binding survived: routing still works.
    let ch = conn.create_channel().await.unwrap();
    ch.basic_publish(
        "orders-x".into(),
        "order.late".into(),
        Default::default(),
        b"late",
        BasicProperties::default().with_delivery_mode(2),
    )
    .await
    .unwrap();
    let mut consumer = ch
        .basic_consume(
            "orders".into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut seen = BTreeSet::new();
    let mut redelivered = 0;
    for _ in 0..51 {
        let d = within(5, consumer.next()).await.unwrap().unwrap();
        redelivered += usize::from(d.redelivered);
        seen.insert(d.data.clone());
    }
    assert_eq!(seen.len(), 51);
    assert!(seen.contains(b"late".as_slice()));
    assert!(!seen.contains(b"transient".as_slice()));
    assert_eq!(
        redelivered, 10,
        "the ten in flight at shutdown come back redelivered"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_confirmed_message_survives_a_stop_mid_stream() {
    let gw = Gateway::start().await;
    let conn = gw.connect().await;
    let setup = conn.create_channel().await.unwrap();
    setup
        .queue_declare(
            "stream".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let confirmed = Arc::new(Mutex::new(BTreeSet::new()));
    let publisher = {
        let confirmed = Arc::clone(&confirmed);
        let ch = conn.create_channel().await.unwrap();
        ch.confirm_select(Default::default()).await.unwrap();
        tokio::spawn(async move {
            let mut pending = std::collections::VecDeque::new();
            for i in 0u32.. {
                let Ok(c) = ch
                    .basic_publish(
                        "".into(),
                        "stream".into(),
                        Default::default(),
                        &i.to_be_bytes(),
                        BasicProperties::default().with_delivery_mode(2),
                    )
                    .await
                else {
                    break;
                };
                pending.push_back((i, c));
                while pending.len() > 64 {
                    let (n, c) = pending.pop_front().unwrap();
                    match c.await {
                        Ok(conf) if conf.is_ack() => {
                            confirmed.lock().unwrap().insert(n);
                        }
                        _ => return,
                    }
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    let temp = gw.stop().await.unwrap();
    let _ = publisher.await;
    let confirmed = confirmed.lock().unwrap().clone();
    assert!(confirmed.len() > 100, "the stream ran: {}", confirmed.len());

    let gw = Gateway::start_on(temp.path(), Config::default()).await;
    let conn = gw.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let mut stored = BTreeSet::new();
    while let Some(m) = ch
        .basic_get("stream".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        stored.insert(u32::from_be_bytes(m.delivery.data[..4].try_into().unwrap()));
    }
    let missing: Vec<_> = confirmed.difference(&stored).take(5).collect();
    assert!(missing.is_empty(), "confirmed but lost: {missing:?}");
    gw.stop().await;
}

/// Engine issue for the lead: after a restart, `Queue::message_count()` still
/// counts a transient message that was in a durable queue (it is a hole in the
/// log now), so `queue.declare-ok` reports one message too many until a
/// consumer skips the hole. RabbitMQ reports only what survived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_count_after_restart_skips_lost_transients() {
    let gw = Gateway::start().await;
    let conn = gw.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(Default::default()).await.unwrap();
    let dq = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare("mixed".into(), dq, FieldTable::default())
        .await
        .unwrap();
    for mode in [2u8, 1, 2] {
        ch.basic_publish(
            "".into(),
            "mixed".into(),
            Default::default(),
            b"m",
            BasicProperties::default().with_delivery_mode(mode),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    let temp = gw.stop().await.unwrap();
    let gw = Gateway::start_on(temp.path(), Config::default()).await;
    let conn = gw.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let passive = QueueDeclareOptions {
        durable: true,
        passive: true,
        ..Default::default()
    };
    let q = ch
        .queue_declare("mixed".into(), passive, FieldTable::default())
        .await
        .unwrap();
    assert_eq!(q.message_count(), 2);
    gw.stop().await;
}
