//! A store that cannot write (a full disk, made here with an in-memory
//! store told to fail): sends are answered 507 with the DMS error and
//! Retry-After, nothing refused is ever delivered, health and metrics say
//! so, and once the store writes again everything works without a restart.
#![allow(clippy::unwrap_used)]

mod common;

use common::metric;

use std::time::{Duration, Instant};

use gw_core::{EngineConfig, MemoryStore};
use serde_json::json;

/// The HTTP door over an engine on `store`.
async fn start(store: &MemoryStore) -> common::Gw {
    common::start_engine(
        EngineConfig::in_memory(store),
        gw_http::Config::default(),
        None,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_write_is_answered_507_and_recovers_without_a_restart() {
    let store = MemoryStore::new();
    let gw = start(&store).await;
    let api = gw.api.clone();
    let anon = api.anonymous();
    let id = api.create_queue("%2F", json!({"name": "full"})).await;
    api.create_group("%2F", &id, "g").await;
    let r = anon.get("/healthz").await;
    r.expect(200);
    assert_eq!(r.json["store"], "writable");
    let m = api.get("/metrics").await;
    assert_eq!(metric(&m.text, "gateway_store_writable"), Some(1.0));

    store.set_failing(true);
    let r = api
        .post(
            &format!("/v1.0/%2F/queues/{id}/messages"),
            json!({"messages": [{"body": "lost"}, {"body": "lost too"}]}),
        )
        .await;
    r.expect(507);
    assert_eq!(r.error_code(), "10240507");
    assert!(r.error_msg().contains("cannot write"), "{}", r.text);
    assert_eq!(r.headers["retry-after"], "5");

    // Not ready and telling why; alive, with the store's state in the body.
    let r = anon.get("/readyz").await;
    r.expect(503);
    assert_eq!(r.error_code(), "10240507");
    let r = anon.get("/healthz").await;
    r.expect(200);
    assert_eq!(r.json["store"], "not writable");
    assert!(r.json["store_write_errors"].as_u64().unwrap() >= 1);
    assert!(r.json["store_error"].as_str().is_some(), "{}", r.text);
    let m = api.get("/metrics").await;
    assert_eq!(metric(&m.text, "gateway_store_writable"), Some(0.0));
    assert!(metric(&m.text, "gateway_store_write_errors_total").unwrap() >= 1.0);

    // What the client was told failed is not delivered, now or later.
    assert!(api.consume("%2F", &id, "g", "time_wait=1").await.is_empty());

    store.set_failing(false);
    let t0 = Instant::now();
    loop {
        if anon.get("/readyz").await.status == 200 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "never ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = api
        .send_messages("%2F", &id, json!([{"body": "kept"}]))
        .await;
    assert_eq!(r.json["messages"][0]["state"], 0, "{}", r.text);
    let got = api.consume("%2F", &id, "g", "time_wait=5").await;
    let bodies: Vec<_> = got.iter().map(|m| m["message"]["body"].clone()).collect();
    assert_eq!(bodies, vec![json!("kept")]);
    let m = api.get("/metrics").await;
    assert_eq!(metric(&m.text, "gateway_store_writable"), Some(1.0));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_cannot_be_stored_is_refused_and_leaves_nothing_behind() {
    let store = MemoryStore::new();
    let gw = start(&store).await;
    let api = gw.api.clone();
    let id = api.create_queue("%2F", json!({"name": "kept"})).await;

    store.set_failing(true);
    let r = api
        .post("/v1.0/%2F/queues", json!({"name": "never-stored"}))
        .await;
    r.expect(507);
    let r = api
        .post(
            &format!("/v1.0/%2F/queues/{id}/groups"),
            json!({"groups": [{"name": "never-stored"}]}),
        )
        .await;
    r.expect(507);
    let r = api
        .put("/api/exchanges/%2F/x-never", json!({"type": "fanout"}))
        .await;
    r.expect(507);

    // Nothing that was refused is listed, while the store still fails and after.
    let names = |r: &common::Resp| -> Vec<String> {
        r.json["queues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let r = api.get("/v1.0/%2F/queues").await;
    assert_eq!(names(&r), vec!["kept".to_owned()], "{}", r.text);
    let r = api.get(&format!("/v1.0/%2F/queues/{id}/groups")).await;
    assert_eq!(r.json["groups"].as_array().unwrap().len(), 0, "{}", r.text);
    api.get("/api/exchanges/%2F/x-never").await.expect(404);

    store.set_failing(false);
    let t0 = Instant::now();
    while api.anonymous().get("/readyz").await.status != 200 {
        assert!(t0.elapsed() < Duration::from_secs(10), "never ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The name is free: the create that failed can be made again.
    api.create_queue("%2F", json!({"name": "never-stored"}))
        .await;
    gw.stop().await;

    // And the store agrees with what was answered.
    let gw = start(&store).await;
    let r = gw.api.get("/v1.0/%2F/queues").await;
    let mut got = names(&r);
    got.sort();
    assert_eq!(got, vec!["kept".to_owned(), "never-stored".to_owned()]);
    let r = gw.api.get(&format!("/v1.0/%2F/queues/{id}/groups")).await;
    assert_eq!(r.json["groups"].as_array().unwrap().len(), 0, "{}", r.text);
    gw.api.get("/api/exchanges/%2F/x-never").await.expect(404);
    gw.stop().await;
}
