//! Logins (engine users, `tenant:user`, anonymous per configuration),
//! permissions (publish, subscribe, will) and the connection limit.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Server, eventually, v4, v5};
use gw_core::Permission;
use gw_mqtt::{Anonymous, Config};
use tokio::io::AsyncReadExt;

fn with_login(o: &mut v4::MqttOptions, user: &str, password: &str) {
    o.set_credentials(user, password);
}

#[tokio::test]
async fn users_log_in_with_their_password() {
    let s = Server::start().await;
    s.engine.put_user("alice", "secret", vec![]).unwrap();
    s.engine
        .set_permission("alice", Permission::full("/"))
        .unwrap();
    let mut o = v4::options(s.addr, "alice-1");
    with_login(&mut o, "alice", "secret");
    let (_c, ack) = v4::connect_with(o).await;
    assert_eq!(ack.code, v4::ConnectReturnCode::Success);
    // Wrong password: 3.1.1 return code 4, MQTT 5 reason 0x86.
    let mut o = v4::options(s.addr, "alice-2");
    with_login(&mut o, "alice", "wrong");
    let code = v4::connect_with_refusal(o).await;
    assert_eq!(code, v4::ConnectReturnCode::BadUserNamePassword);
    let mut o = v5::options(s.addr, "alice-3");
    o.set_credentials("alice", "wrong");
    assert_eq!(
        v5::connect_refused(o).await,
        v5::ConnectReturnCode::BadUserNamePassword
    );
    assert!(s.engine.connections().iter().all(|c| c.client != "alice-2"));
    s.stop().await;
}

#[tokio::test]
async fn tenant_prefix_selects_a_tenant_and_tenants_are_apart() {
    let s = Server::start().await;
    s.engine.create_tenant("t1").unwrap();
    s.engine.put_user("bob", "pw", vec![]).unwrap();
    s.engine
        .set_permission("bob", Permission::full("t1"))
        .unwrap();
    let mut o = v4::options(s.addr, "same-id");
    o.set_credentials("t1:bob", "pw");
    let (mut in_t1, ack) = v4::connect_with(o.clone()).await;
    assert_eq!(ack.code, v4::ConnectReturnCode::Success);
    in_t1.subscribe("iso", v4::QoS::AtLeastOnce).await;
    // The same client id in the default tenant is another client: no takeover.
    let mut in_root = v4::connect(s.addr, "same-id").await;
    in_root.subscribe("iso", v4::QoS::AtLeastOnce).await;
    let mut publ = v4::connect(s.addr, "root-pub").await;
    publ.publish("iso", v4::QoS::AtLeastOnce, false, b"root")
        .await;
    assert_eq!(&in_root.publish_packet().await.payload[..], b"root");
    in_t1.no_publish().await;
    assert!(
        s.engine
            .tenant("t1")
            .unwrap()
            .queue("mqtt-session-same-id")
            .is_ok()
    );
    // bob has no rights on the default tenant.
    let mut o = v4::options(s.addr, "bob-root");
    o.set_credentials("bob", "pw");
    assert_eq!(
        v4::connect_with_refusal(o).await,
        v4::ConnectReturnCode::NotAuthorized
    );
    // An unknown tenant.
    let mut o = v4::options(s.addr, "bob-nowhere");
    o.set_credentials("nowhere:bob", "pw");
    assert_eq!(
        v4::connect_with_refusal(o).await,
        v4::ConnectReturnCode::NotAuthorized
    );
    s.stop().await;
}

#[tokio::test]
async fn anonymous_logins_follow_the_configuration() {
    // Default: from loopback, as guest.
    let s = Server::start().await;
    let c = v4::connect(s.addr, "anon").await;
    assert!(
        s.engine
            .connections()
            .iter()
            .any(|c| c.client == "anon" && c.user == "guest")
    );
    c.disconnect().await;
    s.stop().await;
    let s = Server::start_with(Config {
        allow_anonymous: Anonymous::Never,
        ..Config::default()
    })
    .await;
    assert_eq!(
        v4::connect_with_refusal(v4::options(s.addr, "anon")).await,
        v4::ConnectReturnCode::NotAuthorized
    );
    assert_eq!(
        v5::connect_refused(v5::options(s.addr, "anon5")).await,
        v5::ConnectReturnCode::NotAuthorized
    );
    // A password login still works.
    let mut o = v4::options(s.addr, "guest-login");
    o.set_credentials("guest", "guest");
    let (_c, ack) = v4::connect_with(o).await;
    assert_eq!(ack.code, v4::ConnectReturnCode::Success);
    s.stop().await;
    // Anonymous mapped to another user, with that user's rights.
    let s = Server::start_with(Config {
        allow_anonymous: Anonymous::Always,
        anonymous_user: "reader".into(),
        ..Config::default()
    })
    .await;
    s.engine.put_user("reader", "x", vec![]).unwrap();
    s.engine
        .set_permission(
            "reader",
            Permission {
                tenant: "/".into(),
                configure: ".*".into(),
                write: "^mqtt-".into(),
                read: ".*".into(),
            },
        )
        .unwrap();
    let mut c = v5::connect(s.addr, "anon-reader").await;
    assert_eq!(
        c.subscribe("r", v5::QoS::AtLeastOnce).await,
        vec![v5::SubscribeReasonCode::Success(v5::QoS::AtLeastOnce)]
    );
    c.client
        .publish("r", v5::QoS::AtLeastOnce, false, "x")
        .await
        .unwrap();
    assert_eq!(c.puback().await.reason, v5::PubAckReason::NotAuthorized);
    s.stop().await;
}

