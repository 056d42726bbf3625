//! Bad input over raw sockets: each gets the specification's reaction (a
//! CONNACK refusal, DISCONNECT with the right reason code, or the network
//! connection closed) while other clients and stored sessions are untouched.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Raw, Server, connect, packet, publish, string, subscribe, v4};

/// What the server must do.
#[derive(Debug)]
enum Reaction {
    /// Close without sending anything.
    Close,
    /// Send exactly these bytes, then close.
    Reply(&'static [u8]),
    /// MQTT 5: DISCONNECT with this reason code, then close.
    Disconnect(u8),
    /// MQTT 5: CONNACK with this reason code, then close.
    Connack(u8),
}

async fn check(s: &Server, name: &str, level: Option<u8>, bytes: Vec<u8>, expected: Reaction) {
    let mut raw = Raw::connect(s.addr).await;
    if let Some(level) = level {
        raw.send(&connect(level, &format!("bad-{name}"), 0x02, &[]))
            .await;
        let connack = raw.packet().await;
        assert_eq!(connack[0], 0x20, "{name}: connected first");
    }
    raw.send(&bytes).await;
    let got = raw.closed().await;
    match expected {
        Reaction::Close => assert_eq!(got, Vec::<u8>::new(), "{name}"),
        Reaction::Reply(b) => assert_eq!(got, b, "{name}"),
        Reaction::Disconnect(code) => {
            assert_eq!(got.first(), Some(&0xE0), "{name}: {got:02x?}");
            assert_eq!(got.get(2), Some(&code), "{name}: {got:02x?}");
        }
        Reaction::Connack(code) => {
            assert_eq!(got.first(), Some(&0x20), "{name}: {got:02x?}");
            assert_eq!(got.get(3), Some(&code), "{name}: {got:02x?}");
        }
    }
}

fn connect_raw(name: &[u8], level: u8, flags: u8, rest: &[u8]) -> Vec<u8> {
    let mut body = string(name);
    body.push(level);
    body.push(flags);
    body.extend_from_slice(&[0, 30]);
    body.extend_from_slice(rest);
    packet(0x10, &body)
}

#[tokio::test]
async fn every_bad_input_gets_its_reaction_and_harms_nobody() {
    common::watch_panics();
    let s = Server::start().await;
    // Bystanders: a live subscriber and a stored session with a queued message.
    let mut bystander = v4::connect(s.addr, "bystander").await;
    bystander.subscribe("ok/#", v4::QoS::AtLeastOnce).await;
    let mut o = v4::options(s.addr, "stored");
    o.set_clean_session(false);
    let (mut stored, _) = v4::connect_with(o.clone()).await;
    stored.subscribe("ok/#", v4::QoS::AtLeastOnce).await;
    stored.disconnect().await;
    let mut publ = v4::connect(s.addr, "publisher").await;
    publ.publish("ok/1", v4::QoS::AtLeastOnce, false, b"before")
        .await;
    assert_eq!(&bystander.publish_packet().await.payload[..], b"before");

    use Reaction::*;
    let v5_props_empty = |p: Vec<u8>| p;
    let cases: Vec<(&str, Option<u8>, Vec<u8>, Reaction)> = vec![
        // Before CONNECT.
        (
            "not-connect-first",
            None,
            publish(false, 0, "t", None, &[], b"x"),
            Close,
        ),
        ("pingreq-first", None, packet(0xC0, &[]), Close),
        (
            "bad-protocol-name",
            None,
            connect_raw(b"MQTX", 4, 2, &string(b"c")),
            Close,
        ),
        // [MQTT-3.1.2-2]: an unsupported level gets CONNACK 0x01 (3.1.1 form) ...
        (
            "level-3",
            None,
            connect_raw(b"MQIsdp", 3, 2, &string(b"c")),
            Reply(&[0x20, 2, 0, 1]),
        ),
        // ... or 0x84 in the form a newer client reads.
        (
            "level-6",
            None,
            connect_raw(b"MQTT", 6, 2, &string(b"c")),
            Connack(0x84),
        ),
        (
            "connect-reserved-flag-v4",
            None,
            connect_raw(b"MQTT", 4, 3, &string(b"c")),
            Close,
        ),
        (
            "connect-reserved-flag-v5",
            None,
            connect_raw(b"MQTT", 5, 3, &[0, 0, 1, b'c']),
            Connack(0x81),
        ),
        (
            "connect-bad-fixed-flags",
            None,
            {
                let mut c = connect(4, "c", 2, &[]);
                c[0] = 0x11;
                c
            },
            Close,
        ),
        (
            "password-without-user-v4",
            None,
            connect_raw(b"MQTT", 4, 0x42, &[0, 1, b'c', 0, 1, b'p']),
            Close,
        ),
        (
            "will-qos-3",
            None,
            connect_raw(b"MQTT", 4, 0x1E, &[0, 1, b'c', 0, 1, b't', 0, 0]),
            Close,
        ),
        (
            "varint-too-long",
            None,
            vec![0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
            Close,
        ),
        (
            "client-id-not-utf8-v5",
            None,
            connect_raw(b"MQTT", 5, 2, &[0, 0, 2, 0xC3, 0x28]),
            Connack(0x81),
        ),
        // After CONNECT, 3.1.1: the connection is closed.
        (
            "second-connect-v4",
            Some(4),
            connect(4, "again", 2, &[]),
            Close,
        ),
        (
            "qos3-v4",
            Some(4),
            publish(false, 0b0110, "t", Some(1), &[], b"x"),
            Close,
        ),
        (
            "dup-on-qos0-v4",
            Some(4),
            publish(false, 0b1000, "t", None, &[], b"x"),
            Close,
        ),
        (
            "wildcard-topic-v4",
            Some(4),
            publish(false, 0, "a/+", None, &[], b"x"),
            Close,
        ),
        (
            "bad-utf8-topic-v4",
            Some(4),
            {
                let mut body = vec![0, 2, 0xC3, 0x28];
                body.push(b'x');
                packet(0x30, &body)
            },
            Close,
        ),
        (
            "nul-in-topic-v4",
            Some(4),
            publish(false, 0, "a\0b", None, &[], b"x"),
            Close,
        ),
        (
            "subscribe-flags-v4",
            Some(4),
            {
                let mut p = subscribe(false, 1, "a", 0);
                p[0] = 0x80;
                p
            },
            Close,
        ),
        (
            "subscribe-no-filters-v4",
            Some(4),
            packet(0x82, &[0, 1]),
            Close,
        ),
        (
            "subscribe-qos3-v4",
            Some(4),
            subscribe(false, 1, "a", 3),
            Close,
        ),
        (
            "packet-id-zero-v4",
            Some(4),
            publish(false, 0b0010, "t", Some(0), &[], b"x"),
            Close,
        ),
        (
            "server-only-packet-v4",
            Some(4),
            packet(0x20, &[0, 0]),
            Close,
        ),
        ("reserved-type-0-v4", Some(4), packet(0x00, &[]), Close),
        ("auth-in-v4", Some(4), packet(0xF0, &[]), Close),
        (
            "trailing-bytes-v4",
            Some(4),
            packet(0x40, &[0, 1, 0]),
            Close,
        ),
        // After CONNECT, 5.0: DISCONNECT with the reason code, then close.
        (
            "second-connect-v5",
            Some(5),
            connect(5, "again", 2, &[]),
            Disconnect(0x82),
        ),
        (
            "qos3-v5",
            Some(5),
            publish(true, 0b0110, "t", Some(1), &[], b"x"),
            Disconnect(0x81),
        ),
        (
            "wildcard-topic-v5",
            Some(5),
            publish(true, 0, "a/#", None, &[], b"x"),
            Disconnect(0x90),
        ),
        (
            "empty-topic-no-alias-v5",
            Some(5),
            publish(true, 0, "", None, &[], b"x"),
            Disconnect(0x82),
        ),
        (
            "alias-zero-v5",
            Some(5),
            publish(true, 0, "t", None, &[0x23, 0, 0], b"x"),
            Disconnect(0x94),
        ),
        (
            "bad-utf8-topic-v5",
            Some(5),
            packet(0x30, &[0, 2, 0xED, 0xA0, 0, b'x']),
            Disconnect(0x81),
        ),
        (
            "duplicate-property-v5",
            Some(5),
            publish(true, 0, "t", None, &[0x01, 0, 0x01, 0], b"x"),
            Disconnect(0x82),
        ),
        (
            "unknown-property-v5",
            Some(5),
            publish(true, 0, "t", None, &[0x7F, 0], b"x"),
            Disconnect(0x81),
        ),
        (
            "subscription-id-in-publish-v5",
            Some(5),
            publish(true, 0, "t", None, &[0x0B, 1], b"x"),
            Disconnect(0x82),
        ),
        (
            "subscribe-reserved-options-v5",
            Some(5),
            subscribe(true, 1, "a", 0xC0),
            Disconnect(0x81),
        ),
        (
            "retain-handling-3-v5",
            Some(5),
            subscribe(true, 1, "a", 0x30),
            Disconnect(0x82),
        ),
        (
            "no-local-on-shared-v5",
            Some(5),
            subscribe(true, 1, "$share/g/a", 0x04),
            Disconnect(0x82),
        ),
        (
            "bad-shared-filter-v5",
            Some(5),
            subscribe(true, 1, "$share/g", 0),
            Disconnect(0x8F),
        ),
        (
            "bad-filter-v5",
            Some(5),
            subscribe(true, 1, "a/#/b", 0),
            Disconnect(0x8F),
        ),
        (
            "auth-without-method-v5",
            Some(5),
            packet(0xF0, &[]),
            Disconnect(0x82),
        ),
        (
            "bad-disconnect-reason-v5",
            Some(5),
            packet(0xE0, &[0x03]),
            Disconnect(0x81),
        ),
        (
            "non-minimal-varint-v5",
            Some(5),
            vec![0xC0, 0x80, 0x00],
            Disconnect(0x81),
        ),
        (
            "property-runs-past-v5",
            Some(5),
            v5_props_empty(publish(true, 0, "t", None, &[0x03, 0, 9, b'a'], b"")),
            Disconnect(0x81),
        ),
    ];
    for (name, level, bytes, expected) in cases {
        check(&s, name, level, bytes, expected).await;
    }

    // Everyone else is fine and the stored session kept its message.
    publ.publish("ok/2", v4::QoS::AtLeastOnce, false, b"after")
        .await;
    assert_eq!(&bystander.publish_packet().await.payload[..], b"after");
    let (mut stored, ack) = v4::connect_with(o).await;
    assert!(ack.session_present);
    let got: Vec<Vec<u8>> = stored
        .publishes(2)
        .await
        .into_iter()
        .map(|p| p.payload.to_vec())
        .collect();
    assert_eq!(got, [b"before".to_vec(), b"after".to_vec()]);
    s.stop().await;
    assert_eq!(common::panics(), 0, "a connection task panicked");
}

#[tokio::test]
async fn oversized_packets_are_refused_from_their_header() {
    let s = Server::start_with(gw_mqtt::Config {
        max_packet_size: 1000,
        ..gw_mqtt::Config::default()
    })
    .await;
    // A header announcing 200 MB is refused at once, without waiting for the body.
    let mut raw = Raw::connect(s.addr).await;
    raw.send(&connect(4, "huge", 2, &[])).await;
    raw.packet().await;
    raw.send(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F]).await;
    assert_eq!(raw.closed().await, Vec::<u8>::new());
    let mut raw = Raw::connect(s.addr).await;
    raw.send(&connect(5, "huge5", 2, &[])).await;
    raw.packet().await;
    raw.send(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F]).await;
    let got = raw.closed().await;
    assert_eq!((got[0], got[2]), (0xE0, 0x95));
    // A CONNECT above the server's limit before login.
    let mut raw = Raw::connect(s.addr).await;
    let big = connect_raw(b"MQTT", 5, 2, &{
        let mut rest = vec![0];
        rest.extend(string(&[b'c'; 2000]));
        rest
    });
    raw.send(&big).await;
    let got = raw.closed().await;
    assert_eq!((got[0], got[3]), (0x20, 0x95), "{got:02x?}");
    s.stop().await;
}

#[tokio::test]
async fn silence_before_connect_is_closed() {
    let s = Server::start_with(gw_mqtt::Config {
        connect_timeout_ms: 300,
        ..gw_mqtt::Config::default()
    })
    .await;
    let mut raw = Raw::connect(s.addr).await;
    let started = std::time::Instant::now();
    assert_eq!(raw.closed().await, Vec::<u8>::new());
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    s.stop().await;
}
