//! The committer: one thread that turns queued [`Op`]s into fjall batches.
//!
//! Group commit is the whole game on these disks (one fsync costs ~0.25 ms, so
//! one write per fsync would cap durable publishing near 4k/s): whatever
//! accumulated while the previous batch was being synced goes into the next
//! batch, and all its writers are released by one sync.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Instant;

use fjall::PersistMode;

use super::records::{DelayedRecordRef, LogBodyRef, LogRecordRef, encode};
use super::{Ks, Snapshot, Store, SyncPolicy, keys};
use crate::message::Message;

/// Longest wait for writers expected to join a sync (see `run`).
const GATHER_WINDOW: std::time::Duration = std::time::Duration::from_micros(150);

/// One write.
pub(crate) enum Op {
    Put(Ks, Vec<u8>, Vec<u8>),
    Del(Ks, Vec<u8>),
    /// A message in a queue's log; encoded by the committer, not the publisher.
    PutLog {
        queue: u64,
        seq: u64,
        message: Arc<Message>,
        transient_epoch: Option<u64>,
    },
    /// A log entry that refers to a body stored once in `bodies`.
    PutLogShared {
        queue: u64,
        seq: u64,
        body: u64,
    },
    PutBody {
        id: u64,
        message: Arc<Message>,
    },
    DelBody(u64),
    PutDelayed {
        due: u64,
        id: u64,
        tenant: Arc<str>,
        queues: Vec<u64>,
        message: Arc<Message>,
    },
    DelDelayed {
        due: u64,
        id: u64,
    },
    /// Writes nothing; its ticket is durable once everything before it is
    /// (queue snapshots marked dirty before it included).
    Barrier,
}

