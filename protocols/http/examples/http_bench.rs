//! HTTP door benchmark: DMS sends and consume+ack over HTTP/1.1 keep-alive
//! connections, long-poll wake-up latency, and many concurrent long polls.
//!
//! ```text
//! cargo run --release -p gw-http --example http_bench -- [options]
//!   --url http://127.0.0.1:8080   target a running door (else engine + router start in-process on a temp dir)
//!   --pid N                       the target's process id, to report its memory (long-poll phase)
//!   --msgs 200000 --batch 10 --big-batch 100 --size 256 --conns 16
//!   --rounds 200                  latency rounds
//!   --long-polls 2000             concurrent long polls (10000 needs --url: one process cannot hold 2×10k sockets)
//!   --only send|consume|big|latency|polls
//! ```
//! The in-process server raises `max_messages_per_send` to `--big-batch`; an
//! external gateway must be started so (`[http] max_messages_per_send = 100`
//! in its `--config` file).
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::json;

struct Args {
    url: Option<String>,
    pid: Option<u32>,
    msgs: usize,
    batch: usize,
    big_batch: usize,
    size: usize,
    conns: usize,
    rounds: usize,
    long_polls: usize,
    only: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        url: None,
        pid: None,
        msgs: 200_000,
        batch: 10,
        big_batch: 100,
        size: 256,
        conns: 16,
        rounds: 200,
        long_polls: 2_000,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_default();
        let n = || {
            v.parse::<usize>()
                .unwrap_or_else(|_| panic!("{k} takes a number"))
        };
        match k.as_str() {
            "--url" => a.url = Some(v.trim_end_matches('/').to_owned()),
            "--pid" => a.pid = Some(n() as u32),
            "--msgs" => a.msgs = n(),
            "--batch" => a.batch = n(),
            "--big-batch" => a.big_batch = n(),
            "--size" => a.size = n(),
            "--conns" => a.conns = n(),
            "--rounds" => a.rounds = n(),
            "--long-polls" => a.long_polls = n(),
            "--only" => a.only = Some(v),
            other => panic!("unknown option {other}; see the comment at the top of http_bench.rs"),
        }
    }
    a
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    tx: SendRequest<Full<Bytes>>,
}

const AUTH: &str = "Basic Z3Vlc3Q6Z3Vlc3Q="; // guest:guest

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        let s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
            .await
            .unwrap();
        tokio::spawn(conn);
        Conn { tx }
    }

    async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> (StatusCode, Bytes) {
        self.tx.ready().await.unwrap();
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "bench")
            .header("authorization", AUTH);
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(Full::new(body.unwrap_or_default())).unwrap();
        let res = self.tx.send_request(req).await.unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (status, bytes)
    }

    async fn json(
        &mut self,
        method: Method,
        path: &str,
        body: serde_json::Value,
    ) -> serde_json::Value {
        let (s, b) = self
            .call(method, path, Some(Bytes::from(body.to_string())))
            .await;
        assert!(
            s.is_success(),
            "{path}: {s} {}",
            String::from_utf8_lossy(&b)
        );
        serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Deserialize)]
struct Item {
    handler: String,
}

fn percentiles(mut v: Vec<Duration>) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.sort_unstable();
    let p = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    format!(
        "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        p(0.5).as_secs_f64() * 1e3,
        p(0.9).as_secs_f64() * 1e3,
        p(0.99).as_secs_f64() * 1e3,
        v[v.len() - 1].as_secs_f64() * 1e3
    )
}

