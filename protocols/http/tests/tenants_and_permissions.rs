//! Users see only the tenants they have permissions on (other tenants'
//! objects are 404, not 403), and every DMS operation checks the
//! RabbitMQ-style configure/write/read patterns.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use gw_core::Permission;
use serde_json::json;
use tower::ServiceExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_isolated_and_permissions_checked() {
    let gw = common::start().await;
    let api = &gw.api;
    let e = &gw.engine;
    e.create_tenant("shop").unwrap();
    e.put_user("bob", "pw", vec![]).unwrap();
    e.set_permission("bob", Permission::full("shop")).unwrap();
    e.put_user("carol", "pw", vec![]).unwrap();
    e.set_permission(
        "carol",
        Permission {
            tenant: "shop".into(),
            configure: "^$".into(),
            write: "^orders$".into(),
            read: "".into(),
        },
    )
    .unwrap();
    let in_root = api.create_queue("%2F", json!({"name": "secret"})).await;

    let bob = api.as_user("bob", "pw");
    let orders = bob.create_queue("shop", json!({"name": "orders"})).await;
    bob.create_group("shop", &orders, "g").await;
    // Another tenant's objects do not exist for bob.
    let r = bob.get("/v1.0/%2F/queues").await;
    r.expect(404);
    assert!(r.error_msg().contains("tenant"), "{}", r.error_msg());
    bob.get(&format!("/v1.0/%2F/queues/{in_root}"))
        .await
        .expect(404);
    // Nor are they reachable through his own tenant.
    bob.get(&format!("/v1.0/shop/queues/{in_root}"))
        .await
        .expect(404);
    bob.get("/api/overview").await.expect(403);

    let carol = api.as_user("carol", "pw");
    carol.get("/v1.0/shop/queues").await.expect(200);
    let r = carol
        .post("/v1.0/shop/queues", json!({"name": "mine"}))
        .await;
    r.expect(403);
    assert!(r.error_msg().contains("configure"), "{}", r.error_msg());
    carol
        .send_messages("shop", "orders", json!([{"body": "from carol"}]))
        .await;
    carol
        .get(&format!(
            "/v1.0/shop/queues/{orders}/groups/g/messages?time_wait=1"
        ))
        .await
        .expect(403);
    carol
        .delete(&format!("/v1.0/shop/queues/{orders}"))
        .await
        .expect(403);
    carol
        .post(
            &format!("/v1.0/shop/queues/{orders}/groups"),
            json!({"groups": [{"name": "c"}]}),
        )
        .await
        .expect(403);
    let got = bob.consume("shop", &orders, "g", "time_wait=1").await;
    assert_eq!(got[0]["message"]["body"], "from carol");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_only_from_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let engine = gw_core::Engine::open(gw_core::EngineConfig::new(dir.path())).unwrap();
    let app = gw_http::router(gw_http::AppState::standalone(
        engine.clone(),
        gw_http::Config::default(),
    ));
    let request = |peer: &str| {
        let peer: SocketAddr = peer.parse().unwrap();
        let mut req = axum::http::Request::get("/v1.0/%2F/queues")
            .header("authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")
            .body(Body::empty())
            .unwrap();
        req.extensions_mut().insert(ConnectInfo(peer));
        req
    };
    let local = app
        .clone()
        .oneshot(request("127.0.0.1:4000"))
        .await
        .unwrap();
    assert_eq!(local.status(), 200);
    let remote = app.clone().oneshot(request("10.1.2.3:4000")).await.unwrap();
    assert_eq!(remote.status(), 401);
    engine.close();
}
