//! The door's lifecycle: shutdown closes every connection promptly (MQTT 5
//! with DISCONNECT 0x8B), an operator's close sends 0x98, and a connection
//! served by `MqttDoor::serve` on a non-TCP stream (the WebSocket path)
//! behaves like TCP.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Server, v4, v5};

#[tokio::test]
async fn shutdown_disconnects_everyone_promptly() {
    let s = Server::start().await;
    let mut c5 = v5::connect(s.addr, "five").await;
    c5.subscribe("x", v5::QoS::AtLeastOnce).await;
    let mut c4 = v4::connect(s.addr, "four").await;
    let mut o = v5::options(s.addr, "kept");
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(600));
    let (mut kept, _) = v5::connect_with(o).await;
    kept.subscribe("kept", v5::QoS::AtLeastOnce).await;
    let started = Instant::now();
    let dir = s.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let (_, e) = c5.closed().await;
    assert!(e.contains("ServerShuttingDown"), "{e}");
    c4.closed().await;
    drop(dir);
}

#[tokio::test]
async fn an_operator_can_close_a_connection() {
    let s = Server::start().await;
    let mut c = v5::connect(s.addr, "closeme").await;
    let id = common::eventually("connection listed", || {
        s.engine
            .connections()
            .into_iter()
            .find(|c| c.client == "closeme")
            .map(|c| c.id)
    })
    .await;
    s.engine.close_connection(id, "maintenance").unwrap();
    let (_, e) = c.closed().await;
    assert!(e.contains("AdministrativeAction"), "{e}");
    common::eventually("connection gone", || {
        s.engine
            .connections()
            .iter()
            .all(|c| c.client != "closeme")
            .then_some(())
    })
    .await;
    s.stop().await;
}

#[tokio::test]
async fn the_door_serves_any_byte_stream() {
    // The HTTP door hands WebSocket connections over as byte streams; here an
    // in-memory duplex stream stands for one.
    let dir = tempfile::tempdir().unwrap();
    let engine = gw_core::Engine::open(gw_core::EngineConfig::new(dir.path())).unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (client_side, server_side) = tokio::io::duplex(4096);
    let peer = "127.0.0.1:50000".parse().unwrap();
    let door = gw_mqtt::MqttDoor::new(engine.clone(), gw_mqtt::Config::default(), shutdown.clone());
    let task = tokio::spawn(gw_listen::Door::serve(&door, server_side, peer));
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut rd, mut wr) = tokio::io::split(client_side);
    wr.write_all(&common::connect(5, "ws-like", 0x02, &[]))
        .await
        .unwrap();
    wr.write_all(&common::subscribe(true, 1, "ws/t", 0))
        .await
        .unwrap();
    let mut buf = vec![0u8; 256];
    let mut got = Vec::new();
    while got.len() < 2 || common::packet_len(&got).is_none_or(|n| got.len() < n + 6) {
        let n = tokio::time::timeout(common::WAIT, rd.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        got.extend_from_slice(&buf[..n]);
        if got.len() >= 4 && got[0] == 0x20 {
            let connack = common::packet_len(&got).unwrap();
            if got.len() > connack && got[connack] == 0x90 {
                break;
            }
        }
    }
    assert_eq!(got[0], 0x20);
    let tenant = engine.tenant("/").unwrap();
    let mut m = gw_core::Message::new("over the stream");
    m.exchange = "amq.topic".into();
    m.routing_key = "ws.t".into();
    tenant.publish(m).unwrap();
    let mut more = Vec::new();
    while !more.windows(15).any(|w| w == b"over the stream") {
        let n = tokio::time::timeout(common::WAIT, rd.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        more.extend_from_slice(&buf[..n]);
    }
    shutdown.cancel();
    tokio::time::timeout(common::WAIT, task)
        .await
        .unwrap()
        .unwrap();
    engine.close();
}

/// CPU time (user + system) of this process so far.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

#[tokio::test]
async fn quiet_connections_do_not_spin() {
    // A client holding an unacknowledged QoS 1 delivery and doing nothing
    // else: its connection waits (keep alive, quiet timer) without busy looping.
    let s = Server::start().await;
    let (mut raw, _) = common::raw_connected(s.addr, 4, "holder", 0x02, &[]).await;
    raw.send(&common::subscribe(false, 1, "hold", 1)).await;
    raw.packet().await;
    let mut publ = v4::connect(s.addr, "pub").await;
    publ.publish("hold", v4::QoS::AtLeastOnce, false, b"unacked")
        .await;
    raw.packet().await;
    let before = cpu_time();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let used = cpu_time() - before;
    assert!(
        used < Duration::from_millis(500),
        "{used:?} of CPU while idle"
    );
    s.stop().await;
}
