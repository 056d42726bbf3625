//! A store that cannot write (a full disk, made here with an in-memory store
//! told to fail): an MQTT 5 QoS 1 publish is answered PUBACK 0x80 and never
//! delivered, a 3.1.1 publisher loses its connection unacknowledged (it has
//! no way to hear a refusal, so it republishes), and once the store writes
//! again publishing works without a restart.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Server, v4, v5};
use gw_core::{EngineConfig, MemoryStore};

async fn writable(s: &Server) {
    let t0 = Instant::now();
    while !s.engine.store_health().writable {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "store never writable again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_the_store_cannot_write_is_refused_and_never_delivered() {
    let store = MemoryStore::new();
    let memory = store.clone();
    let s = Server::start_with_engine(gw_mqtt::Config::default(), move |ec| {
        *ec = EngineConfig::in_memory(&memory);
    })
    .await;
    let mut o = v5::options(s.addr, "sub");
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(3600));
    let (mut sub, _) = v5::connect_with(o).await;
    sub.subscribe("f/#", v5::QoS::AtLeastOnce).await;
    let mut publ = v5::connect(s.addr, "pub5").await;

    store.set_failing(true);
    publ.client
        .publish("f/x", v5::QoS::AtLeastOnce, false, "lost")
        .await
        .unwrap();
    assert_eq!(
        publ.puback().await.reason,
        v5::PubAckReason::UnspecifiedError
    );
    // 3.1.1: no refusal exists; the connection ends without a PUBACK.
    let mut old = v4::connect(s.addr, "pub4").await;
    old.client
        .publish("f/y", v4::QoS::AtLeastOnce, false, "lost too")
        .await
        .unwrap();
    let closed = old.closed().await;
    assert!(!closed.is_empty());
    sub.no_publish().await;

    store.set_failing(false);
    writable(&s).await;
    publ.client
        .publish("f/x", v5::QoS::AtLeastOnce, false, "kept")
        .await
        .unwrap();
    assert_eq!(publ.puback().await.reason, v5::PubAckReason::Success);
    assert_eq!(sub.publish_packet().await.payload, "kept".as_bytes());
    sub.no_publish().await;
    s.stop().await;
}
