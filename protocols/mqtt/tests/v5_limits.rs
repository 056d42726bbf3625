//! MQTT 5 flow limits over raw bytes and rumqttc: topic aliases both ways,
//! Receive Maximum and Maximum Packet Size both ways.
#![allow(clippy::unwrap_used)]

mod common;

use common::v5::{self, QoS};
use common::{Raw, Server, packet, publish, raw_connected, subscribe};
use gw_mqtt::Config;

#[tokio::test]
async fn topic_aliases_from_the_client() {
    let s = Server::start().await;
    let mut sub = v5::connect(s.addr, "sub").await;
    sub.subscribe("alias/#", QoS::AtMostOnce).await;
    let (mut raw, _) = raw_connected(s.addr, 5, "aliaser", 0x02, &[]).await;
    raw.send(&publish(true, 0, "alias/one", None, &[0x23, 0, 1], b"a"))
        .await;
    raw.send(&publish(true, 0, "", None, &[0x23, 0, 1], b"b"))
        .await;
    for payload in [&b"a"[..], b"b"] {
        let p = sub.publish_packet().await;
        assert_eq!((&p.topic[..], &p.payload[..]), (&b"alias/one"[..], payload));
    }
    // An alias nobody set: protocol error.
    raw.send(&publish(true, 0, "", None, &[0x23, 0, 2], b"c"))
        .await;
    let got = raw.closed().await;
    assert_eq!((got[0], got[2]), (0xE0, 0x82), "{got:02x?}");
    // Above our maximum (64 by default): 0x94 [MQTT-3.3.2-9].
    let (mut raw, _) = raw_connected(s.addr, 5, "aliaser2", 0x02, &[]).await;
    raw.send(&publish(true, 0, "alias/x", None, &[0x23, 0, 65], b"d"))
        .await;
    let got = raw.closed().await;
    assert_eq!((got[0], got[2]), (0xE0, 0x94), "{got:02x?}");
    sub.no_publish().await;
    s.stop().await;
}

