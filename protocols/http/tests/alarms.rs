//! A node alarm (here the memory watermark set below what any process
//! holds) blocks HTTP publishers with 503 and Retry-After, takes the node
//! out of readiness, shows in /metrics, /healthz and /api/overview, and
//! keeps consumers served.
#![allow(clippy::unwrap_used)]

mod common;

use common::metric;

use std::time::{Duration, Instant};

use gw_core::{EngineConfig, MemoryStore, Watermark};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_alarm_blocks_http_publishers_and_readiness_but_not_consumers() {
    let store = MemoryStore::new();
    let mut config = EngineConfig::in_memory(&store);
    config.watermarks.memory_high = Watermark::Bytes(1 << 20);
    let gw = common::start_engine(config, gw_http::Config::default(), None).await;
    let api = gw.api.clone();
    let anon = api.anonymous();
    let id = api.create_queue("%2F", json!({"name": "q"})).await;
    api.create_group("%2F", &id, "g").await;

    let t0 = Instant::now();
    loop {
        let m = api.get("/metrics").await;
        if metric(&m.text, "gateway_alarm_active{kind=\"memory\"}") == Some(1.0) {
            assert_eq!(
                metric(&m.text, "gateway_alarm_active{kind=\"disk\"}"),
                Some(0.0)
            );
            assert_eq!(
                metric(&m.text, "gateway_alarm_threshold_bytes{kind=\"memory\"}"),
                Some(f64::from(1u32 << 20))
            );
            assert!(metric(&m.text, "gateway_alarm_value_bytes{kind=\"memory\"}").unwrap() > 1e6);
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "alarm never raised");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let r = api
        .post(
            &format!("/v1.0/%2F/queues/{id}/messages"),
            json!({"messages": [{"body": "held back"}]}),
        )
        .await;
    r.expect(503);
    assert_eq!(r.error_code(), "10240509");
    assert!(r.error_msg().contains("memory alarm"), "{}", r.text);
    assert!(r.headers.contains_key("retry-after"));
    let r = api
        .post(
            "/api/exchanges/%2F/amq.default/publish",
            json!({"routing_key": "q", "payload": "held back", "properties": {}}),
        )
        .await;
    r.expect(503);
    assert_eq!(r.error_code(), "10240509");

    let r = anon.get("/readyz").await;
    r.expect(503);
    assert_eq!(r.error_code(), "10240509");
    let r = anon.get("/healthz").await;
    r.expect(200);
    assert_eq!(r.json["alarms"], json!(["memory"]));
    let r = api.get("/api/overview").await;
    r.expect(200);
    assert_eq!(r.json["under_pressure"], true);
    let memory = r.json["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "memory")
        .unwrap();
    assert_eq!(memory["active"], true);
    assert!(memory["since"].as_u64().unwrap() > 0);

    // Consumers keep draining: nothing was stored, and asking is answered.
    assert!(api.consume("%2F", &id, "g", "time_wait=1").await.is_empty());
    gw.stop().await;
}
