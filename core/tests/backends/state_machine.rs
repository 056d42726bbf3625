//! Property test of the delivery state machine: random publish / take / ack /
//! nack / consumer loss / restart sequences never lose a message, never hand
//! out a settled one again, and never break a FIFO key's order.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use gw_core::{
    Consumer, ConsumerSpec, DEFAULT_GROUP, Delivery, Engine, QueueKind, QueueSettings, QueueSpec,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::common::{self, Backend};

#[derive(Clone, Debug)]
enum Op {
    Publish(Option<u8>),
    Take(usize, usize),
    Ack(usize),
    Nack(usize, bool),
    DropConsumer(usize),
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => proptest::option::of(0u8..3).prop_map(Op::Publish),
        3 => (0usize..2, 1usize..4).prop_map(|(c, n)| Op::Take(c, n)),
        3 => any::<usize>().prop_map(Op::Ack),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(i, r)| Op::Nack(i, r)),
        1 => (0usize..2).prop_map(Op::DropConsumer),
        1 => Just(Op::Restart),
    ]
}

struct Model {
    /// Published, not yet settled: id → FIFO key.
    open: BTreeMap<u64, Option<u8>>,
    settled: BTreeSet<u64>,
    next: u64,
}

struct World {
    engine: Engine,
    consumers: Vec<Option<Consumer>>,
    /// Deliveries in hand: (consumer index, delivery).
    held: Vec<(usize, Delivery)>,
}

fn id_of(d: &Delivery) -> u64 {
    String::from_utf8_lossy(&d.message.body)
        .parse()
        .unwrap_or(u64::MAX)
}

fn open_world(b: &Backend, fifo: bool) -> World {
    let engine = b.open();
    let kind = if fifo {
        QueueKind::Fifo
    } else {
        QueueKind::Standard
    };
    let settings = QueueSettings {
        kind,
        ..QueueSettings::classic()
    };
    let spec = QueueSpec {
        durable: true,
        settings,
        default_group: true,
        ..Default::default()
    };
    engine
        .tenant("/")
        .unwrap()
        .declare_queue("q", spec)
        .unwrap();
    World {
        engine,
        consumers: vec![None, None],
        held: Vec::new(),
    }
}

fn consumer(w: &mut World, i: usize) -> &Consumer {
    let q = w.engine.tenant("/").unwrap().queue("q").unwrap();
    w.consumers[i].get_or_insert_with(|| {
        q.consume(
            DEFAULT_GROUP,
            ConsumerSpec {
                prefetch_count: 4,
                ..Default::default()
            },
        )
        .unwrap()
    })
}

/// Checks a delivery against the model: not settled, and for FIFO the oldest open message of its key.
fn check_delivery(
    m: &Model,
    held: &[(usize, Delivery)],
    d: &Delivery,
    fifo: bool,
) -> Result<(), TestCaseError> {
    let id = id_of(d);
    prop_assert!(
        !m.settled.contains(&id),
        "settled message {id} delivered again"
    );
    prop_assert!(m.open.contains_key(&id), "unknown message {id}");
    if fifo {
        let key = m.open[&id];
        let first = m.open.iter().find(|(_, k)| **k == key).map(|(i, _)| *i);
        prop_assert_eq!(
            first,
            Some(id),
            "FIFO key {:?}: {} delivered before an older message",
            key,
            id
        );
        prop_assert!(
            !held
                .iter()
                .any(|(_, h)| m.open.get(&id_of(h)) == Some(&key)),
            "two of key {:?} out at once",
            key
        );
    }
    Ok(())
}

fn run(b: Backend, ops: Vec<Op>, fifo: bool) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut w = open_world(&b, fifo);
    let mut m = Model {
        open: BTreeMap::new(),
        settled: BTreeSet::new(),
        next: 0,
    };
    for op in ops {
        match op {
            Op::Publish(key) => {
                let id = m.next;
                m.next += 1;
                let mut msg = common::msg("q", &id.to_string());
                msg.group_key = key.map(|k| k.to_string());
                w.engine.tenant("/").unwrap().publish(msg).unwrap();
                m.open.insert(id, if fifo { key } else { None });
            }
            Op::Take(c, n) => {
                let mut got = Vec::new();
                consumer(&mut w, c).try_take(n, &mut got).unwrap();
                for d in got {
                    check_delivery(&m, &w.held, &d, fifo)?;
                    w.held.push((c, d));
                }
            }
            Op::Ack(i) | Op::Nack(i, _) if w.held.is_empty() => {
                let _ = i;
            }
            Op::Ack(i) => {
                let (c, d) = w.held.remove(i % w.held.len());
                consumer(&mut w, c).ack(d.tag).unwrap();
                let id = id_of(&d);
                m.open.remove(&id);
                m.settled.insert(id);
            }
            Op::Nack(i, requeue) => {
                let (c, d) = w.held.remove(i % w.held.len());
                consumer(&mut w, c).nack(d.tag, requeue).unwrap();
                if !requeue {
                    let id = id_of(&d);
                    m.open.remove(&id);
                    m.settled.insert(id);
                }
            }
            Op::DropConsumer(c) => {
                w.consumers[c] = None;
                w.held.retain(|(h, _)| *h != c);
            }
            Op::Restart => {
                w.consumers = vec![None, None];
                w.held.clear();
                w.engine.close();
                drop(w);
                w = open_world(&b, fifo);
            }
        }
    }
    // Drain: everything still open must come out (acking as we go).
    w.consumers = vec![None, None];
    w.held.clear();
    let q = w.engine.tenant("/").unwrap().queue("q").unwrap();
    let c = q.consume(DEFAULT_GROUP, ConsumerSpec::default()).unwrap();
    let mut seen: HashMap<u64, u32> = HashMap::new();
    rt.block_on(async {
        loop {
            let mut got = Vec::new();
            match tokio::time::timeout(std::time::Duration::from_millis(50), c.take(100, &mut got))
                .await
            {
                Ok(Ok(_)) => {}
                _ => break,
            }
            for d in got {
                check_delivery(&m, &[], &d, fifo)?;
                let id = id_of(&d);
                *seen.entry(id).or_default() += 1;
                c.ack(d.tag).unwrap();
                m.open.remove(&id);
                m.settled.insert(id);
            }
        }
        Ok::<(), TestCaseError>(())
    })?;
    prop_assert!(
        m.open.is_empty(),
        "lost: {:?}",
        m.open.keys().collect::<Vec<_>>()
    );
    drop(c);
    w.engine.close();
    Ok(())
}

/// Runs 48 random sequences, each on a fresh backend from `backend`.
fn check(backend: fn() -> Backend, fifo: bool) {
    let mut runner = TestRunner::new(Config {
        cases: 48,
        ..Config::default()
    });
    let ops = proptest::collection::vec(op(), 1..60);
    if let Err(e) = runner.run(&ops, |ops| run(backend(), ops, fifo)) {
        panic!("{e}");
    }
}

pub fn standard_queue_never_loses_or_resurrects(backend: fn() -> Backend) {
    check(backend, false);
}

pub fn fifo_queue_keeps_key_order(backend: fn() -> Backend) {
    check(backend, true);
}
