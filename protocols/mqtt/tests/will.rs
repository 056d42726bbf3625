//! Will messages: published when a client is killed, times out or is taken
//! over; not on DISCONNECT (except MQTT 5's 0x04); MQTT 5 will delay,
//! cancelled by a reconnection and cut short by the session's expiry.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Server, packet, string, v4, v5};

/// A subscriber to `w/#`.
async fn watcher(s: &Server) -> v4::Client {
    let mut w = v4::connect(s.addr, "watcher").await;
    w.subscribe("w/#", v4::QoS::AtLeastOnce).await;
    w
}

fn v4_with_will(s: &Server, id: &str, retain: bool) -> v4::MqttOptions {
    let mut o = v4::options(s.addr, id);
    o.set_last_will(v4::LastWill::new(
        "w/gone",
        "bye",
        v4::QoS::AtLeastOnce,
        retain,
    ));
    o
}

#[tokio::test]
async fn will_is_published_for_a_killed_client() {
    let s = Server::start().await;
    let mut w = watcher(&s).await;
    let (c, _) = v4::connect_with(v4_with_will(&s, "victim", true)).await;
    // Dropping the socket without DISCONNECT, as a killed process does.
    c.kill();
    let p = w.publish_packet().await;
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("w/gone", &b"bye"[..]));
    assert_eq!(p.qos, v4::QoS::AtLeastOnce);
    // Will Retain: kept as the topic's retained message.
    let mut late = v4::connect(s.addr, "late").await;
    late.subscribe("w/gone", v4::QoS::AtLeastOnce).await;
    let p = late.publish_packet().await;
    assert!(p.retain);
    assert_eq!(&p.payload[..], b"bye");
    s.stop().await;
}

#[tokio::test]
async fn no_will_after_disconnect() {
    let s = Server::start().await;
    let mut w = watcher(&s).await;
    let (c, _) = v4::connect_with(v4_with_will(&s, "polite", false)).await;
    c.disconnect().await;
    w.no_publish().await;
    // MQTT 5 DISCONNECT 0x00: no will either; 0x04: the will.
    for (code, expected) in [(0x00u8, false), (0x04, true)] {
        let mut raw = common::Raw::connect(s.addr).await;
        raw.send(&connect_with_will(5, "v5will", &[], 0)).await;
        assert_eq!(raw.packet().await[3], 0, "CONNACK success");
        raw.send(&packet(0xE0, &[code, 0])).await;
        raw.closed().await;
        if expected {
            assert_eq!(&w.publish_packet().await.payload[..], b"bye");
        } else {
            w.no_publish().await;
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn will_on_keep_alive_timeout() {
    let s = Server::start().await;
    let mut w = watcher(&s).await;
    let mut raw = common::Raw::connect(s.addr).await;
    // Keep alive 1 s, then silence: closed after 1.5 s [MQTT-3.1.2-24] with 0x8D.
    raw.send(&connect_with_will(5, "sleepy", &[], 1)).await;
    raw.packet().await;
    let started = std::time::Instant::now();
    let got = raw.closed().await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1400),
        "closed after {waited:?}"
    );
    assert_eq!(&got[..1], &[0xE0]);
    assert_eq!(got[2], 0x8D, "keep alive timeout: {got:02x?}");
    assert_eq!(&w.publish_packet().await.payload[..], b"bye");
    s.stop().await;
}

#[tokio::test]
async fn will_on_takeover() {
    let s = Server::start().await;
    let mut w = watcher(&s).await;
    let (mut a, _) = v4::connect_with(v4_with_will(&s, "taken", false)).await;
    let _b = v4::connect(s.addr, "taken").await;
    a.closed().await;
    assert_eq!(&w.publish_packet().await.payload[..], b"bye");
    s.stop().await;
}

/// A v5 client with a will delayed by `delay` seconds and this session expiry.
fn v5_delayed(s: &Server, id: &str, delay: u32, expiry: u32) -> v5::MqttOptions {
    let mut o = v5::options(s.addr, id);
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(expiry));
    let props = v5::LastWillProperties {
        delay_interval: Some(delay),
        payload_format_indicator: None,
        message_expiry_interval: None,
        content_type: None,
        response_topic: None,
        correlation_data: None,
        user_properties: vec![],
    };
    o.set_last_will(v5::LastWill::new(
        "w/delayed",
        Bytes::from_static(b"late bye"),
        v5::QoS::AtLeastOnce,
        false,
        Some(props),
    ));
    o
}

