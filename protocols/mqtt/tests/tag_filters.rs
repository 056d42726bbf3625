//! Tag filters from MQTT 5: a SUBSCRIBE's user properties `x-tags` and
//! `x-tag-match` filter its subscriptions as AMQP's `x-tags` consumer
//! argument filters a consumer (rumqttc; paho-mqtt runs the same in
//! `tests/clients/`).
#![allow(clippy::unwrap_used)]

mod common;

use common::v5::{self, PublishProperties, QoS, SubscribeProperties, SubscribeReasonCode};
use common::{Server, packet, raw_connected, string};

fn tagged(tags: &str) -> PublishProperties {
    PublishProperties {
        user_properties: vec![("x-tags".into(), tags.into())],
        ..Default::default()
    }
}

fn filter(props: &[(&str, &str)]) -> SubscribeProperties {
    SubscribeProperties {
        id: None,
        user_properties: props
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

async fn subscribe_with(
    c: &mut v5::Client,
    topic: &str,
    props: &[(&str, &str)],
) -> Vec<SubscribeReasonCode> {
    c.client
        .subscribe_with_properties(topic, QoS::AtLeastOnce, filter(props))
        .await
        .unwrap();
    c.suback().await
}

async fn publish(c: &v5::Client, topic: &str, tags: Option<&str>, body: &str) {
    let props = tags.map(tagged).unwrap_or_default();
    c.client
        .publish_with_properties(topic, QoS::AtLeastOnce, false, body.to_owned(), props)
        .await
        .unwrap();
}

async fn bodies(c: &mut v5::Client, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    for _ in 0..n {
        let p = c.publish_packet().await;
        got.push(String::from_utf8(p.payload.to_vec()).unwrap());
    }
    got.sort();
    got
}

#[tokio::test]
async fn each_subscription_gets_only_what_its_tags_admit() {
    let s = Server::start().await;
    let mut any = v5::connect(s.addr, "any-red").await;
    let granted = subscribe_with(&mut any, "t/any/#", &[("x-tags", "red, hot")]).await;
    assert_eq!(
        granted,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    // The same session, another subscription without a filter: all of it.
    any.subscribe("t/plain/#", QoS::AtLeastOnce).await;
    let mut all = v5::connect(s.addr, "all-red-big").await;
    subscribe_with(
        &mut all,
        "t/any/#",
        &[("x-tags", "red"), ("x-tags", "big"), ("x-tag-match", "all")],
    )
    .await;
    let publ = v5::connect(s.addr, "pub").await;
    for (tags, body) in [
        (Some("red"), "red"),
        (Some("blue"), "blue"),
        (Some("red,big"), "red-big"),
        (Some("hot"), "hot"),
        (None, "untagged"),
    ] {
        publish(&publ, "t/any/x", tags, body).await;
    }
    publish(&publ, "t/plain/x", Some("blue"), "plain-blue").await;
    publish(&publ, "t/plain/x", None, "plain").await;
    assert_eq!(
        bodies(&mut any, 5).await,
        ["hot", "plain", "plain-blue", "red", "red-big"]
    );
    any.no_publish().await;
    assert_eq!(bodies(&mut all, 1).await, ["red-big"]);
    all.no_publish().await;
    s.stop().await;
}

#[tokio::test]
async fn retained_messages_pass_the_filter_too() {
    let s = Server::start().await;
    let publ = v5::connect(s.addr, "pub").await;
    for (topic, tags) in [("r/red", "red"), ("r/blue", "blue")] {
        publ.client
            .publish_with_properties(topic, QoS::AtLeastOnce, true, topic, tagged(tags))
            .await
            .unwrap();
    }
    let mut late = v5::connect(s.addr, "late").await;
    tokio::time::sleep(common::QUIET).await;
    subscribe_with(&mut late, "r/#", &[("x-tags", "red")]).await;
    assert_eq!(bodies(&mut late, 1).await, ["r/red"]);
    late.no_publish().await;
    s.stop().await;
}

#[tokio::test]
async fn a_persistent_session_keeps_its_filter() {
    let s = Server::start().await;
    let mut o = v5::options(s.addr, "keeps");
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(300));
    let (mut c, _) = v5::connect_with(o.clone()).await;
    subscribe_with(&mut c, "p/#", &[("x-tags", "red")]).await;
    c.disconnect().await;
    let publ = v5::connect(s.addr, "pub").await;
    publish(&publ, "p/x", Some("blue"), "blue").await;
    publish(&publ, "p/x", Some("red"), "red").await;
    let (mut again, ack) = v5::connect_with(o).await;
    assert!(ack.session_present);
    assert_eq!(bodies(&mut again, 1).await, ["red"]);
    again.no_publish().await;
    s.stop().await;
}

#[tokio::test]
async fn a_share_group_filters_as_an_amqp_consumer_group() {
    let s = Server::start().await;
    let mut a = v5::connect(s.addr, "a").await;
    let mut b = v5::connect(s.addr, "b").await;
    subscribe_with(&mut a, "$share/g/sh/#", &[("x-tags", "red")]).await;
    // A member without x-tags joins the group's filter, as an AMQP consumer
    // without x-tags joins a filtered group.
    b.subscribe("$share/g/sh/#", QoS::AtLeastOnce).await;
    // Another filter for the same group is refused: 0x83.
    let mut c = v5::connect(s.addr, "c").await;
    let refused = subscribe_with(&mut c, "$share/g/sh/#", &[("x-tags", "blue")]).await;
    assert_eq!(refused, vec![SubscribeReasonCode::ImplementationSpecific]);
    let publ = v5::connect(s.addr, "pub").await;
    for i in 0..6 {
        let tags = if i % 2 == 0 { "red" } else { "blue" };
        publish(&publ, "sh/x", Some(tags), &format!("{tags}{i}")).await;
    }
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while got.len() < 3 && tokio::time::Instant::now() < deadline {
        for m in [&mut a, &mut b] {
            if let Ok(p) = tokio::time::timeout(common::QUIET, m.publish_packet()).await {
                got.push(String::from_utf8(p.payload.to_vec()).unwrap());
            }
        }
    }
    got.sort();
    assert_eq!(got, ["red0", "red2", "red4"]);
    a.no_publish().await;
    b.no_publish().await;
    c.no_publish().await;
    s.stop().await;
}

#[tokio::test]
async fn malformed_tag_properties_get_suback_0x83_with_a_reason() {
    let s = Server::start().await;
    let mut c = v5::connect(s.addr, "bad").await;
    for props in [
        &[("x-tags", " , ")][..],
        &[("x-tags", "red"), ("x-tag-match", "most")][..],
        &[
            ("x-tags", "red"),
            ("x-tag-match", "any"),
            ("x-tag-match", "all"),
        ][..],
    ] {
        let codes = subscribe_with(&mut c, "bad/#", props).await;
        assert_eq!(
            codes,
            vec![SubscribeReasonCode::ImplementationSpecific],
            "{props:?}"
        );
    }
    // Nothing was subscribed.
    let publ = v5::connect(s.addr, "pub").await;
    publish(&publ, "bad/x", Some("red"), "x").await;
    c.no_publish().await;
    // Raw, with Request Problem Information (default on): a reason string.
    let (mut raw, _) = raw_connected(s.addr, 5, "raw-bad", 0x02, &[]).await;
    let mut props = vec![0x26];
    props.extend(string(b"x-tag-match"));
    props.extend(string(b"most"));
    let mut body = vec![0, 9, props.len() as u8];
    body.extend(props);
    body.extend(string(b"bad/#"));
    body.push(1);
    raw.send(&packet(0x82, &body)).await;
    let suback = raw.packet().await;
    assert_eq!(suback[0], 0x90);
    assert_eq!(*suback.last().unwrap(), 0x83, "{suback:02x?}");
    let text = String::from_utf8_lossy(&suback);
    assert!(text.contains("expected 'any' or 'all'"), "{suback:02x?}");
    // The connection goes on.
    raw.send(&packet(0xC0, &[])).await;
    assert_eq!(raw.packet().await, [0xD0, 0]);
    s.stop().await;
}
