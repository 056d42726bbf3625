//! Sessions: persistent ones keep subscriptions, queued messages and QoS 1/2
//! state across reconnects and restarts (engine closed and reopened on the
//! same directory); in-flight messages come back with DUP and their packet
//! ids; clean sessions end with their connection; takeover; expiry.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Raw, Server, packet, publish, raw_connected, subscribe, v4, v5};
use gw_mqtt::Config;

/// A 3.1.1 raw client with clean session 0.
async fn persistent_raw(s: &Server, id: &str) -> (Raw, Vec<u8>) {
    raw_connected(s.addr, 4, id, 0x00, &[]).await
}

#[tokio::test]
async fn persistent_session_keeps_subscriptions_and_queued_messages() {
    let s = Server::start().await;
    let mut o = v4::options(s.addr, "keeper");
    o.set_clean_session(false);
    let (mut c, ack) = v4::connect_with(o.clone()).await;
    assert!(!ack.session_present);
    c.subscribe("keep/#", v4::QoS::AtLeastOnce).await;
    c.disconnect().await;
    let mut publ = v4::connect(s.addr, "pub").await;
    for i in 0..3 {
        publ.publish("keep/x", v4::QoS::AtLeastOnce, false, &[i])
            .await;
    }
    // QoS 0 messages are queued too, while the session lasts.
    publ.publish("keep/y", v4::QoS::AtMostOnce, false, b"q0")
        .await;
    let (mut c, ack) = v4::connect_with(o).await;
    assert!(ack.session_present, "[MQTT-3.2.2-2]");
    let got = c.publishes(4).await;
    let payloads: Vec<Vec<u8>> = got.iter().map(|p| p.payload.to_vec()).collect();
    assert_eq!(payloads, [vec![0], vec![1], vec![2], b"q0".to_vec()]);
    // Still subscribed without subscribing again.
    publ.publish("keep/z", v4::QoS::AtLeastOnce, false, b"live")
        .await;
    assert_eq!(&c.publish_packet().await.payload[..], b"live");
    s.stop().await;
}

#[tokio::test]
async fn unacknowledged_messages_come_back_with_dup_and_their_packet_ids() {
    let s = Server::start().await;
    let (mut raw, connack) = persistent_raw(&s, "redeliver").await;
    assert_eq!(connack, [0x20, 2, 0, 0]);
    raw.send(&subscribe(false, 1, "rd", 1)).await;
    assert_eq!(raw.packet().await, [0x90, 3, 0, 1, 1]);
    let mut publ = v4::connect(s.addr, "pub").await;
    publ.publish("rd", v4::QoS::AtLeastOnce, false, b"one")
        .await;
    publ.publish("rd", v4::QoS::AtLeastOnce, false, b"two")
        .await;
    let first = [raw.packet().await, raw.packet().await];
    for p in &first {
        assert_eq!(p[0], 0x32, "QoS 1, no DUP the first time: {p:02x?}");
    }
    // Acknowledge the second only, then drop the connection.
    let pid2 = [first[1][6], first[1][7]];
    raw.send(&packet(0x40, &pid2)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(raw);
    let (mut raw, connack) = persistent_raw(&s, "redeliver").await;
    assert_eq!(connack, [0x20, 2, 1, 0], "session present");
    let again = raw.packet().await;
    // [MQTT-4.4.0-1]: re-sent with DUP and the original packet id.
    assert_eq!(again[0], 0x3A, "DUP set: {again:02x?}");
    assert_eq!(&again[2..], &first[0][2..], "same id and content");
    raw.send(&packet(0x40, &[again[6], again[7]])).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(raw);
    let (mut raw, _) = persistent_raw(&s, "redeliver").await;
    raw.send(&packet(0xC0, &[])).await;
    assert_eq!(
        raw.packet().await,
        [0xD0, 0],
        "nothing re-sent once acknowledged"
    );
    s.stop().await;
}

#[tokio::test]
async fn sessions_retained_messages_and_in_flight_state_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_in(dir.path(), Config::default()).await;
    let addr = s.addr;
    // A v5 session with a long expiry, subscribed, then gone.
    let mut o = v5::options(addr, "survivor");
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(3600));
    let (mut c, _) = v5::connect_with(o).await;
    c.subscribe("sv/#", v5::QoS::AtLeastOnce).await;
    c.disconnect().await;
    // A raw persistent 3.1.1 session holding an unacknowledged delivery.
    let (mut raw, _) = persistent_raw(&s, "inflight").await;
    raw.send(&subscribe(false, 1, "sv/raw", 1)).await;
    raw.packet().await;
    let mut publ = v4::connect(addr, "pub").await;
    publ.publish("sv/raw", v4::QoS::AtLeastOnce, false, b"held")
        .await;
    let held = raw.packet().await;
    publ.publish("sv/q", v4::QoS::AtLeastOnce, false, b"queued")
        .await;
    publ.publish("sv/ret", v4::QoS::AtLeastOnce, true, b"retained")
        .await;
    // The QoS 2 half-way state of an incoming publish.
    raw.send(&publish(false, 0b0100, "sv/two", Some(9), &[], b"exactly"))
        .await;
    assert_eq!(raw.packet().await, [0x50, 2, 0, 9]);
    drop(raw);
    drop(publ);
    let dir_keep = dir;
    s.stop().await;

    let s = Server::start_in(dir_keep.path(), Config::default()).await;
    let mut o = v5::options(s.addr, "survivor");
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(3600));
    let (mut c, ack) = v5::connect_with(o).await;
    assert!(ack.session_present);
    let mut got = Vec::new();
    for _ in 0..4 {
        let p = c.publish_packet().await;
        got.push((
            String::from_utf8(p.topic.to_vec()).unwrap(),
            p.payload.to_vec(),
        ));
    }
    got.sort();
    assert_eq!(
        got,
        [
            ("sv/q".to_string(), b"queued".to_vec()),
            ("sv/raw".to_string(), b"held".to_vec()),
            ("sv/ret".to_string(), b"retained".to_vec()),
            ("sv/two".to_string(), b"exactly".to_vec()),
        ]
    );
    let (mut raw, connack) = persistent_raw(&s, "inflight").await;
    assert_eq!(connack, [0x20, 2, 1, 0]);
    let again = raw.packet().await;
    assert_eq!(again[0], 0x3A);
    assert_eq!(&again[2..], &held[2..], "same packet id after the restart");
    // The re-sent QoS 2 PUBLISH is recognised: PUBREC, not a second message.
    raw.send(&publish(false, 0b1100, "sv/two", Some(9), &[], b"exactly"))
        .await;
    assert_eq!(raw.packet().await, [0x50, 2, 0, 9]);
    raw.send(&packet(0x62, &[0, 9])).await;
    assert_eq!(raw.packet().await, [0x70, 2, 0, 9]);
    c.no_publish().await;
    // Retained messages survived too.
    let mut fresh = v4::connect(s.addr, "fresh").await;
    fresh.subscribe("sv/ret", v4::QoS::AtLeastOnce).await;
    let p = fresh.publish_packet().await;
    assert!(p.retain);
    assert_eq!(&p.payload[..], b"retained");
    s.stop().await;
}