#[tokio::test]
async fn topic_aliases_to_the_client() {
    let s = Server::start().await;
    let mut o = v5::options(s.addr, "aliased");
    o.set_topic_alias_max(Some(2));
    let (mut sub, _) = v5::connect_with(o).await;
    sub.subscribe("ta/#", QoS::AtMostOnce).await;
    let publ = v5::connect(s.addr, "pub").await;
    for topic in ["ta/1", "ta/1", "ta/2", "ta/3", "ta/3"] {
        publ.client
            .publish(topic, QoS::AtMostOnce, false, topic)
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut known = std::collections::HashMap::new();
    for _ in 0..5 {
        let p = sub.publish_packet().await;
        let alias = p.properties.and_then(|p| p.topic_alias);
        seen.push((alias, p.topic.is_empty()));
        let topic = match (alias, p.topic.is_empty()) {
            (Some(a), true) => known.get(&a).cloned().expect("alias known to the client"),
            (Some(a), false) => {
                known.insert(a, p.topic.clone());
                p.topic.clone()
            }
            (None, _) => p.topic.clone(),
        };
        assert_eq!(topic, p.payload);
    }
    // New topics come with their alias, repeats with the alias alone; once
    // both aliases are in use the oldest is reassigned.
    assert_eq!(
        seen,
        [
            (Some(1), false),
            (Some(1), true),
            (Some(2), false),
            (Some(1), false),
            (Some(1), true)
        ]
    );
    s.stop().await;
}

#[tokio::test]
async fn receive_maximum_of_the_client_is_honoured() {
    let s = Server::start().await;
    // CONNECT with Receive Maximum 2.
    let (mut raw, _) = raw_connected(s.addr, 5, "slow", 0x02, &[0x21, 0, 2]).await;
    raw.send(&subscribe(true, 1, "rm", 1)).await;
    raw.packet().await;
    let publ = v5::connect(s.addr, "pub").await;
    for i in 0..5u8 {
        publ.client
            .publish("rm", QoS::AtLeastOnce, false, vec![i])
            .await
            .unwrap();
    }
    let a = raw.packet().await;
    let b = raw.packet().await;
    assert_eq!((a[0], b[0]), (0x32, 0x32));
    // No third one while two are unacknowledged.
    raw.send(&packet(0xC0, &[])).await;
    assert_eq!(raw.packet().await, [0xD0, 0]);
    let pid = |p: &[u8]| [p[6], p[7]];
    raw.send(&packet(0x40, &pid(&a))).await;
    let c = raw.packet().await;
    assert_eq!(c[0], 0x32);
    assert_eq!(*c.last().unwrap(), 2);
    s.stop().await;
}

#[tokio::test]
async fn receive_maximum_of_the_server_is_enforced() {
    let config = Config {
        receive_maximum: 2,
        ..Config::default()
    };
    let s = Server::start_with(config).await;
    let (mut raw, _) = raw_connected(s.addr, 5, "greedy", 0x02, &[]).await;
    for pid in 1..=2u16 {
        raw.send(&publish(true, 0b0100, "q2", Some(pid), &[], b"x"))
            .await;
        assert_eq!(raw.packet().await[0], 0x50);
    }
    // A third QoS 2 publish before any PUBREL [MQTT-3.3.4-9].
    raw.send(&publish(true, 0b0100, "q2", Some(3), &[], b"x"))
        .await;
    let got = raw.closed().await;
    assert_eq!((got[0], got[2]), (0xE0, 0x93), "{got:02x?}");
    s.stop().await;
}

/// A server whose store syncs at most every half second: PUBACKs of stored
/// QoS 1 publishes wait that long, so a client cannot have them back before
/// it sends more.
async fn slow_acking_server(receive_maximum: u16) -> Server {
    let config = Config {
        receive_maximum,
        ..Config::default()
    };
    Server::start_with_engine(config, |e| {
        e.sync = gw_core::SyncPolicy::Batch(std::time::Duration::from_millis(500));
    })
    .await
}

/// A persistent session subscribed to `filter` at QoS 1, so QoS 1 publishes
/// are stored (and their PUBACKs wait for the store).
async fn keeper(s: &Server, id: &str, filter: &str) -> Raw {
    // Session Expiry Interval 300 s, no clean start.
    let (mut raw, _) = raw_connected(s.addr, 5, id, 0x00, &[0x11, 0, 0, 1, 44]).await;
    raw.send(&subscribe(true, 1, filter, 1)).await;
    assert_eq!(raw.packet().await[0], 0x90);
    raw
}

#[tokio::test]
async fn receive_maximum_abuse_with_qos1_gets_disconnect_0x93() {
    let s = slow_acking_server(2).await;
    let mut kept = keeper(&s, "keeper", "flood/#").await;
    let (mut raw, connack) = raw_connected(s.addr, 5, "flooder", 0x02, &[]).await;
    // CONNACK announces Receive Maximum 2 (property 0x21).
    assert!(
        connack.windows(3).any(|w| w == [0x21, 0, 2]),
        "{connack:02x?}"
    );
    // Five QoS 1 publishes at once, the third beyond the window
    // [MQTT-3.3.4-8]: DISCONNECT 0x93, then the socket closes [MQTT-3.3.4-7].
    let mut burst = Vec::new();
    for pid in 1..=5u16 {
        burst.extend(publish(
            true,
            0b0010,
            "flood/x",
            Some(pid),
            &[],
            &[pid as u8],
        ));
    }
    raw.send(&burst).await;
    let got = raw.closed().await;
    // The two accepted publishes are acknowledged before the close (issue
    // 16: nothing stored is left for the client to republish).
    let (acked, got) = leading_pubacks(&got);
    assert_eq!(acked, [1, 2], "{got:02x?}");
    assert_eq!((got[0], got[2]), (0xE0, 0x93), "{got:02x?}");
    // What was accepted before the abuse is kept; nothing after it.
    for want in [1u8, 2] {
        let p = kept.packet().await;
        assert_eq!((p[0] & 0xF0, *p.last().unwrap()), (0x30, want), "{p:02x?}");
        raw_ack(&mut kept, &p).await;
    }
    kept.send(&packet(0xC0, &[])).await;
    assert_eq!(kept.packet().await, [0xD0, 0], "no third message");
    s.stop().await;
}

#[tokio::test]
async fn a_flood_past_receive_maximum_still_reads_the_disconnect() {
    // Far more than the window in one write: the server stops reading at the
    // violation with much of the flood unread, and must still get its
    // DISCONNECT to the client before the connection goes.
    let s = slow_acking_server(4).await;
    let _kept = keeper(&s, "keeper2", "deluge/#").await;
    let (raw, _) = raw_connected(s.addr, 5, "deluge", 0x02, &[]).await;
    let mut burst = Vec::new();
    for pid in 1..=2000u16 {
        burst.extend(publish(
            true,
            0b0010,
            "deluge/x",
            Some(pid),
            &[],
            &[0u8; 100],
        ));
    }
    let (mut rd, mut wr) = raw.stream.into_split();
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let _ = wr.write_all(&burst).await;
        wr
    });
    let mut got = Vec::new();
    let read = async {
        use tokio::io::AsyncReadExt;
        let mut chunk = [0u8; 4096];
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(k) => got.extend_from_slice(&chunk[..k]),
            }
        }
    };
    tokio::time::timeout(common::WAIT, read).await.unwrap();
    let (acked, got) = leading_pubacks(&got);
    assert_eq!(
        acked,
        [1, 2, 3, 4],
        "the accepted ones, acknowledged before the close"
    );
    assert!(got.len() >= 3, "nothing before the close: {got:02x?}");
    assert_eq!((got[0], got[2]), (0xE0, 0x93), "{got:02x?}");
    let _ = writer.await;
    s.stop().await;
}

