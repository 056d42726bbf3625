//! The real binary under a lowered descriptor limit (`prlimit`): it raises
//! its soft limit to the hard one, derives every door's cap from it, and a
//! flood over the caps is refused at once in each protocol's terms (none
//! left hanging); afterwards the store still takes a confirmed publish, a
//! consumer gets it and /readyz is 200. Also: a second SIGTERM during the
//! graceful shutdown exits 143.
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Process, binary, clean, wait_for};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The limits the gateway is started with: soft 256, hard 512.
const SOFT: u64 = 256;
const HARD: u64 = 512;
/// What fd_limit.rs derives from 512 for three doors: a reserve of 256,
/// 85 descriptors a door, 5 of them for refusals.
const CAP: usize = 80;
/// Any one connection's answer must come within this (a hang bound, not a
/// speed figure: the example `refusal_latency` measures those).
const BOUND: Duration = Duration::from_secs(10);

/// Handshakes that take long: the connections holding the doors full are
/// plain sockets that never finish theirs.
const SLOW_HANDSHAKES: &str = "\
[amqp]
handshake_timeout_secs = 300
[mqtt]
connect_timeout_ms = 300000
[http]
header_read_timeout_secs = 300
";

fn prlimit() -> Option<Command> {
    let ok = Command::new("prlimit")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipped: the prlimit tool (util-linux) is not installed");
        return None;
    }
    let mut c = clean(Command::new("prlimit"));
    c.arg(format!("--nofile={SOFT}:{HARD}"))
        .arg("--")
        .arg(binary());
    Some(c)
}

/// How a door answered a connection over its cap.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// In the protocol's terms (AMQP 530, CONNACK 0x97/0x03, HTTP 503).
    Refused,
    /// Closed without an answer (too many refusals under way).
    Closed,
}

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(BOUND, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no answer within {BOUND:?} (hung)"),
    }
}

