//! MQTT 3.1.1 with rumqttc: QoS 0/1/2 both ways, wildcards and `$` topics,
//! retained messages, unsubscribe, overlapping subscriptions, keep alive.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::v4::{self, QoS};
use common::{Server, packet, publish, raw_connected, subscribe};
use rumqttc::SubscribeReasonCode;

#[tokio::test]
async fn qos_levels_both_ways_and_delivered_qos_is_the_minimum() {
    let s = Server::start().await;
    let mut sub2 = v4::connect(s.addr, "sub2").await;
    let mut sub1 = v4::connect(s.addr, "sub1").await;
    assert_eq!(
        sub2.subscribe("q/+", QoS::ExactlyOnce).await,
        vec![SubscribeReasonCode::Success(QoS::ExactlyOnce)]
    );
    assert_eq!(
        sub1.subscribe("q/#", QoS::AtLeastOnce).await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    let mut publ = v4::connect(s.addr, "pub").await;
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        publ.publish("q/x", qos, false, format!("m{i}").as_bytes())
            .await;
    }
    let got2 = sub2.publishes(3).await;
    let got1 = sub1.publishes(3).await;
    for (i, p) in got2.iter().enumerate() {
        assert_eq!(p.topic, "q/x");
        assert_eq!(&p.payload[..], format!("m{i}").as_bytes());
        assert!(!p.retain && !p.dup);
    }
    assert_eq!(
        got2.iter().map(|p| p.qos).collect::<Vec<_>>(),
        vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
    );
    assert_eq!(
        got1.iter().map(|p| p.qos).collect::<Vec<_>>(),
        vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::AtLeastOnce]
    );
    sub2.no_publish().await;
    s.stop().await;
}

#[tokio::test]
async fn wildcards_and_dollar_topics() {
    let s = Server::start().await;
    let mut all = v4::connect(s.addr, "all").await;
    all.subscribe("#", QoS::AtMostOnce).await;
    let mut plus = v4::connect(s.addr, "plus").await;
    plus.subscribe("+/x", QoS::AtMostOnce).await;
    let mut sys = v4::connect(s.addr, "sys").await;
    sys.subscribe("$SYS/#", QoS::AtMostOnce).await;
    let mut parent = v4::connect(s.addr, "parent").await;
    parent.subscribe("a/#", QoS::AtMostOnce).await;
    let mut publ = v4::connect(s.addr, "pub").await;
    publ.publish("$SYS/x", QoS::AtLeastOnce, false, b"sys")
        .await;
    publ.publish("a", QoS::AtLeastOnce, false, b"a").await;
    publ.publish("b/x", QoS::AtLeastOnce, false, b"bx").await;
    // [MQTT-4.7.2-1]: wildcards at the first level never match `$` topics.
    let p = sys.publish_packet().await;
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("$SYS/x", &b"sys"[..]));
    sys.no_publish().await;
    let got: Vec<String> = all
        .publishes(2)
        .await
        .into_iter()
        .map(|p| p.topic)
        .collect();
    assert_eq!(got, ["a", "b/x"]);
    assert_eq!(plus.publish_packet().await.topic, "b/x");
    // `a/#` also matches its parent `a` (§ 4.7.1.2).
    assert_eq!(parent.publish_packet().await.topic, "a");
    all.no_publish().await;
    plus.no_publish().await;
    parent.no_publish().await;
    s.stop().await;
}

#[tokio::test]
async fn retained_set_replace_clear_and_delivered_on_subscribe() {
    let s = Server::start().await;
    let mut publ = v4::connect(s.addr, "pub").await;
    let mut live = v4::connect(s.addr, "live").await;
    live.subscribe("r/#", QoS::AtLeastOnce).await;
    publ.publish("r/1", QoS::AtLeastOnce, true, b"first").await;
    publ.publish("r/1", QoS::AtLeastOnce, true, b"second").await;
    publ.publish("r/2", QoS::AtMostOnce, true, b"other").await;
    // Live subscribers get RETAIN 0 [MQTT-3.3.1-9].
    for p in live.publishes(3).await {
        assert!(!p.retain, "{p:?}");
    }
    let mut late = v4::connect(s.addr, "late").await;
    late.subscribe("r/+", QoS::AtLeastOnce).await;
    let mut got = late.publishes(2).await;
    got.sort_by(|a, b| a.topic.cmp(&b.topic));
    assert_eq!(&got[0].payload[..], b"second");
    assert!(got[0].retain);
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
    assert_eq!(&got[1].payload[..], b"other");
    assert_eq!(got[1].qos, QoS::AtMostOnce);
    late.no_publish().await;
    // An empty retained payload clears the topic, and is delivered as usual [MQTT-3.3.1-10/11].
    publ.publish("r/1", QoS::AtLeastOnce, true, b"").await;
    let cleared = live.next_matching(|p| match p {
        rumqttc::Packet::Publish(p) if p.topic == "r/1" => Some(p.clone()),
        _ => None,
    });
    assert!(cleared.await.payload.is_empty());
    let mut later = v4::connect(s.addr, "later").await;
    later.subscribe("r/+", QoS::AtLeastOnce).await;
    assert_eq!(later.publish_packet().await.topic, "r/2");
    later.no_publish().await;
    s.stop().await;
}

