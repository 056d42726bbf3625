//! MQTT 5 with rumqttc (and raw bytes where the client library hides the
//! wire): CONNACK properties, reason codes, user properties and the other
//! PUBLISH properties, message expiry, subscription options and identifiers,
//! shared subscriptions, request/response, x-delay. Flow limits (aliases,
//! receive maximum, packet size) are in `v5_limits.rs`.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::v5::{self, Filter, PubAckReason, PublishProperties, QoS, RetainForwardRule};
use common::{Server, packet, publish, raw_connected, string};
use gw_mqtt::Config;
use rumqttc::v5::mqttbytes::v5::SubscribeProperties;

fn props() -> PublishProperties {
    PublishProperties::default()
}

#[tokio::test]
async fn connack_announces_the_server_limits() {
    let config = Config {
        max_keepalive: std::num::NonZeroU16::new(7),
        receive_maximum: 99,
        topic_alias_maximum: 3,
        max_packet_size: 4096,
        ..Config::default()
    };
    let s = Server::start_with(config).await;
    let mut o = v5::options(s.addr, "");
    o.set_keep_alive(Duration::from_secs(60));
    let (_c, ack) = v5::connect_with(o).await;
    let p = ack.properties.unwrap();
    assert_eq!(p.receive_max, Some(99));
    assert_eq!(p.topic_alias_max, Some(3));
    assert_eq!(p.max_packet_size, Some(4096));
    assert_eq!(p.server_keep_alive, Some(7), "§ 3.2.2.3.14");
    let assigned = p
        .assigned_client_identifier
        .expect("empty client id gets one");
    assert!(!assigned.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn acks_carry_reason_codes() {
    let s = Server::start().await;
    let c = v5::connect(s.addr, "rc").await;
    let mut c = c;
    c.client
        .publish("nobody/listens", QoS::AtLeastOnce, false, "x")
        .await
        .unwrap();
    assert_eq!(c.puback().await.reason, PubAckReason::NoMatchingSubscribers);
    c.subscribe("rc/+", QoS::AtLeastOnce).await;
    c.client
        .publish("rc/x", QoS::AtLeastOnce, false, "x")
        .await
        .unwrap();
    assert_eq!(c.puback().await.reason, PubAckReason::Success);
    // A filter the gateway cannot map (`*` is a wildcard in AMQP): 0x8F.
    assert_eq!(
        c.subscribe("a/*", QoS::AtLeastOnce).await,
        vec![v5::SubscribeReasonCode::TopicFilterInvalid]
    );
    c.client.unsubscribe("never/subscribed").await.unwrap();
    let reasons = c
        .next_matching(|p| match p {
            v5::Packet::UnsubAck(u) => Some(u.reasons.clone()),
            _ => None,
        })
        .await;
    assert_eq!(
        reasons,
        vec![rumqttc::v5::mqttbytes::v5::UnsubAckReason::NoSubscriptionExisted]
    );
    s.stop().await;
}

#[tokio::test]
async fn publish_properties_travel_to_subscribers() {
    let s = Server::start().await;
    let mut sub = v5::connect(s.addr, "sub").await;
    sub.subscribe("props/#", QoS::AtLeastOnce).await;
    let publ = v5::connect(s.addr, "pub").await;
    let sent = PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(100),
        content_type: Some("text/plain".into()),
        response_topic: Some("replies/for/me".into()),
        correlation_data: Some(Bytes::from_static(&[1, 2, 3])),
        user_properties: vec![("k".into(), "v1".into()), ("k".into(), "v2".into())],
        ..props()
    };
    publ.client
        .publish_with_properties("props/a", QoS::AtLeastOnce, false, "héllo", sent.clone())
        .await
        .unwrap();
    let p = sub.publish_packet().await;
    let got = p.properties.unwrap();
    assert_eq!(got.payload_format_indicator, Some(1));
    assert_eq!(got.content_type.as_deref(), Some("text/plain"));
    assert_eq!(got.response_topic.as_deref(), Some("replies/for/me"));
    assert_eq!(got.correlation_data, sent.correlation_data);
    assert_eq!(got.user_properties, sent.user_properties);
    let left = got.message_expiry_interval.unwrap();
    assert!((99..=100).contains(&left), "{left}");
    s.stop().await;
}

#[tokio::test]
async fn payload_format_indicator_is_checked() {
    let s = Server::start().await;
    let (mut raw, _) = raw_connected(s.addr, 5, "pfi", 0x02, &[]).await;
    // QoS 1 with indicator 1 and a payload that is not UTF-8: PUBACK 0x99.
    raw.send(&publish(
        true,
        0b0010,
        "pf",
        Some(1),
        &[0x01, 1],
        &[0xFF, 0xFE],
    ))
    .await;
    let ack = raw.packet().await;
    assert_eq!(&ack[..5], &[0x40, ack[1], 0, 1, 0x99], "{ack:02x?}");
    // QoS 0: nothing to answer with, so DISCONNECT 0x99.
    raw.send(&publish(true, 0, "pf", None, &[0x01, 1], &[0xFF]))
        .await;
    let got = raw.closed().await;
    assert_eq!((got[0], got[2]), (0xE0, 0x99), "{got:02x?}");
    s.stop().await;
}

#[tokio::test]
async fn message_expiry_is_counted_down_and_expired_messages_are_dropped() {
    let s = Server::start().await;
    let mut o = v5::options(s.addr, "later");
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(60));
    let (mut c, _) = v5::connect_with(o.clone()).await;
    c.subscribe("exp/#", QoS::AtLeastOnce).await;
    c.disconnect().await;
    let publ = v5::connect(s.addr, "pub").await;
    for (topic, secs) in [("exp/short", 1), ("exp/long", 30)] {
        let p = PublishProperties {
            message_expiry_interval: Some(secs),
            ..props()
        };
        publ.client
            .publish_with_properties(topic, QoS::AtLeastOnce, false, "x", p)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (mut c, _) = v5::connect_with(o).await;
    let p = c.publish_packet().await;
    assert_eq!(&p.topic[..], b"exp/long");
    // [MQTT-3.3.2-6]: what is left of the interval.
    let left = p.properties.unwrap().message_expiry_interval.unwrap();
    assert!((27..=28).contains(&left), "{left}");
    c.no_publish().await;
    s.stop().await;
}

#[tokio::test]
async fn subscription_options() {
    let s = Server::start().await;
    let mut me = v5::connect(s.addr, "me").await;
    let mut nl = Filter::new("so/nl", QoS::AtLeastOnce);
    nl.nolocal = true;
    let mut rap = Filter::new("so/rap", QoS::AtLeastOnce);
    rap.preserve_retain = true;
    me.client.subscribe_many([nl, rap]).await.unwrap();
    me.suback().await;
    let other = v5::connect(s.addr, "other").await;
    // No Local: my own publish does not come back, another's does.
    me.client
        .publish("so/nl", QoS::AtLeastOnce, false, "mine")
        .await
        .unwrap();
    other
        .client
        .publish("so/nl", QoS::AtLeastOnce, false, "theirs")
        .await
        .unwrap();
    assert_eq!(&me.publish_packet().await.payload[..], b"theirs");
    // Retain As Published: the live delivery keeps RETAIN.
    other
        .client
        .publish("so/rap", QoS::AtLeastOnce, true, "kept")
        .await
        .unwrap();
    let p = me.publish_packet().await;
    assert!(p.retain && &p.payload[..] == b"kept");
    me.no_publish().await;
    // Retain Handling 1: retained messages only for a new subscription.
    let mut rh1 = Filter::new("so/rap", QoS::AtLeastOnce);
    rh1.retain_forward_rule = RetainForwardRule::OnNewSubscribe;
    let mut fresh = v5::connect(s.addr, "fresh").await;
    fresh.client.subscribe_many([rh1.clone()]).await.unwrap();
    fresh.suback().await;
    assert!(fresh.publish_packet().await.retain);
    fresh.client.subscribe_many([rh1]).await.unwrap();
    fresh.suback().await;
    fresh.no_publish().await;
    // Retain Handling 2: never.
    let mut rh2 = Filter::new("so/rap", QoS::AtLeastOnce);
    rh2.retain_forward_rule = RetainForwardRule::Never;
    let mut never = v5::connect(s.addr, "never").await;
    never.client.subscribe_many([rh2]).await.unwrap();
    never.suback().await;
    never.no_publish().await;
    s.stop().await;
}

#[tokio::test]
async fn overlapping_subscriptions_send_every_identifier_once() {
    let s = Server::start().await;
    let mut c = v5::connect(s.addr, "ids").await;
    for (filter, id) in [("si/+", 1), ("si/#", 2), ("other", 3)] {
        let p = SubscribeProperties {
            id: Some(id),
            user_properties: vec![],
        };
        c.client
            .subscribe_with_properties(filter, QoS::AtLeastOnce, p)
            .await
            .unwrap();
        c.suback().await;
    }
    let publ = v5::connect(s.addr, "pub").await;
    publ.client
        .publish("si/x", QoS::AtLeastOnce, false, "x")
        .await
        .unwrap();
    let p = c.publish_packet().await;
    let mut ids = p.properties.unwrap().subscription_identifiers;
    ids.sort();
    assert_eq!(ids, [1, 2]);
    c.no_publish().await;
    s.stop().await;
}

#[tokio::test]
async fn shared_subscriptions_compete_within_a_group() {
    let s = Server::start().await;
    let mut a = v5::connect(s.addr, "a").await;
    let mut b = v5::connect(s.addr, "b").await;
    let mut other_group = v5::connect(s.addr, "c").await;
    let mut plain = v5::connect(s.addr, "d").await;
    a.subscribe("$share/g/sh/#", QoS::AtLeastOnce).await;
    b.subscribe("$share/g/sh/#", QoS::AtLeastOnce).await;
    other_group
        .subscribe("$share/h/sh/#", QoS::AtLeastOnce)
        .await;
    plain.subscribe("sh/#", QoS::AtLeastOnce).await;
    let publ = v5::connect(s.addr, "pub").await;
    for i in 0..20u8 {
        publ.client
            .publish("sh/x", QoS::AtLeastOnce, false, vec![i])
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + common::WAIT;
    let (mut na, mut nb) = (0, 0);
    while got.len() < 20 && tokio::time::Instant::now() < deadline {
        tokio::select! {
            p = a.publish_packet() => { na += 1; got.push(p.payload[0]); }
            p = b.publish_packet() => { nb += 1; got.push(p.payload[0]); }
        }
    }
    got.sort();
    assert_eq!(
        got,
        (0..20).collect::<Vec<u8>>(),
        "each message once in the group"
    );
    assert!(na > 0 && nb > 0, "both members received ({na}, {nb})");
    for c in [&mut other_group, &mut plain] {
        let all: Vec<u8> = (0..20).collect();
        let mut mine = Vec::new();
        for _ in 0..20 {
            mine.push(c.publish_packet().await.payload[0]);
        }
        assert_eq!(mine, all);
    }
    let tenant = s.engine.tenant("/").unwrap();
    let q = tenant.queue("mqtt-shared-sh/#").unwrap();
    let mut groups = q.group_names();
    groups.sort();
    assert_eq!(groups, ["g", "h"]);
    // The last member leaving a group deletes it; the last group the queue.
    a.disconnect().await;
    b.disconnect().await;
    common::eventually("group g deleted", || {
        (q.group_names() == ["h"]).then_some(())
    })
    .await;
    other_group.disconnect().await;
    common::eventually("shared queue deleted", || {
        tenant.queue("mqtt-shared-sh/#").is_err().then_some(())
    })
    .await;
    s.stop().await;
}

#[tokio::test]
async fn request_response_with_correlation() {
    let s = Server::start().await;
    let mut responder = v5::connect(s.addr, "responder").await;
    responder.subscribe("service/req", QoS::AtLeastOnce).await;
    let mut requester = v5::connect(s.addr, "requester").await;
    requester
        .subscribe("replies/requester", QoS::AtLeastOnce)
        .await;
    let req = PublishProperties {
        response_topic: Some("replies/requester".into()),
        correlation_data: Some(Bytes::from_static(b"id-42")),
        ..props()
    };
    requester
        .client
        .publish_with_properties("service/req", QoS::AtLeastOnce, false, "ping", req)
        .await
        .unwrap();
    let got = responder.publish_packet().await.properties.unwrap();
    let answer = PublishProperties {
        correlation_data: got.correlation_data.clone(),
        ..props()
    };
    responder
        .client
        .publish_with_properties(
            got.response_topic.unwrap(),
            QoS::AtLeastOnce,
            false,
            "pong",
            answer,
        )
        .await
        .unwrap();
    let reply = requester.publish_packet().await;
    assert_eq!(&reply.payload[..], b"pong");
    assert_eq!(
        reply.properties.unwrap().correlation_data.as_deref(),
        Some(&b"id-42"[..])
    );
    s.stop().await;
}

#[tokio::test]
async fn delayed_publish_with_x_delay() {
    let s = Server::start().await;
    let mut sub = v5::connect(s.addr, "sub").await;
    sub.subscribe("delayed", QoS::AtLeastOnce).await;
    let publ = v5::connect(s.addr, "pub").await;
    let p = PublishProperties {
        user_properties: vec![("x-delay".into(), "1000".into())],
        ..props()
    };
    let started = std::time::Instant::now();
    publ.client
        .publish_with_properties("delayed", QoS::AtLeastOnce, false, "later", p)
        .await
        .unwrap();
    sub.no_publish().await;
    let got = sub.publish_packet().await;
    assert_eq!(&got.payload[..], b"later");
    assert!(started.elapsed() >= Duration::from_millis(900));
    s.stop().await;
}

#[tokio::test]
async fn three_one_one_features_used_at_level_4_are_refused() {
    let s = Server::start().await;
    // A 3.1.1 CONNECT carrying a property block is malformed: no CONNACK, closed.
    let mut body = string(b"MQTT");
    body.extend_from_slice(&[4, 0x02, 0, 30, 0]);
    body.extend(string(b"x"));
    let mut raw = common::Raw::connect(s.addr).await;
    raw.send(&packet(0x10, &body)).await;
    assert_eq!(raw.closed().await, Vec::<u8>::new());
    // AUTH (type 15) does not exist in 3.1.1.
    let (mut raw, _) = raw_connected(s.addr, 4, "v4", 0x02, &[]).await;
    raw.send(&[0xF0, 0]).await;
    assert_eq!(raw.closed().await, Vec::<u8>::new());
    s.stop().await;
}
