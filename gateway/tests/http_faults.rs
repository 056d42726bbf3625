//! The real binary's HTTP door under hostile clients: a hundred concurrent
//! wrong-password logins each get 401 without the process growing by the
//! Argon2 memory of each (two check threads keep theirs), and a stalled
//! request body gets 408 and a close within `[http] body_timeout_secs`.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Process, runtime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The child's resident memory in bytes (`VmRSS` in /proc/PID/status).
fn rss_bytes(gw: &Process) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.child.id())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib << 10
}

/// `n` logins as guest with passwords no one has, all at once; their statuses.
async fn wrong_logins(gw: &Process, tag: &str, n: usize) -> Vec<u16> {
    let client = reqwest::Client::new();
    let url = format!("{}/queues", gw.dms_base());
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let request = client
                .get(&url)
                .basic_auth("guest", Some(format!("wrong-{tag}-{i}")))
                .timeout(Duration::from_secs(60));
            tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
        })
        .collect();
    let mut statuses = Vec::with_capacity(n);
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses
}

#[test]
fn a_hundred_concurrent_wrong_logins_get_401_and_do_not_grow_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Process::start(dir.path());
    let rt = runtime();
    rt.block_on(async {
        // The two check threads take their Argon2 memory once: warm them.
        let warm = wrong_logins(&gw, "warm", 4).await;
        assert!(warm.iter().all(|&s| s == 401), "{warm:?}");
        let before = rss_bytes(&gw);
        let started = Instant::now();
        let statuses = wrong_logins(&gw, "flood", 100).await;
        let took = started.elapsed();
        let after = rss_bytes(&gw);
        let not_401: Vec<_> = statuses.iter().filter(|&&s| s != 401).collect();
        assert!(not_401.is_empty(), "answers other than 401: {not_401:?}");
        let grew = after.saturating_sub(before);
        eprintln!(
            "logins: RSS {:.1} MiB before, {:.1} MiB after 100 concurrent wrong logins (+{:.1} MiB; all 401 in {took:?})",
            before as f64 / f64::from(1 << 20),
            after as f64 / f64::from(1 << 20),
            grew as f64 / f64::from(1 << 20),
        );
        assert!(grew < 20 << 20, "RSS grew by {grew} bytes");
        // A right password still gets in afterwards.
        let ok = reqwest::Client::new()
            .get(format!("{}/queues", gw.dms_base()))
            .basic_auth("guest", Some("guest"))
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status().as_u16(), 200);
    });
}

/// Basic guest:guest.
const AUTH: &str = "authorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\n";

#[test]
fn a_stalled_body_gets_408_and_a_close_within_the_body_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, "[http]\nbody_timeout_secs = 2\n").unwrap();
    let data = dir.path().join("data");
    let gw = Process::start_with(&data, &["--config", config.to_str().unwrap()]);
    let rt = runtime();
    rt.block_on(async {
        let created = reqwest::Client::new()
            .post(format!("{}/queues", gw.dms_base()))
            .basic_auth("guest", Some("guest"))
            .json(&serde_json::json!({"name": "slow"}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status().as_u16(), 200);
        let created: serde_json::Value = created.json().await.unwrap();
        let id = created["id"].as_str().unwrap();

        // Content-Length 100, one byte sent, then nothing.
        let mut s = TcpStream::connect(gw.http).await.unwrap();
        let head = format!(
            "POST /v1.0/%2F/queues/{id}/messages HTTP/1.1\r\nhost: x\r\n{AUTH}content-type: application/json\r\ncontent-length: 100\r\n\r\n{{"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let sent = Instant::now();
        let mut answer = Vec::new();
        // The bound: the 2 s timeout plus slack for a loaded machine.
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
        let took = sent.elapsed();
        assert!(read.is_ok(), "the connection was not closed within 10 s");
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(
            took >= Duration::from_millis(1900),
            "answered before the body timeout: {took:?}"
        );
        eprintln!("stalled body: 408 and close {took:?} after the head (body_timeout_secs = 2)");
    });
}
