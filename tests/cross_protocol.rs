//! One engine, three doors: what a message carries when it enters through one
//! protocol and leaves through another (README, "Protocol mapping").
//!
//! The matrix runs every (producer, consumer) pair of AMQP (lapin), MQTT 5
//! (rumqttc) and HTTP (reqwest) through `amq.topic`, with a message carrying
//! every mapped field and a second, delayed one. The other tests cover what a
//! pair cannot show: binary bodies, DMS sends, an AMQP and an HTTP consumer
//! sharing one group, and dead letters made through one door and drained
//! through another.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::BasicProperties;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicQosOptions, BasicRejectOptions};
use lapin::types::{AMQPValue, FieldTable};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use serde_json::{Value, json};

use common::{Http, Mqtt5, Suite, amqp, within};

/// The delay asked of the matrix's delayed message.
const DELAY_MS: u64 = 400;
/// Its expiration: long enough never to expire during a test.
const TTL_MS: u64 = 60_000;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Door {
    Amqp,
    Mqtt,
    Http,
}

impl Door {
    fn name(self) -> &'static str {
        match self {
            Door::Amqp => "amqp",
            Door::Mqtt => "mqtt",
            Door::Http => "http",
        }
    }
}

/// A message as any consumer saw it, in AMQP's terms (reply-to as a routing
/// key, expiration in milliseconds).
#[derive(Debug)]
struct Received {
    body: Value,
    content_type: Option<String>,
    attribute_k: Option<String>,
    tags: Vec<String>,
    correlation_id: Option<String>,
    reply_to: Option<String>,
    expiration_ms: Option<u64>,
    at: Instant,
}

/// The consuming side of a pair, subscribed before anything is published.
enum Sink {
    Amqp {
        consumer: lapin::Consumer,
        // Kept open for as long as the consumer is.
        _connection: Box<(lapin::Channel, lapin::Connection)>,
    },
    Mqtt(Mqtt5),
    Http(Http, String),
}

impl Sink {
    async fn open(suite: &Suite, door: Door, pair: &str) -> Sink {
        let queue = format!("c-{pair}");
        let key = format!("cross.{pair}");
        match door {
            Door::Amqp => {
                let (conn, ch) = suite.amqp_channel().await;
                amqp::declare(&ch, &queue, FieldTable::default()).await;
                amqp::bind(&ch, &queue, "amq.topic", &key).await;
                // A tag filter: a message whose tags were lost never arrives.
                let filter = amqp::table(&[("x-tags", amqp::text("blue"))]);
                let consumer = amqp::consume(&ch, &queue, filter).await;
                Sink::Amqp {
                    consumer,
                    _connection: Box::new((ch, conn)),
                }
            }
            Door::Mqtt => {
                let mut c = suite.mqtt5(&format!("sub-{pair}")).await;
                c.subscribe(&format!("cross/{pair}"), QoS::AtLeastOnce)
                    .await;
                Sink::Mqtt(c)
            }
            Door::Http => {
                let http = suite.http();
                http.create_queue(&queue, json!({})).await;
                http.create_group(&queue, "g").await;
                http.bind_to_amq_topic(&queue, &key).await;
                Sink::Http(http, queue)
            }
        }
    }

