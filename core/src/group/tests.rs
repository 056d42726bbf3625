//! The delivery state machine on its own: a log, a group and the memory
//! backend, no engine and no disk.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::message::{Message, now_millis};
use crate::queue::log::Entry;
use crate::store::{MemoryStore, Store, SyncPolicy, Write};

struct Bench {
    store: Arc<Store>,
    settings: QueueSettings,
    log: Log,
}

impl Bench {
    fn new(settings: QueueSettings) -> Self {
        let store = Store::start(MemoryStore::new().open(), SyncPolicy::Never).unwrap();
        Bench {
            store,
            settings,
            log: Log::new(1, 0, 0),
        }
    }

    fn push(&mut self, body: &str, key: Option<&str>) {
        let mut m = Message::new(body.to_owned());
        m.group_key = key.map(String::from);
        m.published_at = now_millis();
        self.log.push(Entry::new(Arc::new(m), &self.settings));
    }

    /// Moves every in-memory entry to the backend, as eviction does.
    fn evict_all(&mut self) {
        let writes: Vec<Write> = self
            .log
            .window_mut()
            .map(|(seq, e)| Write::Append {
                queue: 1,
                seq,
                message: Arc::clone(&e.msg),
                transient: false,
            })
            .collect();
        self.store.backend().write(&writes).unwrap();
        while self.log.evict_front().is_some() {}
    }

    fn src(&self, at: Instant) -> Source<'_> {
        Source {
            log: &self.log,
            store: &self.store,
            settings: &self.settings,
            now: now_millis(),
            instant: at,
        }
    }

    fn group(&self) -> Group {
        let mut g = Group::new(1, "g".into(), None, 0, &self.settings, &self.log);
        g.arrived(1);
        g
    }
}

fn taker(max: usize, lease: Option<Duration>) -> Taker {
    Taker {
        consumer: 7,
        no_ack: false,
        lease,
        max,
        max_bytes: u64::MAX,
    }
}

fn bodies(out: &[Delivery]) -> Vec<String> {
    out.iter()
        .map(|d| String::from_utf8_lossy(&d.message.body).into_owned())
        .collect()
}

#[test]
fn fifo_keys_release_their_next_message_on_settle_only() {
    let settings = QueueSettings {
        kind: QueueKind::Fifo,
        ..QueueSettings::classic()
    };
    let mut b = Bench::new(settings);
    for (body, key) in [("a1", "a"), ("a2", "a"), ("b1", "b"), ("a3", "a")] {
        b.push(body, Some(key));
    }
    let mut g = b.group();
    let mut fx = Effects::default();
    let mut out = Vec::new();
    let now = Instant::now();
    g.take(&b.src(now), &taker(10, None), &mut out, &mut fx);
    assert_eq!(bodies(&out), ["a1", "b1"], "one out per key");
    // A requeued head goes out again before the rest of its key.
    let a1 = out[0].tag;
    g.nack(a1, true, &b.src(now), &mut fx).unwrap();
    let mut again = Vec::new();
    g.take(&b.src(now), &taker(10, None), &mut again, &mut fx);
    assert_eq!(bodies(&again), ["a1"]);
    assert_eq!(again[0].delivery_count(), 2);
    g.ack(again[0].tag, &mut fx).unwrap();
    let mut next = Vec::new();
    g.take(&b.src(now), &taker(10, None), &mut next, &mut fx);
    assert_eq!(bodies(&next), ["a2"]);
    b.store.close();
}

#[test]
fn a_lease_that_times_out_is_redelivered_and_its_late_ack_refused() {
    let mut b = Bench::new(QueueSettings::classic());
    b.push("m", None);
    let mut g = b.group();
    let mut fx = Effects::default();
    let mut out = Vec::new();
    let start = Instant::now();
    g.take(
        &b.src(start),
        &taker(1, Some(Duration::from_secs(5))),
        &mut out,
        &mut fx,
    );
    let first = out[0].tag;
    let mut freed = Vec::new();
    g.expire_leases(&b.src(start + Duration::from_secs(6)), &mut fx, &mut freed);
    assert_eq!(freed, [(7, out[0].message.accounted_size() as u32)]);
    let mut again = Vec::new();
    g.take(
        &b.src(start + Duration::from_secs(6)),
        &taker(1, None),
        &mut again,
        &mut fx,
    );
    assert!(again[0].redelivered);
    assert!(matches!(
        g.ack(first, &mut fx),
        Err(crate::error::Error::UnknownDelivery(_))
    ));
    g.ack(again[0].tag, &mut fx).unwrap();
    assert_eq!(g.floor(), 1);
    b.store.close();
}

#[test]
fn past_max_deliveries_a_message_is_dead_lettered() {
    let settings = QueueSettings {
        max_deliveries: Some(2),
        ..QueueSettings::classic()
    };
    let mut b = Bench::new(settings);
    b.push("poison", None);
    let mut g = b.group();
    let mut fx = Effects::default();
    let now = Instant::now();
    for _ in 0..2 {
        let mut out = Vec::new();
        g.take(&b.src(now), &taker(1, None), &mut out, &mut fx);
        assert_eq!(out.len(), 1);
        g.nack(out[0].tag, true, &b.src(now), &mut fx).unwrap();
    }
    assert_eq!(fx.dead.len(), 1);
    assert_eq!(fx.dead[0].reason, DeathReason::DeliveryLimit);
    let mut out = Vec::new();
    g.take(&b.src(now), &taker(1, None), &mut out, &mut fx);
    assert!(out.is_empty());
    b.store.close();
}

#[test]
fn a_group_behind_the_memory_window_reads_the_backend() {
    let mut b = Bench::new(QueueSettings::classic());
    for i in 0..1000 {
        b.push(&i.to_string(), None);
    }
    b.evict_all();
    b.push("in memory", None);
    let mut g = b.group();
    let mut fx = Effects::default();
    let mut out = Vec::new();
    let t = Taker {
        no_ack: true,
        ..taker(2000, None)
    };
    while g.take(&b.src(Instant::now()), &t, &mut out, &mut fx).count > 0 {}
    assert_eq!(out.len(), 1001);
    assert_eq!(bodies(&out[..2]), ["0", "1"]);
    assert_eq!(bodies(&out[1000..]), ["in memory"]);
    b.store.close();
}

#[test]
fn a_snapshot_brings_unacked_messages_back_as_redeliveries() {
    let mut b = Bench::new(QueueSettings::classic());
    for i in 0..4 {
        b.push(&i.to_string(), None);
    }
    let mut g = b.group();
    let mut fx = Effects::default();
    let mut out = Vec::new();
    let now = Instant::now();
    g.take(&b.src(now), &taker(3, None), &mut out, &mut fx);
    g.ack(out[1].tag, &mut fx).unwrap();
    let record = g.to_record();
    // Restart: 0 and 2 were in flight, 1 was acked, 3 never delivered.
    let mut g = Group::from_record(record, &b.settings, &b.log);
    g.arrived(1);
    let mut after = Vec::new();
    g.take(&b.src(now), &taker(10, None), &mut after, &mut fx);
    assert_eq!(bodies(&after), ["0", "2", "3"]);
    let redelivered: Vec<bool> = after.iter().map(|d| d.redelivered).collect();
    assert_eq!(redelivered, [true, true, false]);
    b.store.close();
}
