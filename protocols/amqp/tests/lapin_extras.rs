//! The gateway's extras through RabbitMQ-style arguments and headers: FIFO
//! queues, delayed messages, tags, consumer groups, rewind, delivery limits
//! and dead letters, priorities, TTL.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Gateway, within};
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Consumer, ExchangeKind};

fn args(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

async fn publish_with(
    ch: &Channel,
    key: &str,
    body: &[u8],
    headers: FieldTable,
    props: BasicProperties,
) {
    ch.basic_publish(
        "".into(),
        key.into(),
        Default::default(),
        body,
        props.with_headers(headers),
    )
    .await
    .unwrap();
}

async fn consume_with(ch: &Channel, queue: &str, no_ack: bool, arguments: FieldTable) -> Consumer {
    ch.basic_consume(
        queue.into(),
        "".into(),
        BasicConsumeOptions {
            no_ack,
            ..Default::default()
        },
        arguments,
    )
    .await
    .unwrap()
}

async fn next(c: &mut Consumer) -> Delivery {
    within(10, c.next()).await.unwrap().unwrap()
}

async fn quiet(c: &mut Consumer, ms: u64) {
    let got = tokio::time::timeout(Duration::from_millis(ms), c.next()).await;
    assert!(got.is_err(), "unexpected delivery: {got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_queue_keeps_order_per_group_key() {
    let gw = Gateway::start().await;
    let conn = gw.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "orders".into(),
        Default::default(),
        args(&[("x-queue-type", text("fifo"))]),
    )
    .await
    .unwrap();
    for (key, n) in [("a", 1), ("b", 1), ("a", 2), ("b", 2)] {
        publish_with(
            &ch,
            "orders",
            format!("{key}{n}").as_bytes(),
            args(&[("x-group-id", text(key))]),
            BasicProperties::default(),
        )
        .await;
    }
    ch.basic_qos(10, Default::default()).await.unwrap();
    let mut c = consume_with(&ch, "orders", false, FieldTable::default()).await;
    // a1 and b1 may go out together; a2 and b2 wait for them.
    let first = next(&mut c).await;
    let second = next(&mut c).await;
    let mut heads = vec![first.data.clone(), second.data.clone()];
    heads.sort();
    assert_eq!(heads, [b"a1".to_vec(), b"b1".to_vec()]);
    quiet(&mut c, 200).await;
    first.acker.ack(Default::default()).await.unwrap();
    let third = next(&mut c).await;
    let expect = if first.data == b"a1" { b"a2" } else { b"b2" };
    assert_eq!(third.data, expect);
    // Redeclare with another type: inequivalent.
    let other = conn.create_channel().await.unwrap();
    let e = other
        .queue_declare("orders".into(), Default::default(), FieldTable::default())
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("406") || e.to_string().contains("PRECONDITION"),
        "{e}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_delay_holds_a_message_back() {
    let gw = Gateway::start().await;
    let conn = gw.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare("later".into(), Default::default(), FieldTable::default())
        .await
        .unwrap();
    let sent = Instant::now();
    publish_with(
        &ch,
        "later",
        b"delayed",
        args(&[("x-delay", AMQPValue::LongInt(600))]),
        Default::default(),
    )
    .await;
    publish_with(
        &ch,
        "later",
        b"now",
        FieldTable::default(),
        Default::default(),
    )
    .await;
    let mut c = consume_with(&ch, "later", true, FieldTable::default()).await;
    assert_eq!(next(&mut c).await.data, b"now");
    let d = next(&mut c).await;
    assert_eq!(d.data, b"delayed");
    assert!(
        sent.elapsed() >= Duration::from_millis(550),
        "{:?}",
        sent.elapsed()
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_filters_any_and_all() {
    let gw = Gateway::start().await;
    let conn = gw.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare("tagged".into(), Default::default(), FieldTable::default())
        .await
        .unwrap();
    // Two groups on one queue, each with its filter.
    let mut reds = consume_with(
        &ch,
        "tagged",
        true,
        args(&[
            ("x-consumer-group", text("reds")),
            ("x-stream-offset", text("first")),
            ("x-tags", text("red")),
        ]),
    )
    .await;
    let mut both = consume_with(
        &ch,
        "tagged",
        true,
        args(&[
            ("x-consumer-group", text("both")),
            ("x-stream-offset", text("first")),
            (
                "x-tags",
                AMQPValue::FieldArray(vec![text("red"), text("big")].into()),
            ),
            ("x-tag-match", text("all")),
        ]),
    )
    .await;
    publish_with(
        &ch,
        "tagged",
        b"red",
        args(&[("x-tags", text("red"))]),
        Default::default(),
    )
    .await;
    publish_with(
        &ch,
        "tagged",
        b"red big",
        args(&[("x-tags", text("red,big"))]),
        Default::default(),
    )
    .await;
    publish_with(
        &ch,
        "tagged",
        b"blue",
        args(&[("x-tags", text("blue"))]),
        Default::default(),
    )
    .await;
    assert_eq!(next(&mut reds).await.data, b"red");
    assert_eq!(next(&mut reds).await.data, b"red big");
    assert_eq!(next(&mut both).await.data, b"red big");
    quiet(&mut reds, 150).await;
    quiet(&mut both, 50).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_groups_each_see_every_message_and_rewind() {
    let gw = Gateway::start().await;
    let conn = gw.connect().await;
    let ch = conn.create_channel().await.unwrap();
    // Retained for an hour so groups can rewind.
    ch.queue_declare(
        "events".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args(&[("x-retention", AMQPValue::LongLongInt(3_600_000))]),
    )
    .await
    .unwrap();
    let group = |name: &str, offset: AMQPValue| {
        args(&[
            ("x-consumer-group", text(name)),
            ("x-stream-offset", offset),
        ])
    };
    let mut billing = consume_with(&ch, "events", false, group("billing", text("first"))).await;
    let mut audit = consume_with(&ch, "events", false, group("audit", text("first"))).await;
    for i in 0..5u8 {
        publish_with(
            &ch,
            "events",
            &[i],
            FieldTable::default(),
            Default::default(),
        )
        .await;
    }
    for c in [&mut billing, &mut audit] {
        for i in 0..5u8 {
            let d = next(c).await;
            assert_eq!(d.data, [i]);
            d.acker.ack(Default::default()).await.unwrap();
        }
    }
    // A new group starting at "next" sees only what comes after it.
    let mut late = consume_with(&ch, "events", true, group("late", text("next"))).await;
    publish_with(
        &ch,
        "events",
        &[9],
        FieldTable::default(),
        Default::default(),
    )
    .await;
    assert_eq!(next(&mut late).await.data, [9]);
    // Rewind: billing's consumer leaves; a new one rewinds the idle group to sequence 2.
    // (It settles what it holds first: a cancelled consumer keeps its
    // unacknowledged deliveries, as in RabbitMQ, and the group is not idle.)
    let nine = next(&mut billing).await;
    nine.acker.ack(Default::default()).await.unwrap();
    ch.basic_cancel(billing.tag(), Default::default())
        .await
        .unwrap();
    let mut again = consume_with(
        &ch,
        "events",
        true,
        group("billing", AMQPValue::LongLongInt(2)),
    )
    .await;
    for want in [2u8, 3, 4, 9] {
        assert_eq!(next(&mut again).await.data, [want]);
    }
    // …and a group by time: everything since a minute ago.
    let mut by_time = consume_with(&ch, "events", true, group("recent", text("1m"))).await;
    assert_eq!(next(&mut by_time).await.data, [0]);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_limit_and_ttl_dead_letter() {
    let gw = Gateway::start().await;
    let conn = gw.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.exchange_declare(
        "dlx".into(),
        ExchangeKind::Direct,
        Default::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_declare(
        "graveyard".into(),
        Default::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        "graveyard".into(),
        "dlx".into(),
        "dead".into(),
        Default::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_declare(
        "flaky".into(),
        Default::default(),
        args(&[
            ("x-queue-type", text("quorum")),
            ("x-delivery-limit", AMQPValue::LongInt(1)),
            ("x-dead-letter-exchange", text("dlx")),
            ("x-dead-letter-routing-key", text("dead")),
        ]),
    )
    .await
    .unwrap();
    publish_with(
        &ch,
        "flaky",
        b"poison",
        FieldTable::default(),
        Default::default(),
    )
    .await;
    let mut c = consume_with(&ch, "flaky", false, FieldTable::default()).await;
    // Delivery limit 1: first delivery and one redelivery, then dead-lettered.
    let d = next(&mut c).await;
    d.acker
        .nack(BasicNackOptions {
            requeue: true,
            multiple: false,
        })
        .await
        .unwrap();
    let d = next(&mut c).await;
    assert!(d.redelivered);
    d.acker
        .nack(BasicNackOptions {
            requeue: true,
            multiple: false,
        })
        .await
        .unwrap();
    quiet(&mut c, 200).await;
    let mut grave = consume_with(&ch, "graveyard", true, FieldTable::default()).await;
    let dead = next(&mut grave).await;
    assert_eq!(dead.data, b"poison");
    // Per-message TTL: expired messages are dead-lettered too.
    ch.queue_declare(
        "short-lived".into(),
        Default::default(),
        args(&[
            ("x-message-ttl", AMQPValue::LongInt(100)),
            ("x-dead-letter-exchange", text("dlx")),
            ("x-dead-letter-routing-key", text("dead")),
        ]),
    )
    .await
    .unwrap();
    publish_with(
        &ch,
        "short-lived",
        b"stale",
        FieldTable::default(),
        Default::default(),
    )
    .await;
    let dead = next(&mut grave).await;
    assert_eq!(dead.data, b"stale");
    let reason = match dead
        .properties
        .headers()
        .as_ref()
        .unwrap()
        .inner()
        .get("x-death")
    {
        Some(AMQPValue::FieldArray(a)) => match &a.as_slice()[0] {
            AMQPValue::FieldTable(t) => t.inner().get("reason").cloned(),
            _ => None,
        },
        _ => None,
    };
    assert_eq!(reason, Some(text("expired")));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priorities_are_honoured() {
    let gw = Gateway::start().await;
    let conn = gw.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "prio".into(),
        Default::default(),
        args(&[("x-max-priority", AMQPValue::ShortShortUInt(9))]),
    )
    .await
    .unwrap();
    for p in [1u8, 5, 9, 3] {
        publish_with(
            &ch,
            "prio",
            &[p],
            FieldTable::default(),
            BasicProperties::default().with_priority(p),
        )
        .await;
    }
    let mut c = consume_with(&ch, "prio", true, FieldTable::default()).await;
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(next(&mut c).await.data[0]);
    }
    assert_eq!(got, [9, 5, 3, 1]);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_prefetch_is_shared_by_the_channel() {
    let gw = Gateway::start().await;
    let conn = gw.connect().await;
    let ch = conn.create_channel().await.unwrap();
    for q in ["g1", "g2"] {
        ch.queue_declare(q.into(), Default::default(), FieldTable::default())
            .await
            .unwrap();
        for i in 0..5u8 {
            publish_with(&ch, q, &[i], FieldTable::default(), Default::default()).await;
        }
    }
    ch.basic_qos(3, BasicQosOptions { global: true })
        .await
        .unwrap();
    let mut a = consume_with(&ch, "g1", false, FieldTable::default()).await;
    let mut b = consume_with(&ch, "g2", false, FieldTable::default()).await;
    let mut held = Vec::new();
    // Three in all, whichever consumer they went to.
    loop {
        tokio::select! {
            Some(Ok(d)) = a.next() => held.push(d),
            Some(Ok(d)) = b.next() => held.push(d),
            () = tokio::time::sleep(Duration::from_millis(300)) => break,
        }
    }
    assert_eq!(held.len(), 3);
    held[0].acker.ack(Default::default()).await.unwrap();
    let more = tokio::select! {
        Some(Ok(d)) = a.next() => d,
        Some(Ok(d)) = b.next() => d,
    };
    assert!(!more.redelivered);
    // channel.flow pauses deliveries.
    ch.channel_flow(ChannelFlowOptions { active: false })
        .await
        .unwrap();
    for d in &held[1..] {
        d.acker.ack(Default::default()).await.unwrap();
    }
    let paused = tokio::time::timeout(Duration::from_millis(200), async {
        tokio::select! { Some(_) = a.next() => (), Some(_) = b.next() => () }
    })
    .await;
    assert!(paused.is_err(), "flow is off");
    ch.channel_flow(ChannelFlowOptions { active: true })
        .await
        .unwrap();
    within(5, async {
        tokio::select! { Some(_) = a.next() => (), Some(_) = b.next() => () }
    })
    .await;
    gw.stop().await;
}