    /// Receives (and acknowledges) `n` messages.
    async fn receive(&mut self, n: usize) -> Vec<Received> {
        let mut out = Vec::new();
        while out.len() < n {
            match self {
                Sink::Amqp { consumer, .. } => {
                    let d = amqp::next(consumer).await;
                    let at = Instant::now();
                    d.ack(BasicAckOptions::default()).await.unwrap();
                    let text = |v: Option<&AMQPValue>| match v {
                        Some(AMQPValue::LongString(s)) => Some(s.to_string()),
                        _ => None,
                    };
                    let p = &d.properties;
                    out.push(Received {
                        body: serde_json::from_slice(&d.data).unwrap(),
                        content_type: amqp::prop(p.content_type()).map(str::to_owned),
                        attribute_k: text(amqp::header(&d, "k")),
                        tags: text(amqp::header(&d, "x-tags"))
                            .map(|t| t.split(',').map(str::to_owned).collect())
                            .unwrap_or_default(),
                        correlation_id: amqp::prop(p.correlation_id()).map(str::to_owned),
                        reply_to: amqp::prop(p.reply_to()).map(str::to_owned),
                        expiration_ms: amqp::prop(p.expiration()).map(|e| e.parse().unwrap()),
                        at,
                    });
                }
                Sink::Mqtt(c) => {
                    let p = c.next_publish().await;
                    let at = Instant::now();
                    let props = p.properties.clone().unwrap_or_default();
                    let user = |name: &str| {
                        props
                            .user_properties
                            .iter()
                            .find(|(k, _)| k == name)
                            .map(|(_, v)| v.clone())
                    };
                    out.push(Received {
                        body: serde_json::from_slice(&p.payload).unwrap(),
                        content_type: props.content_type.clone(),
                        attribute_k: user("k"),
                        tags: user("x-tags")
                            .map(|t| t.split(',').map(str::to_owned).collect())
                            .unwrap_or_default(),
                        correlation_id: props
                            .correlation_data
                            .as_ref()
                            .map(|c| String::from_utf8(c.to_vec()).unwrap()),
                        reply_to: props.response_topic.as_ref().map(|t| t.replace('/', ".")),
                        expiration_ms: props.message_expiry_interval.map(|s| u64::from(s) * 1000),
                        at,
                    });
                }
                Sink::Http(http, queue) => {
                    let entries = http.consume(queue, "g", "&tag=blue").await;
                    let at = Instant::now();
                    http.ack(queue, "g", &entries).await;
                    for e in entries {
                        let m = &e["message"];
                        let prop = |k: &str| m["properties"][k].as_str().map(str::to_owned);
                        out.push(Received {
                            body: m["body"].clone(),
                            content_type: prop("content_type"),
                            attribute_k: m["attributes"]["k"].as_str().map(str::to_owned),
                            tags: serde_json::from_value(m["tags"].clone()).unwrap(),
                            correlation_id: prop("correlation_id"),
                            reply_to: prop("reply_to"),
                            expiration_ms: m["properties"]["expiration"].as_u64(),
                            at,
                        });
                    }
                }
            }
        }
        out
    }
}

/// Publishes one JSON message with every mapped field through `door`, to
/// `amq.topic` with key `cross.{pair}` (MQTT topic `cross/{pair}`), and waits
/// until the gateway has stored it.
async fn produce(suite: &Suite, door: Door, pair: &str, body: &Value, delay_ms: Option<u64>) {
    let bytes = serde_json::to_vec(body).unwrap();
    let correlation = format!("corr-{pair}");
    match door {
        Door::Amqp => {
            let (_conn, ch) = suite.amqp_channel().await;
            let mut headers = vec![("k", amqp::text("v")), ("x-tags", amqp::text("red,blue"))];
            if let Some(d) = delay_ms {
                headers.push(("x-delay", AMQPValue::LongLongInt(d as i64)));
            }
            let props = BasicProperties::default()
                .with_content_type("application/json".into())
                .with_correlation_id(correlation.as_str().into())
                .with_reply_to(format!("replies.{pair}").as_str().into())
                .with_expiration(TTL_MS.to_string().as_str().into())
                .with_delivery_mode(2)
                .with_headers(amqp::table(&headers));
            amqp::publish(&ch, "amq.topic", &format!("cross.{pair}"), &bytes, props).await;
        }
        Door::Mqtt => {
            let mut c = suite.mqtt5(&format!("pub-{pair}-{}", body["n"])).await;
            let mut user = vec![
                ("k".to_owned(), "v".to_owned()),
                ("x-tags".to_owned(), "red,blue".to_owned()),
            ];
            if let Some(d) = delay_ms {
                user.push(("x-delay".to_owned(), d.to_string()));
            }
            let props = PublishProperties {
                content_type: Some("application/json".into()),
                correlation_data: Some(correlation.into_bytes().into()),
                response_topic: Some(format!("replies/{pair}")),
                message_expiry_interval: Some((TTL_MS / 1000) as u32),
                user_properties: user,
                ..PublishProperties::default()
            };
            c.publish_acked(&format!("cross/{pair}"), &bytes, props)
                .await;
            c.disconnect().await;
        }
        Door::Http => {
            let mut headers = json!({ "k": "v", "x-tags": "red,blue" });
            if let Some(d) = delay_ms {
                headers["x-delay"] = json!(d);
            }
            let routed = suite
                .http()
                .publish(
                    "amq.topic",
                    &json!({
                        "routing_key": format!("cross.{pair}"),
                        "payload": String::from_utf8(bytes).unwrap(),
                        "properties": {
                            "content_type": "application/json",
                            "correlation_id": correlation,
                            "reply_to": format!("replies.{pair}"),
                            // RabbitMQ's API sends the expiration as a string.
                            "expiration": TTL_MS.to_string(),
                            "headers": headers,
                        },
                    }),
                )
                .await;
            assert!(routed, "the consumer's queue is bound");
        }
    }
}

