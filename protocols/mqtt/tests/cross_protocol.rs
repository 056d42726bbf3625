//! MQTT and the rest of the engine: MQTT publishes reach any queue bound to
//! `amq.topic` (`/` → `.`), and a publish to `amq.topic` from another door
//! (here: the engine API directly) reaches MQTT subscribers, with the MQTT 5
//! properties mapped onto the message's properties and headers.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::{Server, v4, v5};
use gw_core::{
    BindingSpec, ConsumerSpec, DEFAULT_GROUP, Destination, HeaderValue, Headers, Message, QueueSpec,
};

fn bind(s: &Server, queue: &str, key: &str) -> std::sync::Arc<gw_core::Queue> {
    let t = s.engine.tenant("/").unwrap();
    let (q, _) = t
        .declare_queue(
            queue,
            QueueSpec {
                default_group: true,
                ..QueueSpec::default()
            },
        )
        .unwrap();
    t.bind(BindingSpec {
        source: "amq.topic".into(),
        destination: Destination::Queue(queue.into()),
        routing_key: key.into(),
        arguments: Headers::new(),
    })
    .unwrap();
    q
}

#[tokio::test]
async fn mqtt_publishes_reach_queues_bound_to_amq_topic() {
    let s = Server::start().await;
    let q = bind(&s, "amqp-side", "sensors.*.temp");
    let consumer = q.consume(DEFAULT_GROUP, ConsumerSpec::default()).unwrap();
    let publ = v5::connect(s.addr, "device").await;
    let props = v5::PublishProperties {
        user_properties: vec![
            ("unit".into(), "C".into()),
            ("x-tags".into(), "hot, red".into()),
        ],
        content_type: Some("text/plain".into()),
        response_topic: Some("replies/device".into()),
        correlation_data: Some(Bytes::from_static(b"c-1")),
        message_expiry_interval: Some(60),
        ..Default::default()
    };
    publ.client
        .publish_with_properties(
            "sensors/kitchen/temp",
            v5::QoS::AtLeastOnce,
            false,
            "21.5",
            props,
        )
        .await
        .unwrap();
    publ.client
        .publish("sensors/kitchen/humidity", v5::QoS::AtMostOnce, false, "40")
        .await
        .unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(common::WAIT, consumer.take(10, &mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.len(), 1);
    let m = &got[0].message;
    assert_eq!(m.exchange, "amq.topic");
    assert_eq!(m.routing_key, "sensors.kitchen.temp");
    assert_eq!(&m.body[..], b"21.5");
    assert!(m.is_persistent(), "QoS 1 → persistent");
    assert_eq!(m.header("unit").and_then(HeaderValue::as_str), Some("C"));
    assert_eq!(m.tags, ["hot", "red"]);
    let p = &m.properties;
    assert_eq!(p.content_type.as_deref(), Some("text/plain"));
    assert_eq!(p.reply_to.as_deref(), Some("replies.device"));
    assert_eq!(p.correlation_id.as_deref(), Some(&b"c-1"[..]));
    assert_eq!(p.expiration.as_deref(), Some("60000"));
    consumer.ack(got[0].tag).unwrap();
    s.stop().await;
}

#[tokio::test]
async fn engine_publishes_to_amq_topic_reach_mqtt_subscribers() {
    let s = Server::start().await;
    let mut sub5 = v5::connect(s.addr, "sub5").await;
    sub5.subscribe("orders/+", v5::QoS::AtLeastOnce).await;
    let mut sub4 = v4::connect(s.addr, "sub4").await;
    sub4.subscribe("orders/#", v4::QoS::ExactlyOnce).await;
    let tenant = s.engine.tenant("/").unwrap();
    let mut m = Message::new("order 1");
    m.exchange = "amq.topic".into();
    m.routing_key = "orders.new".into();
    m.properties.delivery_mode = Some(2);
    m.properties.content_type = Some("application/json".into());
    m.properties.reply_to = Some("amq.gen-reply".into());
    m.properties.correlation_id = Some(Bytes::from_static(b"corr"));
    m.properties.expiration = Some("30000".into());
    m.headers.push("source", HeaderValue::string("amqp"));
    m.headers.push("count", HeaderValue::I32(3));
    let r = tenant.publish(m).unwrap();
    assert_eq!(r.routed, 2);
    // A routing key that is no MQTT topic (`#`) is not delivered to MQTT.
    let mut bad = Message::new("bad");
    bad.exchange = "amq.topic".into();
    bad.routing_key = "orders.#".into();
    tenant.publish(bad).unwrap();
    let p = sub5.publish_packet().await;
    assert_eq!(&p.topic[..], b"orders/new");
    assert_eq!(
        p.qos,
        v5::QoS::AtLeastOnce,
        "persistent AMQP message → QoS 1"
    );
    let props = p.properties.unwrap();
    assert_eq!(props.content_type.as_deref(), Some("application/json"));
    assert_eq!(props.response_topic.as_deref(), Some("amq/gen-reply"));
    assert_eq!(props.correlation_data.as_deref(), Some(&b"corr"[..]));
    assert!(props.message_expiry_interval.is_some_and(|e| e <= 30));
    assert_eq!(
        props.user_properties,
        vec![
            ("source".into(), "amqp".into()),
            ("count".into(), "3".into())
        ]
    );
    let p4 = sub4.publish_packet().await;
    assert_eq!(
        (p4.topic.as_str(), p4.qos),
        ("orders/new", v4::QoS::AtLeastOnce)
    );
    sub5.no_publish().await;
    sub4.no_publish().await;
    s.stop().await;
}

#[tokio::test]
async fn session_queues_are_engine_queues() {
    let s = Server::start().await;
    let mut o = v4::options(s.addr, "visible");
    o.set_clean_session(false);
    let (mut c, _) = v4::connect_with(o).await;
    c.subscribe("vis/+/x", v4::QoS::AtLeastOnce).await;
    c.subscribe("vis/#", v4::QoS::AtLeastOnce).await;
    let tenant = s.engine.tenant("/").unwrap();
    let q = tenant.queue("mqtt-session-visible").unwrap();
    assert!(q.is_durable());
    let mut keys: Vec<String> = tenant
        .bindings()
        .into_iter()
        .filter(|b| b.destination == Destination::Queue("mqtt-session-visible".into()))
        .map(|b| b.routing_key)
        .collect();
    keys.sort();
    assert_eq!(keys, ["vis.#", "vis.*.x"]);
    // The connection is listed with the engine's other connections.
    let conns = s.engine.connections();
    assert!(
        conns
            .iter()
            .any(|c| c.protocol == "mqtt" && c.client == "visible" && c.user == "guest")
    );
    s.stop().await;
}
