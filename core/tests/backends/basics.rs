//! The engine's public API: queues, groups, acks, FIFO, delay, tags, dead letters.

use std::time::Duration;

use crate::common::*;
use gw_core::{
    BindingSpec, ConsumerSpec, DEFAULT_GROUP, DeadLetterTarget, Destination, Error, ExchangeKind,
    ExchangeSpec, HeaderValue, Overflow, PullRequest, QueueKind, QueueSettings, StartPosition,
    TagFilter,
};

pub async fn publish_consume_ack_and_redeliver_on_nack(b: Backend) {
    let e = b.open();
    let t = e.tenant("/").unwrap();
    let (q, created) = t
        .declare_queue("q", spec(QueueSettings::classic()))
        .unwrap();
    assert!(created);
    for i in 0..5 {
        let r = t.publish(msg("q", &format!("m{i}"))).unwrap();
        assert_eq!(r.routed, 1);
    }
    assert_eq!(q.message_count(), 5);
    let c = q
        .consume(
            DEFAULT_GROUP,
            ConsumerSpec {
                prefetch_count: 2,
                ..Default::default()
            },
        )
        .unwrap();
    let mut got = Vec::new();
    c.take(10, &mut got).await.unwrap();
    assert_eq!(got.len(), 2, "prefetch window of 2");
    assert_eq!(body(&got[0]), "m0");
    c.nack(got[0].tag, true).unwrap();
    c.ack(got[1].tag).unwrap();
    assert!(matches!(c.ack(got[1].tag), Err(Error::UnknownDelivery(_))));
    let mut again = Vec::new();
    c.take(10, &mut again).await.unwrap();
    assert_eq!(body(&again[0]), "m0");
    assert!(again[0].redelivered);
    assert_eq!(again[0].delivery_count(), 2);
    drop(c);
    e.close();
}

pub async fn groups_each_see_every_message_and_consumers_compete(b: Backend) {
    let e = b.open();
    let t = e.tenant("/").unwrap();
    let (q, _) = t
        .declare_queue("fan", spec(QueueSettings::default()))
        .unwrap();
    for g in ["g1", "g2", "g3"] {
        assert!(q.create_group(g, StartPosition::Oldest, None).unwrap());
    }
    for i in 0..100 {
        t.publish(msg("fan", &i.to_string())).unwrap();
    }
    for g in ["g1", "g2", "g3"] {
        let got = drain(&q, g, true).await;
        assert_eq!(got.len(), 100, "group {g}");
    }
    // Two consumers of one group split the messages.
    q.create_group("work", StartPosition::Oldest, None).unwrap();
    let a = q
        .consume(
            "work",
            ConsumerSpec {
                prefetch_count: 10,
                ..Default::default()
            },
        )
        .unwrap();
    let b = q
        .consume(
            "work",
            ConsumerSpec {
                prefetch_count: 10,
                ..Default::default()
            },
        )
        .unwrap();
    let (mut ga, mut gb) = (Vec::new(), Vec::new());
    a.take(100, &mut ga).await.unwrap();
    b.take(100, &mut gb).await.unwrap();
    assert_eq!(ga.len(), 10);
    assert_eq!(gb.len(), 10);
    assert!(ga.iter().all(|x| gb.iter().all(|y| x.tag != y.tag)));
    drop((a, b));
    e.close();
}