/// One pair: an immediate message with every field, and a delayed one.
async fn pair(from: Door, to: Door) {
    let suite = Suite::start().await;
    let pair = format!("{}-{}", from.name(), to.name());
    let mut sink = Sink::open(&suite, to, &pair).await;

    let delayed_body = json!({ "pair": pair, "n": 0 });
    let published = Instant::now();
    produce(&suite, from, &pair, &delayed_body, Some(DELAY_MS)).await;
    let body = json!({ "pair": pair, "n": 1, "text": "héllo", "list": [1, 2.5, null] });
    produce(&suite, from, &pair, &body, None).await;

    let got = within("both messages", sink.receive(2)).await;
    assert_eq!(got.len(), 2, "{pair}: {got:?}");
    let m = got.iter().find(|r| r.body["n"] == 1).expect("the message");
    assert_eq!(m.body, body, "{pair}: body");
    assert_eq!(
        m.content_type.as_deref(),
        Some("application/json"),
        "{pair}"
    );
    assert_eq!(m.attribute_k.as_deref(), Some("v"), "{pair}: header k");
    assert_eq!(m.tags, ["red", "blue"], "{pair}: tags");
    let correlation = format!("corr-{pair}");
    assert_eq!(
        m.correlation_id.as_deref(),
        Some(correlation.as_str()),
        "{pair}"
    );
    let reply_to = format!("replies.{pair}");
    assert_eq!(m.reply_to.as_deref(), Some(reply_to.as_str()), "{pair}");
    // MQTT counts expiry in whole seconds and decrements it on delivery.
    let ttl = m.expiration_ms.expect("an expiration");
    assert!(ttl > 0 && ttl <= TTL_MS, "{pair}: expiration {ttl}");

    let d = got
        .iter()
        .find(|r| r.body == delayed_body)
        .expect("the delayed message");
    // The engine counts whole milliseconds of wall-clock time: allow for rounding.
    let waited = d.at.duration_since(published);
    assert!(
        waited + Duration::from_millis(2) >= Duration::from_millis(DELAY_MS),
        "{pair}: delayed message came after {waited:?}"
    );
    drop(sink);
    suite.stop().await;
}

macro_rules! matrix {
    ($($name:ident: $from:ident -> $to:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            pair(Door::$from, Door::$to).await;
        }
    )*};
}

matrix! {
    amqp_to_amqp: Amqp -> Amqp;
    amqp_to_mqtt: Amqp -> Mqtt;
    amqp_to_http: Amqp -> Http;
    mqtt_to_amqp: Mqtt -> Amqp;
    mqtt_to_mqtt: Mqtt -> Mqtt;
    mqtt_to_http: Mqtt -> Http;
    http_to_amqp: Http -> Amqp;
    http_to_mqtt: Http -> Mqtt;
    http_to_http: Http -> Http;
}

/// Bytes that are not UTF-8 cross intact: HTTP shows them as base64.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_bodies_cross_intact() {
    let suite = Suite::start().await;
    let http = suite.http();
    http.create_queue("bin", json!({})).await;
    http.create_group("bin", "g").await;
    http.bind_to_amq_topic("bin", "bin.#").await;
    let mut sub = suite.mqtt5("bin-sub").await;
    sub.subscribe("bin/#", QoS::AtLeastOnce).await;
    let bytes: Vec<u8> = (0..=255u8).rev().collect();

    // AMQP → MQTT and HTTP.
    let (_conn, ch) = suite.amqp_channel().await;
    amqp::publish(
        &ch,
        "amq.topic",
        "bin.amqp",
        &bytes,
        BasicProperties::default(),
    )
    .await;
    assert_eq!(sub.next_publish().await.payload.as_ref(), bytes.as_slice());
    let e = http.consume_n("bin", "g", "", 1).await;
    assert_eq!(e[0]["message"]["body_encoding"], "base64");
    let b64 = e[0]["message"]["body"].as_str().unwrap().to_owned();
    http.ack("bin", "g", &e).await;

    // HTTP (base64 payload) → MQTT, and what HTTP shows matches what it took.
    let routed = http
        .publish(
            "amq.topic",
            &json!({ "routing_key": "bin.http", "payload": b64, "payload_encoding": "base64" }),
        )
        .await;
    assert!(routed);
    assert_eq!(sub.next_publish().await.payload.as_ref(), bytes.as_slice());
    let e = http.consume_n("bin", "g", "", 1).await;
    assert_eq!(e[0]["message"]["body"], b64);
    sub.disconnect().await;
    suite.stop().await;
}