#[tokio::test]
async fn permissions_are_checked_per_operation() {
    let s = Server::start().await;
    s.engine.put_user("carol", "pw", vec![]).unwrap();
    // May publish, may not subscribe (no read).
    s.engine
        .set_permission(
            "carol",
            Permission {
                tenant: "/".into(),
                configure: ".*".into(),
                write: ".*".into(),
                read: "".into(),
            },
        )
        .unwrap();
    let mut o = v5::options(s.addr, "carol5");
    o.set_credentials("carol", "pw");
    let (mut c, _) = v5::connect_with(o).await;
    assert_eq!(
        c.subscribe("p", v5::QoS::AtLeastOnce).await,
        vec![v5::SubscribeReasonCode::NotAuthorized]
    );
    let mut o = v4::options(s.addr, "carol4");
    o.set_credentials("carol", "pw");
    let (mut c4, _) = v4::connect_with(o).await;
    assert_eq!(
        c4.subscribe("p", v4::QoS::AtLeastOnce).await,
        vec![rumqttc::SubscribeReasonCode::Failure]
    );
    // No write: MQTT 5 gets PUBACK 0x87, 3.1.1 is disconnected [MQTT-3.3.5-2];
    // a will cannot be set either. (A new user: principals are shared per
    // user for a few seconds, so carol's connections keep her old rights.)
    s.engine.put_user("dave", "pw", vec![]).unwrap();
    s.engine
        .set_permission(
            "dave",
            Permission {
                tenant: "/".into(),
                configure: ".*".into(),
                write: "^mqtt-".into(),
                read: ".*".into(),
            },
        )
        .unwrap();
    let mut o = v5::options(s.addr, "dave5");
    o.set_credentials("dave", "pw");
    let (mut c, _) = v5::connect_with(o).await;
    c.client
        .publish("p", v5::QoS::AtLeastOnce, false, "x")
        .await
        .unwrap();
    assert_eq!(c.puback().await.reason, v5::PubAckReason::NotAuthorized);
    let mut o = v4::options(s.addr, "dave4");
    o.set_credentials("dave", "pw");
    let (mut c4, _) = v4::connect_with(o).await;
    c4.client
        .publish("p", v4::QoS::AtLeastOnce, false, "x")
        .await
        .unwrap();
    c4.closed().await;
    let mut o = v4::options(s.addr, "dave-will");
    o.set_credentials("dave", "pw");
    o.set_last_will(v4::LastWill::new("w", "x", v4::QoS::AtMostOnce, false));
    assert_eq!(
        v4::connect_with_refusal(o).await,
        v4::ConnectReturnCode::NotAuthorized
    );
    s.stop().await;
}

#[tokio::test]
async fn connection_limit() {
    let s = Server::start_with(Config {
        max_connections: 2,
        ..Config::default()
    })
    .await;
    let a = v4::connect(s.addr, "a").await;
    let _b = v4::connect(s.addr, "b").await;
    assert_eq!(
        v4::connect_with_refusal(v4::options(s.addr, "c")).await,
        v4::ConnectReturnCode::ServiceUnavailable
    );
    assert_eq!(
        v5::connect_refused(v5::options(s.addr, "d")).await,
        v5::ConnectReturnCode::QuotaExceeded
    );
    // A connection over the limit that never sends its CONNECT is closed
    // after a short wait, without an answer.
    let mut silent = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0, "no answer before closing");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // When one of the two leaves, the next client is served.
    a.disconnect().await;
    eventually("a freed connection slot", || {
        let mqtt = s
            .engine
            .connections()
            .iter()
            .filter(|c| c.protocol == "mqtt")
            .count();
        (mqtt < 2).then_some(())
    })
    .await;
    let _e = v4::connect(s.addr, "e").await;
    s.stop().await;
}
