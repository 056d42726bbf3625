//! Restart recovery: everything durable comes back; unacked messages come back
//! as redeliveries with their delivery counts; delayed schedules survive.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

mod common;

use std::time::Duration;

use common::*;
use gw_core::{
    BindingSpec, ConsumerSpec, DEFAULT_GROUP, Destination, ExchangeKind, ExchangeSpec, Permission,
    QueueKind, QueueSettings, StartPosition,
};

#[tokio::test]
async fn durable_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = open(dir.path());
        e.create_tenant("t2").unwrap();
        e.put_user("alice", "pw", vec![]).unwrap();
        e.set_permission("alice", Permission::full("t2")).unwrap();
        let t = e.tenant("t2").unwrap();
        t.declare_exchange("events", ExchangeSpec::new(ExchangeKind::Topic))
            .unwrap();
        let (q, _) = t
            .declare_queue("q", spec(QueueSettings::classic()))
            .unwrap();
        q.create_group("audit", StartPosition::Oldest, None)
            .unwrap();
        t.bind(BindingSpec {
            source: "events".into(),
            destination: Destination::Queue("q".into()),
            routing_key: "a.#".into(),
            arguments: Default::default(),
        })
        .unwrap();
        for i in 0..10 {
            let mut m = msg("a.b", &i.to_string());
            m.exchange = "events".into();
            let r = t.publish(m).unwrap();
            e.wait_durable(r.ticket.unwrap()).await.unwrap();
        }
        let mut transient = msg("a.b", "transient");
        transient.exchange = "events".into();
        transient.properties.delivery_mode = Some(1);
        t.publish(transient).unwrap();
        // Default group: ack 0..4, leave 5 and 6 in flight (6 nacked once before).
        let c = q
            .consume(
                DEFAULT_GROUP,
                ConsumerSpec {
                    prefetch_count: 7,
                    ..Default::default()
                },
            )
            .unwrap();
        let mut got = Vec::new();
        c.take(7, &mut got).await.unwrap();
        c.nack(got[6].tag, true).unwrap();
        for d in &got[..5] {
            c.ack(d.tag).unwrap();
        }
        let mut again = Vec::new();
        c.take(1, &mut again).await.unwrap();
        assert_eq!(body(&again[0]), "6");
        let mut delayed = msg("q", "delayed");
        delayed.deliver_at = Some(gw_core::now_millis() + 1500);
        let r = t.publish(delayed).unwrap();
        e.wait_durable(r.ticket.unwrap()).await.unwrap();
        // Closed with deliveries in flight, as a crash would leave them.
        e.close();
        drop(c);
    }
    let e = open(dir.path());
    assert!(
        e.authenticate("alice", b"pw", None)
            .unwrap()
            .may_use_tenant("t2")
    );
    let t = e.tenant("t2").unwrap();
    assert_eq!(t.exchange("events").unwrap().spec.kind, ExchangeKind::Topic);
    let q = t.queue("q").unwrap();
    assert_eq!(
        q.group_names(),
        vec![DEFAULT_GROUP.to_string(), "audit".to_string()]
    );
    let got = drain(&q, DEFAULT_GROUP, false).await;
    let bodies: Vec<String> = got.iter().map(body).collect();
    assert_eq!(
        bodies,
        vec!["5", "6", "7", "8", "9"],
        "unacked come back, the transient one is gone"
    );
    assert!(got[0].redelivered && got[1].redelivered && !got[2].redelivered);
    assert_eq!(
        got[1].delivery_count(),
        3,
        "6 was delivered twice before the restart"
    );
    assert_eq!(drain(&q, "audit", true).await.len(), 10);
    // Routing still works through the recovered binding.
    let mut m = msg("a.c", "after");
    m.exchange = "events".into();
    assert_eq!(t.publish(m).unwrap().routed, 1);
    // The delayed message arrives after its time, not before.
    let c = q
        .consume(
            DEFAULT_GROUP,
            ConsumerSpec {
                no_ack: true,
                ..Default::default()
            },
        )
        .unwrap();
    let mut later = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        while !later.iter().any(|d| body(d) == "delayed") {
            c.take(10, &mut later).await.unwrap();
        }
    })
    .await
    .expect("delayed message delivered after restart");
    drop(c);
    e.close();
}

#[tokio::test]
async fn fifo_order_and_backlog_on_disk_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let big = "x".repeat(64 * 1024);
    {
        let mut c = gw_core::EngineConfig::new(dir.path());
        c.sync = gw_core::SyncPolicy::Never;
        c.queue_memory_bytes = 256 * 1024; // force most of the backlog out of memory
        let e = gw_core::Engine::open(c).unwrap();
        let t = e.tenant("/").unwrap();
        let s = QueueSettings {
            kind: QueueKind::Fifo,
            ..QueueSettings::classic()
        };
        t.declare_queue("f", spec(s)).unwrap();
        for i in 0..40 {
            let mut m = msg("f", &format!("{i}:{big}"));
            m.group_key = Some(format!("k{}", i % 3));
            t.publish(m).unwrap();
        }
        // Read part of it while most is on disk.
        let q = t.queue("f").unwrap();
        let c = q.consume(DEFAULT_GROUP, ConsumerSpec::default()).unwrap();
        let mut got = Vec::new();
        c.take(100, &mut got).await.unwrap();
        assert_eq!(got.len(), 3, "one per key");
        for d in &got {
            c.ack(d.tag).unwrap();
        }
        eprintln!("before drop {:?} {:?}", q.bounds(), q.stats());
        drop(c);
        eprintln!("before close {:?} {:?}", q.bounds(), q.stats());
        e.close();
    }
    let e = open(dir.path());
    let q = e.tenant("/").unwrap().queue("f").unwrap();
    eprintln!("{:?} {:?}", q.bounds(), q.stats());
    let c = q.consume(DEFAULT_GROUP, ConsumerSpec::default()).unwrap();
    let mut order = Vec::new();
    loop {
        let mut got = Vec::new();
        match tokio::time::timeout(Duration::from_millis(300), c.take(100, &mut got)).await {
            Ok(Ok(_)) => {}
            _ => break,
        }
        for d in got {
            let n: u32 = body(&d).split(':').next().unwrap().parse().unwrap();
            order.push(n);
            c.ack(d.tag).unwrap();
        }
    }
    assert_eq!(order.len(), 37);
    for k in 0..3 {
        let of_key: Vec<u32> = order.iter().copied().filter(|n| n % 3 == k).collect();
        assert!(
            of_key.windows(2).all(|w| w[0] < w[1]),
            "key {k} in order: {of_key:?}"
        );
    }
    drop(c);
    e.close();
}

#[test]
fn a_locked_or_foreign_data_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    let second = gw_core::Engine::open(gw_core::EngineConfig::new(dir.path()));
    assert!(
        matches!(
            second,
            Err(gw_core::Error::Storage(gw_core::StoreError::Locked(_)))
        ),
        "{second:?}"
    );
    e.close();
    drop(e);
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("version"), b"garbage").unwrap();
    let r = gw_core::Engine::open(gw_core::EngineConfig::new(other.path()));
    assert!(r.is_err(), "a corrupt directory is refused");
}