#[tokio::test]
async fn delayed_will_waits_and_a_reconnection_cancels_it() {
    let s = Server::start().await;
    let mut w = watcher(&s).await;
    let (c, _) = v5::connect_with(v5_delayed(&s, "delayed", 2, 60)).await;
    c.kill();
    tokio::time::sleep(Duration::from_millis(800)).await;
    w.no_publish().await;
    // Back in time: the will is not sent [MQTT-3.1.3-9].
    let (c, ack) = v5::connect_with(v5_delayed(&s, "delayed", 2, 60)).await;
    assert!(ack.session_present);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    w.no_publish().await;
    // Killed again and not back: published after the delay.
    c.kill();
    let started = std::time::Instant::now();
    let p = w.publish_packet().await;
    assert_eq!(&p.payload[..], b"late bye");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    s.stop().await;
}

#[tokio::test]
async fn session_expiry_shorter_than_the_delay_sends_the_will_earlier() {
    let s = Server::start().await;
    let mut w = watcher(&s).await;
    let (c, _) = v5::connect_with(v5_delayed(&s, "brief", 30, 1)).await;
    c.kill();
    let started = std::time::Instant::now();
    let p = w.publish_packet().await;
    assert_eq!(&p.payload[..], b"late bye");
    assert!(started.elapsed() < Duration::from_secs(4));
    s.stop().await;
}

#[tokio::test]
async fn a_clean_start_publishes_the_pending_will_of_the_old_session() {
    let s = Server::start().await;
    let mut w = watcher(&s).await;
    let (c, _) = v5::connect_with(v5_delayed(&s, "restart", 30, 60)).await;
    c.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    w.no_publish().await;
    let mut o = v5::options(s.addr, "restart");
    o.set_clean_start(true);
    let (_c, ack) = v5::connect_with(o).await;
    assert!(!ack.session_present);
    // The old session ended, so its will went out [MQTT-3.1.2-4 / § 3.1.3.2.2].
    assert_eq!(&w.publish_packet().await.payload[..], b"late bye");
    s.stop().await;
}

#[tokio::test]
async fn v5_will_payload_format_is_checked_at_connect() {
    let s = Server::start().await;
    let mut raw = common::Raw::connect(s.addr).await;
    // Will properties: payload format indicator 1, with a payload that is not UTF-8.
    let mut c = connect_with_will(5, "badwill", &[0x01, 1], 30);
    // Patch the payload "bye" into invalid UTF-8.
    let n = c.len();
    c[n - 3..].copy_from_slice(&[0xFF, 0xFE, 0xFD]);
    raw.send(&c).await;
    let connack = raw.closed().await;
    assert_eq!(connack[..2], [0x20, connack[1]]);
    assert_eq!(connack[3], 0x99, "payload format invalid: {connack:02x?}");
    s.stop().await;
}

/// CONNECT (level 4 or 5) with a will `w/gone` = "bye" (QoS 1) and, for 5,
/// these will properties.
fn connect_with_will(level: u8, id: &str, will_props: &[u8], keep_alive: u16) -> Vec<u8> {
    let mut body = string(b"MQTT");
    body.push(level);
    body.push(0x02 | 0x04 | 0x08);
    body.extend_from_slice(&keep_alive.to_be_bytes());
    if level == 5 {
        body.push(0);
    }
    body.extend(string(id.as_bytes()));
    if level == 5 {
        body.push(will_props.len() as u8);
        body.extend_from_slice(will_props);
    }
    body.extend(string(b"w/gone"));
    body.extend(string(b"bye"));
    packet(0x10, &body)
}