async fn queue(addr: SocketAddr, name: &str) -> String {
    let mut c = Conn::open(addr).await;
    let _ = c
        .call(Method::DELETE, &format!("/v1.0/%2F/queues/{name}"), None)
        .await;
    let id = c
        .json(Method::POST, "/v1.0/%2F/queues", json!({"name": name}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    c.json(
        Method::POST,
        &format!("/v1.0/%2F/queues/{id}/groups"),
        json!({"groups": [{"name": "g"}]}),
    )
    .await;
    id
}

/// Sends `msgs` messages in batches over `conns` connections; returns msg/s.
async fn send(
    addr: SocketAddr,
    queue: &str,
    msgs: usize,
    batch: usize,
    size: usize,
    conns: usize,
) -> f64 {
    let body_text = "x".repeat(size);
    let batch_json: Vec<_> = (0..batch).map(|_| json!({"body": body_text})).collect();
    let body = Bytes::from(json!({"messages": batch_json}).to_string());
    let remaining = Arc::new(AtomicI64::new(msgs as i64));
    let sent = Arc::new(AtomicU64::new(0));
    let path = format!("/v1.0/%2F/queues/{queue}/messages");
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (remaining, sent, body, path) =
            (remaining.clone(), sent.clone(), body.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(addr).await;
            let mut lat = Vec::new();
            while remaining.fetch_sub(batch as i64, Ordering::Relaxed) > 0 {
                let t = Instant::now();
                let (s, b) = c.call(Method::POST, &path, Some(body.clone())).await;
                assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
                lat.push(t.elapsed());
                sent.fetch_add(batch as u64, Ordering::Relaxed);
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let secs = t0.elapsed().as_secs_f64();
    let n = sent.load(Ordering::Relaxed);
    let rate = n as f64 / secs;
    println!(
        "send   batch {batch:>3} × {size} B, {conns} conns: {n} msgs in {secs:.2} s = {rate:.0} msg/s ({:.0} req/s); request {}",
        n as f64 / batch as f64 / secs,
        percentiles(lat)
    );
    rate
}

/// Consumes and acks `msgs` messages of group g; returns msg/s.
async fn consume(addr: SocketAddr, queue: &str, msgs: usize, batch: usize, conns: usize) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let done = done.clone();
        let get =
            format!("/v1.0/%2F/queues/{queue}/groups/g/messages?max_msgs={batch}&time_wait=1");
        let ack = format!("/v1.0/%2F/queues/{queue}/groups/g/ack");
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(addr).await;
            let mut lat = Vec::new();
            while done.load(Ordering::Relaxed) < msgs as u64 {
                let t = Instant::now();
                let (s, b) = c.call(Method::GET, &get, None).await;
                assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
                let items: Vec<Item> = serde_json::from_slice(&b).unwrap();
                if items.is_empty() {
                    continue;
                }
                let entries: Vec<_> = items
                    .iter()
                    .map(|i| json!({"handler": i.handler, "status": "success"}))
                    .collect();
                let (s, b) = c
                    .call(
                        Method::POST,
                        &ack,
                        Some(Bytes::from(json!({"message": entries}).to_string())),
                    )
                    .await;
                assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
                lat.push(t.elapsed());
                done.fetch_add(items.len() as u64, Ordering::Relaxed);
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let secs = t0.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    let rate = n as f64 / secs;
    println!(
        "consume+ack max_msgs {batch}, {conns} conns: {n} msgs in {secs:.2} s = {rate:.0} msg/s; consume+ack round trip {}",
        percentiles(lat)
    );
    rate
}

/// Time from the start of a send to a waiting long poll's answer.
async fn latency(addr: SocketAddr, rounds: usize) {
    let q = queue(addr, "bench-latency").await;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Instant>(1);
    let consumer = {
        let q = q.clone();
        tokio::spawn(async move {
            let mut c = Conn::open(addr).await;
            let get = format!("/v1.0/%2F/queues/{q}/groups/g/messages?max_msgs=1&time_wait=10");
            let ack = format!("/v1.0/%2F/queues/{q}/groups/g/ack");
            for _ in 0..rounds {
                let (_, b) = c.call(Method::GET, &get, None).await;
                let at = Instant::now();
                let items: Vec<Item> = serde_json::from_slice(&b).unwrap();
                assert_eq!(items.len(), 1);
                tx.send(at).await.unwrap();
                let body = json!({"message": [{"handler": items[0].handler, "status": "success"}]});
                c.call(Method::POST, &ack, Some(Bytes::from(body.to_string())))
                    .await;
            }
        })
    };
    let mut sender = Conn::open(addr).await;
    let body = Bytes::from(json!({"messages": [{"body": "x".repeat(256)}]}).to_string());
    let path = format!("/v1.0/%2F/queues/{q}/messages");
    let (mut wake, mut confirm) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        // Let the consumer get back into its long poll.
        tokio::time::sleep(Duration::from_millis(15)).await;
        let t0 = Instant::now();
        let (s, _) = sender.call(Method::POST, &path, Some(body.clone())).await;
        assert_eq!(s, StatusCode::OK);
        confirm.push(t0.elapsed());
        let at = rx.recv().await.unwrap();
        wake.push(at.saturating_duration_since(t0));
    }
    consumer.await.unwrap();
    println!(
        "latency send start → long poll answer ({rounds} rounds): {}",
        percentiles(wake)
    );
    println!(
        "latency send start → send answered (durable):       {}",
        percentiles(confirm)
    );
}

fn rss_kib(pid: Option<u32>) -> u64 {
    let path = pid.map_or_else(
        || "/proc/self/status".to_owned(),
        |p| format!("/proc/{p}/status"),
    );
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Holds `n` long polls at once on an empty group, then wakes one.
async fn long_polls(addr: SocketAddr, n: usize, pid: Option<u32>) {
    let q = queue(addr, "bench-polls").await;
    let before = rss_kib(pid);
    let path = format!("/v1.0/%2F/queues/{q}/groups/g/messages?max_msgs=1&time_wait=30");
    let t0 = Instant::now();
    let got = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (path, got) = (path.clone(), got.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(addr).await;
            let (s, b) = c.call(Method::GET, &path, None).await;
            let items: Vec<Item> = serde_json::from_slice(&b).unwrap_or_default();
            if !items.is_empty() {
                got.fetch_add(1, Ordering::Relaxed);
            }
            (s, Instant::now())
        }));
        if i % 500 == 499 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Wait until the server reports them all waiting.
    let mut admin = Conn::open(addr).await;
    let waiting = loop {
        let (_, b) = admin.call(Method::GET, "/metrics", None).await;
        let text = String::from_utf8_lossy(&b).to_string();
        let w: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("gateway_http_long_polls "))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if w as usize >= n || t0.elapsed() > Duration::from_secs(25) {
            break w;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let held = t0.elapsed();
    let after = rss_kib(pid);
    let whose = if pid.is_some() {
        "server"
    } else {
        "this process (client + server)"
    };
    println!(
        "long polls: {waiting} of {n} waiting after {:.2} s; RSS of {whose} {} MiB → {} MiB ({:.1} KiB per poll)",
        held.as_secs_f64(),
        before / 1024,
        after / 1024,
        after.saturating_sub(before) as f64 / n as f64
    );
    let t = Instant::now();
    admin
        .json(
            Method::POST,
            &format!("/v1.0/%2F/queues/{q}/messages"),
            json!({"messages": [{"body": "wake"}]}),
        )
        .await;
    while got.load(Ordering::Relaxed) == 0 && t.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    println!(
        "long polls: one message woke one of {n} waiting polls after {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    for task in tasks {
        task.abort();
    }
}

fn start_in_process(big_batch: usize) -> (SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let engine = gw_core::Engine::open(gw_core::EngineConfig::new(path)).unwrap();
            let config = gw_http::Config {
                max_messages_per_send: big_batch.max(10),
                max_connections: 9_000,
                max_long_polls: 8_000,
                ..gw_http::Config::default()
            };
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let (shutdown, tracker) = (
                tokio_util::sync::CancellationToken::new(),
                tokio_util::task::TaskTracker::new(),
            );
            let door =
                gw_http::HttpDoor::new(engine, config, shutdown.clone(), tracker.clone(), None)
                    .unwrap();
            let permits = gw_listen::Permits::for_door(&door);
            gw_listen::serve_listener(listener, door, permits, shutdown, tracker).await;
        });
    });
    (rx.recv().unwrap(), dir)
}

fn main() {
    let a = args();
    let (addr, _dir) = match &a.url {
        Some(u) => {
            let hostport = u.trim_start_matches("http://");
            (
                hostport
                    .parse::<SocketAddr>()
                    .expect("--url http://IP:PORT"),
                None,
            )
        }
        None => {
            let (addr, dir) = start_in_process(a.big_batch);
            (addr, Some(dir))
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let run = |phase: &str| a.only.as_deref().is_none_or(|o| o == phase);
        println!(
            "target http://{addr} ({} cores)",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        if run("send") || run("consume") {
            let q = queue(addr, "bench").await;
            if run("send") || run("consume") {
                send(addr, &q, a.msgs, a.batch, a.size, a.conns).await;
            }
            if run("consume") {
                consume(addr, &q, a.msgs, a.batch, a.conns).await;
            }
        }
        if run("big") {
            let q = queue(addr, "bench-big").await;
            send(
                addr,
                &q,
                a.msgs.max(a.big_batch * a.conns * 10),
                a.big_batch,
                a.size,
                a.conns,
            )
            .await;
        }
        if run("latency") {
            latency(addr, a.rounds).await;
        }
        if run("polls") {
            long_polls(addr, a.long_polls, a.pid).await;
        }
    });
}
