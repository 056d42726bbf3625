//! Close the engine, reopen it on the same data directory and serve again:
//! queues (same ids), groups and unacknowledged messages are all there.
#![allow(clippy::unwrap_used)]

mod common;

use gw_http::Config;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_groups_and_unacked_messages_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let gw = common::start_in(dir.path(), Config::default(), None).await;
    let api = gw.api.clone();
    let id = api
        .create_queue("%2F", json!({"name": "durable", "queue_mode": "FIFO", "redrive_policy": "enable", "max_consume_count": 5}))
        .await;
    api.create_group("%2F", &id, "g1").await;
    api.create_group("%2F", &id, "g2").await;
    let msgs: Vec<_> = (0..5)
        .map(|i| json!({"body": i, "message_group_id": format!("k{i}")}))
        .collect();
    api.send_messages("%2F", &id, serde_json::Value::Array(msgs))
        .await;
    let got = api
        .consume("%2F", &id, "g1", "max_msgs=3&time_wait=1")
        .await;
    assert_eq!(got.len(), 3);
    let first = got[0]["handler"].as_str().unwrap().to_owned();
    let stale = got[1]["handler"].as_str().unwrap().to_owned();
    api.ack("%2F", &id, "g1", &[(&first, "success")])
        .await
        .expect(200);
    gw.stop().await;

    let gw = common::start_in(dir.path(), Config::default(), None).await;
    let api = gw.api.clone();
    let q = api.get(&format!("/v1.0/%2F/queues/{id}")).await;
    q.expect(200);
    assert_eq!(q.json["name"], "durable");
    assert_eq!(q.json["queue_mode"], "FIFO");
    assert_eq!(q.json["redrive_policy"], "enable");
    assert_eq!(q.json["max_consume_count"], 5);
    assert_eq!(q.json["produced_messages"], 5);
    let groups = api.get(&format!("/v1.0/%2F/queues/{id}/groups")).await;
    let names: Vec<&str> = groups.json["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["g1", "g2"]);
    // A handler from before the restart names a delivery that is gone.
    let r = api.ack("%2F", &id, "g1", &[(&stale, "success")]).await;
    assert_eq!(r.json["fail"], 1);
    // g1: the two unacked ones come back (as redeliveries) plus the two never delivered.
    let again = api.consume("%2F", &id, "g1", "time_wait=1").await;
    let mut bodies: Vec<i64> = again
        .iter()
        .map(|m| m["message"]["body"].as_i64().unwrap())
        .collect();
    bodies.sort_unstable();
    assert_eq!(bodies, vec![1, 2, 3, 4]);
    for m in &again {
        let n = m["message"]["body"].as_i64().unwrap();
        let count = m["message"]["delivery_count"].as_u64().unwrap();
        assert!(
            if n <= 2 { count >= 2 } else { count == 1 },
            "message {n} delivery count {count}"
        );
    }
    // g2 never consumed: all five.
    assert_eq!(api.consume("%2F", &id, "g2", "time_wait=1").await.len(), 5);
    gw.stop().await;
}