impl Op {
    fn approx_bytes(&self) -> usize {
        match self {
            Op::Put(_, k, v) => k.len() + v.len(),
            Op::Del(_, k) => k.len(),
            Op::PutLog { message, .. }
            | Op::PutBody { message, .. }
            | Op::PutDelayed { message, .. } => message.body.len() + 64,
            _ => 32,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Durable {
    pub ticket: u64,
    pub failed: bool,
}

#[derive(Default)]
pub(crate) struct Pending {
    pub ops: Vec<Op>,
    pub ticket: u64,
    pub need_sync: bool,
    pub dirty: Vec<Weak<dyn Snapshot>>,
    pub closing: bool,
    pub bytes: usize,
    /// Submits that will wait for this batch's sync.
    pub sync_waiters: usize,
}

impl Pending {
    pub fn push(&mut self, op: Op, sync: bool) {
        self.bytes += op.approx_bytes();
        self.ops.push(op);
        self.ticket += 1;
        self.need_sync |= sync;
        self.sync_waiters += usize::from(sync);
    }
}

pub(crate) fn run(store: &Store) {
    let mut ops: Vec<Op> = Vec::new();
    let mut dirty: Vec<Weak<dyn Snapshot>> = Vec::new();
    let mut last_sync = Instant::now();
    // How many writers waited on the last sync: when about as many are
    // expected again, it pays to wait a few microseconds for them so that one
    // fsync serves them all instead of the first few.
    let mut last_waiters = 0usize;
    loop {
        let (ticket, need_sync, closing) = {
            let mut p = store.pending.lock();
            while p.ops.is_empty() && p.dirty.is_empty() && !p.closing {
                store.wake.wait(&mut p);
            }
            if p.need_sync && store.policy == SyncPolicy::Always {
                let until = Instant::now() + GATHER_WINDOW;
                while p.sync_waiters < last_waiters && !p.closing {
                    if store.wake.wait_until(&mut p, until).timed_out() {
                        break;
                    }
                }
            }
            last_waiters = std::mem::take(&mut p.sync_waiters);
            std::mem::swap(&mut p.ops, &mut ops);
            std::mem::swap(&mut p.dirty, &mut dirty);
            p.bytes = 0;
            let need_sync = std::mem::take(&mut p.need_sync);
            (p.ticket, need_sync, p.closing)
        };
        for target in dirty.drain(..) {
            if let Some(t) = target.upgrade() {
                t.snapshot(&mut ops);
            }
        }
        if store.failed.load(Ordering::Acquire) {
            ops.clear();
            store.durable.send_replace(Durable {
                ticket,
                failed: true,
            });
            if closing {
                return;
            }
            continue;
        }
        let started = Instant::now();
        store.counters.batches.fetch_add(1, Ordering::Relaxed);
        store
            .counters
            .ops
            .fetch_add(ops.len() as u64, Ordering::Relaxed);
        let result = apply(store, &mut ops).and_then(|()| {
            store.applied.store(ticket, Ordering::Release);
            let applied = Instant::now();
            store
                .counters
                .apply_micros
                .fetch_add(micros(applied - started), Ordering::Relaxed);
            let sync = need_sync || closing;
            let synced = match store.policy {
                _ if !sync => Ok(()),
                SyncPolicy::Never if !closing => Ok(()),
                SyncPolicy::Batch(every) if !closing => {
                    let due = last_sync + every;
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    last_sync = Instant::now();
                    store.db.persist(PersistMode::SyncData)
                }
                _ => {
                    last_sync = Instant::now();
                    store.db.persist(PersistMode::SyncData)
                }
            };
            if sync {
                store.counters.syncs.fetch_add(1, Ordering::Relaxed);
                store
                    .counters
                    .sync_micros
                    .fetch_add(micros(applied.elapsed()), Ordering::Relaxed);
            }
            synced
        });
        match result {
            Ok(()) => {
                store.durable.send_replace(Durable {
                    ticket,
                    failed: false,
                });
            }
            Err(e) => {
                // fjall's advice after a failed write or fsync: stop writing. Every
                // waiter learns that its write may not be durable.
                tracing::error!(cause = %e, "store write failed; refusing further writes");
                store.failed.store(true, Ordering::Release);
                store.durable.send_replace(Durable {
                    ticket,
                    failed: true,
                });
            }
        }
        if closing {
            let p = store.pending.lock();
            if p.ops.is_empty() && p.dirty.is_empty() {
                let _ = store.db.persist(PersistMode::SyncAll);
                return;
            }
        }
    }
}

fn apply(store: &Store, ops: &mut Vec<Op>) -> Result<(), fjall::Error> {
    if ops.is_empty() {
        return Ok(());
    }
    let mut batch = store.db.batch();
    for op in ops.drain(..) {
        match op {
            Op::Put(ks, k, v) => batch.insert(store.keyspace(ks), k, v),
            Op::Del(ks, k) => batch.remove(store.keyspace(ks), k),
            Op::PutLog {
                queue,
                seq,
                message,
                transient_epoch,
            } => {
                let rec = LogRecordRef {
                    transient_epoch,
                    body: LogBodyRef::Inline(&message),
                };
                batch.insert(&store.log, keys::log_key(queue, seq), encode(&rec));
            }
            Op::PutLogShared { queue, seq, body } => {
                let rec = LogRecordRef {
                    transient_epoch: None,
                    body: LogBodyRef::Shared(body),
                };
                batch.insert(&store.log, keys::log_key(queue, seq), encode(&rec));
            }
            Op::PutBody { id, message } => {
                batch.insert(&store.bodies, id.to_be_bytes(), encode(&*message))
            }
            Op::DelBody(id) => batch.remove(&store.bodies, id.to_be_bytes()),
            Op::PutDelayed {
                due,
                id,
                tenant,
                queues,
                message,
            } => {
                let rec = DelayedRecordRef {
                    tenant: &tenant,
                    queues: &queues,
                    message: &message,
                };
                batch.insert(&store.delayed, keys::delay_key(due, id), encode(&rec));
            }
            Op::Barrier => {}
            Op::DelDelayed { due, id } => batch.remove(&store.delayed, keys::delay_key(due, id)),
        }
    }
    batch.commit()
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
