//! A store that fails its writes (a full disk, no descriptors) and recovers:
//! publishers learn of the failure, consumers never see what failed, and
//! once the store can write again it catches up with memory without a
//! restart. Driven on the memory backend, which can be made to fail; the
//! gateway's own tests fill a real filesystem.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

mod common;

use std::time::Duration;

use common::*;
use gw_core::{
    BindingSpec, DEFAULT_GROUP, Destination, Engine, Error, ExchangeKind, ExchangeSpec,
    MemoryStore, PullRequest, QueueSettings, StoreError,
};

fn engine(store: &MemoryStore) -> Engine {
    Engine::open(gw_core::EngineConfig::in_memory(store)).unwrap()
}

fn bodies(q: &gw_core::Queue) -> Vec<String> {
    let req = PullRequest {
        max: 100,
        no_ack: true,
        ..Default::default()
    };
    q.pull(DEFAULT_GROUP, &req)
        .unwrap()
        .iter()
        .map(body)
        .collect()
}

/// Waits until the store says it can write again.
async fn recovered(e: &Engine) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !e.store_health().writable {
            // A write gives the committer something to try with.
            e.wait_durable(e.barrier()).await.ok();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the store recovers");
}

#[tokio::test]
async fn a_failed_confirm_is_never_delivered_and_writes_resume_without_a_restart() {
    let store = MemoryStore::new();
    let e = engine(&store);
    let t = e.tenant("/").unwrap();
    let (q, _) = t
        .declare_queue("q", spec(QueueSettings::classic()))
        .unwrap();
    let r = t.publish_confirmed(msg("q", "before")).unwrap();
    e.wait_durable(r.ticket.unwrap()).await.unwrap();

    store.set_failing(true);
    let r = t.publish_confirmed(msg("q", "lost")).unwrap();
    assert_eq!(
        bodies(&q),
        ["before"],
        "the new one is not delivered while its write is under way"
    );
    let failed = e.wait_durable(r.ticket.unwrap()).await;
    assert!(
        matches!(failed, Err(Error::Storage(StoreError::NotWritable(_)))),
        "{failed:?}"
    );
    let health = e.store_health();
    assert!(!health.writable);
    assert_eq!(health.write_errors, 1);
    assert!(health.last_error.is_some());
    // While the store cannot write, persistent publishes are refused up front.
    assert!(matches!(
        t.publish_confirmed(msg("q", "refused")),
        Err(Error::Storage(StoreError::NotWritable(_)))
    ));
    assert!(bodies(&q).is_empty(), "the failed message is not delivered");

    store.set_failing(false);
    recovered(&e).await;
    let r = t.publish_confirmed(msg("q", "after")).unwrap();
    e.wait_durable(r.ticket.unwrap()).await.unwrap();
    assert_eq!(bodies(&q), ["after"]);
    e.close();

    // Nothing that failed comes back after a restart.
    let e = engine(&store);
    let q = e.tenant("/").unwrap().queue("q").unwrap();
    assert!(bodies(&q).is_empty(), "all were consumed; none resurrected");
    e.close();
}

#[tokio::test]
async fn changes_made_while_the_store_could_not_write_are_stored_once_it_can() {
    let store = MemoryStore::new();
    let e = engine(&store);
    let t = e.tenant("/").unwrap();
    t.declare_exchange("x", ExchangeSpec::new(ExchangeKind::Fanout))
        .unwrap();
    let (q, _) = t
        .declare_queue("keep", spec(QueueSettings::classic()))
        .unwrap();
    t.declare_queue("drop", spec(QueueSettings::classic()))
        .unwrap();
    for i in 0..3 {
        let r = t.publish_confirmed(msg("keep", &format!("m{i}"))).unwrap();
        e.wait_durable(r.ticket.unwrap()).await.unwrap();
    }

    store.set_failing(true);
    // Each of these writes fails; memory changes all the same.
    let got = q
        .pull(
            DEFAULT_GROUP,
            &PullRequest {
                max: 2,
                ..Default::default()
            },
        )
        .unwrap();
    for d in &got {
        q.ack(DEFAULT_GROUP, d.tag).unwrap();
    }
    t.delete_queue("drop", false, false).unwrap();
    t.bind(BindingSpec {
        source: "x".into(),
        destination: Destination::Queue("keep".into()),
        routing_key: String::new(),
        arguments: Default::default(),
    })
    .unwrap();
    assert!(e.wait_durable(e.barrier()).await.is_err());

    store.set_failing(false);
    recovered(&e).await;
    e.close();

    let e = engine(&store);
    let t = e.tenant("/").unwrap();
    assert!(t.queue("drop").is_err(), "the deletion was stored");
    assert_eq!(t.bindings().len(), 1, "the binding was stored");
    let q = t.queue("keep").unwrap();
    assert_eq!(bodies(&q), ["m2"], "the acks were stored");
    e.close();
}

#[tokio::test]
async fn a_publish_without_confirm_is_delivered_at_once() {
    let store = MemoryStore::new();
    let e = engine(&store);
    let t = e.tenant("/").unwrap();
    let (q, _) = t
        .declare_queue("q", spec(QueueSettings::classic()))
        .unwrap();
    t.publish(msg("q", "now")).unwrap();
    assert_eq!(
        bodies(&q),
        ["now"],
        "nobody waits for it, so nothing gates it"
    );
    e.close();
}

#[tokio::test]
async fn a_confirmed_message_reaches_a_waiting_consumer_once_stored() {
    let store = MemoryStore::new();
    let e = engine(&store);
    let t = e.tenant("/").unwrap();
    let (q, _) = t
        .declare_queue("q", spec(QueueSettings::classic()))
        .unwrap();
    let c = q
        .consume(
            DEFAULT_GROUP,
            gw_core::ConsumerSpec {
                no_ack: true,
                ..Default::default()
            },
        )
        .unwrap();
    for i in 0..50 {
        t.publish_confirmed(msg("q", &i.to_string())).unwrap();
    }
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        while got.len() < 50 {
            c.take(50, &mut got).await.unwrap();
        }
    })
    .await
    .expect("every confirmed message arrives once stored");
    let order: Vec<String> = got.iter().map(body).collect();
    assert_eq!(order, (0..50).map(|i| i.to_string()).collect::<Vec<_>>());
    drop(c);
    e.close();
}
