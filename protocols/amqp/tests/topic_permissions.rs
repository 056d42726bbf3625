//! RabbitMQ's topic permissions through lapin (issue 12): on a topic
//! exchange a publish whose routing key the user's `write` pattern refuses
//! closes the channel with 403 ACCESS_REFUSED, as does a `queue.bind` whose
//! binding key `read` refuses; allowed keys, other exchanges and other
//! exchange kinds are unaffected.
#![allow(clippy::unwrap_used)]

mod common;

use common::Gateway;
use common::lapin_util::{amqp_code, consume, declare, next, no_args, quiet};
use gw_core::{Permission, TopicPermission};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

async fn login(gw: &Gateway, user: &str) -> Connection {
    let uri = format!("amqp://{user}:pw@{}/%2f", gw.addr);
    Connection::connect(&uri, ConnectionProperties::default())
        .await
        .unwrap()
}

async fn bind(ch: &Channel, queue: &str, exchange: &str, key: &str) -> lapin::Result<()> {
    ch.queue_bind(
        queue.into(),
        exchange.into(),
        key.into(),
        QueueBindOptions::default(),
        no_args(),
    )
    .await
}

/// A confirmed publish; `Err` when the channel was closed for it.
async fn publish(ch: &Channel, exchange: &str, key: &str, body: &[u8]) -> lapin::Result<()> {
    ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        body,
        BasicProperties::default(),
    )
    .await?
    .await?;
    Ok(())
}

#[tokio::test]
async fn routing_and_binding_keys_are_checked_on_topic_exchanges() {
    let gw = Gateway::start().await;
    let e = &gw.engine;
    e.put_user("svc", "pw", vec![]).unwrap();
    e.set_permission("svc", Permission::full("/")).unwrap();
    e.set_topic_permission(
        "svc",
        TopicPermission {
            tenant: "/".into(),
            exchange: "amq.topic".into(),
            write: r"^orders\.{username}\.".into(),
            read: r"^orders\.".into(),
        },
    )
    .unwrap();
    // A watcher (guest, no topic permissions) sees what gets through.
    let admin = gw.connect().await;
    let wch = admin.create_channel().await.unwrap();
    let watched = declare(&wch, "").await;
    bind(&wch, &watched, "amq.topic", "#").await.unwrap();
    let mut watch = consume(&wch, &watched, true).await;

    let conn = login(&gw, "svc").await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    publish(&ch, "amq.topic", "orders.svc.created", b"ok")
        .await
        .unwrap();
    assert_eq!(&next(&mut watch).await.data[..], b"ok");
    let e1 = publish(&ch, "amq.topic", "orders.other.created", b"forged")
        .await
        .unwrap_err();
    assert_eq!(amqp_code(&e1), Some(403), "{e1}");
    assert!(e1.to_string().contains("orders.other.created"), "{e1}");
    quiet(&mut watch, 300).await;

    // Binding: only keys the read pattern allows.
    let ch = conn.create_channel().await.unwrap();
    let q = declare(&ch, "").await;
    bind(&ch, &q, "amq.topic", "orders.#").await.unwrap();
    let e2 = bind(&ch, &q, "amq.topic", "#").await.unwrap_err();
    assert_eq!(amqp_code(&e2), Some(403), "{e2}");

    // Other exchanges are not governed: a fanout, and a topic exchange the
    // user has no topic permission on.
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    publish(&ch, "amq.fanout", "anything", b"f").await.unwrap();
    ch.exchange_declare(
        "events".into(),
        lapin::ExchangeKind::Topic,
        Default::default(),
        no_args(),
    )
    .await
    .unwrap();
    publish(&ch, "events", "whatever.key", b"e").await.unwrap();
    conn.close(200, "bye".into()).await.unwrap();
    gw.stop().await;
}
