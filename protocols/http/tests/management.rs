//! Management under /api: overview, tenants, users, permissions, exchanges,
//! bindings, queues and connections; administrators only.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use gw_core::Message;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_users_permissions() {
    let gw = common::start().await;
    let api = &gw.api;
    let o = api.get("/api/overview").await;
    o.expect(200);
    assert_eq!(o.json["tenants"], 1);

    api.put_empty("/api/tenants/t1").await.expect(201);
    api.put_empty("/api/tenants/t1").await.expect(204);
    let list = api.get("/api/tenants").await;
    let names: Vec<&str> = list
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["/", "t1"]);
    api.get("/api/tenants/t1").await.expect(200);
    api.get("/api/tenants/%2F").await.expect(200);

    api.put("/api/users/alice", json!({"password": "s3cret"}))
        .await
        .expect(201);
    api.put(
        "/api/users/alice",
        json!({"password": "s3cret", "tags": []}),
    )
    .await
    .expect(204);
    let alice = api.get("/api/users/alice").await;
    alice.expect(200);
    assert_eq!(alice.json["tags"], json!([]));
    assert!(!alice.text.contains("s3cret"), "passwords are never shown");
    api.put("/api/users/bad", json!({"password": "x", "is_admin": true}))
        .await
        .expect(400);
    // Not an administrator: no management.
    let a = api.as_user("alice", "s3cret");
    let r = a.get("/api/overview").await;
    r.expect(403);
    assert_eq!(r.error_code(), "10240309");
    a.get("/api/users").await.expect(403);

    api.put(
        "/api/permissions/t1/alice",
        json!({"configure": ".*", "write": ".*", "read": ".*"}),
    )
    .await
    .expect(201);
    api.put(
        "/api/permissions/t1/alice",
        json!({"configure": "", "write": ".*", "read": ".*"}),
    )
    .await
    .expect(204);
    api.put(
        "/api/permissions/nope/alice",
        json!({"configure": "", "write": "", "read": ""}),
    )
    .await
    .expect(404);
    api.put(
        "/api/permissions/t1/alice",
        json!({"configure": "(", "write": "", "read": ""}),
    )
    .await
    .expect(400);
    let p = api.get("/api/permissions/t1/alice").await;
    p.expect(200);
    assert_eq!(p.json["configure"], "");
    let all = api.get("/api/permissions").await;
    assert!(
        all.json
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["user"] == "alice" && p["tenant"] == "t1")
    );
    // The new permission applies at once: alice may use t1, cannot configure in it.
    a.get("/v1.0/t1/queues").await.expect(200);
    a.post("/v1.0/t1/queues", json!({"name": "q"}))
        .await
        .expect(403);
    api.delete("/api/permissions/t1/alice").await.expect(204);
    api.delete("/api/permissions/t1/alice").await.expect(404);
    a.get("/v1.0/t1/queues").await.expect(404);

    // A changed password applies at once too.
    api.put("/api/users/alice", json!({"password": "new"}))
        .await
        .expect(204);
    a.get("/v1.0/t1/queues").await.expect(401);
    api.delete("/api/users/alice").await.expect(204);
    api.get("/api/users/alice").await.expect(404);
    api.delete("/api/users/alice").await.expect(404);

    api.delete("/api/tenants/t1").await.expect(204);
    api.get("/api/tenants/t1").await.expect(404);
    api.delete("/api/tenants/t1").await.expect(404);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchanges_bindings_queues() {
    let gw = common::start().await;
    let api = &gw.api;
    let xs = api.get("/api/exchanges/%2F").await;
    xs.expect(200);
    assert!(
        xs.json
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == "amq.topic" && x["type"] == "topic")
    );
    api.put("/api/exchanges/%2F/events", json!({"type": "topic"}))
        .await
        .expect(201);
    api.put("/api/exchanges/%2F/events", json!({"type": "topic"}))
        .await
        .expect(204);
    api.put("/api/exchanges/%2F/events", json!({"type": "fanout"}))
        .await
        .expect(409);
    api.put("/api/exchanges/%2F/amq.mine", json!({"type": "direct"}))
        .await
        .expect(403);
    api.put("/api/exchanges/%2F/x", json!({"type": "sideways"}))
        .await
        .expect(400);
    let x = api.get("/api/exchanges/%2F/events").await;
    assert_eq!(x.json["durable"], true);

    api.put("/api/queues/%2F/mq", json!({"queue_type": "classic"}))
        .await
        .expect(201);
    api.put("/api/queues/%2F/mq", json!({"queue_type": "classic"}))
        .await
        .expect(204);
    api.put("/api/queues/%2F/mq", json!({"queue_type": "fifo"}))
        .await
        .expect(409);
    api.put("/api/queues/%2F/amq.q", json!({}))
        .await
        .expect(403);
    let binding = json!({"source": "events", "destination": "mq", "destination_type": "queue", "routing_key": "order.*"});
    api.post("/api/bindings/%2F", binding.clone())
        .await
        .expect(201);
    api.post("/api/bindings/%2F", binding.clone())
        .await
        .expect(204);
    let bs = api.get("/api/bindings/%2F").await;
    assert_eq!(bs.json.as_array().unwrap().len(), 1);
    assert_eq!(bs.json[0]["routing_key"], "order.*");
    api.delete("/api/exchanges/%2F/events?if_unused=true")
        .await
        .expect(409);

    let tenant = gw.engine.tenant("/").unwrap();
    let mut m = Message::new("hello");
    m.exchange = "events".into();
    m.routing_key = "order.created".into();
    assert_eq!(tenant.publish(m).unwrap().routed, 1);
    let q = api.get("/api/queues/%2F/mq").await;
    q.expect(200);
    assert_eq!(q.json["messages_ready"], 1);
    assert_eq!(q.json["groups"][0]["name"], "default");
    assert_eq!(q.json["kind"], "standard");
    assert_eq!(q.json["retention_ms"], 0);
    let all = api.get("/api/queues").await;
    assert!(
        all.json
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["name"] == "mq")
    );
    api.get("/api/queues/%2F").await.expect(200);
    api.get("/api/queues/nope").await.expect(404);
    let p = api.delete("/api/queues/%2F/mq/contents").await;
    p.expect(200);
    assert_eq!(p.json["purged"], 1);

    api.delete_json("/api/bindings/%2F", binding.clone())
        .await
        .expect(204);
    api.delete_json("/api/bindings/%2F", binding)
        .await
        .expect(404);
    api.delete("/api/exchanges/%2F/events?if_unused=true")
        .await
        .expect(204);
    api.delete("/api/exchanges/%2F/amq.topic").await.expect(403);
    api.delete("/api/queues/%2F/mq?if_empty=true")
        .await
        .expect(204);
    api.get("/api/queues/%2F/mq").await.expect(404);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_listed_and_closed() {
    let gw = common::start().await;
    let api = &gw.api;
    // A raw keep-alive connection we can watch.
    let mut raw = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let local = raw.local_addr().unwrap().to_string();
    raw.write_all(b"GET /v1.0/%2F/queues HTTP/1.1\r\nhost: x\r\nauthorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = raw.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let list = api.get("/api/connections").await;
    list.expect(200);
    let mine = list
        .json
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["peer"] == local.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{local} not listed in {}", list.text));
    assert_eq!(mine["protocol"], "http");
    assert_eq!(mine["user"], "guest");
    assert_eq!(mine["tenant"], "/");
    let id = mine["id"].as_u64().unwrap();
    api.get(&format!("/api/connections/{id}")).await.expect(200);
    api.get("/api/connections/x").await.expect(400);
    let r = api
        .send(
            api.request(reqwest::Method::DELETE, &format!("/api/connections/{id}"))
                .header("x-reason", "test"),
        )
        .await;
    r.expect(204);
    let closed = tokio::time::timeout(Duration::from_secs(5), raw.read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(closed, Ok(0) | Err(_)),
        "the connection was closed"
    );
    common::eventually(5, "the closed connection to leave the list", || {
        !gw.engine.connections().iter().any(|c| c.id == id)
    })
    .await;
    api.delete(&format!("/api/connections/{id}"))
        .await
        .expect(404);
    gw.stop().await;
}
