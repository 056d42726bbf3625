//! A store that cannot write (a full disk, made here with an in-memory store
//! told to fail): a declaration it cannot store is answered with an error and
//! taken back, so neither the running gateway nor a restarted one has it.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::Gateway;
use gw_core::{Engine, EngineConfig, MemoryStore};
use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::FieldTable;

async fn start(store: &MemoryStore) -> Gateway {
    let engine = Engine::open(EngineConfig::in_memory(store)).unwrap();
    Gateway::start_engine(
        engine,
        std::path::Path::new("."),
        gw_amqp::Config::default(),
    )
    .await
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

/// Whether a passive declare finds the queue (on a fresh connection).
async fn queue_exists(gw: &Gateway, name: &str) -> bool {
    let conn = gw.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let found = ch
        .queue_declare(name.into(), passive, FieldTable::default())
        .await
        .is_ok();
    let _ = conn.close(200, "bye".into()).await;
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declare_that_cannot_be_stored_is_refused_and_taken_back() {
    let store = MemoryStore::new();
    let gw = start(&store).await;
    let conn = gw.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare("kept".into(), durable(), FieldTable::default())
        .await
        .unwrap();

    store.set_failing(true);
    let err = ch
        .queue_declare("never-stored".into(), durable(), FieldTable::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("INTERNAL_ERROR"), "{err}");
    let conn = gw.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let err = ch
        .exchange_declare(
            "x-never".into(),
            lapin::ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("INTERNAL_ERROR"), "{err}");
    let tenant = gw.engine.tenant("/").unwrap();
    assert!(tenant.queue("never-stored").is_err(), "kept in memory");
    assert!(tenant.exchange("x-never").is_err(), "kept in memory");

    store.set_failing(false);
    let t0 = Instant::now();
    while !gw.engine.store_health().writable {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "never writable again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(queue_exists(&gw, "kept").await);
    assert!(!queue_exists(&gw, "never-stored").await);
    gw.stop().await;

    let gw = start(&store).await;
    assert!(queue_exists(&gw, "kept").await);
    assert!(!queue_exists(&gw, "never-stored").await);
    assert!(gw.engine.tenant("/").unwrap().exchange("x-never").is_err());
    gw.stop().await;
}