/// The DMS send API's own fields (attributes, tags, delayTime, a FIFO group
/// key) reach an AMQP consumer of the same queue as AMQP headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dms_send_reaches_an_amqp_consumer() {
    let suite = Suite::start().await;
    let http = suite.http();
    http.create_queue("orders", json!({ "queue_mode": "FIFO" }))
        .await;
    let (_conn, ch) = suite.amqp_channel().await;
    let mut consumer = amqp::consume(&ch, "orders", FieldTable::default()).await;
    let sent = Instant::now();
    http.send_messages(
        "orders",
        json!([
            { "body": "late", "delayTime": DELAY_MS, "message_group_id": "b" },
            { "body": {"id": 7}, "attributes": {"region": "eu", "n": 3}, "tags": ["paid", "eu"],
              "message_group_id": "a" },
        ]),
    )
    .await;

    let first = amqp::next(&mut consumer).await;
    assert_eq!(&first.data[..], br#"{"id":7}"#);
    assert_eq!(
        amqp::prop(first.properties.content_type()),
        Some("application/json")
    );
    assert_eq!(amqp::header(&first, "region"), Some(&amqp::text("eu")));
    assert_eq!(amqp::header(&first, "n"), Some(&AMQPValue::LongLongInt(3)));
    let tags = amqp::header(&first, "x-tags").expect("tags as a header");
    assert_eq!(
        tags,
        &AMQPValue::FieldArray(vec![amqp::text("paid"), amqp::text("eu")].into())
    );
    first.ack(BasicAckOptions::default()).await.unwrap();

    let late = amqp::next(&mut consumer).await;
    assert!(sent.elapsed() + Duration::from_millis(2) >= Duration::from_millis(DELAY_MS));
    assert_eq!(&late.data[..], b"late");
    assert_eq!(
        amqp::prop(late.properties.content_type()),
        Some("text/plain; charset=utf-8")
    );
    late.ack(BasicAckOptions::default()).await.unwrap();
    suite.stop().await;
}

/// `basic.get` on a queue made through the DMS API (which has no default
/// group until AMQP needs one) returns what the queue already holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_get_on_a_dms_queue() {
    let suite = Suite::start().await;
    let http = suite.http();
    http.create_queue("inbox", json!({})).await;
    http.send_messages("inbox", json!([{ "body": "first" }, { "body": "second" }]))
        .await;
    let (_conn, ch) = suite.amqp_channel().await;
    for expected in [&b"first"[..], b"second"] {
        let got = ch
            .basic_get("inbox".into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .expect("a message");
        assert_eq!(&got.delivery.data[..], expected);
    }
    let empty = ch
        .basic_get("inbox".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap();
    assert!(empty.is_none());
    suite.stop().await;
}

/// An AMQP consumer and a DMS (HTTP) consumer in one group compete: together
/// they get every message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_and_http_consumers_share_a_group() {
    const N: usize = 300;
    let suite = Suite::start().await;
    let http = suite.http();
    let (_conn, ch) = suite.amqp_channel().await;
    amqp::declare(&ch, "shared", FieldTable::default()).await;
    ch.basic_qos(5, BasicQosOptions::default()).await.unwrap();
    let mut consumer = amqp::consume(&ch, "shared", FieldTable::default()).await;

    let sender = {
        let http = http.clone();
        tokio::spawn(async move {
            for batch in 0..N / 10 {
                let messages: Vec<Value> = (0..10)
                    .map(|i| json!({ "body": format!("m{}", batch * 10 + i) }))
                    .collect();
                http.send_messages("shared", Value::Array(messages)).await;
            }
        })
    };
    // The AMQP consumer is the slower one, so the HTTP one surely gets a share.
    let amqp_side = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Ok(Some(d)) = tokio::time::timeout(Duration::from_secs(2), consumer.next()).await
        {
            let d = d.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
            d.ack(BasicAckOptions::default()).await.unwrap();
            got.push(String::from_utf8(d.data).unwrap());
        }
        got
    });
    let mut http_got = Vec::new();
    let deadline = Instant::now() + common::WAIT;
    while Instant::now() < deadline {
        let entries = http.consume("shared", "default", "&max_msgs=10").await;
        if entries.is_empty() && sender.is_finished() {
            break;
        }
        http.ack("shared", "default", &entries).await;
        http_got.extend(
            entries
                .iter()
                .map(|e| e["message"]["body"].as_str().unwrap().to_owned()),
        );
    }
    sender.await.unwrap();
    let amqp_got = amqp_side.await.unwrap();

    assert!(
        !amqp_got.is_empty() && !http_got.is_empty(),
        "both consumers got a share"
    );
    let all: Vec<&String> = amqp_got.iter().chain(&http_got).collect();
    let unique: HashSet<&String> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "no message delivered twice");
    assert_eq!(
        all.len(),
        N,
        "every message delivered (amqp {}, http {})",
        amqp_got.len(),
        http_got.len()
    );
    suite.stop().await;
}

