//! /healthz and /readyz without credentials, /metrics for monitoring users
//! (their tenants only), administrators and the metrics token; 503 and
//! prompt long-poll endings while shutting down; connections over
//! max_connections refused.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use axum::body::Body;
use gw_http::{AppState, Config};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_needs_no_credentials_and_metrics_an_administrator() {
    let gw = common::start().await;
    let api = &gw.api;
    let id = api.create_queue("%2F", json!({"name": "m"})).await;
    api.create_group("%2F", &id, "g").await;
    api.send_messages("%2F", &id, json!([{"body": 1}, {"body": 2}]))
        .await;
    let got = api.consume("%2F", &id, "g", "max_msgs=1&time_wait=1").await;
    assert_eq!(got.len(), 1);
    let anon = api.anonymous();
    anon.get("/metrics").await.expect(401);
    let m = api.get("/metrics").await;
    m.expect(200);
    assert!(m.text.ends_with("# EOF\n"), "OpenMetrics text");
    for line in [
        "gateway_connections{protocol=\"http\"} ",
        "gateway_connections{protocol=\"amqp\"} 0",
        "gateway_storage_bytes ",
        "gateway_queue_messages_published_total{tenant=\"/\",queue=\"m\"} 2",
        "gateway_group_messages_ready{tenant=\"/\",queue=\"m\",group=\"g\"} 1",
        "gateway_group_messages_in_flight{tenant=\"/\",queue=\"m\",group=\"g\"} 1",
        "gateway_group_delivered_total{tenant=\"/\",queue=\"m\",group=\"g\"} 1",
        "gateway_group_deliver_rate{tenant=\"/\",queue=\"m\",group=\"g\"} ",
        "gateway_queue_publish_rate{tenant=\"/\",queue=\"m\"} ",
        "# TYPE gateway_group_acked counter",
    ] {
        assert!(m.text.contains(line), "missing {line:?} in\n{}", m.text);
    }
    let storage: u64 = m
        .text
        .lines()
        .find_map(|l| l.strip_prefix("gateway_storage_bytes "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(storage > 0);
    // Every sample line parses as `name{labels} value`.
    for l in m.text.lines().filter(|l| !l.starts_with('#')) {
        let value = l.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "bad sample line {l}");
    }
    // Rates: a second sample a second later sees the acks.
    let h: Vec<(&str, &str)> = got
        .iter()
        .map(|g| (g["handler"].as_str().unwrap(), "success"))
        .collect();
    api.ack("%2F", &id, "g", &h).await.expect(200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let m = api.get("/metrics").await;
    let rate: f64 = m
        .text
        .lines()
        .find_map(|l| {
            l.strip_prefix("gateway_group_ack_rate{tenant=\"/\",queue=\"m\",group=\"g\"} ")
        })
        .unwrap()
        .parse()
        .unwrap();
    assert!(rate > 0.0, "ack rate {rate}");
    let o = api.get("/api/overview").await;
    assert!(o.json["connections"]["http"].as_u64().unwrap() >= 1);

    anon.get("/healthz").await.expect(200);
    let r = anon.get("/readyz").await;
    r.expect(200);
    assert_eq!(r.json["status"], "ready");
    anon.get("/openapi.json").await.expect(200);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_503_and_ends_long_polls() {
    let gw = common::start().await;
    let api = gw.api.clone();
    let id = api.create_queue("%2F", json!({"name": "s"})).await;
    api.create_group("%2F", &id, "g").await;
    let poll = {
        let api = api.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let t0 = Instant::now();
            let r = api
                .get(&format!(
                    "/v1.0/%2F/queues/{id}/groups/g/messages?time_wait=30"
                ))
                .await;
            (r.status, r.json, t0.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    gw.shutdown.cancel();
    let (status, body, _) = poll.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, json!([]));
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "the long poll ended at once: {:?}",
        t0.elapsed()
    );
    gw.stop().await;

    // The router itself refuses new work once the token is cancelled.
    let dir = tempfile::tempdir().unwrap();
    let engine = gw_core::Engine::open(gw_core::EngineConfig::new(dir.path())).unwrap();
    let token = CancellationToken::new();
    let app = gw_http::router(AppState::new(
        engine.clone(),
        Config::default(),
        token.clone(),
        TaskTracker::new(),
        None,
    ));
    let get = |path: &str| {
        axum::http::Request::get(path)
            .header("authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(
        app.clone()
            .oneshot(get("/v1.0/%2F/queues"))
            .await
            .unwrap()
            .status(),
        200
    );
    token.cancel();
    let r = app.clone().oneshot(get("/v1.0/%2F/queues")).await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        app.clone().oneshot(get("/readyz")).await.unwrap().status(),
        503
    );
    assert_eq!(
        app.clone().oneshot(get("/healthz")).await.unwrap().status(),
        200
    );
    engine.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_get_503() {
    let config = Config {
        max_connections: 3,
        max_long_polls: 2,
        ..Config::default()
    };
    let gw = common::start_with(config, None).await;
    // The test client may hold connections of its own: open raw ones until refused.
    let mut held = Vec::new();
    let mut refused = None;
    for _ in 0..6 {
        let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 2048];
        let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        if text.starts_with("HTTP/1.1 503") {
            refused = Some(text);
            break;
        }
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        held.push(s);
    }
    let refused = refused.expect("a connection over max_connections is refused");
    assert!(refused.contains("max_connections"), "{refused}");
    assert!(held.len() <= 3);
    drop(held);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitoring_user_sees_its_tenants_and_the_token_sees_all() {
    let token = "scrape-token-0123456789";
    let gw = common::start_with(
        Config {
            metrics_token: Some(gw_http::Secret::new(token)),
            ..Config::default()
        },
        None,
    )
    .await;
    let api = &gw.api;
    let e = &gw.engine;
    e.create_tenant("shop").unwrap();
    e.set_permission("guest", gw_core::Permission::full("shop"))
        .unwrap();
    api.create_queue("%2F", json!({"name": "root-q"})).await;
    api.create_queue("shop", json!({"name": "shop-q"})).await;
    e.put_user("prom", "pw", vec!["monitoring".into()]).unwrap();
    e.set_permission("prom", gw_core::Permission::full("shop"))
        .unwrap();
    e.put_user("plain", "pw", vec![]).unwrap();
    e.set_permission("plain", gw_core::Permission::full("shop"))
        .unwrap();

    let m = api.as_user("prom", "pw").get("/metrics").await;
    m.expect(200);
    assert!(m.text.contains("queue=\"shop-q\""), "{}", m.text);
    assert!(
        !m.text.contains("root-q"),
        "another tenant's queue: {}",
        m.text
    );
    assert!(
        m.text.contains("gateway_storage_bytes "),
        "node series are shown"
    );
    let r = api.as_user("plain", "pw").get("/metrics").await;
    r.expect(403);
    assert!(r.error_msg().contains("monitoring"), "{}", r.error_msg());
    api.as_user("prom", "wrong")
        .get("/metrics")
        .await
        .expect(401);

    let bearer = |t: &str| {
        api.send(
            api.anonymous()
                .request(reqwest::Method::GET, "/metrics")
                .bearer_auth(t),
        )
    };
    let m = bearer(token).await;
    m.expect(200);
    assert!(m.text.contains("root-q") && m.text.contains("shop-q"));
    bearer("scrape-token-wrong-guess").await.expect(401);
    // The token opens /metrics only.
    api.send(
        api.anonymous()
            .request(reqwest::Method::GET, "/api/overview")
            .bearer_auth(token),
    )
    .await
    .expect(401);
    gw.stop().await;
}
