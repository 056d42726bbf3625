//! What a request's authentication costs: DMS sends in batches of 10 over
//! keep-alive HTTP/1.1 connections, once per way of proving who sends —
//! HTTP Basic (the door caches a checked password by digest), an AK/SK
//! signature (`SDK-HMAC-SHA256`, signed per request here as the Huawei SDK
//! does, and verified per request by the door: SHA-256 of the body, HMAC of
//! the canonical request) and a Keystone token (`X-Auth-Token`, looked up by
//! its digest). Prints msg/s and request latency per mode.
//!
//! ```text
//! cargo run --release -p gw-http --example auth_bench -- [--msgs 100000] [--conns 8] [--size 256]
//! ```
//! Engine and door run in this process on a temp dir (client and server
//! share the machine's cores; the client's own signing is in the AK/SK figure).
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const BATCH: usize = 10;
const BASIC: &str = "Basic Z3Vlc3Q6Z3Vlc3Q="; // guest:guest

/// How requests prove who sends them.
#[derive(Clone)]
enum Auth {
    Basic,
    Token(String),
    AkSk { access: String, secret: String },
}

impl Auth {
    fn name(&self) -> &'static str {
        match self {
            Auth::Basic => "Basic",
            Auth::Token(_) => "token",
            Auth::AkSk { .. } => "AK/SK",
        }
    }
}

/// `X-Sdk-Date` now: `20261202T074648Z`.
fn sdk_date() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn hex_sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The Authorization value huaweicloudsdkcore's signer computes. It
/// percent-decodes the whole path before encoding each `/`-separated
/// segment, so `%2F` signs as `/`; the bench's paths hold nothing else to
/// encode.
fn sign(access: &str, secret: &str, method: &str, path: &str, date: &str, body: &[u8]) -> String {
    let signed = "content-type;host;x-sdk-date";
    let uri = path.replace("%2F", "/");
    let canonical = format!(
        "{method}\n{uri}/\n\ncontent-type:application/json\nhost:bench\nx-sdk-date:{date}\n\n{signed}\n{}",
        hex_sha256(body)
    );
    let to_sign = format!(
        "SDK-HMAC-SHA256\n{date}\n{}",
        hex_sha256(canonical.as_bytes())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(to_sign.as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    format!("SDK-HMAC-SHA256 Access={access}, SignedHeaders={signed}, Signature={signature}")
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    tx: SendRequest<Full<Bytes>>,
}

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
        auth: &Auth,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> (StatusCode, hyper::HeaderMap, Bytes) {
        self.tx.ready().await.unwrap();
        let req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header("host", "bench")
            .header("content-type", "application/json");
        let req = match auth {
            Auth::Basic => req.header("authorization", BASIC),
            Auth::Token(t) => req.header("x-auth-token", t),
            Auth::AkSk { access, secret } => {
                let date = sdk_date();
                let value = sign(access, secret, method.as_str(), path, &date, &body);
                req.header("x-sdk-date", date)
                    .header("authorization", value)
            }
        };
        let res = self
            .tx
            .send_request(req.body(Full::new(body)).unwrap())
            .await
            .unwrap();
        let (status, headers) = (res.status(), res.headers().clone());
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (status, headers, bytes)
    }

    async fn json(
        &mut self,
        auth: &Auth,
        method: Method,
        path: &str,
        body: Value,
    ) -> (hyper::HeaderMap, Value) {
        let (s, h, b) = self
            .call(auth, method, path, Bytes::from(body.to_string()))
            .await;
        assert!(
            s.is_success(),
            "{path}: {s} {}",
            String::from_utf8_lossy(&b)
        );
        (h, serde_json::from_slice(&b).unwrap_or(Value::Null))
    }
}

fn percentiles(mut v: Vec<Duration>) -> String {
    v.sort_unstable();
    let p = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)].as_secs_f64() * 1e3;
    format!("p50 {:.2} ms, p99 {:.2} ms", p(0.5), p(0.99))
}