/// Published over MQTT, rejected over AMQP, drained from the group's dead
/// letters over HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_over_amqp_drained_over_http() {
    let suite = Suite::start().await;
    let http = suite.http();
    http.create_queue(
        "dl-a",
        json!({ "redrive_policy": "enable", "max_consume_count": 3 }),
    )
    .await;
    http.bind_to_amq_topic("dl-a", "jobs.#").await;
    let mut publisher = suite.mqtt5("dl-pub").await;
    publisher
        .publish_acked("jobs/1", b"job one", PublishProperties::default())
        .await;
    publisher.disconnect().await;

    let (_conn, ch) = suite.amqp_channel().await;
    let mut consumer = amqp::consume(&ch, "dl-a", FieldTable::default()).await;
    let d = amqp::next(&mut consumer).await;
    assert_eq!(&d.data[..], b"job one");
    d.reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();

    let path = "/v1.0/%2F/queues/dl-a/groups/default/deadletters";
    let entries = within("the dead letter", async {
        loop {
            let e = http.get(&format!("{path}?time_wait=5")).await;
            let e = e.expect(200).as_array().unwrap().clone();
            if !e.is_empty() {
                return e;
            }
        }
    })
    .await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["message"]["body"], "job one");
    http.ack_at(&format!("{path}/ack"), &entries).await;
    let again = http.get(&format!("{path}?time_wait=1")).await;
    assert_eq!(again.expect(200), &json!([]), "acked dead letters are gone");
    suite.stop().await;
}

/// Sent over HTTP, failed over HTTP past the delivery limit, dead-lettered to
/// `amq.topic`: an MQTT subscriber and an AMQP consumer (with `x-death`) get it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_over_http_dead_lettered_to_mqtt_and_amqp() {
    let suite = Suite::start().await;
    let http = suite.http();
    let (_conn, ch) = suite.amqp_channel().await;
    let args = amqp::table(&[
        ("x-dead-letter-exchange", amqp::text("amq.topic")),
        ("x-dead-letter-routing-key", amqp::text("dead.src")),
        ("x-delivery-limit", AMQPValue::LongInt(1)),
    ]);
    amqp::declare(&ch, "src", args).await;
    amqp::declare(&ch, "graveyard", FieldTable::default()).await;
    amqp::bind(&ch, "graveyard", "amq.topic", "dead.#").await;
    let mut graveyard = amqp::consume(&ch, "graveyard", FieldTable::default()).await;
    let mut sub = suite.mqtt5("dead-sub").await;
    sub.subscribe("dead/#", QoS::AtLeastOnce).await;

    http.send_messages("src", json!([{ "body": "doomed" }]))
        .await;
    // `x-delivery-limit` 1: the first failure redelivers, the second dead-letters.
    for _ in 0..2 {
        let e = http.consume_n("src", "default", "", 1).await;
        let fail: Vec<Value> = e
            .iter()
            .map(|e| json!({ "handler": e["handler"], "status": "fail" }))
            .collect();
        let a = http
            .post(
                "/v1.0/%2F/queues/src/groups/default/ack",
                &json!({ "message": fail }),
            )
            .await;
        // DMS counts a `fail` entry under "fail": it was taken, not acknowledged.
        assert_eq!(a.expect(200)["fail"], 1, "{}", a.json);
    }

    let p = sub.next_publish().await;
    assert_eq!(p.topic.as_ref(), b"dead/src");
    assert_eq!(p.payload.as_ref(), b"doomed");
    let d = amqp::next(&mut graveyard).await;
    assert_eq!(&d.data[..], b"doomed");
    let Some(AMQPValue::FieldArray(deaths)) = amqp::header(&d, "x-death") else {
        panic!("no x-death: {:?}", d.properties.headers());
    };
    let Some(AMQPValue::FieldTable(death)) = deaths.as_slice().first() else {
        panic!("x-death is not a list of tables: {deaths:?}");
    };
    let field = |k: &str| death.inner().get(k).cloned();
    assert_eq!(field("queue"), Some(amqp::text("src")));
    assert_eq!(field("reason"), Some(amqp::text("delivery_limit")));
    d.ack(BasicAckOptions::default()).await.unwrap();
    sub.disconnect().await;
    suite.stop().await;
}
