//! A request body that does not arrive in time (stalled, trickling, a
//! chunked body that stops) is answered 408 and the connection closed; a
//! body that arrives in time is served as before.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use gw_http::Config;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Basic guest:guest.
const AUTH: &str = "authorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\n";

/// Reads until the server closes; fails if it does not within `within`.
async fn answer_then_close(s: &mut TcpStream, within: Duration) -> String {
    let mut all = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(within, read)
        .await
        .expect("the connection was not closed in time");
    String::from_utf8_lossy(&all).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_trickling_and_stopped_bodies_get_408_and_a_close() {
    let config = Config {
        body_timeout_secs: 1,
        ..Config::default()
    };
    let gw = common::start_with(config, None).await;
    let id = gw.api.create_queue("%2F", json!({"name": "slow"})).await;
    let path = format!("/v1.0/%2F/queues/{id}/messages");

    // Content-Length 100, one byte sent.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\n{AUTH}content-type: application/json\r\ncontent-length: 100\r\n\r\n{{"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let t0 = Instant::now();
    let text = answer_then_close(&mut s, Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("10240408"), "{text}");
    assert!(t0.elapsed() >= Duration::from_millis(900));

    // A trickle: one byte every 300 ms never finishes 100 bytes in 1 s.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if w.write_all(b" ").await.is_err() {
                break;
            }
        }
    });
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), r.read_to_end(&mut got))
        .await
        .expect("a trickling body is cut off")
        .ok();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    trickle.abort();

    // A chunked body that stops after its first chunk.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\n{AUTH}content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n1\r\n{{\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let text = answer_then_close(&mut s, Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");

    // A body sent in time is served as before.
    let r = gw
        .api
        .send_messages("%2F", &id, json!([{"body": "on time"}]))
        .await;
    assert_eq!(r.json["messages"][0]["state"], 0, "{}", r.text);
    gw.stop().await;
}
