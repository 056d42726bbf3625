//! Restarts: everything durable comes back; unacked messages come back as
//! redeliveries with their delivery counts; delayed schedules, tag filters,
//! dead letters, shared bodies and limits survive; memory-only messages and
//! deleted queues do not come back.

use std::time::Duration;

use crate::common::*;
use gw_core::{
    BindingSpec, ConsumerSpec, DEFAULT_GROUP, Destination, ExchangeKind, ExchangeSpec, Permission,
    QueueKind, QueueSettings, StartPosition,
};

pub async fn durable_state_survives_a_restart(b: Backend) {
    {
        let e = b.open();
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
    let e = b.open();
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

pub async fn fifo_order_and_backlog_on_disk_survive_restart(b: Backend) {
    let big = "x".repeat(64 * 1024);
    {
        let mut c = b.config();
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
    let e = b.open();
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

/// Everything a group still has to deliver, acknowledged as it comes.
fn drain_now(q: &gw_core::Queue, group: &str) -> Vec<String> {
    let req = gw_core::PullRequest {
        max: 1000,
        no_ack: true,
        ..Default::default()
    };
    q.pull(group, &req).unwrap().iter().map(body).collect()
}

pub async fn transient_messages_and_queues_do_not_come_back(b: Backend) {
    {
        let mut c = b.config();
        // Small enough that memory-only messages are written out to free memory.
        c.queue_memory_bytes = 16 * 1024;
        let e = gw_core::Engine::open(c).unwrap();
        let t = e.tenant("/").unwrap();
        t.declare_queue("kept", spec(QueueSettings::classic()))
            .unwrap();
        let gone = gw_core::QueueSpec {
            durable: false,
            ..spec(QueueSettings::classic())
        };
        t.declare_queue("gone", gone).unwrap();
        for i in 0..200 {
            let mut m = msg("kept", &format!("{i}:{}", "y".repeat(1000)));
            if i % 2 == 1 {
                m.properties.delivery_mode = Some(1);
            }
            t.publish(m).unwrap();
            t.publish(msg("gone", "x")).unwrap();
        }
        e.close();
    }
    let e = b.open();
    let t = e.tenant("/").unwrap();
    assert!(
        t.queue("gone").is_err(),
        "a non-durable queue is not recovered"
    );
    let q = t.queue("kept").unwrap();
    let got: Vec<u32> = drain_now(&q, DEFAULT_GROUP)
        .iter()
        .map(|b| b.split(':').next().unwrap().parse().unwrap())
        .collect();
    let persistent: Vec<u32> = (0..200).filter(|i| i % 2 == 0).collect();
    assert_eq!(got, persistent, "only the persistent messages, in order");
    e.close();
}

pub async fn filters_dead_letters_and_rewinds_survive_a_restart(b: Backend) {
    let filter = gw_core::TagFilter {
        tags: vec!["a".into()],
        match_all: false,
    };
    {
        let e = b.open();
        let t = e.tenant("/").unwrap();
        let settings = QueueSettings {
            dead_letter: Some(gw_core::DeadLetterTarget::PerGroup),
            ..QueueSettings::default()
        };
        let (q, _) = t.declare_queue("q", spec(settings)).unwrap();
        q.create_group("tags", StartPosition::Oldest, Some(filter.clone()))
            .unwrap();
        q.create_group("replay", StartPosition::Oldest, None)
            .unwrap();
        for (i, tag) in ["a", "b", "a"].iter().enumerate() {
            let mut m = msg("q", &format!("m{i}"));
            m.tags = vec![(*tag).into()];
            t.publish(m).unwrap();
        }
        let req = gw_core::PullRequest {
            max: 10,
            ..Default::default()
        };
        let got = q.pull("tags", &req).unwrap();
        assert_eq!(got.iter().map(body).collect::<Vec<_>>(), ["m0", "m2"]);
        q.ack("tags", got[0].tag).unwrap();
        q.nack("tags", got[1].tag, false).unwrap();
        assert_eq!(drain_now(&q, "replay"), ["m0", "m1", "m2"]);
        q.rewind("replay", StartPosition::Oldest).unwrap();
        e.close();
    }
    let e = b.open();
    let q = e.tenant("/").unwrap().queue("q").unwrap();
    assert_eq!(q.group_filter("tags").unwrap(), Some(filter));
    assert!(drain_now(&q, "tags").is_empty(), "both settled before");
    let dlq = e.dead_letter_queue("/", "q", "tags").unwrap();
    let dead = drain_now(&dlq, DEFAULT_GROUP);
    assert_eq!(
        dead,
        ["m2"],
        "the rejected message is in the group's dead letters"
    );
    assert_eq!(
        drain_now(&q, "replay"),
        ["m0", "m1", "m2"],
        "the rewind was kept"
    );
    e.close();
}

pub async fn a_body_shared_by_two_queues_survives_until_both_settle(b: Backend) {
    {
        let e = b.open();
        let t = e.tenant("/").unwrap();
        t.declare_exchange("both", ExchangeSpec::new(ExchangeKind::Fanout))
            .unwrap();
        for name in ["q1", "q2"] {
            t.declare_queue(name, spec(QueueSettings::classic()))
                .unwrap();
            t.bind(BindingSpec {
                source: "both".into(),
                destination: Destination::Queue(name.into()),
                routing_key: String::new(),
                arguments: Default::default(),
            })
            .unwrap();
        }
        let mut m = msg("", "one body for two");
        m.exchange = "both".into();
        assert_eq!(t.publish(m).unwrap().routed, 2);
        let q1 = t.queue("q1").unwrap();
        assert_eq!(drain_now(&q1, DEFAULT_GROUP), ["one body for two"]);
        e.close();
    }
    {
        let e = b.open();
        let t = e.tenant("/").unwrap();
        assert!(drain_now(&t.queue("q1").unwrap(), DEFAULT_GROUP).is_empty());
        let q2 = t.queue("q2").unwrap();
        assert_eq!(drain_now(&q2, DEFAULT_GROUP), ["one body for two"]);
        e.close();
    }
    let e = b.open();
    let q2 = e.tenant("/").unwrap().queue("q2").unwrap();
    assert!(drain_now(&q2, DEFAULT_GROUP).is_empty());
    e.close();
}

pub async fn a_deleted_queue_stays_deleted_and_its_name_is_reusable(b: Backend) {
    {
        let e = b.open();
        let t = e.tenant("/").unwrap();
        let (old, _) = t
            .declare_queue("q", spec(QueueSettings::classic()))
            .unwrap();
        for i in 0..3 {
            t.publish(msg("q", &format!("old{i}"))).unwrap();
        }
        assert_eq!(t.delete_queue("q", false, false).unwrap(), 3);
        let (new, created) = t
            .declare_queue("q", spec(QueueSettings::classic()))
            .unwrap();
        assert!(created);
        assert_ne!(old.id(), new.id());
        t.publish(msg("q", "new")).unwrap();
        e.close();
    }
    let e = b.open();
    let q = e.tenant("/").unwrap().queue("q").unwrap();
    assert_eq!(drain_now(&q, DEFAULT_GROUP), ["new"]);
    e.close();
}

pub async fn retained_messages_and_adapter_state_survive(b: Backend) {
    {
        let e = b.open();
        let t = e.tenant("/").unwrap();
        let mut kept = gw_core::Message::new("21");
        kept.properties.delivery_mode = Some(2);
        t.set_retained("home.kitchen", Some(kept));
        let mut cleared = gw_core::Message::new("old");
        cleared.properties.delivery_mode = Some(2);
        t.set_retained("home.hall", Some(cleared));
        t.set_retained("home.hall", None);
        t.set_retained("home.memory-only", Some(gw_core::Message::new("x")));
        e.put_state("sessions", b"c1", b"one");
        e.put_state("sessions", b"c2", b"two");
        e.put_state("other", b"c1", b"elsewhere");
        e.delete_state("sessions", b"c2");
        e.close();
    }
    let e = b.open();
    let t = e.tenant("/").unwrap();
    let retained: Vec<(String, Vec<u8>)> = t
        .retained(|_| true)
        .into_iter()
        .map(|(topic, m)| (topic, m.body.to_vec()))
        .collect();
    assert_eq!(retained, [("home.kitchen".to_owned(), b"21".to_vec())]);
    assert_eq!(
        e.scan_state("sessions").unwrap(),
        [(b"c1".to_vec(), b"one".to_vec())]
    );
    e.close();
}

pub async fn a_backlog_behind_the_memory_window_is_read_back_in_order(b: Backend) {
    let config = || {
        let mut c = b.config();
        c.queue_memory_bytes = 64 * 1024;
        c
    };
    {
        let e = gw_core::Engine::open(config()).unwrap();
        let t = e.tenant("/").unwrap();
        let (q, _) = t
            .declare_queue("deep", spec(QueueSettings::classic()))
            .unwrap();
        q.create_group("late", StartPosition::Oldest, None).unwrap();
        for i in 0..500 {
            t.publish(msg("deep", &format!("{i}:{}", "z".repeat(1000))))
                .unwrap();
        }
        // A group far behind the window reads from the backend.
        let first: Vec<String> = drain_now(&q, "late");
        assert_eq!(first.len(), 500);
        e.close();
    }
    let e = gw_core::Engine::open(config()).unwrap();
    let q = e.tenant("/").unwrap().queue("deep").unwrap();
    let order: Vec<u32> = drain_now(&q, DEFAULT_GROUP)
        .iter()
        .map(|b| b.split(':').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(order, (0..500).collect::<Vec<u32>>());
    assert!(drain_now(&q, "late").is_empty());
    e.close();
}

pub async fn ids_are_never_reused_across_restarts(b: Backend) {
    let mut last = 0;
    for round in 0..3 {
        let e = b.open();
        let t = e.tenant("/").unwrap();
        t.declare_queue("ids", spec(QueueSettings::classic()))
            .unwrap();
        let id = t.publish(msg("ids", "x")).unwrap().message_id;
        assert!(id > last, "round {round}: id {id} after {last}");
        last = id;
        e.close();
    }
}

pub async fn topic_permissions_survive_a_restart(b: Backend) {
    let rule = gw_core::TopicPermission {
        tenant: "/".into(),
        exchange: "amq.topic".into(),
        write: r"^devices\.%u\..*".into(),
        read: ".*".into(),
    };
    {
        let e = b.open();
        e.put_user("dev1", "pw", vec![]).unwrap();
        e.put_user("dev2", "pw", vec![]).unwrap();
        e.set_permission("dev1", Permission::full("/")).unwrap();
        e.set_topic_permission("dev1", rule.clone()).unwrap();
        e.set_topic_permission("dev2", rule.clone()).unwrap();
        let other = gw_core::TopicPermission {
            exchange: "events".into(),
            ..rule.clone()
        };
        e.set_topic_permission("dev1", other).unwrap();
        assert_eq!(
            e.clear_topic_permissions("dev1", "/", Some("events"))
                .unwrap(),
            1
        );
        e.delete_user("dev2").unwrap();
        // Unknown user, tenant, or a pattern that does not compile: refused.
        assert!(e.set_topic_permission("nobody", rule.clone()).is_err());
        let bad = gw_core::TopicPermission {
            write: "(".into(),
            ..rule.clone()
        };
        assert!(e.set_topic_permission("dev1", bad).is_err());
        e.close();
    }
    let e = b.open();
    assert_eq!(e.topic_permissions(), vec![("dev1".to_owned(), rule)]);
    let p = e.authenticate("dev1", b"pw", None).unwrap();
    let rules = p.topic_rules("/", "").unwrap();
    assert!(
        rules
            .check("amq.topic", gw_core::Access::Write, "devices.dev1.t")
            .is_ok()
    );
    assert!(
        rules
            .check("amq.topic", gw_core::Access::Write, "devices.dev2.t")
            .is_err()
    );
    e.put_user("dev2", "pw", vec![]).unwrap();
    assert!(
        e.authenticate("dev2", b"pw", None)
            .unwrap()
            .topic_rules("/", "")
            .is_none(),
        "a deleted user's rules went with it"
    );
}
