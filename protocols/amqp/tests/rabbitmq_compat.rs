//! RabbitMQ 3.13/4.x behaviours that client libraries' own test suites rely
//! on, through lapin: secret refresh, idempotent deletes and unbinds,
//! `reject-publish-dlx`, drop-head dead-lettering, and an unknown exchange
//! type closing only its channel. (pika and amqplib run the same checks in
//! `tests/clients/`; exact bytes of the refusals are in `flow_control.rs`.)
#![allow(clippy::unwrap_used)]

mod common;

use common::lapin_util::*;
use common::{Gateway, within};
use gw_core::{Permission, QueueSpec};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

/// Publishes on a confirm channel and says whether the server acked.
async fn confirmed(ch: &Channel, exchange: &str, key: &str, body: &[u8]) -> bool {
    ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        body,
        BasicProperties::default(),
    )
    .await
    .unwrap()
    .await
    .unwrap()
    .is_ack()
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_users_secret_refresh_is_accepted() {
    let gw = Gateway::start().await;
    let conn = gw.connect().await;
    within(
        5,
        conn.update_secret(LongString::from("an OAuth token"), "token refresh".into()),
    )
    .await
    .unwrap();
    // The connection goes on as before.
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "after-refresh").await;
    within(
        5,
        conn.update_secret(LongString::from("guest"), "again".into()),
    )
    .await
    .unwrap();
    publish(&ch, "", "after-refresh", b"x").await;
    let mut c = consume(&ch, "after-refresh", true).await;
    assert_eq!(next(&mut c).await.data, b"x");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_and_unbinds_of_missing_things_succeed() {
    let gw = Gateway::start().await;
    let conn = gw.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let n = ch
        .queue_delete("never-declared".into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    assert_eq!(n, 0);
    ch.exchange_delete("never-declared".into(), ExchangeDeleteOptions::default())
        .await
        .unwrap();
    declare(&ch, "q").await;
    let unbind = |queue: &'static str, exchange: &'static str, key: &'static str| {
        let ch = ch.clone();
        async move {
            ch.queue_unbind(queue.into(), exchange.into(), key.into(), no_args())
                .await
        }
    };
    unbind("never-declared", "amq.direct", "k").await.unwrap();
    unbind("q", "no-such-exchange", "k").await.unwrap();
    unbind("q", "amq.direct", "never-bound").await.unwrap();
    ch.exchange_unbind(
        "no-such-destination".into(),
        "amq.direct".into(),
        "k".into(),
        ExchangeUnbindOptions::default(),
        no_args(),
    )
    .await
    .unwrap();
    // Bound, unbound, unbound again.
    ch.queue_bind(
        "q".into(),
        "amq.direct".into(),
        "k".into(),
        QueueBindOptions::default(),
        no_args(),
    )
    .await
    .unwrap();
    unbind("q", "amq.direct", "k").await.unwrap();
    unbind("q", "amq.direct", "k").await.unwrap();
    assert!(ch.status().connected(), "the channel is still open");

    // Binding what is missing still fails (404), as in RabbitMQ.
    let e = ch
        .queue_bind(
            "never-declared".into(),
            "amq.direct".into(),
            "k".into(),
            QueueBindOptions::default(),
            no_args(),
        )
        .await
        .unwrap_err();
    assert_eq!(amqp_code(&e), Some(404), "{e}");

    // Another connection's exclusive queue: unbinding a binding it has is
    // refused (405); one it does not have is a no-op.
    let owner = gw.connect().await;
    let och = owner.create_channel().await.unwrap();
    och.queue_declare(
        "mine".into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        no_args(),
    )
    .await
    .unwrap();
    och.queue_bind(
        "mine".into(),
        "amq.direct".into(),
        "k".into(),
        QueueBindOptions::default(),
        no_args(),
    )
    .await
    .unwrap();
    let other = conn.create_channel().await.unwrap();
    other
        .queue_unbind(
            "mine".into(),
            "amq.direct".into(),
            "other".into(),
            no_args(),
        )
        .await
        .unwrap();
    let e = other
        .queue_unbind("mine".into(), "amq.direct".into(), "k".into(), no_args())
        .await
        .unwrap_err();
    assert_eq!(amqp_code(&e), Some(405), "{e}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_never_reaches_another_tenant() {
    let gw = Gateway::start().await;
    gw.engine.create_tenant("other").unwrap();
    let other = gw.engine.tenant("other").unwrap();
    let (theirs, _) = other
        .declare_queue(
            "same-name",
            QueueSpec {
                default_group: true,
                ..Default::default()
            },
        )
        .unwrap();
    let mut m = gw_core::Message::new(&b"keep me"[..]);
    m.routing_key = "same-name".into();
    other.publish(m).unwrap();
    // guest works in "/": the name there is free, so the delete is a no-op.
    let conn = gw.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let n = ch
        .queue_delete("same-name".into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    assert_eq!(n, 0);
    assert_eq!(other.queue("same-name").unwrap().message_count(), 1);
    assert_eq!(theirs.message_count(), 1);
    // And guest cannot open "other" to try there (530, as RabbitMQ).
    let uri = format!("amqp://guest:guest@{}/other", gw.addr);
    let e = Connection::connect(&uri, ConnectionProperties::default())
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("530") || amqp_code(&e) == Some(530),
        "{e}"
    );
    // A user of "other" without configure permission is refused (403) even
    // for a queue that does not exist.
    gw.engine.put_user("reader", "pw", Vec::new()).unwrap();
    gw.engine
        .set_permission(
            "reader",
            Permission {
                tenant: "other".into(),
                configure: String::new(),
                write: ".*".into(),
                read: ".*".into(),
            },
        )
        .unwrap();
    let uri = format!("amqp://reader:pw@{}/other", gw.addr);
    let reader = Connection::connect(&uri, ConnectionProperties::default())
        .await
        .unwrap();
    for queue in ["same-name", "never-declared"] {
        let rch = reader.create_channel().await.unwrap();
        let e = rch
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await
            .unwrap_err();
        assert_eq!(amqp_code(&e), Some(403), "{e}");
    }
    assert_eq!(theirs.message_count(), 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_publish_dlx_nacks_and_dead_letters() {
    let gw = Gateway::start().await;
    let conn = gw.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch.exchange_declare(
        "dlx".into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        no_args(),
    )
    .await
    .unwrap();
    declare(&ch, "dead").await;
    ch.queue_bind(
        "dead".into(),
        "dlx".into(),
        "".into(),
        QueueBindOptions::default(),
        no_args(),
    )
    .await
    .unwrap();
    ch.queue_declare(
        "full".into(),
        QueueDeclareOptions::default(),
        args(&[
            ("x-max-length", AMQPValue::LongInt(1)),
            ("x-overflow", text("reject-publish-dlx")),
            ("x-dead-letter-exchange", text("dlx")),
        ]),
    )
    .await
    .unwrap();
    declare(&ch, "roomy").await;
    ch.exchange_declare(
        "both".into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        no_args(),
    )
    .await
    .unwrap();
    for q in ["full", "roomy"] {
        ch.queue_bind(
            q.into(),
            "both".into(),
            "".into(),
            QueueBindOptions::default(),
            no_args(),
        )
        .await
        .unwrap();
    }
    assert!(confirmed(&ch, "both", "", b"first").await);
    // Refused by one of its two queues: nack, and dead-lettered once.
    assert!(!confirmed(&ch, "both", "", b"second").await);
    assert!(!confirmed(&ch, "", "full", b"third").await);
    let mut dead = consume(&ch, "dead", true).await;
    let d = next(&mut dead).await;
    assert_eq!(d.data, b"second");
    let headers = d.properties.headers().clone().unwrap_or_default();
    assert_eq!(
        headers.inner().get("x-first-death-reason"),
        Some(&text("maxlen"))
    );
    assert_eq!(next(&mut dead).await.data, b"third");
    quiet(&mut dead, 200).await;
    let t = gw.engine.tenant("/").unwrap();
    assert_eq!(t.queue("full").unwrap().message_count(), 1);
    assert_eq!(t.queue("roomy").unwrap().message_count(), 2);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_head_dead_letters_with_a_dlx() {
    let gw = Gateway::start().await;
    let conn = gw.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "dropped").await;
    ch.queue_declare(
        "short".into(),
        QueueDeclareOptions::default(),
        args(&[
            ("x-max-length", AMQPValue::LongInt(1)),
            ("x-dead-letter-exchange", text("")),
            ("x-dead-letter-routing-key", text("dropped")),
        ]),
    )
    .await
    .unwrap();
    publish(&ch, "", "short", b"old").await;
    publish(&ch, "", "short", b"new").await;
    let mut dropped = consume(&ch, "dropped", true).await;
    let d = next(&mut dropped).await;
    assert_eq!(d.data, b"old");
    let mut short = consume(&ch, "short", true).await;
    assert_eq!(next(&mut short).await.data, b"new");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_exchange_type_closes_only_the_channel() {
    let gw = Gateway::start().await;
    let conn = gw.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let e = ch
        .exchange_declare(
            "odd".into(),
            ExchangeKind::Custom("x-no-such-type".into()),
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(amqp_code(&e), Some(406), "{e}");
    assert!(
        e.to_string()
            .contains("unknown exchange type 'x-no-such-type'"),
        "{e}"
    );
    // The connection and its other channels go on.
    let again = conn.create_channel().await.unwrap();
    declare(&again, "still-here").await;
    let mut c = consume(&again, "still-here", true).await;
    publish(&again, "", "still-here", b"ok").await;
    assert_eq!(next(&mut c).await.data, b"ok");
    gw.stop().await;
}
