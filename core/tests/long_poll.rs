//! Long polls: cancel safety and wake-ups.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use gw_core::{Engine, EngineConfig, Message, PullRequest, QueueSpec, StartPosition};

/// A long poll whose client goes away is dropped; its waiter must not take
/// the next message's wake-up from a live poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_pull_wait_steals_the_next_wake_up() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(EngineConfig::new(dir.path())).unwrap();
    let tenant = engine.tenant("/").unwrap();
    let (q, _) = tenant
        .declare_queue(
            "q",
            QueueSpec {
                durable: true,
                ..QueueSpec::default()
            },
        )
        .unwrap();
    q.create_group("g", StartPosition::Oldest, None).unwrap();
    let req = PullRequest {
        max: 10,
        lease_timeout: Some(Duration::from_secs(30)),
        ..PullRequest::default()
    };
    // The first poll gives up after 50 ms (its future is dropped).
    let gone = tokio::time::timeout(
        Duration::from_millis(50),
        q.pull_wait("g", &req, Duration::from_secs(10)),
    )
    .await;
    assert!(gone.is_err());
    let live = {
        let (q, req) = (q.clone(), req.clone());
        tokio::spawn(async move {
            let got = q
                .pull_wait("g", &req, Duration::from_secs(3))
                .await
                .unwrap();
            (Instant::now(), got.len())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sent = Instant::now();
    let mut m = Message::new("x");
    m.routing_key = "q".into();
    tenant.publish(m).unwrap();
    let (at, n) = live.await.unwrap();
    assert_eq!(n, 1, "the live poll gets the message");
    assert!(
        at - sent < Duration::from_millis(500),
        "woken at once, not at its timeout"
    );
    engine.close();
}