#[tokio::test]
async fn outgoing_pubrel_is_resent_after_a_reconnect() {
    let s = Server::start().await;
    let (mut raw, _) = persistent_raw(&s, "q2out").await;
    raw.send(&subscribe(false, 1, "x2", 2)).await;
    raw.packet().await;
    let mut publ = v4::connect(s.addr, "pub").await;
    publ.publish("x2", v4::QoS::ExactlyOnce, false, b"x").await;
    let p = raw.packet().await;
    let pid = [p[6], p[7]];
    assert_eq!(p[0], 0x34);
    raw.send(&packet(0x50, &pid)).await;
    assert_eq!(raw.packet().await, [0x62, 2, pid[0], pid[1]]);
    drop(raw);
    let (mut raw, connack) = persistent_raw(&s, "q2out").await;
    assert_eq!(connack, [0x20, 2, 1, 0]);
    // PUBREL again, never the PUBLISH (§ 4.3.3).
    assert_eq!(raw.packet().await, [0x62, 2, pid[0], pid[1]]);
    raw.send(&packet(0x70, &pid)).await;
    raw.send(&packet(0xC0, &[])).await;
    assert_eq!(raw.packet().await, [0xD0, 0]);
    s.stop().await;
}

#[tokio::test]
async fn clean_sessions_end_with_their_connection() {
    let s = Server::start().await;
    let mut o = v4::options(s.addr, "cleaner");
    o.set_clean_session(false);
    let (mut c, _) = v4::connect_with(o.clone()).await;
    c.subscribe("cl", v4::QoS::AtLeastOnce).await;
    c.disconnect().await;
    let tenant = s.engine.tenant("/").unwrap();
    assert!(tenant.queue("mqtt-session-cleaner").unwrap().is_durable());
    // Clean session 1 discards the stored session [MQTT-3.1.2-6].
    let mut clean = v4::options(s.addr, "cleaner");
    clean.set_clean_session(true);
    let (c, ack) = v4::connect_with(clean).await;
    assert!(!ack.session_present);
    c.disconnect().await;
    let (mut c, ack) = v4::connect_with(o).await;
    assert!(!ack.session_present, "nothing left of the old session");
    let mut publ = v4::connect(s.addr, "pub").await;
    publ.publish("cl", v4::QoS::AtLeastOnce, false, b"x").await;
    c.no_publish().await;
    // A clean session's exclusive queue is deleted with the connection.
    let mut t = v4::connect(s.addr, "transient").await;
    t.subscribe("tr", v4::QoS::AtLeastOnce).await;
    assert!(!tenant.queue("mqtt-session-transient").unwrap().is_durable());
    t.disconnect().await;
    common::eventually("transient queue deleted", || {
        tenant
            .queue("mqtt-session-transient")
            .is_err()
            .then_some(())
    })
    .await;
    s.stop().await;
}

