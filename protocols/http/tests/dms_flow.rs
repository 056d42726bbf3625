//! A DMS client's day: queues, groups, send, consume, ack, dead letters,
//! FIFO order per message group, tag filters, delay, rewind and lookup.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

const T: &str = "%2F";

fn handlers(msgs: &[Value]) -> Vec<String> {
    msgs.iter()
        .map(|m| m["handler"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_groups_send_consume_ack() {
    let gw = common::start().await;
    let api = &gw.api;
    let id = api
        .create_queue(
            T,
            json!({"name": "orders", "description": "order events", "queue_mode": "NORMAL"}),
        )
        .await;
    assert!(id.starts_with("q-"), "{id}");
    // The id and the name both work.
    let by_id = api.get(&format!("/v1.0/{T}/queues/{id}")).await;
    by_id.expect(200);
    let by_name = api.get(&format!("/v1.0/{T}/queues/orders")).await;
    by_name.expect(200);
    assert_eq!(by_id.json, by_name.json);
    assert_eq!(by_id.json["queue_mode"], "NORMAL");
    assert_eq!(by_id.json["reservation"], 4320);
    assert_eq!(by_id.json["max_msg_size_byte"], 524_288);
    assert_eq!(by_id.json["redrive_policy"], "disable");
    assert_eq!(by_id.json["description"], "order events");
    let list = api
        .get(&format!(
            "/v1.0/{T}/queues?include_deadletter=true&include_messages_num=true"
        ))
        .await;
    list.expect(200);
    assert_eq!(list.json["total"], 1);
    assert_eq!(list.json["queues"][0]["id"], id.as_str());

    api.create_group(T, &id, "g1").await;
    api.create_group(T, &id, "g2").await;
    let groups = api.get(&format!("/v1.0/{T}/queues/{id}/groups")).await;
    groups.expect(200);
    assert_eq!(groups.json["groups"].as_array().unwrap().len(), 2);
    assert_eq!(groups.json["queue_name"], "orders");

    let sent = api
        .send_messages(
            T,
            &id,
            json!([
                {"body": "TEST11", "attributes": {"attribute1": "value1", "n": 5}},
                {"body": {"foo": "test02"}, "tags": ["tagA"]},
                {"body": [1, 2, 3], "properties": {"correlation_id": "c-9", "reply_to": "replies"}},
            ]),
        )
        .await;
    let states: Vec<i64> = sent.json["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_i64().unwrap())
        .collect();
    assert_eq!(states, vec![0, 0, 0]);
    let ids: Vec<String> = sent.json["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();

    let got = api.consume(T, &id, "g1", "max_msgs=10&time_wait=1").await;
    assert_eq!(got.len(), 3);
    let bodies: Vec<&Value> = got.iter().map(|m| &m["message"]["body"]).collect();
    assert_eq!(
        bodies,
        vec![
            &json!("TEST11"),
            &json!({"foo": "test02"}),
            &json!([1, 2, 3])
        ]
    );
    assert_eq!(
        got[0]["message"]["attributes"],
        json!({"attribute1": "value1", "n": 5})
    );
    assert_eq!(got[1]["message"]["tags"], json!(["tagA"]));
    assert_eq!(got[2]["message"]["properties"]["correlation_id"], "c-9");
    assert_eq!(got[2]["message"]["properties"]["reply_to"], "replies");
    let got_ids: Vec<&str> = got
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(got_ids, ids.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(got.iter().all(|m| m["message"]["delivery_count"] == 1));

    // Nothing more for g1 while they are in flight.
    assert!(api.consume(T, &id, "g1", "time_wait=1").await.is_empty());
    let hs = handlers(&got);
    let r = api
        .ack(
            T,
            &id,
            "g1",
            &hs.iter()
                .map(|h| (h.as_str(), "success"))
                .collect::<Vec<_>>(),
        )
        .await;
    r.expect(200);
    assert_eq!(r.json, json!({"success": 3, "fail": 0}));
    // A reused handler fails, clearly.
    let r = api.ack(T, &id, "g1", &[(hs[0].as_str(), "success")]).await;
    r.expect(200);
    assert_eq!(r.json["success"], 0);
    assert_eq!(r.json["fail"], 1);
    assert!(
        r.json["errors"][0]["error_msg"]
            .as_str()
            .unwrap()
            .contains("already used")
    );

    // g2 sees every message too (DMS fan-out).
    let got2 = api.consume(T, &id, "g2", "max_msgs=2&time_wait=1").await;
    assert_eq!(got2.len(), 2);

    let groups = api
        .get(&format!(
            "/v1.0/{T}/queues/{id}/groups?include_deadletter=true"
        ))
        .await;
    let g1 = groups.json["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "g1")
        .unwrap()
        .clone();
    assert_eq!(g1["consumed_messages"], 3);
    assert_eq!(g1["available_messages"], 0);
    assert_eq!(g1["produced_messages"], 3);
    assert_eq!(g1["produced_deadletters"], 0);
    assert_eq!(groups.json["redrive_policy"], "disable");
    let paged = api
        .get(&format!(
            "/v1.0/{T}/queues/{id}/groups?page_size=1&current_page=2&include_messages_num=false"
        ))
        .await;
    assert_eq!(paged.json["groups"].as_array().unwrap().len(), 1);
    assert_eq!(paged.json["groups"][0]["name"], "g2");
    assert!(paged.json["groups"][0].get("available_messages").is_none());
    assert_eq!(paged.json["total"], 2);

    let quotas = api.get(&format!("/v1.0/{T}/quotas/dms")).await;
    quotas.expect(200);
    assert_eq!(
        quotas.json["quotas"]["resources"][0],
        json!({"type": "queue", "quota": 30, "used": 1, "min": 1, "max": 30})
    );

    api.delete(&format!("/v1.0/{T}/queues/{id}/groups/g2"))
        .await
        .expect(204);
    api.get(&format!(
        "/v1.0/{T}/queues/{id}/groups/g2/messages?time_wait=1"
    ))
    .await
    .expect(404);
    api.delete(&format!("/v1.0/{T}/queues/{id}"))
        .await
        .expect(204);
    api.get(&format!("/v1.0/{T}/queues/{id}")).await.expect(404);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_consumptions_become_dead_letters() {
    let gw = common::start().await;
    let api = &gw.api;
    let id = api
        .create_queue(
            T,
            json!({"name": "jobs", "redrive_policy": "enable", "max_consume_count": 2}),
        )
        .await;
    api.create_group(T, &id, "workers").await;
    api.send_messages(T, &id, json!([{"body": {"job": 1}}, {"body": {"job": 2}}]))
        .await;

    // Attempt 1: job 1 fails; job 2 is after a failure in the same ack, so it fails too.
    let got = api.consume(T, &id, "workers", "time_wait=1").await;
    assert_eq!(got.len(), 2);
    let hs = handlers(&got);
    let r = api
        .ack(T, &id, "workers", &[(&hs[0], "fail"), (&hs[1], "success")])
        .await;
    assert_eq!(r.json["success"], 0);
    assert_eq!(r.json["fail"], 2);
    // Attempt 2 of both: fail → dead letters (max_consume_count 2).
    let got = api.consume(T, &id, "workers", "time_wait=1").await;
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|m| m["message"]["delivery_count"] == 2));
    let hs = handlers(&got);
    api.ack(T, &id, "workers", &[(&hs[0], "fail"), (&hs[1], "fail")])
        .await
        .expect(200);
    assert!(
        api.consume(T, &id, "workers", "time_wait=1")
            .await
            .is_empty()
    );

    let dl = api
        .get(&format!(
            "/v1.0/{T}/queues/{id}/groups/workers/deadletters?time_wait=2"
        ))
        .await;
    dl.expect(200);
    let dl = dl.json.as_array().unwrap().clone();
    assert_eq!(dl.len(), 2);
    assert_eq!(dl[0]["message"]["body"], json!({"job": 1}));
    assert_eq!(
        dl[0]["message"]["attributes"]["x-first-death-reason"],
        "delivery_limit"
    );
    // A dead-letter handler is refused by the normal ack and the other way round.
    let dh = handlers(&dl);
    api.ack(T, &id, "workers", &[(&dh[0], "success")])
        .await
        .expect(400);
    let r = api
        .post(
            &format!("/v1.0/{T}/queues/{id}/groups/workers/deadletters/ack"),
            json!({"message": [{"handler": dh[0], "status": "success"}, {"handler": dh[1], "status": "success"}]}),
        )
        .await;
    r.expect(200);
    assert_eq!(r.json, json!({"success": 2, "fail": 0}));
    let groups = api
        .get(&format!(
            "/v1.0/{T}/queues/{id}/groups?include_deadletter=true"
        ))
        .await;
    assert_eq!(groups.json["groups"][0]["produced_deadletters"], 2);
    assert_eq!(groups.json["groups"][0]["available_deadletters"], 0);
    assert_eq!(groups.json["redrive_policy"], "enable");

    // An unacked delivery comes back after ack_wait, counting as a failure.
    api.send_messages(T, &id, json!([{"body": "late"}])).await;
    let got = api
        .consume(T, &id, "workers", "ack_wait=1&time_wait=1")
        .await;
    assert_eq!(got.len(), 1);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let again = api.consume(T, &id, "workers", "time_wait=2").await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0]["message"]["delivery_count"], 2);
    let expired = handlers(&got);
    let r = api
        .ack(T, &id, "workers", &[(&expired[0], "success")])
        .await;
    assert_eq!(r.json["fail"], 1, "an expired handler is refused");
    let fresh = handlers(&again);
    assert_eq!(
        api.ack(T, &id, "workers", &[(&fresh[0], "success")])
            .await
            .json["success"],
        1
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_order_per_message_group() {
    let gw = common::start().await;
    let api = &gw.api;
    let id = api
        .create_queue(T, json!({"name": "ledger", "queue_mode": "FIFO", "redrive_policy": "enable", "max_consume_count": 1}))
        .await;
    api.create_group(T, &id, "g").await;
    let msgs: Vec<Value> = ["a1", "b1", "a2", "b2", "a3"]
        .iter()
        .map(|b| json!({"body": b, "message_group_id": &b[..1]}))
        .collect();
    api.send_messages(T, &id, Value::Array(msgs)).await;
    // One message per group key is out at a time.
    let got = api.consume(T, &id, "g", "time_wait=1").await;
    let bodies: Vec<&str> = got
        .iter()
        .map(|m| m["message"]["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, vec!["a1", "b1"]);
    assert_eq!(got[0]["message"]["message_group_id"], "a");
    let hs = handlers(&got);
    api.ack(T, &id, "g", &[(&hs[0], "success")])
        .await
        .expect(200);
    let got = api.consume(T, &id, "g", "time_wait=1").await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["message"]["body"], "a2");
    // b1 fails once: max_consume_count 1 sends it to dead letters, releasing b2.
    let r = api.ack(T, &id, "g", &[(&hs[1], "fail")]).await;
    assert_eq!(r.json["fail"], 1);
    let got2 = api.consume(T, &id, "g", "time_wait=1").await;
    assert_eq!(got2.len(), 1);
    assert_eq!(got2[0]["message"]["body"], "b2");
    let dl = api
        .get(&format!(
            "/v1.0/{T}/queues/{id}/groups/g/deadletters?time_wait=1"
        ))
        .await;
    assert_eq!(dl.json[0]["message"]["body"], "b1");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_filters_are_fixed_per_group() {
    let gw = common::start().await;
    let api = &gw.api;
    let id = api.create_queue(T, json!({"name": "tagged"})).await;
    api.create_group(T, &id, "any").await;
    api.create_group(T, &id, "all").await;
    api.send_messages(
        T,
        &id,
        json!([
            {"body": 1, "tags": ["red"]},
            {"body": 2, "tags": ["red", "big"]},
            {"body": 3, "tags": ["blue"]},
            {"body": 4},
        ]),
    )
    .await;
    let any = api
        .consume(T, &id, "any", "tag=red&tag=blue&tag_type=or&time_wait=1")
        .await;
    let b: Vec<i64> = any
        .iter()
        .map(|m| m["message"]["body"].as_i64().unwrap())
        .collect();
    assert_eq!(b, vec![1, 2, 3]);
    let all = api
        .consume(T, &id, "all", "tag=red&tag=big&tag_type=and&time_wait=1")
        .await;
    let b: Vec<i64> = all
        .iter()
        .map(|m| m["message"]["body"].as_i64().unwrap())
        .collect();
    assert_eq!(b, vec![2]);
    // DMS: a group keeps the filter it first used.
    let r = api
        .get(&format!(
            "/v1.0/{T}/queues/{id}/groups/any/messages?tag=green&time_wait=1"
        ))
        .await;
    r.expect(409);
    assert!(r.error_msg().contains("red"), "{}", r.error_msg());
    let groups = api.get(&format!("/v1.0/{T}/queues/{id}/groups")).await;
    let g = groups.json["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "all")
        .unwrap()
        .clone();
    assert_eq!(g["tag_filter"], json!(["red", "big"]));
    assert_eq!(g["tag_type"], "and");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_messages_wake_long_polls_when_due() {
    let gw = common::start().await;
    let api = &gw.api;
    let id = api.create_queue(T, json!({"name": "later"})).await;
    api.create_group(T, &id, "g").await;
    let t0 = Instant::now();
    api.send_messages(T, &id, json!([{"body": "soon", "delayTime": 400}]))
        .await;
    let got = api.consume(T, &id, "g", "time_wait=5").await;
    let waited = t0.elapsed();
    assert_eq!(got.len(), 1);
    assert!(
        waited >= Duration::from_millis(380),
        "delivered early: {waited:?}"
    );
    assert!(
        waited < Duration::from_millis(3000),
        "delivered late: {waited:?}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewind_and_lookup() {
    let gw = common::start().await;
    let api = &gw.api;
    let id = api.create_queue(T, json!({"name": "audit"})).await;
    api.create_group(T, &id, "g").await;
    api.create_group(T, &id, "slow").await;
    let sent = api
        .send_messages(
            T,
            &id,
            json!([{"body": "one"}, {"body": "two"}, {"body": "three"}]),
        )
        .await;
    let second = sent.json["messages"][1]["id"].as_str().unwrap().to_owned();
    let got = api.consume(T, &id, "g", "time_wait=1").await;
    let hs = handlers(&got);
    let entries: Vec<(&str, &str)> = hs.iter().map(|h| (h.as_str(), "success")).collect();
    api.ack(T, &id, "g", &entries).await.expect(200);

    let look = api
        .get(&format!("/v1.0/{T}/queues/{id}/messages/{second}"))
        .await;
    look.expect(200);
    assert_eq!(look.json["message"]["body"], "two");
    let state = |g: &str| {
        look.json["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["group"] == g)
            .unwrap()["state"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(state("g"), "acked");
    assert_eq!(state("slow"), "ready");
    let seq = look.json["message"]["sequence"].as_u64().unwrap();
    api.get(&format!("/v1.0/{T}/queues/{id}/messages/999999999"))
        .await
        .expect(404);
    api.get(&format!("/v1.0/{T}/queues/{id}/messages/nope"))
        .await
        .expect(400);
    // A lookup leaves the groups as they were.
    let groups = api.get(&format!("/v1.0/{T}/queues/{id}/groups")).await;
    assert_eq!(groups.json["total"], 2);
    let q = gw.engine.tenant("/").unwrap().queue("audit").unwrap();
    assert_eq!(q.group_names().len(), 2);

    // Re-read from the second message, then from the oldest.
    let r = api
        .post(
            &format!("/v1.0/{T}/queues/{id}/groups/g/rewind"),
            json!({"to_sequence": seq}),
        )
        .await;
    r.expect(200);
    assert_eq!(r.json["sequence"], seq);
    let again = api.consume(T, &id, "g", "time_wait=1").await;
    let b: Vec<&str> = again
        .iter()
        .map(|m| m["message"]["body"].as_str().unwrap())
        .collect();
    assert_eq!(b, vec!["two", "three"]);
    api.post(
        &format!("/v1.0/{T}/queues/{id}/groups/g/rewind"),
        json!({"to": "oldest"}),
    )
    .await
    .expect(200);
    assert_eq!(api.consume(T, &id, "g", "time_wait=1").await.len(), 3);
    let future = "2999-01-01T00:00:00Z";
    api.post(
        &format!("/v1.0/{T}/queues/{id}/groups/g/rewind"),
        json!({"to_time": future}),
    )
    .await
    .expect(200);
    assert!(api.consume(T, &id, "g", "time_wait=1").await.is_empty());
    gw.stop().await;
}
