//! A login whose password is a gateway token (`POST /v3/auth/tokens`, or the
//! engine's `issue_token`), as RabbitMQ's OAuth 2 backend takes a JWT: the
//! connection lives as long as its token, `connection.update-secret` with a
//! newer token of the same user refreshes it, anything else ends it with 403.
//! Through lapin.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::lapin_util::*;
use common::{Gateway, within};
use gw_core::Permission;
use lapin::options::QueueDeclareOptions;
use lapin::types::{FieldTable, LongString};
use lapin::{Connection, ConnectionProperties};

/// A token for alice on "shop" living `ttl_ms`.
fn token(gw: &Gateway, user: &str, tenant: &str, ttl_ms: u64) -> String {
    let p = gw.engine.principal(user).unwrap();
    gw.engine
        .issue_token(&p, tenant, "password", ttl_ms)
        .unwrap()
        .0
}

fn setup(gw: &Gateway) {
    let e = &gw.engine;
    e.create_tenant("shop").unwrap();
    e.create_tenant("other").unwrap();
    for user in ["alice", "oscar"] {
        e.put_user(user, "pw", vec![]).unwrap();
    }
    e.set_permission("alice", Permission::full("shop")).unwrap();
    e.set_permission("alice", Permission::full("other"))
        .unwrap();
    e.set_permission("oscar", Permission::full("shop")).unwrap();
}

async fn connect(gw: &Gateway, user: &str, secret: &str, vhost: &str) -> lapin::Result<Connection> {
    let uri = format!("amqp://{user}:{secret}@{}/{vhost}", gw.addr);
    Connection::connect(&uri, ConnectionProperties::default()).await
}

async fn declare_on(conn: &Connection, name: &str) -> lapin::Result<()> {
    let ch = conn.create_channel().await?;
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_secret_with_a_new_token_keeps_a_token_login_alive() {
    let gw = Gateway::start().await;
    setup(&gw);
    let first = token(&gw, "alice", "shop", 1_500);
    let conn = within(5, connect(&gw, "alice", &first, "shop"))
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "refreshed").await;
    let second = token(&gw, "alice", "shop", 60_000);
    within(
        5,
        conn.update_secret(LongString::from(second.as_str()), "token refresh".into()),
    )
    .await
    .unwrap();
    // Past the first token's life, the connection works on the second.
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    publish(&ch, "", "refreshed", b"x").await;
    let mut c = consume(&ch, "refreshed", true).await;
    assert_eq!(next(&mut c).await.data, b"x");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_ends_the_connection_at_its_next_use() {
    let gw = Gateway::start().await;
    setup(&gw);
    let short = token(&gw, "alice", "shop", 400);
    let conn = within(5, connect(&gw, "alice", &short, "shop"))
        .await
        .unwrap();
    declare_on(&conn, "before").await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let e = within(5, declare_on(&conn, "after")).await.unwrap_err();
    assert!(
        e.to_string().contains("ACCESS_REFUSED") && e.to_string().contains("expired"),
        "{e}"
    );
    assert!(!conn.status().connected());
    // And the expired token does not log in again.
    assert!(
        within(5, connect(&gw, "alice", &short, "shop"))
            .await
            .is_err()
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_new_secret_ends_a_token_login_with_403() {
    let gw = Gateway::start().await;
    setup(&gw);
    // Not a token; another user's token; a token of another project.
    let wrong = [
        "not a token".to_owned(),
        token(&gw, "oscar", "shop", 60_000),
        token(&gw, "alice", "other", 60_000),
    ];
    for secret in wrong {
        let login = token(&gw, "alice", "shop", 60_000);
        let conn = within(5, connect(&gw, "alice", &login, "shop"))
            .await
            .unwrap();
        let e = within(
            5,
            conn.update_secret(LongString::from(secret.as_str()), "refresh".into()),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("ACCESS_REFUSED"), "{secret}: {e}");
        assert!(
            within(5, declare_on(&conn, "x")).await.is_err(),
            "{secret}: the connection went on"
        );
    }
    // A token of another project does not open this vhost at all.
    let elsewhere = token(&gw, "alice", "other", 60_000);
    assert!(
        within(5, connect(&gw, "alice", &elsewhere, "shop"))
            .await
            .is_err()
    );
    // The password still logs in (and update-secret stays lenient for it).
    let conn = within(5, connect(&gw, "alice", "pw", "shop"))
        .await
        .unwrap();
    within(
        5,
        conn.update_secret(LongString::from("anything"), "refresh".into()),
    )
    .await
    .unwrap();
    declare_on(&conn, "password-user").await.unwrap();
    gw.stop().await;
}