/// Everything the server sends until it closes.
async fn read_all(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// An MQTT CONNECT of protocol level 4 (3.1.1) or 5, clean, keep alive 60 s.
fn connect_packet(level: u8, client_id: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', level, 0x02, 0, 60];
    if level == 5 {
        body.push(0);
    }
    body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend(body);
    packet
}

/// Plain sockets that hold `n` of a door's connections (they never finish
/// their handshake; the slow handshakes above keep them).
async fn fill(addr: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_over_the_caps_is_refused_at_once_and_the_store_keeps_working() {
    let Some(command) = prlimit() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, SLOW_HANDSHAKES).unwrap();
    let data = dir.path().join("data");
    let gw = Process::start_command(command, &data, &["--config", config.to_str().unwrap()]);
    wait_for(&gw.logs, "connection caps from the file descriptor limit");
    assert_eq!(
        gw.logged(&format!("raised from {SOFT} to {HARD}")).len(),
        1,
        "{:?}",
        gw.logged("file descriptor")
    );
    let caps = gw.logged("connection caps from the file descriptor limit");
    assert!(
        caps[0].contains(&format!("amqp {CAP}, mqtt {CAP}, http {CAP}")),
        "{caps:?}"
    );

    // Each door full, then more: one at a time, each is refused in its
    // protocol's terms.
    let held = [
        fill(gw.amqp, CAP).await,
        fill(gw.mqtt, CAP).await,
        fill(gw.http, CAP).await,
    ];
    let probe = Probe {
        amqp: gw.amqp,
        mqtt: gw.mqtt,
        http: gw.http,
    };
    for i in 0..10 {
        assert_eq!(probe.amqp().await, Answer::Refused, "AMQP {i}");
        let level = if i % 2 == 0 { 5 } else { 4 };
        assert_eq!(probe.mqtt(level, i).await, Answer::Refused, "MQTT {i}");
        assert_eq!(probe.http().await, Answer::Refused, "HTTP {i}");
    }
    // At once, 3 × 60 more: each refused or closed, none left hanging.
    let mut burst = Vec::new();
    for i in 0..60 {
        burst.push(tokio::spawn({
            async move {
                (
                    probe.amqp().await,
                    probe.mqtt(5, i).await,
                    probe.http().await,
                )
            }
        }));
    }
    let (mut refused, mut closed) = (0, 0);
    for b in burst {
        let (a, m, h) = b.await.unwrap();
        for answer in [a, m, h] {
            match answer {
                Answer::Refused => refused += 1,
                Answer::Closed => closed += 1,
            }
        }
    }
    eprintln!("burst of 180 over the caps: {refused} refused in protocol terms, {closed} closed");
    assert_eq!(refused + closed, 180);
    // One warning line per door for the whole flood, not one per connection.
    for door in ["amqp", "mqtt", "http"] {
        let lines = gw.logged(&format!("{door} max_connections ({CAP}) reached"));
        assert!(
            (1..=2).contains(&lines.len()),
            "{door}: {} warnings",
            lines.len()
        );
    }
    assert!(
        gw.logged("accept failed").is_empty(),
        "{:?}",
        gw.logged("accept failed")
    );

    // The flood over: a confirmed publish and a consume, and ready.
    drop(held);
    let conn = bounded("AMQP after the flood", async {
        loop {
            let uri = format!("amqp://guest:guest@{}/%2f", gw.amqp);
            match lapin::Connection::connect(&uri, lapin::ConnectionProperties::default()).await {
                Ok(c) => return c,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(Default::default()).await.unwrap();
    let durable = lapin::options::QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare("after-flood".into(), durable, Default::default())
        .await
        .unwrap();
    let confirm = ch
        .basic_publish(
            "".into(),
            "after-flood".into(),
            Default::default(),
            b"still here",
            lapin::BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack(), "{confirm:?}");
    let mut consumer = ch
        .basic_consume(
            "after-flood".into(),
            "c".into(),
            lapin::options::BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
    let delivery = bounded("the delivery", consumer.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(delivery.data, b"still here");
    let ready = reqwest::get(format!("http://{}/readyz", gw.http))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    drop(conn);
    let status = gw.terminate();
    assert!(status.success(), "{status:?}");
}

/// Connections over a door's cap, and how each was answered.
#[derive(Clone, Copy)]
struct Probe {
    amqp: std::net::SocketAddr,
    mqtt: std::net::SocketAddr,
    http: std::net::SocketAddr,
}

impl Probe {
    async fn amqp(&self) -> Answer {
        let uri = format!("amqp://guest:guest@{}/%2f", self.amqp);
        match bounded(
            "AMQP",
            lapin::Connection::connect(&uri, lapin::ConnectionProperties::default()),
        )
        .await
        {
            Ok(_) => panic!("AMQP connection over the cap was opened"),
            Err(e) if format!("{e:?}").contains("NOT_ALLOWED") => Answer::Refused,
            Err(_) => Answer::Closed,
        }
    }

    /// CONNACK 0x97 Quota exceeded (5.0) or 0x03 Server unavailable (3.1.1).
    async fn mqtt(&self, level: u8, i: usize) -> Answer {
        let mut s = TcpStream::connect(self.mqtt).await.unwrap();
        let _ = s
            .write_all(&connect_packet(level, &format!("extra-{i}")))
            .await;
        let got = bounded("MQTT", read_all(&mut s)).await;
        let want = if level == 5 { 0x97 } else { 0x03 };
        match got.as_slice() {
            [] => Answer::Closed,
            [0x20, _, _, code, ..] if *code == want => Answer::Refused,
            other => panic!("MQTT {level} answer {other:?}"),
        }
    }

    async fn http(&self) -> Answer {
        let mut s = TcpStream::connect(self.http).await.unwrap();
        let _ = s
            .write_all(b"GET /readyz HTTP/1.1\r\nhost: gw\r\n\r\n")
            .await;
        let got = bounded("HTTP", read_all(&mut s)).await;
        if got.is_empty() {
            return Answer::Closed;
        }
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 503"), "{text}");
        Answer::Refused
    }
}

#[test]
fn a_second_sigterm_during_the_graceful_shutdown_exits_143() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = Process::start_with(dir.path(), &["--shutdown-grace", "60"]);
    // A request whose body never comes: the HTTP door lets it finish for
    // a few seconds, so the graceful shutdown does not end at once.
    let mut held = std::net::TcpStream::connect(gw.http).unwrap();
    use std::io::Write;
    held.write_all(
        b"POST /v1.0/%2F/queues HTTP/1.1\r\nhost: gw\r\nauthorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    gw.send_sigterm();
    wait_for(&gw.logs, "shutting down");
    let at = Instant::now();
    gw.send_sigterm();
    let status = gw.child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "{status:?}");
    assert!(at.elapsed() < BOUND, "{:?}", at.elapsed());
    assert!(
        gw.logged("store flushed and closed").is_empty(),
        "the shutdown finished before the second signal: the test held nothing open"
    );
    drop(held);
}
