//! `[mqtt] max_keepalive`: a CONNECT asking for a longer keep alive, or for
//! none, gets the cap: MQTT 5 clients in CONNACK's Server Keep Alive
//! [MQTT-3.2.2-21], 3.1.1 clients by being held to it (closed after one and a
//! half times the cap without a packet [MQTT-3.1.2-24]).
#![allow(clippy::unwrap_used)]

mod common;

use std::num::NonZeroU16;
use std::time::{Duration, Instant};

use common::{QUIET, Raw, Server, WAIT, packet, string, v4, v5};
use gw_mqtt::Config;

fn capped(secs: u16) -> Config {
    Config {
        max_keepalive: NonZeroU16::new(secs),
        ..Config::default()
    }
}

/// CONNECT (clean) at `level` asking for `keep_alive` seconds.
fn connect(level: u8, id: &str, keep_alive: u16) -> Vec<u8> {
    let mut body = string(b"MQTT");
    body.push(level);
    body.push(0x02);
    body.extend_from_slice(&keep_alive.to_be_bytes());
    if level == 5 {
        body.push(0);
    }
    body.extend(string(id.as_bytes()));
    packet(0x10, &body)
}

/// The Server Keep Alive property (0x13) of a 5.0 CONNACK, if present.
fn server_keep_alive(connack: &[u8]) -> Option<u16> {
    // Fixed header (2), flags, reason code, property length, properties.
    let props = connack.get(5..)?;
    let mut i = 0;
    while i < props.len() {
        let (id, rest) = (props[i], &props[i + 1..]);
        let len = match id {
            0x13 | 0x21 | 0x22 => 2,
            0x11 | 0x27 => 4,
            0x24 | 0x25 | 0x28 | 0x29 | 0x2A => 1,
            0x12 | 0x1F | 0x1A | 0x1C | 0x15 => {
                2 + usize::from(u16::from_be_bytes([rest[0], rest[1]]))
            }
            _ => return None,
        };
        if id == 0x13 {
            return Some(u16::from_be_bytes([rest[0], rest[1]]));
        }
        i += 1 + len;
    }
    None
}

async fn connack(s: &Server, level: u8, id: &str, keep_alive: u16) -> (Raw, Vec<u8>) {
    let mut raw = Raw::connect(s.addr).await;
    raw.send(&connect(level, id, keep_alive)).await;
    let ack = raw.packet().await;
    assert_eq!(ack[0], 0x20, "CONNACK: {ack:02x?}");
    (raw, ack)
}

#[tokio::test]
async fn mqtt5_clients_are_told_the_cap() {
    let s = Server::start_with(capped(30)).await;
    for (asked, told) in [(60, Some(30)), (0, Some(30)), (30, None), (10, None)] {
        let (_raw, ack) = connack(&s, 5, &format!("ka-{asked}"), asked).await;
        assert_eq!(server_keep_alive(&ack), told, "asked {asked}: {ack:02x?}");
    }
    s.stop().await;
}

#[tokio::test]
async fn a_real_mqtt5_client_pings_at_the_cap_and_stays() {
    let s = Server::start_with(capped(1)).await;
    let mut o = v5::options(s.addr, "pinger");
    o.set_keep_alive(Duration::from_secs(60));
    let (mut c, ack) = v5::connect_with(o).await;
    assert_eq!(ack.properties.unwrap().server_keep_alive, Some(1));
    // Silent but for rumqttc's pings every second: still connected after
    // twice the 1.5 s the server allows without a packet.
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.subscribe("ka/still", v5::QoS::AtLeastOnce).await;
    s.stop().await;
}

#[tokio::test]
async fn mqtt311_clients_are_held_to_the_cap() {
    let s = Server::start_with(capped(1)).await;
    for asked in [0u16, 30] {
        let (mut raw, ack) = connack(&s, 4, &format!("held-{asked}"), asked).await;
        assert_eq!(ack, [0x20, 2, 0, 0]);
        let since = Instant::now();
        let rest = raw.closed().await;
        assert!(rest.is_empty(), "3.1.1 gets no DISCONNECT: {rest:02x?}");
        let after = since.elapsed();
        assert!(
            after >= Duration::from_millis(1400) && after < WAIT,
            "asked {asked}: closed after {after:?}"
        );
    }
    // A client pinging within the cap stays.
    let (mut raw, _) = connack(&s, 4, "pings", 0).await;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        raw.send(&[0xC0, 0]).await;
        assert_eq!(raw.packet().await, [0xD0, 0]);
    }
    // A real 3.1.1 client that pings only every 60 s is closed.
    let mut o = v4::options(s.addr, "lazy");
    o.set_keep_alive(Duration::from_secs(60));
    let (mut lazy, _) = v4::connect_with(o).await;
    tokio::time::sleep(QUIET).await;
    let _ = lazy.closed().await;
    s.stop().await;
}

#[tokio::test]
async fn without_a_cap_the_clients_keep_alive_stands() {
    let s = Server::start().await;
    let (_raw, ack) = connack(&s, 5, "uncapped", 0).await;
    assert_eq!(server_keep_alive(&ack), None);
    let (mut raw, _) = connack(&s, 4, "uncapped4", 0).await;
    // No keep alive at all: quiet is fine.
    tokio::time::sleep(Duration::from_secs(2)).await;
    raw.send(&[0xC0, 0]).await;
    assert_eq!(raw.packet().await, [0xD0, 0]);
    s.stop().await;
}
