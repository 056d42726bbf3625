//! Queue length and byte limits with each overflow behaviour, per group.

use gw_core::{DeadLetterTarget, Overflow, PullRequest, QueueSettings, StartPosition};

use crate::common::*;

fn pull_bodies(q: &gw_core::Queue, group: &str) -> Vec<String> {
    let req = PullRequest {
        max: 100,
        no_ack: true,
        ..Default::default()
    };
    q.pull(group, &req).unwrap().iter().map(body).collect()
}

pub async fn reject_publish_refuses_and_max_bytes_counts_bodies(b: Backend) {
    let e = b.open();
    let t = e.tenant("/").unwrap();
    let settings = QueueSettings {
        max_length: Some(3),
        overflow: Overflow::RejectPublish,
        ..QueueSettings::classic()
    };
    let (q, _) = t.declare_queue("full", spec(settings)).unwrap();
    let receipts: Vec<(usize, usize)> = (0..5)
        .map(|i| {
            let r = t.publish(msg("full", &format!("m{i}"))).unwrap();
            (r.routed, r.rejected)
        })
        .collect();
    assert_eq!(receipts, [(1, 0), (1, 0), (1, 0), (0, 1), (0, 1)]);
    assert_eq!(q.message_count(), 3);
    // Taking one out makes room for one more.
    let got = q
        .pull(gw_core::DEFAULT_GROUP, &PullRequest::default())
        .unwrap();
    q.ack(gw_core::DEFAULT_GROUP, got[0].tag).unwrap();
    assert_eq!(t.publish(msg("full", "m5")).unwrap().routed, 1);
    assert_eq!(pull_bodies(&q, gw_core::DEFAULT_GROUP), ["m1", "m2", "m5"]);

    // Bytes: each message counts its body, routing key and a fixed overhead
    // of 64; the newest that fit are kept (drop-head).
    let settings = QueueSettings {
        max_bytes: Some(3 * (100 + "bytes".len() as u64 + 64)),
        ..QueueSettings::classic()
    };
    let (q, _) = t.declare_queue("bytes", spec(settings)).unwrap();
    for i in 0..10 {
        t.publish(msg("bytes", &format!("{i}{}", "x".repeat(99))))
            .unwrap();
    }
    let kept: Vec<char> = pull_bodies(&q, gw_core::DEFAULT_GROUP)
        .iter()
        .filter_map(|b| b.chars().next())
        .collect();
    assert_eq!(kept, ['7', '8', '9']);
    e.close();
}

pub async fn dead_letter_head_moves_the_oldest_out(b: Backend) {
    let e = b.open();
    let t = e.tenant("/").unwrap();
    let (dlq, _) = t
        .declare_queue("overflowed", spec(QueueSettings::classic()))
        .unwrap();
    let settings = QueueSettings {
        max_length: Some(2),
        overflow: Overflow::DeadLetterHead,
        dead_letter: Some(DeadLetterTarget::Queue("overflowed".into())),
        ..QueueSettings::classic()
    };
    let (q, _) = t.declare_queue("short", spec(settings)).unwrap();
    for i in 0..4 {
        t.publish(msg("short", &format!("m{i}"))).unwrap();
    }
    assert_eq!(pull_bodies(&q, gw_core::DEFAULT_GROUP), ["m2", "m3"]);
    let dead = dlq
        .pull(
            gw_core::DEFAULT_GROUP,
            &PullRequest {
                max: 10,
                no_ack: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(dead.iter().map(body).collect::<Vec<_>>(), ["m0", "m1"]);
    let death = dead[0].message.headers.get("x-death");
    assert!(
        format!("{death:?}").contains("maxlen"),
        "x-death says why: {death:?}"
    );
    e.close();
}

pub async fn limits_hold_for_each_group_of_a_queue(b: Backend) {
    let e = b.open();
    let t = e.tenant("/").unwrap();
    let settings = QueueSettings {
        max_length: Some(3),
        ..QueueSettings::classic()
    };
    let (q, _) = t.declare_queue("shared", spec(settings)).unwrap();
    q.create_group("slow", StartPosition::Oldest, None).unwrap();
    for i in 0..4 {
        t.publish(msg("shared", &format!("m{i}"))).unwrap();
    }
    // The default group keeps up; the slow one does not.
    let got = pull_bodies(&q, gw_core::DEFAULT_GROUP);
    assert_eq!(
        got.len(),
        3,
        "the default group also had only three: {got:?}"
    );
    for i in 4..6 {
        t.publish(msg("shared", &format!("m{i}"))).unwrap();
    }
    assert_eq!(pull_bodies(&q, gw_core::DEFAULT_GROUP), ["m4", "m5"]);
    assert_eq!(pull_bodies(&q, "slow"), ["m3", "m4", "m5"]);
    e.close();
}