#[tokio::test]
async fn unsubscribe_stops_delivery_and_overlaps_deliver_once() {
    let s = Server::start().await;
    let mut sub = v4::connect(s.addr, "sub").await;
    sub.subscribe("o/+", QoS::AtMostOnce).await;
    sub.subscribe("o/#", QoS::AtLeastOnce).await;
    sub.subscribe("o/x", QoS::AtMostOnce).await;
    let mut publ = v4::connect(s.addr, "pub").await;
    publ.publish("o/x", QoS::AtLeastOnce, false, b"1").await;
    // One queue per session: one copy, at the highest matching subscription QoS.
    let p = sub.publish_packet().await;
    assert_eq!(p.qos, QoS::AtLeastOnce);
    sub.no_publish().await;
    sub.client.unsubscribe("o/#").await.unwrap();
    sub.next_matching(|p| matches!(p, rumqttc::Packet::UnsubAck(_)).then_some(()))
        .await;
    publ.publish("o/x", QoS::AtLeastOnce, false, b"2").await;
    assert_eq!(sub.publish_packet().await.qos, QoS::AtMostOnce);
    sub.client.unsubscribe("o/+").await.unwrap();
    sub.client.unsubscribe("o/x").await.unwrap();
    for _ in 0..2 {
        sub.next_matching(|p| matches!(p, rumqttc::Packet::UnsubAck(_)).then_some(()))
            .await;
    }
    publ.publish("o/x", QoS::AtLeastOnce, false, b"3").await;
    sub.no_publish().await;
    s.stop().await;
}

#[tokio::test]
async fn keep_alive_pings_keep_the_connection() {
    let s = Server::start().await;
    let mut o = v4::options(s.addr, "pinger");
    o.set_keep_alive(Duration::from_secs(1));
    let (mut c, _) = v4::connect_with(o).await;
    c.subscribe("k", QoS::AtMostOnce).await;
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let mut publ = v4::connect(s.addr, "pub").await;
    publ.publish("k", QoS::AtLeastOnce, false, b"still here")
        .await;
    assert_eq!(&c.publish_packet().await.payload[..], b"still here");
    s.stop().await;
}

#[tokio::test]
async fn qos2_duplicate_publish_is_delivered_once() {
    let s = Server::start().await;
    let mut sub = v4::connect(s.addr, "sub").await;
    sub.subscribe("e", QoS::ExactlyOnce).await;
    let (mut raw, connack) = raw_connected(s.addr, 4, "raw", 0x02, &[]).await;
    assert_eq!(connack, [0x20, 2, 0, 0]);
    raw.send(&publish(false, 0b0100, "e", Some(7), &[], b"once"))
        .await;
    assert_eq!(raw.packet().await, [0x50, 2, 0, 7], "PUBREC");
    // A re-send with DUP before PUBREL: PUBREC again, no second delivery.
    raw.send(&publish(false, 0b1100, "e", Some(7), &[], b"once"))
        .await;
    assert_eq!(raw.packet().await, [0x50, 2, 0, 7]);
    raw.send(&packet(0x62, &[0, 7])).await;
    assert_eq!(raw.packet().await, [0x70, 2, 0, 7], "PUBCOMP");
    // PUBREL for an unknown id still gets its PUBCOMP.
    raw.send(&packet(0x62, &[0, 8])).await;
    assert_eq!(raw.packet().await, [0x70, 2, 0, 8]);
    let p = sub.publish_packet().await;
    assert_eq!(&p.payload[..], b"once");
    sub.no_publish().await;
    s.stop().await;
}

#[tokio::test]
async fn outgoing_qos2_flow_over_raw_bytes() {
    let s = Server::start().await;
    let (mut raw, _) = raw_connected(s.addr, 4, "raw", 0x02, &[]).await;
    raw.send(&subscribe(false, 1, "t2", 2)).await;
    assert_eq!(raw.packet().await, [0x90, 3, 0, 1, 2]);
    let mut publ = v4::connect(s.addr, "pub").await;
    publ.publish("t2", QoS::ExactlyOnce, false, b"x").await;
    let p = raw.packet().await;
    assert_eq!(p[0], 0x34, "QoS 2 PUBLISH: {p:02x?}");
    let pid = [p[6], p[7]];
    raw.send(&packet(0x50, &pid)).await;
    assert_eq!(raw.packet().await, [0x62, 2, pid[0], pid[1]], "PUBREL");
    raw.send(&packet(0x70, &pid)).await;
    raw.send(&packet(0xC0, &[])).await;
    assert_eq!(raw.packet().await, [0xD0, 0], "PINGRESP");
    s.stop().await;
}