/// Consumers waiting together share a batch that becomes visible at once
/// (confirmed publishes released when their write is stored), and a single
/// active consumer still gets everything: the others never take, so it must
/// not yield to them.
pub async fn a_released_batch_is_shared_but_a_single_active_consumer_takes_it_all(b: Backend) {
    let e = b.open();
    let t = e.tenant("/").unwrap();
    for (queue, single) in [("shared", false), ("single", true)] {
        let settings = QueueSettings {
            single_active_consumer: single,
            ..QueueSettings::default()
        };
        let (q, _) = t.declare_queue(queue, spec(settings)).unwrap();
        let mut takers = Vec::new();
        for _ in 0..2 {
            let c = q.consume(DEFAULT_GROUP, ConsumerSpec::default()).unwrap();
            takers.push(tokio::spawn(async move {
                let mut got = 0;
                let mut batch = Vec::new();
                loop {
                    batch.clear();
                    let wait =
                        tokio::time::timeout(Duration::from_millis(500), c.take(64, &mut batch));
                    match wait.await {
                        Ok(r) => {
                            r.unwrap();
                            for d in &batch {
                                c.ack(d.tag).unwrap();
                            }
                            got += batch.len();
                        }
                        Err(_) => return got,
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut last = None;
        for i in 0..40 {
            last = t
                .publish_confirmed(msg(queue, &i.to_string()))
                .unwrap()
                .ticket;
        }
        if let Some(ticket) = last {
            e.wait_durable(ticket).await.unwrap();
        }
        let mut shares = Vec::new();
        for taker in takers {
            shares.push(taker.await.unwrap());
        }
        assert_eq!(shares.iter().sum::<usize>(), 40, "{queue}: {shares:?}");
        if single {
            assert!(shares.contains(&40), "one consumer takes all: {shares:?}");
        } else {
            assert!(shares.iter().all(|&n| n > 0), "both take: {shares:?}");
        }
    }
    e.close();
}

pub async fn fifo_keeps_order_per_key(b: Backend) {
    let e = b.open();
    let t = e.tenant("/").unwrap();
    let s = QueueSettings {
        kind: QueueKind::Fifo,
        ..QueueSettings::classic()
    };
    let (q, _) = t.declare_queue("f", spec(s)).unwrap();
    for (k, v) in [
        ("a", "a1"),
        ("b", "b1"),
        ("a", "a2"),
        ("b", "b2"),
        ("a", "a3"),
    ] {
        let mut m = msg("f", v);
        m.group_key = Some(k.into());
        t.publish(m).unwrap();
    }
    let c = q.consume(DEFAULT_GROUP, ConsumerSpec::default()).unwrap();
    let mut got = Vec::new();
    c.take(10, &mut got).await.unwrap();
    // One per key in flight.
    assert_eq!(got.iter().map(body).collect::<Vec<_>>(), vec!["a1", "b1"]);
    assert_eq!(c.try_take(10, &mut got).unwrap(), 0);
    c.nack(got[0].tag, true).unwrap();
    let mut next = Vec::new();
    c.take(10, &mut next).await.unwrap();
    assert_eq!(
        next.iter().map(body).collect::<Vec<_>>(),
        vec!["a1"],
        "a1 again before a2"
    );
    c.ack(next[0].tag).unwrap();
    c.ack(got[1].tag).unwrap();
    let mut rest = Vec::new();
    c.take(10, &mut rest).await.unwrap();
    assert_eq!(rest.iter().map(body).collect::<Vec<_>>(), vec!["a2", "b2"]);
    drop(c);
    e.close();
}

pub async fn delayed_messages_wait_for_their_time(b: Backend) {
    let e = b.open();
    let t = e.tenant("/").unwrap();
    let (q, _) = t
        .declare_queue("d", spec(QueueSettings::classic()))
        .unwrap();
    let mut m = msg("d", "later");
    m.deliver_at = Some(gw_core::now_millis() + 300);
    let r = t.publish(m).unwrap();
    assert!(r.delayed);
    t.publish(msg("d", "now")).unwrap();
    let c = q
        .consume(
            DEFAULT_GROUP,
            ConsumerSpec {
                no_ack: true,
                ..Default::default()
            },
        )
        .unwrap();
    let mut got = Vec::new();
    c.take(10, &mut got).await.unwrap();
    assert_eq!(got.iter().map(body).collect::<Vec<_>>(), vec!["now"]);
    let start = std::time::Instant::now();
    let mut later = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), c.take(10, &mut later))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body(&later[0]), "later");
    assert!(start.elapsed() >= Duration::from_millis(200));
    drop(c);
    e.close();
}

pub async fn tag_filters_skip_without_blocking(b: Backend) {
    let e = b.open();
    let t = e.tenant("/").unwrap();
    let (q, _) = t
        .declare_queue("tags", spec(QueueSettings::default()))
        .unwrap();
    for (i, tags) in [vec!["red"], vec!["blue"], vec!["red", "big"], vec![]]
        .into_iter()
        .enumerate()
    {
        let mut m = msg("tags", &i.to_string());
        m.tags = tags.into_iter().map(String::from).collect();
        t.publish(m).unwrap();
    }
    let any = TagFilter {
        tags: vec!["red".into()],
        match_all: false,
    };
    q.create_group("reds", StartPosition::Oldest, Some(any.clone()))
        .unwrap();
    let req = PullRequest {
        max: 10,
        no_ack: true,
        ..Default::default()
    };
    let got = q.pull("reds", &req).unwrap();
    assert_eq!(got.iter().map(body).collect::<Vec<_>>(), vec!["0", "2"]);
    let all = TagFilter {
        tags: vec!["red".into(), "big".into()],
        match_all: true,
    };
    q.create_group("big-reds", StartPosition::Oldest, None)
        .unwrap();
    let got = q
        .pull(
            "big-reds",
            &PullRequest {
                filter: Some(all.clone()),
                ..req.clone()
            },
        )
        .unwrap();
    assert_eq!(got.iter().map(body).collect::<Vec<_>>(), vec!["2"]);
    // The group keeps its first filter.
    assert!(matches!(
        q.pull(
            "big-reds",
            &PullRequest {
                filter: Some(any),
                ..req
            }
        ),
        Err(Error::PreconditionFailed(_))
    ));
    assert_eq!(q.group_filter("big-reds").unwrap(), Some(all));
    e.close();
}

pub async fn rejected_and_over_limit_messages_are_dead_lettered_with_x_death(b: Backend) {
    let e = b.open();
    let t = e.tenant("/").unwrap();
    t.declare_exchange("dlx", ExchangeSpec::new(ExchangeKind::Fanout))
        .unwrap();
    let (dlq, _) = t
        .declare_queue("dlq", spec(QueueSettings::classic()))
        .unwrap();
    t.bind(BindingSpec {
        source: "dlx".into(),
        destination: Destination::Queue("dlq".into()),
        routing_key: String::new(),
        arguments: Default::default(),
    })
    .unwrap();
    let s = QueueSettings {
        max_deliveries: Some(2),
        dead_letter: Some(DeadLetterTarget::Exchange {
            exchange: "dlx".into(),
            routing_key: None,
        }),
        ..QueueSettings::classic()
    };
    let (q, _) = t.declare_queue("work", spec(s)).unwrap();
    t.publish(msg("work", "poison")).unwrap();
    t.publish(msg("work", "bad")).unwrap();
    let c = q.consume(DEFAULT_GROUP, ConsumerSpec::default()).unwrap();
    let mut got = Vec::new();
    c.take(10, &mut got).await.unwrap();
    c.nack(got[1].tag, false).unwrap(); // "bad": rejected
    c.nack(got[0].tag, true).unwrap(); // "poison": attempt 1 failed
    let mut again = Vec::new();
    c.take(10, &mut again).await.unwrap();
    c.nack(again[0].tag, true).unwrap(); // attempt 2 failed: over the limit
    assert_eq!(c.try_take(10, &mut Vec::new()).unwrap(), 0);
    let dead = drain(&dlq, DEFAULT_GROUP, true).await;
    assert_eq!(
        dead.iter().map(body).collect::<Vec<_>>(),
        vec!["bad", "poison"]
    );
    let Some(HeaderValue::Array(deaths)) = dead[1].message.headers.get("x-death") else {
        panic!("x-death")
    };
    let HeaderValue::Table(first) = &deaths[0] else {
        panic!()
    };
    assert_eq!(
        first.get("reason").and_then(HeaderValue::as_str),
        Some("delivery_limit")
    );
    assert_eq!(
        first.get("queue").and_then(HeaderValue::as_str),
        Some("work")
    );
    drop(c);
    e.close();
}

pub async fn ttl_expires_into_dead_letters_and_max_length_drops_head(b: Backend) {
    let e = b.open();
    let t = e.tenant("/").unwrap();
    let (dlq, _) = t
        .declare_queue("expired", spec(QueueSettings::classic()))
        .unwrap();
    let s = QueueSettings {
        message_ttl_ms: Some(100),
        dead_letter: Some(DeadLetterTarget::Queue("expired".into())),
        ..QueueSettings::classic()
    };
    let (q, _) = t.declare_queue("short", spec(s)).unwrap();
    t.publish(msg("short", "old")).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        q.message_count(),
        0,
        "expired by the timer without a consumer"
    );
    let dead = drain(&dlq, DEFAULT_GROUP, true).await;
    assert_eq!(dead.iter().map(body).collect::<Vec<_>>(), vec!["old"]);
    assert_eq!(dead[0].message.properties.expiration, None);

    let s = QueueSettings {
        max_length: Some(3),
        ..QueueSettings::classic()
    };
    let (q, _) = t.declare_queue("bounded", spec(s)).unwrap();
    for i in 0..5 {
        t.publish(msg("bounded", &i.to_string())).unwrap();
    }
    let got = drain(&q, DEFAULT_GROUP, true).await;
    assert_eq!(
        got.iter().map(body).collect::<Vec<_>>(),
        vec!["2", "3", "4"]
    );

    let s = QueueSettings {
        max_length: Some(2),
        overflow: Overflow::RejectPublish,
        ..QueueSettings::classic()
    };
    t.declare_queue("strict", spec(s)).unwrap();
    let r: Vec<_> = (0..3)
        .map(|i| t.publish(msg("strict", &i.to_string())).unwrap().rejected)
        .collect();
    assert_eq!(r, vec![0, 0, 1]);

    // reject-publish-dlx: refused (the receipt says so) and dead-lettered.
    let (dlq2, _) = t
        .declare_queue("refused-dead", spec(QueueSettings::classic()))
        .unwrap();
    let s = QueueSettings {
        max_length: Some(1),
        overflow: Overflow::RejectPublishDlx,
        dead_letter: Some(DeadLetterTarget::Queue("refused-dead".into())),
        ..QueueSettings::classic()
    };
    let (q, _) = t.declare_queue("strict-dlx", spec(s)).unwrap();
    let r: Vec<_> = ["kept", "refused"]
        .iter()
        .map(|b| t.publish(msg("strict-dlx", b)).unwrap().rejected)
        .collect();
    assert_eq!(r, vec![0, 1]);
    let kept = drain(&q, DEFAULT_GROUP, true).await;
    assert_eq!(kept.iter().map(body).collect::<Vec<_>>(), vec!["kept"]);
    let dead = drain(&dlq2, DEFAULT_GROUP, true).await;
    assert_eq!(dead.iter().map(body).collect::<Vec<_>>(), vec!["refused"]);
    let death = dead[0].message.headers.get("x-first-death-reason");
    assert_eq!(death.and_then(|v| v.as_str()), Some("maxlen"));
    e.close();
}

pub async fn rewind_replays_from_a_sequence_or_time(b: Backend) {
    let e = b.open();
    let t = e.tenant("/").unwrap();
    let (q, _) = t
        .declare_queue("log", spec(QueueSettings::default()))
        .unwrap();
    for i in 0..10 {
        t.publish(msg("log", &i.to_string())).unwrap();
    }
    assert_eq!(drain(&q, DEFAULT_GROUP, true).await.len(), 10);
    assert_eq!(
        q.rewind(DEFAULT_GROUP, StartPosition::Sequence(7)).unwrap(),
        7
    );
    let again = drain(&q, DEFAULT_GROUP, true).await;
    assert_eq!(
        again.iter().map(body).collect::<Vec<_>>(),
        vec!["7", "8", "9"]
    );
    q.rewind(DEFAULT_GROUP, StartPosition::Oldest).unwrap();
    assert_eq!(drain(&q, DEFAULT_GROUP, true).await.len(), 10);
    let future = gw_core::now_millis() + 60_000;
    q.rewind(DEFAULT_GROUP, StartPosition::Time(future))
        .unwrap();
    assert_eq!(drain(&q, DEFAULT_GROUP, true).await.len(), 0);
    q.create_group("late", StartPosition::Latest, None).unwrap();
    t.publish(msg("log", "new")).unwrap();
    assert_eq!(
        drain(&q, "late", true)
            .await
            .iter()
            .map(body)
            .collect::<Vec<_>>(),
        vec!["new"]
    );
    e.close();
}

pub async fn bad_input_gets_typed_errors(b: Backend) {
    let e = b.open();
    let t = e.tenant("/").unwrap();
    assert!(matches!(
        t.declare_queue("", spec(QueueSettings::default())),
        Err(Error::Invalid { .. })
    ));
    assert!(matches!(
        t.declare_queue(&"x".repeat(256), spec(QueueSettings::default())),
        Err(Error::Invalid { .. })
    ));
    let bad = QueueSettings {
        ack_timeout_ms: Some(0),
        ..QueueSettings::default()
    };
    assert!(matches!(
        t.declare_queue("q", spec(bad)),
        Err(Error::Invalid { .. })
    ));
    let huge = QueueSettings {
        message_ttl_ms: Some(u64::MAX),
        ..QueueSettings::default()
    };
    assert!(matches!(
        t.declare_queue("q", spec(huge)),
        Err(Error::Invalid { .. })
    ));
    assert!(matches!(t.queue("missing"), Err(Error::NotFound { .. })));
    assert!(matches!(e.tenant("nope"), Err(Error::NotFound { .. })));
    let mut m = msg("k", "x");
    m.exchange = "no-such-exchange".into();
    assert!(matches!(t.publish(m), Err(Error::NotFound { .. })));
    assert!(matches!(
        t.declare_exchange("amq.mine", ExchangeSpec::new(ExchangeKind::Direct)),
        Err(Error::AccessRefused(_))
    ));
    t.declare_queue("q", spec(QueueSettings::default()))
        .unwrap();
    let other = QueueSettings {
        max_length: Some(1),
        ..QueueSettings::default()
    };
    assert!(matches!(
        t.declare_queue("q", spec(other)),
        Err(Error::PreconditionFailed(_))
    ));
    let q = t.queue("q").unwrap();
    assert!(matches!(
        q.ack("nope", gw_core::DeliveryTag { seq: 0, attempt: 1 }),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        q.ack(
            DEFAULT_GROUP,
            gw_core::DeliveryTag {
                seq: 99,
                attempt: 1
            }
        ),
        Err(Error::UnknownDelivery(_))
    ));
    let headers = BindingSpec {
        source: "amq.headers".into(),
        destination: Destination::Queue("q".into()),
        routing_key: String::new(),
        arguments: gw_core::Headers(vec![("x-match".into(), HeaderValue::string("sometimes"))]),
    };
    assert!(matches!(t.bind(headers), Err(Error::Invalid { .. })));
    e.close();
}

pub async fn topic_and_fanout_broadcast_to_many_queues(b: Backend) {
    let e = b.open();
    let t = e.tenant("/").unwrap();
    let mut queues = Vec::new();
    for i in 0..50 {
        let (q, _) = t
            .declare_queue(&format!("sub{i}"), spec(QueueSettings::classic()))
            .unwrap();
        let key = if i % 2 == 0 {
            "sensors.#"
        } else {
            "sensors.*.temp"
        };
        t.bind(BindingSpec {
            source: "amq.topic".into(),
            destination: Destination::Queue(q.name().into()),
            routing_key: key.into(),
            arguments: Default::default(),
        })
        .unwrap();
        queues.push(q);
    }
    let mut m = msg("sensors.kitchen.temp", "21");
    m.exchange = "amq.topic".into();
    assert_eq!(t.publish(m).unwrap().routed, 50);
    let mut m = msg("sensors.kitchen.humidity", "40");
    m.exchange = "amq.topic".into();
    assert_eq!(t.publish(m).unwrap().routed, 25);
    for (i, q) in queues.iter().enumerate() {
        let expect = if i % 2 == 0 { 2 } else { 1 };
        assert_eq!(q.message_count(), expect, "queue {i}");
    }
    e.close();
}

pub async fn retention_keeps_settled_messages_for_rewind_then_deletes_them(b: Backend) {
    let e = b.open();
    let t = e.tenant("/").unwrap();
    let s = QueueSettings {
        retention_ms: 600,
        ..QueueSettings::default()
    };
    let (q, _) = t.declare_queue("kept", spec(s)).unwrap();
    for i in 0..20 {
        t.publish(msg("kept", &i.to_string())).unwrap();
    }
    assert_eq!(drain(&q, DEFAULT_GROUP, true).await.len(), 20);
    // Settled by every group but still retained: a rewind replays them.
    assert_eq!(q.bounds(), (0, 20));
    q.rewind(DEFAULT_GROUP, StartPosition::Oldest).unwrap();
    assert_eq!(drain(&q, DEFAULT_GROUP, true).await.len(), 20);
    // Past the retention period the background sweep deletes them.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while q.bounds().0 < 20 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(q.bounds(), (20, 20));
    // A group that has not settled them keeps them past retention.
    let (q2, _) = t
        .declare_queue(
            "unread",
            spec(QueueSettings {
                retention_ms: 100,
                ..QueueSettings::default()
            }),
        )
        .unwrap();
    t.publish(msg("unread", "x")).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(q2.bounds(), (0, 1));
    assert_eq!(drain(&q2, DEFAULT_GROUP, true).await.len(), 1);
    e.close();
}

pub async fn many_groups_and_a_priority_queue(b: Backend) {
    let e = b.open();
    let t = e.tenant("/").unwrap();
    let (q, _) = t
        .declare_queue("wide", spec(QueueSettings::classic()))
        .unwrap();
    for g in 0..40 {
        q.create_group(&format!("g{g}"), StartPosition::Latest, None)
            .unwrap();
    }
    for i in 0..25 {
        t.publish(msg("wide", &i.to_string())).unwrap();
    }
    for g in 0..40 {
        let got = take_n(&q, &format!("g{g}"), 25).await;
        assert_eq!(
            got.iter().map(body).collect::<Vec<_>>(),
            (0..25).map(|i| i.to_string()).collect::<Vec<_>>()
        );
    }
    let s = QueueSettings {
        max_priority: Some(9),
        ..QueueSettings::classic()
    };
    let (p, _) = t.declare_queue("prio", spec(s)).unwrap();
    for (i, prio) in [1u8, 9, 5, 9, 0].into_iter().enumerate() {
        let mut m = msg("prio", &format!("{i}"));
        m.properties.priority = Some(prio);
        t.publish(m).unwrap();
    }
    let got = drain(&p, DEFAULT_GROUP, true).await;
    assert_eq!(
        got.iter().map(body).collect::<Vec<_>>(),
        vec!["1", "3", "2", "0", "4"]
    );
    e.close();
}

pub async fn per_group_dead_letters_and_lease_timeouts(b: Backend) {
    let e = b.open();
    let t = e.tenant("/").unwrap();
    let s = QueueSettings {
        max_deliveries: Some(2),
        dead_letter: Some(DeadLetterTarget::PerGroup),
        ..QueueSettings::default()
    };
    let (q, _) = t.declare_queue("dms", spec(s)).unwrap();
    q.create_group("g", StartPosition::Oldest, None).unwrap();
    t.publish(msg("dms", "hot")).unwrap();
    let req = PullRequest {
        max: 10,
        lease_timeout: Some(Duration::from_millis(100)),
        ..Default::default()
    };
    let first = q.pull("g", &req).unwrap();
    assert_eq!(first.len(), 1);
    assert!(q.pull("g", &req).unwrap().is_empty(), "leased");
    // The lease runs out: redelivered with its count.
    let again = q
        .pull_wait("g", &req, Duration::from_secs(3))
        .await
        .unwrap();
    assert_eq!(again[0].delivery_count(), 2);
    assert!(
        matches!(q.ack("g", first[0].tag), Err(Error::UnknownDelivery(_))),
        "the stale lease is refused"
    );
    q.nack("g", again[0].tag, true).unwrap();
    // Two attempts failed: the group's own dead-letter queue has it; the default group still has its copy.
    let dlq = e.dead_letter_queue("/", "dms", "g").unwrap();
    let dead = dlq
        .pull_wait(
            DEFAULT_GROUP,
            &PullRequest {
                max: 10,
                ..Default::default()
            },
            Duration::from_secs(2),
        )
        .await
        .unwrap();
    assert_eq!(dead.iter().map(body).collect::<Vec<_>>(), vec!["hot"]);
    assert_eq!(drain(&q, DEFAULT_GROUP, true).await.len(), 1);
    e.close();
}

pub async fn message_tracking_tells_each_groups_state(b: Backend) {
    let e = b.open();
    let t = e.tenant("/").unwrap();
    let s = QueueSettings {
        max_deliveries: Some(1),
        dead_letter: Some(DeadLetterTarget::PerGroup),
        ..QueueSettings::default()
    };
    let (q, _) = t.declare_queue("tracked", spec(s)).unwrap();
    for g in ["reader", "failer", "idle"] {
        q.create_group(g, StartPosition::Oldest, None).unwrap();
    }
    let id = t.publish(msg("tracked", "m")).unwrap().message_id;
    let mut later = msg("tracked", "later");
    later.deliver_at = Some(gw_core::now_millis() + 60_000);
    let delayed_id = t.publish(later).unwrap().message_id;
    let req = PullRequest {
        max: 1,
        ..Default::default()
    };
    let r = q.pull("reader", &req).unwrap();
    let f = q.pull("failer", &req).unwrap();
    q.nack("failer", f[0].tag, true).unwrap(); // one attempt allowed: dead-lettered
    let trace = e.trace_message("/", "tracked", id).unwrap().unwrap();
    let state = |g: &str| trace.groups.iter().find(|(n, _)| n == g).unwrap().1;
    assert_eq!(
        state("reader"),
        gw_core::MessageState::InFlight { delivery_count: 1 }
    );
    assert_eq!(state("failer"), gw_core::MessageState::DeadLettered);
    assert_eq!(
        state("idle"),
        gw_core::MessageState::Ready { delivery_count: 0 }
    );
    q.ack("reader", r[0].tag).unwrap();
    let trace = e.trace_message("/", "tracked", id).unwrap().unwrap();
    assert_eq!(
        trace.groups.iter().find(|(n, _)| n == "reader").unwrap().1,
        gw_core::MessageState::Settled
    );
    let delayed = e
        .trace_message("/", "tracked", delayed_id)
        .unwrap()
        .unwrap();
    assert!(
        delayed
            .groups
            .iter()
            .all(|(_, s)| *s == gw_core::MessageState::Delayed)
    );
    assert!(e.trace_message("/", "tracked", 999_999).unwrap().is_none());
    e.close();
}

pub async fn browsing_shows_state_and_changes_nothing(b: Backend) {
    let e = b.open();
    let t = e.tenant("/").unwrap();
    let (q, _) = t
        .declare_queue("browsed", spec(QueueSettings::default()))
        .unwrap();
    for i in 0..5 {
        t.publish(msg("browsed", &format!("m{i}"))).unwrap();
    }
    let req = PullRequest {
        max: 1,
        ..Default::default()
    };
    let first = q.pull(DEFAULT_GROUP, &req).unwrap();
    let state = |trace: &gw_core::MessageTrace| trace.groups[0].1;
    let all = q.browse(0, 100, u64::MAX);
    assert_eq!(all.len(), 5);
    assert_eq!(
        state(&all[0]),
        gw_core::MessageState::InFlight { delivery_count: 1 }
    );
    assert_eq!(
        state(&all[1]),
        gw_core::MessageState::Ready { delivery_count: 0 }
    );
    assert_eq!(&all[4].message.body[..], b"m4");
    // Browsing again, and by position and count, sees the same.
    let page = q.browse(all[2].seq, 2, u64::MAX);
    assert_eq!(
        page.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![all[2].seq, all[3].seq]
    );
    assert_eq!(q.browse(0, 100, 1).len(), 1, "the byte bound stops it");
    // Consumers see the browsed messages as never delivered.
    let next = q.pull(DEFAULT_GROUP, &req).unwrap();
    assert_eq!(body(&next[0]), "m1");
    assert_eq!(next[0].delivery_count(), 1);
    assert!(!next[0].redelivered);
    q.ack(DEFAULT_GROUP, first[0].tag).unwrap();
    assert_eq!(q.message_count(), 3);
    e.close();
}