/// The packet ids of the PUBACKs (reason 0 and no properties) `got` starts
/// with, and what follows them.
fn leading_pubacks(mut got: &[u8]) -> (Vec<u16>, &[u8]) {
    let mut pids = Vec::new();
    while got.len() >= 4 && got[..2] == [0x40, 0x02] {
        pids.push(u16::from_be_bytes([got[2], got[3]]));
        got = &got[4..];
    }
    (pids, got)
}

/// PUBACK for a QoS 1 PUBLISH a raw client received.
async fn raw_ack(raw: &mut Raw, publish: &[u8]) {
    let topic_len = usize::from(u16::from_be_bytes([publish[2], publish[3]]));
    let at = 4 + topic_len;
    raw.send(&packet(0x40, &publish[at..at + 2])).await;
}

#[tokio::test]
async fn maximum_packet_size_both_ways() {
    let config = Config {
        max_packet_size: 1024,
        ..Config::default()
    };
    let s = Server::start_with(config).await;
    // Ours: a larger packet gets DISCONNECT 0x95.
    let (mut raw, _) = raw_connected(s.addr, 5, "big", 0x02, &[]).await;
    raw.send(&publish(true, 0, "big", None, &[], &[b'x'; 2000]))
        .await;
    let got = raw.closed().await;
    assert_eq!((got[0], got[2]), (0xE0, 0x95), "{got:02x?}");
    // Theirs (Maximum Packet Size 100): a larger message is dropped, not sent.
    let (mut raw, _) = raw_connected(s.addr, 5, "small", 0x02, &[0x27, 0, 0, 0, 100]).await;
    raw.send(&subscribe(true, 1, "mp", 1)).await;
    raw.packet().await;
    let publ = v5::connect(s.addr, "pub").await;
    publ.client
        .publish("mp", QoS::AtLeastOnce, false, vec![1u8; 500])
        .await
        .unwrap();
    publ.client
        .publish("mp", QoS::AtLeastOnce, false, vec![2u8; 10])
        .await
        .unwrap();
    let p = raw.packet().await;
    assert!(p.len() <= 100);
    assert_eq!(*p.last().unwrap(), 2);
    s.stop().await;
}
