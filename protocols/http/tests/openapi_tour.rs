//! The OpenAPI document covers every route, and real answers of every
//! operation match it: one tour calls each documented operation over a real
//! socket (the shared client checks each answer against the schema), then
//! compares what was exercised with what is documented.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_answers_as_documented() {
    let gw = common::start().await;
    let api = gw.api.clone();
    let t = "%2F";
    let anon = api.anonymous();
    anon.get("/healthz").await.expect(200);
    anon.get("/readyz").await.expect(200);
    anon.get("/metrics").await.expect(401);
    api.get("/metrics").await.expect(200);
    anon.get("/openapi.json").await.expect(200);
    anon.get("/mqtt").await.expect(404);

    // DMS.
    let id = api
        .create_queue(
            t,
            json!({"name": "tour", "redrive_policy": "enable", "max_consume_count": 1}),
        )
        .await;
    api.get(&format!("/v1.0/{t}/queues")).await.expect(200);
    api.get(&format!("/v1.0/{t}/queues/{id}")).await.expect(200);
    api.create_group(t, &id, "g").await;
    api.get(&format!(
        "/v1.0/{t}/queues/{id}/groups?include_deadletter=true"
    ))
    .await
    .expect(200);
    let sent = api
        .send_messages(t, &id, json!([{"body": "a"}, {"body": {"b": 1}}]))
        .await;
    let mid = sent.json["messages"][0]["id"].as_str().unwrap().to_owned();
    api.get(&format!("/v1.0/{t}/queues/{id}/messages/{mid}"))
        .await
        .expect(200);
    let got = api.consume(t, &id, "g", "time_wait=1").await;
    let h0 = got[0]["handler"].as_str().unwrap().to_owned();
    let h1 = got[1]["handler"].as_str().unwrap().to_owned();
    api.ack(t, &id, "g", &[(&h0, "success"), (&h1, "fail")])
        .await
        .expect(200);
    let dl = api
        .get(&format!(
            "/v1.0/{t}/queues/{id}/groups/g/deadletters?time_wait=1"
        ))
        .await;
    dl.expect(200);
    let dh = dl.json[0]["handler"].as_str().unwrap().to_owned();
    api.post(
        &format!("/v1.0/{t}/queues/{id}/groups/g/deadletters/ack"),
        json!({"message": [{"handler": dh, "status": "success"}]}),
    )
    .await
    .expect(200);
    api.post(
        &format!("/v1.0/{t}/queues/{id}/groups/g/rewind"),
        json!({"to": "oldest"}),
    )
    .await
    .expect(200);
    api.get(&format!("/v1.0/{t}/quotas/dms")).await.expect(200);
    api.delete(&format!("/v1.0/{t}/queues/{id}/groups/g"))
        .await
        .expect(204);

    // Management.
    api.get("/api/overview").await.expect(200);
    api.put_empty("/api/tenants/tour").await.expect(201);
    api.get("/api/tenants").await.expect(200);
    api.get("/api/tenants/tour").await.expect(200);
    api.put(
        "/api/users/u",
        json!({"password": "p", "tags": ["monitoring"]}),
    )
    .await
    .expect(201);
    api.get("/api/users").await.expect(200);
    api.get("/api/users/u").await.expect(200);
    api.put(
        "/api/permissions/tour/u",
        json!({"configure": ".*", "write": ".*", "read": ".*"}),
    )
    .await
    .expect(201);
    api.get("/api/permissions").await.expect(200);
    api.get("/api/permissions/tour/u").await.expect(200);
    // Publishing needs write permission on the tenant, administrators included (as in RabbitMQ).
    api.put(
        "/api/permissions/tour/guest",
        json!({"configure": "", "write": ".*", "read": ""}),
    )
    .await
    .expect(201);
    api.put(
        "/api/exchanges/tour/x",
        json!({"type": "direct", "arguments": {"k": 1}}),
    )
    .await
    .expect(201);
    api.get("/api/exchanges/tour").await.expect(200);
    api.get("/api/exchanges/tour/x").await.expect(200);
    // Topic permissions: they govern this door's publishes too.
    api.put("/api/exchanges/tour/tx", json!({"type": "topic"}))
        .await
        .expect(201);
    let tp = json!({"exchange": "tx", "write": "^allowed\\.", "read": ".*"});
    api.put("/api/topic-permissions/tour/guest", tp.clone())
        .await
        .expect(201);
    api.put("/api/topic-permissions/tour/guest", tp)
        .await
        .expect(204);
    api.put(
        "/api/topic-permissions/tour/guest",
        json!({"exchange": "tx", "write": "(", "read": ""}),
    )
    .await
    .expect(400);
    api.get("/api/topic-permissions").await.expect(200);
    let shown = api.get("/api/topic-permissions/tour/guest").await;
    shown.expect(200);
    assert_eq!(shown.json[0]["exchange"], "tx");
    api.post(
        "/api/exchanges/tour/tx/publish",
        json!({"routing_key": "denied.k", "payload": "x"}),
    )
    .await
    .expect(403);
    api.post(
        "/api/exchanges/tour/tx/publish",
        json!({"routing_key": "allowed.k", "payload": "x"}),
    )
    .await
    .expect(200);
    api.delete("/api/topic-permissions/tour/guest?exchange=tx")
        .await
        .expect(204);
    api.delete("/api/topic-permissions/tour/guest")
        .await
        .expect(404);
    api.get("/api/topic-permissions/tour/guest")
        .await
        .expect(404);
    api.put(
        "/api/queues/tour/mq",
        json!({"queue_type": "standard", "max_length": 10}),
    )
    .await
    .expect(201);
    let b = json!({"source": "x", "destination": "mq", "destination_type": "queue", "routing_key": "k"});
    api.post("/api/bindings/tour", b.clone()).await.expect(201);
    api.get("/api/bindings/tour").await.expect(200);
    let p = api
        .post(
            "/api/exchanges/tour/x/publish",
            json!({"routing_key": "k", "payload": "x", "properties": {"headers": {"h": 1}, "delivery_mode": 1}}),
        )
        .await;
    p.expect(200);
    assert_eq!(p.json["routed"], true);
    let p = api
        .post(
            "/api/exchanges/tour/x/publish",
            json!({"routing_key": "nowhere", "payload": "eA==", "payload_encoding": "base64"}),
        )
        .await;
    p.expect(200);
    assert_eq!(p.json["routed"], false);
    api.post(
        "/api/exchanges/tour/x/publish",
        json!({"payload": "x", "payload_encoding": "hex"}),
    )
    .await
    .expect(400);
    api.get("/api/queues").await.expect(200);
    api.get("/api/queues/tour").await.expect(200);
    api.get("/api/queues/tour/mq").await.expect(200);
    api.delete("/api/queues/tour/mq/contents").await.expect(200);
    api.delete_json("/api/bindings/tour", b).await.expect(204);
    api.delete("/api/queues/tour/mq").await.expect(204);
    api.delete("/api/exchanges/tour/x").await.expect(204);
    let conns = api.get("/api/connections").await;
    conns.expect(200);
    let cid = conns.json[0]["id"].as_u64().unwrap();
    api.get(&format!("/api/connections/{cid}"))
        .await
        .expect(200);
    api.delete("/api/permissions/tour/u").await.expect(204);
    api.delete("/api/users/u").await.expect(204);
    api.delete("/api/tenants/tour").await.expect(204);
    api.delete(&format!("/v1.0/{t}/queues/{id}"))
        .await
        .expect(204);
    // Last: closing a connection (it may be the client's own).
    api.delete(&format!("/api/connections/{cid}"))
        .await
        .expect(204);

    let documented: BTreeSet<(String, String)> = api.spec.doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.clone(), p.clone()))
        })
        .collect();
    let exercised: BTreeSet<(String, String)> = api
        .spec
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|(m, p, _)| (m.clone(), p.clone()))
        .collect();
    let missed: Vec<_> = documented.difference(&exercised).collect();
    assert!(
        missed.is_empty(),
        "documented but not exercised: {missed:?}"
    );
    assert_eq!(
        documented.len(),
        54,
        "operations documented: {documented:?}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_catches_answers_that_do_not_match() {
    let gw = common::start().await;
    let spec = gw.api.spec.clone();
    let headers = {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("content-type", "application/json".parse().unwrap());
        h
    };
    let check = |path: &str, status: u16, body: serde_json::Value| {
        let spec = spec.clone();
        let headers = headers.clone();
        let path = path.to_owned();
        std::panic::catch_unwind(move || {
            spec.check("get", &path, status, &headers, &body.to_string(), &body)
        })
        .is_ok()
    };
    assert!(check(
        "/v1.0/%2F/quotas/dms",
        200,
        json!({"quotas": {"resources": []}})
    ));
    // A missing field, an undocumented field, a wrong type, an undocumented status.
    assert!(!check("/v1.0/%2F/quotas/dms", 200, json!({})));
    assert!(!check(
        "/v1.0/%2F/quotas/dms",
        200,
        json!({"quotas": {"resources": []}, "extra": 1})
    ));
    assert!(!check(
        "/v1.0/%2F/queues",
        200,
        json!({"total": "1", "queues": []})
    ));
    assert!(!check("/v1.0/%2F/quotas/dms", 418, json!({})));
    gw.stop().await;
}
