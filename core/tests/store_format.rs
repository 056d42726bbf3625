//! A data directory written by the engine as released at 79658ce (store format
//! `gateway-store-1`, checked in under `fixtures/store-format-1`, made by the
//! old code path) opens with everything in it: tenants, users, exchanges,
//! bindings, queues with their groups, acks and in-flight messages, shared
//! bodies, dead letters, the delayed schedule, retained messages and adapter state.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::path::Path;

use gw_core::{
    DEFAULT_GROUP, Engine, EngineConfig, ExchangeKind, HeaderValue, Message, PullRequest,
    SyncPolicy,
};

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn bodies(q: &gw_core::Queue, group: &str) -> Vec<(String, bool)> {
    let req = PullRequest {
        max: 100,
        no_ack: true,
        ..Default::default()
    };
    q.pull(group, &req)
        .unwrap()
        .iter()
        .map(|d| {
            (
                String::from_utf8_lossy(&d.message.body).into_owned(),
                d.redelivered,
            )
        })
        .collect()
}

#[tokio::test]
async fn a_data_dir_of_store_format_1_opens_with_everything_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-format-1");
    copy_tree(&fixture, dir.path());
    let mut config = EngineConfig::new(dir.path());
    config.sync = SyncPolicy::Never;
    let e = Engine::open(config).unwrap();

    // Tenants and users.
    let names: Vec<String> = e.tenants().iter().map(|t| t.name().to_owned()).collect();
    assert_eq!(names, ["/", "t2"]);
    let loopback = Some("127.0.0.1".parse().unwrap());
    e.authenticate("guest", b"guest", loopback).unwrap();
    assert!(
        e.authenticate("guest", b"guest", Some("10.1.2.3".parse().unwrap()))
            .is_err(),
        "guest stays loopback-only"
    );
    e.authenticate("alice", b"wonderland", None).unwrap();
    let alice = e.users().into_iter().find(|u| u.name == "alice").unwrap();
    assert_eq!(alice.tags, ["monitoring"]);
    assert_eq!(alice.permissions[0].tenant, "t2");
    assert_eq!(alice.permissions[0].configure, "^a");

    // Exchanges and bindings, and routing through them.
    let t = e.tenant("/").unwrap();
    assert_eq!(t.exchange("events").unwrap().spec.kind, ExchangeKind::Topic);
    assert_eq!(t.exchange("fan").unwrap().spec.kind, ExchangeKind::Fanout);
    assert_eq!(t.bindings().len(), 4);

    // classic: c0, c1 acked; c2 was in flight at close (so redelivered); the
    // shared body reached it through events → fan.
    let classic = t.queue("classic").unwrap();
    assert_eq!(
        bodies(&classic, DEFAULT_GROUP),
        [
            ("c2".to_owned(), true),
            ("c3".to_owned(), false),
            ("c4".to_owned(), false),
            ("shared".to_owned(), false)
        ]
    );
    // retained: the shared body too; group g2 had acked it.
    let retained = t.queue("retained").unwrap();
    assert_eq!(bodies(&retained, "g2"), []);
    assert_eq!(
        bodies(&retained, DEFAULT_GROUP),
        [("shared".to_owned(), false)]
    );

    // fifo: f0 (key k1) acked; the heads of k2 and k1 are f1 and f2.
    let fifo = t.queue("fifo").unwrap();
    let got = fifo
        .pull(
            DEFAULT_GROUP,
            &PullRequest {
                max: 10,
                ..Default::default()
            },
        )
        .unwrap();
    let got: Vec<_> = got
        .iter()
        .map(|d| String::from_utf8_lossy(&d.message.body).into_owned())
        .collect();
    assert_eq!(got, ["f1", "f2"]);

    // The per-group dead-letter queue kept its dead letter, with x-death.
    let dlq = e.dead_letter_queue("/", "with-dlq", DEFAULT_GROUP).unwrap();
    let dead = dlq
        .pull(DEFAULT_GROUP, &PullRequest::default())
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(&dead.message.body[..], b"dead");
    assert!(dead.message.headers.get("x-death").is_some());

    // The delayed schedule, retained messages, adapter state.
    assert_eq!(e.delayed_count(), 1);
    let kept = t.retained(|_| true);
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].0, "sensors.kitchen");
    assert_eq!(&kept[0].1.body[..], b"temp=21");
    assert_eq!(
        e.scan_state("mqtt-session").unwrap(),
        [(b"client-1".to_vec(), b"state-bytes".to_vec())]
    );

    // The other tenant's queue, with the message's properties and headers.
    let q2 = e.tenant("t2").unwrap().queue("a-queue").unwrap();
    let m = q2
        .pull(DEFAULT_GROUP, &PullRequest::default())
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(&m.message.body[..], b"in t2");
    assert_eq!(m.message.properties.priority, Some(3));
    assert_eq!(m.message.headers.get("h"), Some(&HeaderValue::I32(7)));

    // New work: ids are not reused, routing works.
    let old_id = m.message.id;
    let mut fresh = Message::new("after");
    fresh.exchange = "events".into();
    fresh.routing_key = "a.y".into();
    let receipt = t.publish(fresh).unwrap();
    assert_eq!(receipt.routed, 1);
    assert!(receipt.message_id > old_id);
    assert_eq!(
        bodies(&classic, DEFAULT_GROUP),
        [("after".to_owned(), false)]
    );
    e.close();
}