#[tokio::test]
async fn a_second_connection_takes_the_session_over() {
    let s = Server::start().await;
    let mut first = v5::connect(s.addr, "twin").await;
    first.subscribe("tw", v5::QoS::AtLeastOnce).await;
    let mut o = v5::options(s.addr, "twin");
    o.set_clean_start(false);
    let (mut second, ack) = v5::connect_with(o).await;
    assert_eq!(ack.code, v5::ConnectReturnCode::Success);
    let (_, error) = first.closed().await;
    assert!(
        error.contains("SessionTakenOver"),
        "DISCONNECT 0x8E: {error}"
    );
    // The old session was a clean one: it ended with its connection.
    assert!(!ack.session_present);
    let publ = v5::connect(s.addr, "pub").await;
    second.subscribe("tw", v5::QoS::AtLeastOnce).await;
    publ.client
        .publish("tw", v5::QoS::AtLeastOnce, false, "hi")
        .await
        .unwrap();
    assert_eq!(&second.publish_packet().await.payload[..], b"hi");
    // 3.1.1: the first connection is simply closed.
    let mut a = v4::connect(s.addr, "twin4").await;
    let _b = v4::connect(s.addr, "twin4").await;
    a.closed().await;
    s.stop().await;
}

#[tokio::test]
async fn persistent_session_is_resumed_by_a_takeover() {
    let s = Server::start().await;
    let mut o = v5::options(s.addr, "resume");
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(60));
    let (mut first, _) = v5::connect_with(o.clone()).await;
    first.subscribe("rs", v5::QoS::AtLeastOnce).await;
    let (mut second, ack) = v5::connect_with(o).await;
    assert!(
        ack.session_present,
        "[MQTT-3.1.4-3] the session is taken over, not lost"
    );
    first.closed().await;
    let publ = v5::connect(s.addr, "pub").await;
    publ.client
        .publish("rs", v5::QoS::AtLeastOnce, false, "x")
        .await
        .unwrap();
    assert_eq!(&second.publish_packet().await.payload[..], b"x");
    s.stop().await;
}

#[tokio::test]
async fn sessions_expire() {
    let s = Server::start().await;
    let mut o = v5::options(s.addr, "short");
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(1));
    let (mut c, _) = v5::connect_with(o.clone()).await;
    c.subscribe("ex", v5::QoS::AtLeastOnce).await;
    c.disconnect().await;
    let tenant = s.engine.tenant("/").unwrap();
    assert!(tenant.queue("mqtt-session-short").is_ok());
    tokio::time::sleep(Duration::from_millis(1600)).await;
    common::eventually("expired session's queue deleted", || {
        tenant.queue("mqtt-session-short").is_err().then_some(())
    })
    .await;
    let (_c, ack) = v5::connect_with(o).await;
    assert!(!ack.session_present);
    s.stop().await;
}

#[tokio::test]
async fn session_expiry_is_capped_and_announced() {
    let config = Config {
        max_session_expiry_secs: 10,
        ..Config::default()
    };
    let s = Server::start_with(config).await;
    let mut o = v5::options(s.addr, "capped");
    o.set_session_expiry_interval(Some(3600));
    let (_c, ack) = v5::connect_with(o).await;
    assert_eq!(
        ack.properties.unwrap().session_expiry_interval,
        Some(10),
        "§ 3.2.2.3.2: the server's value is sent back"
    );
    s.stop().await;
}

#[tokio::test]
async fn disconnect_can_end_a_session_but_not_extend_a_transient_one() {
    let s = Server::start().await;
    // Expiry set to 0 at DISCONNECT ends the session with the connection.
    let (mut raw, connack) = raw_connected(s.addr, 5, "zero", 0x00, &[0x11, 0, 0, 0, 60]).await;
    assert_eq!(connack[3], 0);
    raw.send(&subscribe(true, 1, "z", 1)).await;
    raw.packet().await;
    let tenant = s.engine.tenant("/").unwrap();
    assert!(tenant.queue("mqtt-session-zero").unwrap().is_durable());
    raw.send(&packet(0xE0, &[0x00, 5, 0x11, 0, 0, 0, 0])).await;
    raw.closed().await;
    common::eventually("session ended", || {
        tenant.queue("mqtt-session-zero").is_err().then_some(())
    })
    .await;
    // A transient session cannot be made persistent at DISCONNECT [MQTT-3.14.2-2].
    let (mut raw, _) = raw_connected(s.addr, 5, "one", 0x02, &[]).await;
    raw.send(&packet(0xE0, &[0x00, 5, 0x11, 0, 0, 0, 60])).await;
    let got = raw.closed().await;
    assert_eq!(
        &got[..3],
        &[0xE0, got[1], 0x82],
        "DISCONNECT protocol error: {got:02x?}"
    );
    s.stop().await;
}