/// Sends `msgs` messages to a fresh queue in batches of 10 over `conns`
/// connections, authenticated by `auth`; prints and returns msg/s.
async fn send(addr: SocketAddr, auth: Auth, msgs: usize, size: usize, conns: usize) -> f64 {
    let mut admin = Conn::open(addr).await;
    let name = format!(
        "auth-bench-{}",
        auth.name().replace('/', "-").to_lowercase()
    );
    let (_, q) = admin
        .json(
            &Auth::Basic,
            Method::POST,
            "/v1.0/%2F/queues",
            json!({"name": name}),
        )
        .await;
    let queue = q["id"].as_str().unwrap().to_owned();
    let text = "x".repeat(size);
    let batch: Vec<_> = (0..BATCH).map(|_| json!({"body": text})).collect();
    let body = Bytes::from(json!({"messages": batch}).to_string());
    let path = format!("/v1.0/%2F/queues/{queue}/messages");
    let remaining = Arc::new(AtomicI64::new(msgs as i64));
    let sent = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (remaining, sent, body, path, auth) = (
            remaining.clone(),
            sent.clone(),
            body.clone(),
            path.clone(),
            auth.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(addr).await;
            let mut lat = Vec::new();
            while remaining.fetch_sub(BATCH as i64, Ordering::Relaxed) > 0 {
                let t = Instant::now();
                let (s, _, b) = c.call(&auth, Method::POST, &path, body.clone()).await;
                assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
                lat.push(t.elapsed());
                sent.fetch_add(BATCH as u64, Ordering::Relaxed);
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
        "send, {:<5} auth: batch {BATCH} × {size} B, {conns} conns: {n} msgs in {secs:.2} s = {rate:.0} msg/s ({:.0} req/s); request {}",
        auth.name(),
        n as f64 / BATCH as f64 / secs,
        percentiles(lat)
    );
    let _ = admin
        .call(
            &Auth::Basic,
            Method::DELETE,
            &format!("/v1.0/%2F/queues/{queue}"),
            Bytes::new(),
        )
        .await;
    rate
}

/// A token (Keystone password login) and an access key for guest.
async fn credentials(addr: SocketAddr) -> (Auth, Auth) {
    let mut c = Conn::open(addr).await;
    let login = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "guest", "password": "guest", "domain": {"name": "Default"}}}},
        "scope": {"project": {"name": "/"}}}});
    let (headers, _) = c
        .json(&Auth::Basic, Method::POST, "/v3/auth/tokens", login)
        .await;
    let token = headers["x-subject-token"].to_str().unwrap().to_owned();
    let (_, key) = c
        .json(
            &Auth::Basic,
            Method::POST,
            "/v3.0/OS-CREDENTIAL/credentials",
            json!({"credential": {"user_id": "guest", "description": "auth bench"}}),
        )
        .await;
    let key = &key["credential"];
    (
        Auth::Token(token),
        Auth::AkSk {
            access: key["access"].as_str().unwrap().to_owned(),
            secret: key["secret"].as_str().unwrap().to_owned(),
        },
    )
}

fn start_in_process() -> (SocketAddr, tempfile::TempDir) {
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
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let (shutdown, tracker) = (
                tokio_util::sync::CancellationToken::new(),
                tokio_util::task::TaskTracker::new(),
            );
            let door = gw_http::HttpDoor::new(
                engine,
                gw_http::Config::default(),
                shutdown.clone(),
                tracker.clone(),
                None,
            )
            .unwrap();
            let permits = gw_listen::Permits::for_door(&door);
            gw_listen::serve_listener(listener, door, permits, shutdown, tracker).await;
        });
    });
    (rx.recv().unwrap(), dir)
}

fn main() {
    let (mut msgs, mut conns, mut size) = (100_000usize, 8usize, 256usize);
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v: usize = it
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{k} takes a number"));
        match k.as_str() {
            "--msgs" => msgs = v,
            "--conns" => conns = v,
            "--size" => size = v,
            other => panic!("unknown option {other}; see the comment at the top of auth_bench.rs"),
        }
    }
    let (addr, _dir) = start_in_process();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!(
            "in-process door on http://{addr} ({} cores shared by client and server)",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        let (token, aksk) = credentials(addr).await;
        // A short warm-up, so the first mode does not pay for the start.
        send(addr, Auth::Basic, msgs / 10, size, conns).await;
        let basic = send(addr, Auth::Basic, msgs, size, conns).await;
        let signed = send(addr, aksk, msgs, size, conns).await;
        let tokens = send(addr, token, msgs, size, conns).await;
        println!(
            "relative to Basic: AK/SK {:.1} %, token {:.1} %",
            100.0 * signed / basic,
            100.0 * tokens / basic
        );
    });
}
