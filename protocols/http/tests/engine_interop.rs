//! HTTP ↔ engine both ways: what an HTTP send looks like to an engine (AMQP,
//! MQTT) consumer, and what an engine publish looks like to an HTTP consumer
//! (the HTTP column of the README's mapping table).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use gw_core::{BindingSpec, ConsumerSpec, Destination, HeaderValue, Headers, Message};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sends_reach_engine_consumers() {
    let gw = common::start().await;
    let api = &gw.api;
    let id = api.create_queue("%2F", json!({"name": "in"})).await;
    api.create_group("%2F", &id, "amqp").await;
    let before = gw_core::now_millis();
    api.send_messages(
        "%2F",
        &id,
        json!([
            {"body": "plain text", "attributes": {"s": "v", "i": 7, "b": true, "f": 2.5, "o": {"k": [1, "x"]}}},
            {"body": {"a": [1, 2]}, "tags": ["t1", "t2"], "message_group_id": "acct-1",
             "properties": {"correlation_id": "c-1", "reply_to": "replies", "expiration": 60000,
                            "message_id": "app-1", "type": "order", "app_id": "shop", "priority": 3,
                            "timestamp": 1700000000, "user_id": "guest", "content_encoding": "identity"}},
            {"body": "<x/>", "properties": {"content_type": "application/xml"}, "delayTime": 200},
        ]),
    )
    .await;
    let q = gw.engine.tenant("/").unwrap().queue("in").unwrap();
    let consumer = q
        .consume(
            "amqp",
            ConsumerSpec {
                tag: "ctag".into(),
                ..ConsumerSpec::default()
            },
        )
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        tokio::time::timeout(Duration::from_secs(5), consumer.take(10, &mut got))
            .await
            .unwrap()
            .unwrap();
    }
    for d in &got {
        consumer.ack(d.tag).unwrap();
    }
    let (a, b, c) = (&got[0].message, &got[1].message, &got[2].message);
    assert_eq!(&a.body[..], b"plain text");
    assert_eq!(
        a.properties.content_type.as_deref(),
        Some(gw_http::TEXT_CONTENT_TYPE)
    );
    assert!(a.is_persistent());
    assert_eq!((a.exchange.as_str(), a.routing_key.as_str()), ("", "in"));
    assert_eq!(a.headers.get("s"), Some(&HeaderValue::string("v")));
    assert_eq!(a.headers.get("i"), Some(&HeaderValue::I64(7)));
    assert_eq!(a.headers.get("b"), Some(&HeaderValue::Bool(true)));
    assert_eq!(a.headers.get("f"), Some(&HeaderValue::F64(2.5)));
    let mut inner = Headers::new();
    inner.push(
        "k",
        HeaderValue::Array(vec![HeaderValue::I64(1), HeaderValue::string("x")]),
    );
    assert_eq!(a.headers.get("o"), Some(&HeaderValue::Table(inner)));

    assert_eq!(&b.body[..], br#"{"a":[1,2]}"#, "the JSON text as sent");
    assert_eq!(
        b.properties.content_type.as_deref(),
        Some("application/json")
    );
    assert_eq!(b.tags, vec!["t1", "t2"]);
    assert_eq!(b.group_key.as_deref(), Some("acct-1"));
    let p = &b.properties;
    assert_eq!(p.correlation_id.as_deref(), Some(&b"c-1"[..]));
    assert_eq!(p.reply_to.as_deref(), Some("replies"));
    assert_eq!(p.expiration.as_deref(), Some("60000"));
    assert_eq!(p.message_id.as_deref(), Some("app-1"));
    assert_eq!(p.kind.as_deref(), Some("order"));
    assert_eq!(p.app_id.as_deref(), Some("shop"));
    assert_eq!(p.priority, Some(3));
    assert_eq!(p.timestamp, Some(1_700_000_000));
    assert_eq!(p.user_id.as_deref(), Some("guest"));
    assert_eq!(p.content_encoding.as_deref(), Some("identity"));

    assert_eq!(&c.body[..], b"<x/>");
    assert_eq!(
        c.properties.content_type.as_deref(),
        Some("application/xml")
    );
    let due = c.deliver_at.unwrap();
    assert!(due >= before + 200, "deliver_at {due} before {before}+200");
    drop(consumer);
    let stats = q.stats();
    assert_eq!(stats.groups[0].counters.acked, 3);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_publishes_reach_http_consumers() {
    let gw = common::start().await;
    let api = &gw.api;
    let id = api.create_queue("%2F", json!({"name": "out"})).await;
    api.create_group("%2F", &id, "g").await;
    let tenant = gw.engine.tenant("/").unwrap();
    // As AMQP publishes: typed headers, properties, JSON content.
    let mut m = Message::new(r#"{"order":42}"#);
    m.routing_key = "out".into();
    m.properties.content_type = Some("application/json".into());
    m.properties.delivery_mode = Some(2);
    m.properties.correlation_id = Some(Bytes::from_static(b"corr"));
    m.properties.reply_to = Some("amq.rabbitmq.reply-to".into());
    m.properties.expiration = Some("5000".into());
    m.properties.message_id = Some("m-1".into());
    m.headers.push("x-int", HeaderValue::I32(-5));
    m.headers.push(
        "x-str",
        HeaderValue::LongString(Bytes::from_static(b"hello")),
    );
    m.headers.push(
        "x-dec",
        HeaderValue::Decimal {
            scale: 1,
            value: 15,
        },
    );
    m.headers
        .push("x-bin", HeaderValue::Bytes(Bytes::from_static(&[0, 255])));
    m.tags = vec!["urgent".into()];
    tenant.publish(m).unwrap();
    // As MQTT 3.1.1 publishes through amq.topic: no content type, JSON text.
    tenant
        .bind(BindingSpec {
            source: "amq.topic".into(),
            destination: Destination::Queue("out".into()),
            routing_key: "sensors.#".into(),
            arguments: Headers::new(),
        })
        .unwrap();
    let mut mqtt = Message::new(r#"{"t":21.5}"#);
    mqtt.exchange = "amq.topic".into();
    mqtt.routing_key = "sensors.kitchen".into();
    mqtt.properties.delivery_mode = Some(2);
    tenant.publish(mqtt).unwrap();
    // Binary payload.
    let mut bin = Message::new(vec![0xde, 0xad, 0xbe, 0xef]);
    bin.routing_key = "out".into();
    tenant.publish(bin).unwrap();

    let got = api.consume("%2F", &id, "g", "time_wait=2").await;
    assert_eq!(got.len(), 3);
    let a = &got[0]["message"];
    assert_eq!(a["body"], json!({"order": 42}));
    assert_eq!(
        a["attributes"],
        json!({"x-int": -5, "x-str": "hello", "x-dec": 1.5, "x-bin": "AP8="})
    );
    assert_eq!(a["tags"], json!(["urgent"]));
    assert_eq!(a["properties"]["correlation_id"], "corr");
    assert_eq!(a["properties"]["reply_to"], "amq.rabbitmq.reply-to");
    assert_eq!(a["properties"]["expiration"], 5000);
    assert_eq!(a["properties"]["message_id"], "m-1");
    assert_eq!(a["properties"]["content_type"], "application/json");
    let b = &got[1]["message"];
    assert_eq!(
        b["body"], r#"{"t":21.5}"#,
        "no content type: the text as a string"
    );
    assert!(b.get("properties").is_none());
    let c = &got[2]["message"];
    assert_eq!(c["body"], "3q2+7w==");
    assert_eq!(c["body_encoding"], "base64");
    gw.stop().await;
}
