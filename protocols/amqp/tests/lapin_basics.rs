//! The RabbitMQ tutorials (hello world, work queues, publish/subscribe,
//! routing, topics, RPC, publisher confirms), driven by lapin over real sockets.
#![allow(clippy::unwrap_used)]

mod common;

use common::Gateway;
use common::lapin_util::*;
use futures::StreamExt;
use lapin::options::*;
use lapin::types::AMQPValue;
use lapin::{BasicProperties, Consumer, ExchangeKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_world() {
    let gw = Gateway::start().await;
    let conn = gw.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let q = ch
        .queue_declare("hello".into(), QueueDeclareOptions::default(), no_args())
        .await
        .unwrap();
    assert_eq!(q.message_count(), 0);
    ch.basic_publish(
        "".into(),
        "hello".into(),
        BasicPublishOptions::default(),
        b"Hello World!",
        BasicProperties::default().with_content_type("text/plain".into()),
    )
    .await
    .unwrap();
    let mut consumer = consume(&ch, "hello", true).await;
    assert!(consumer.tag().as_str().starts_with("amq.ctag-"));
    let d = next(&mut consumer).await;
    assert_eq!(d.data, b"Hello World!");
    assert_eq!(
        d.properties.content_type().as_ref().map(|s| s.as_str()),
        Some("text/plain")
    );
    assert!(!d.redelivered);
    assert_eq!(d.routing_key.as_str(), "hello");
    conn.close(200, "bye".into()).await.unwrap();
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_queue_prefetch_acks_and_redelivery() {
    let gw = Gateway::start().await;
    let conn = gw.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "tasks").await;
    for i in 0..10 {
        publish(&ch, "", "tasks", format!("task {i}").as_bytes()).await;
    }
    // Worker 1: prefetch 2, never acks: holds exactly two.
    let w1 = conn.create_channel().await.unwrap();
    w1.basic_qos(2, BasicQosOptions::default()).await.unwrap();
    let mut c1 = consume(&w1, "tasks", false).await;
    let a = next(&mut c1).await;
    let b = next(&mut c1).await;
    assert_eq!((a.delivery_tag, b.delivery_tag), (1, 2));
    quiet(&mut c1, 200).await;
    // Worker 2 gets the rest and acks them with one multiple ack.
    let w2 = conn.create_channel().await.unwrap();
    let mut c2 = consume(&w2, "tasks", false).await;
    let mut last = 0;
    for _ in 0..8 {
        last = next(&mut c2).await.delivery_tag;
    }
    w2.basic_ack(last, BasicAckOptions { multiple: true })
        .await
        .unwrap();
    // Worker 1 dies: its two come back, redelivered, with x-delivery-count.
    w1.close(200, "bye".into()).await.unwrap();
    let r1 = next(&mut c2).await;
    let r2 = next(&mut c2).await;
    let mut bodies = vec![r1.data.clone(), r2.data.clone()];
    bodies.sort();
    assert_eq!(bodies, [b"task 0".to_vec(), b"task 1".to_vec()]);
    assert!(r1.redelivered && r2.redelivered);
    let count = r1
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-delivery-count").cloned());
    assert_eq!(count, Some(AMQPValue::LongLongInt(1)));
    r1.acker.ack(BasicAckOptions::default()).await.unwrap();
    r2.acker.ack(BasicAckOptions::default()).await.unwrap();
    let q = ch
        .queue_declare(
            "tasks".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            no_args(),
        )
        .await
        .unwrap();
    assert_eq!(q.message_count(), 0);
    assert_eq!(q.consumer_count(), 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_direct_and_topic_routing() {
    let gw = Gateway::start().await;
    let conn = gw.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.exchange_declare(
        "logs".into(),
        ExchangeKind::Fanout,
        Default::default(),
        no_args(),
    )
    .await
    .unwrap();
    ch.exchange_declare(
        "direct_logs".into(),
        ExchangeKind::Direct,
        Default::default(),
        no_args(),
    )
    .await
    .unwrap();
    ch.exchange_declare(
        "topic_logs".into(),
        ExchangeKind::Topic,
        Default::default(),
        no_args(),
    )
    .await
    .unwrap();
    let excl = QueueDeclareOptions {
        exclusive: true,
        ..Default::default()
    };
    let mut queues = Vec::new();
    for _ in 0..3 {
        let q = ch.queue_declare("".into(), excl, no_args()).await.unwrap();
        assert!(q.name().as_str().starts_with("amq.gen-"));
        queues.push(q.name().as_str().to_owned());
    }
    let bind = |q: &str, x: &str, k: &str| {
        let (q, x, k) = (q.to_owned(), x.to_owned(), k.to_owned());
        let ch = ch.clone();
        async move {
            ch.queue_bind(q.into(), x.into(), k.into(), Default::default(), no_args())
                .await
                .unwrap()
        }
    };
    for q in &queues {
        bind(q, "logs", "").await;
    }
    bind(&queues[0], "direct_logs", "error").await;
    bind(&queues[1], "direct_logs", "info").await;
    bind(&queues[0], "topic_logs", "*.critical").await;
    bind(&queues[2], "topic_logs", "kern.#").await;
    let mut c: Vec<Consumer> = Vec::new();
    for q in &queues {
        c.push(consume(&ch, q, true).await);
    }
    publish(&ch, "logs", "", b"all").await;
    for consumer in c.iter_mut() {
        assert_eq!(next(consumer).await.data, b"all");
    }
    publish(&ch, "direct_logs", "error", b"err").await;
    publish(&ch, "direct_logs", "info", b"inf").await;
    publish(&ch, "direct_logs", "debug", b"dropped").await;
    assert_eq!(next(&mut c[0]).await.data, b"err");
    assert_eq!(next(&mut c[1]).await.data, b"inf");
    publish(&ch, "topic_logs", "kern.critical", b"kc").await;
    publish(&ch, "topic_logs", "app.critical", b"ac").await;
    publish(&ch, "topic_logs", "kern.info.x", b"ki").await;
    assert_eq!(next(&mut c[0]).await.data, b"kc");
    assert_eq!(next(&mut c[0]).await.data, b"ac");
    assert_eq!(next(&mut c[2]).await.data, b"kc");
    assert_eq!(next(&mut c[2]).await.data, b"ki");
    quiet(&mut c[1], 100).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_with_reply_queue_and_with_direct_reply_to() {
    let gw = Gateway::start().await;
    let conn = gw.connect().await;
    // The server answers whatever arrives on rpc_queue to its reply_to.
    let server = conn.create_channel().await.unwrap();
    declare(&server, "rpc_queue").await;
    let mut requests = consume(&server, "rpc_queue", false).await;
    let srv = server.clone();
    tokio::spawn(async move {
        while let Some(Ok(d)) = requests.next().await {
            let reply_to = d.properties.reply_to().clone().unwrap();
            let corr = d.properties.correlation_id().clone().unwrap();
            let mut body = b"re: ".to_vec();
            body.extend_from_slice(&d.data);
            srv.basic_publish(
                "".into(),
                reply_to,
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default().with_correlation_id(corr),
            )
            .await
            .unwrap();
            d.acker.ack(BasicAckOptions::default()).await.unwrap();
        }
    });
    // Classic: an exclusive server-named reply queue.
    let client = conn.create_channel().await.unwrap();
    let reply = client
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            no_args(),
        )
        .await
        .unwrap();
    let mut replies = consume(&client, reply.name().as_str(), true).await;
    client
        .basic_publish(
            "".into(),
            "rpc_queue".into(),
            BasicPublishOptions::default(),
            b"30",
            BasicProperties::default()
                .with_reply_to(reply.name().clone())
                .with_correlation_id("c1".into()),
        )
        .await
        .unwrap();
    let r = next(&mut replies).await;
    assert_eq!(r.data, b"re: 30");
    assert_eq!(
        r.properties.correlation_id().as_ref().unwrap().as_str(),
        "c1"
    );
    // Direct reply-to: no queue declared at all.
    let direct = conn.create_channel().await.unwrap();
    let mut fast = consume(&direct, "amq.rabbitmq.reply-to", true).await;
    direct
        .basic_publish(
            "".into(),
            "rpc_queue".into(),
            BasicPublishOptions::default(),
            b"31",
            BasicProperties::default()
                .with_reply_to("amq.rabbitmq.reply-to".into())
                .with_correlation_id("c2".into()),
        )
        .await
        .unwrap();
    let r = next(&mut fast).await;
    assert_eq!(r.data, b"re: 31");
    assert_eq!(
        r.properties.correlation_id().as_ref().unwrap().as_str(),
        "c2"
    );
    // Direct reply-to needs no-ack, and a consumer before the publish.
    let bad = conn.create_channel().await.unwrap();
    let e = bad
        .basic_consume(
            "amq.rabbitmq.reply-to".into(),
            "".into(),
            BasicConsumeOptions::default(),
            no_args(),
        )
        .await
        .unwrap_err();
    assert_eq!(amqp_code(&e), Some(406));
    let bad = conn.create_channel().await.unwrap();
    let _ = bad
        .basic_publish(
            "".into(),
            "rpc_queue".into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default().with_reply_to("amq.rabbitmq.reply-to".into()),
        )
        .await;
    let e = bad
        .queue_declare("probe".into(), Default::default(), no_args())
        .await
        .unwrap_err();
    closed_with(&e, 406);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_confirms_durable_and_mandatory_returns() {
    let gw = Gateway::start().await;
    let conn = gw.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch.queue_declare(
        "durable-q".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        no_args(),
    )
    .await
    .unwrap();
    let mut pending = Vec::new();
    for i in 0..500u32 {
        let c = ch
            .basic_publish(
                "".into(),
                "durable-q".into(),
                BasicPublishOptions::default(),
                &i.to_be_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap();
        pending.push(c);
    }
    for c in pending {
        assert!(c.await.unwrap().is_ack());
    }
    // Mandatory and unroutable: returned, then acked.
    let c = ch
        .basic_publish(
            "".into(),
            "nowhere".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"lost",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(c.is_ack());
    let ret = c.take_message().expect("basic.return");
    assert_eq!(ret.data, b"lost");
    assert_eq!(ret.reply_code, 312);
    // A full queue with reject-publish: nack.
    ch.queue_declare(
        "bounded".into(),
        Default::default(),
        args(&[
            ("x-max-length", AMQPValue::LongInt(1)),
            ("x-overflow", AMQPValue::LongString("reject-publish".into())),
        ]),
    )
    .await
    .unwrap();
    let first = ch
        .basic_publish(
            "".into(),
            "bounded".into(),
            Default::default(),
            b"1",
            Default::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let second = ch
        .basic_publish(
            "".into(),
            "bounded".into(),
            Default::default(),
            b"2",
            Default::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(first.is_ack());
    assert!(second.is_nack());
    let q = ch
        .queue_declare(
            "durable-q".into(),
            QueueDeclareOptions {
                durable: true,
                passive: true,
                ..Default::default()
            },
            no_args(),
        )
        .await
        .unwrap();
    assert_eq!(q.message_count(), 500);
    gw.stop().await;
}
