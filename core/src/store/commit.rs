//! The committer: the engine's handle on storage. Callers submit [`Write`]s
//! and get a [`Ticket`]; one thread hands whatever accumulated to the backend
//! as one batch and reports the batch's ticket as durable.
//!
//! Group commit is the whole game on these disks (one fsync costs ~0.25 ms, so
//! one write per fsync would cap durable publishing near 4k/s): whatever
//! accumulated while the previous batch was being synced goes into the next
//! batch, and all its writers are released by one sync. The same committer
//! serves every backend, so tickets, waiting and failure mean the same on each.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::backend::Backend;
use super::writes::Write;
use super::{Snapshot, StoreStats, SyncPolicy, Ticket};
use crate::error::{Error, Result, StoreError};

/// Longest wait for writers expected to join a sync (see `run`).
const GATHER_WINDOW: Duration = Duration::from_micros(150);

#[derive(Clone, Copy, Debug)]
struct Durable {
    ticket: Ticket,
    failed: bool,
}

#[derive(Default)]
struct Pending {
    writes: Vec<Write>,
    ticket: Ticket,
    need_sync: bool,
    dirty: Vec<Weak<dyn Snapshot>>,
    closing: bool,
    bytes: usize,
    /// Submits that will wait for this batch's sync.
    sync_waiters: usize,
}

impl Pending {
    fn push(&mut self, write: Write, sync: bool) {
        self.bytes += write.approx_bytes();
        self.writes.push(write);
        self.ticket += 1;
        self.need_sync |= sync;
        self.sync_waiters += usize::from(sync);
    }
}

/// What the committer has done since the store opened.
#[derive(Debug, Default)]
struct Counters {
    batches: AtomicU64,
    ops: AtomicU64,
    syncs: AtomicU64,
    sync_micros: AtomicU64,
    apply_micros: AtomicU64,
}

/// The engine's store: one committer in front of one backend.
pub(crate) struct Store {
    backend: Arc<dyn Backend>,
    pending: Mutex<Pending>,
    wake: Condvar,
    durable: tokio::sync::watch::Sender<Durable>,
    /// Last ticket whose write is in the backend (readable), synced or not.
    applied: AtomicU64,
    counters: Counters,
    failed: AtomicBool,
    policy: SyncPolicy,
    committer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Store {
    /// Starts the committer in front of `backend`.
    pub fn start(backend: Arc<dyn Backend>, policy: SyncPolicy) -> Result<Arc<Store>> {
        let (durable, _) = tokio::sync::watch::channel(Durable {
            ticket: 0,
            failed: false,
        });
        let store = Arc::new(Store {
            backend,
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            durable,
            applied: AtomicU64::new(0),
            counters: Counters::default(),
            failed: AtomicBool::new(false),
            policy,
            committer: Mutex::new(None),
        });
        let worker = Arc::clone(&store);
        let handle = std::thread::Builder::new()
            .name("gw-committer".into())
            .spawn(move || worker.run())
            .map_err(|source| StoreError::Io {
                context: "starting the committer thread".into(),
                source,
            })?;
        *store.committer.lock() = Some(handle);
        Ok(store)
    }

    /// Reads, and what the backend tells about itself.
    pub fn backend(&self) -> &dyn Backend {
        &*self.backend
    }

    /// Queues a write. `sync`: the caller will wait for the ticket and needs the
    /// write on disk under the sync policy.
    pub fn submit(&self, write: Write, sync: bool) -> Ticket {
        let mut p = self.pending.lock();
        p.push(write, sync);
        let t = p.ticket;
        drop(p);
        self.wake.notify_one();
        t
    }

    /// Queues several writes; they land in the same batch or in order.
    pub fn submit_all(&self, writes: impl IntoIterator<Item = Write>, sync: bool) -> Ticket {
        let mut p = self.pending.lock();
        for w in writes {
            p.push(w, sync);
        }
        let t = p.ticket;
        drop(p);
        self.wake.notify_one();
        t
    }

    /// Asks for `target`'s state to be written at the next commit.
    pub fn mark_dirty(&self, target: Weak<dyn Snapshot>) {
        let mut p = self.pending.lock();
        p.dirty.push(target);
        drop(p);
        self.wake.notify_one();
    }

    /// Bytes of writes waiting for the committer.
    pub fn backlog_bytes(&self) -> usize {
        self.pending.lock().bytes
    }

    /// Resolves when every write up to `ticket` is durable under the sync policy.
    pub async fn wait(&self, ticket: Ticket) -> Result<()> {
        let mut rx = self.durable.subscribe();
        let state = rx
            .wait_for(|d| d.failed || d.ticket >= ticket)
            .await
            .map_err(|_| Error::ShuttingDown)?;
        if state.failed {
            Err(StoreError::Poisoned.into())
        } else {
            Ok(())
        }
    }

    /// The committer's counters.
    pub fn stats(&self) -> StoreStats {
        let c = &self.counters;
        StoreStats {
            batches: c.batches.load(Ordering::Relaxed),
            ops: c.ops.load(Ordering::Relaxed),
            syncs: c.syncs.load(Ordering::Relaxed),
            sync_micros: c.sync_micros.load(Ordering::Relaxed),
            apply_micros: c.apply_micros.load(Ordering::Relaxed),
            backlog_bytes: self.backlog_bytes() as u64,
        }
    }

    /// The last ticket whose write can be read back from the backend.
    pub fn applied_ticket(&self) -> Ticket {
        self.applied.load(Ordering::Acquire)
    }

    /// True once a write or sync failed: the store accepts no more writes.
    pub fn is_poisoned(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Writes everything pending, makes it durable, and stops the committer
    /// and the backend.
    pub fn close(&self) {
        self.pending.lock().closing = true;
        self.wake.notify_one();
        if let Some(h) = self.committer.lock().take() {
            let _ = h.join();
        }
        if let Err(e) = self.backend.close() {
            tracing::error!(cause = %e, "closing the store failed");
        }
    }

    /// The committer thread's loop.
    fn run(&self) {
        let mut batch: Vec<Write> = Vec::new();
        let mut dirty: Vec<Weak<dyn Snapshot>> = Vec::new();
        let mut last_sync = Instant::now();
        // How many writers waited on the last sync: when about as many are
        // expected again, it pays to wait a few microseconds for them so that one
        // fsync serves them all instead of the first few.
        let mut last_waiters = 0usize;
        loop {
            let (ticket, need_sync, closing) = {
                let mut p = self.pending.lock();
                while p.writes.is_empty() && p.dirty.is_empty() && !p.closing {
                    self.wake.wait(&mut p);
                }
                if p.need_sync && self.policy == SyncPolicy::Always {
                    let until = Instant::now() + GATHER_WINDOW;
                    while p.sync_waiters < last_waiters && !p.closing {
                        if self.wake.wait_until(&mut p, until).timed_out() {
                            break;
                        }
                    }
                }
                last_waiters = std::mem::take(&mut p.sync_waiters);
                std::mem::swap(&mut p.writes, &mut batch);
                std::mem::swap(&mut p.dirty, &mut dirty);
                p.bytes = 0;
                let need_sync = std::mem::take(&mut p.need_sync);
                (p.ticket, need_sync, p.closing)
            };
            for target in dirty.drain(..) {
                if let Some(t) = target.upgrade() {
                    t.snapshot(&mut batch);
                }
            }
            if self.failed.load(Ordering::Acquire) {
                batch.clear();
                self.durable.send_replace(Durable {
                    ticket,
                    failed: true,
                });
                if closing {
                    return;
                }
                continue;
            }
            let sync = closing || (need_sync && self.policy != SyncPolicy::Never);
            let result = self.write(&batch, ticket, sync, &mut last_sync);
            batch.clear();
            match result {
                Ok(()) => {
                    self.durable.send_replace(Durable {
                        ticket,
                        failed: false,
                    });
                }
                Err(e) => {
                    // After a failed write or sync the backend may hold part of
                    // the batch: stop writing. Every waiter learns that its
                    // write may not be durable.
                    tracing::error!(cause = %e, "store write failed; refusing further writes");
                    self.failed.store(true, Ordering::Release);
                    self.durable.send_replace(Durable {
                        ticket,
                        failed: true,
                    });
                }
            }
            if closing {
                let p = self.pending.lock();
                if p.writes.is_empty() && p.dirty.is_empty() {
                    return;
                }
            }
        }
    }

    /// Hands one batch to the backend, then (when asked) makes it durable,
    /// counting what each step cost.
    fn write(
        &self,
        batch: &[Write],
        ticket: Ticket,
        sync: bool,
        last_sync: &mut Instant,
    ) -> std::result::Result<(), StoreError> {
        let c = &self.counters;
        let started = Instant::now();
        if !batch.is_empty() {
            c.batches.fetch_add(1, Ordering::Relaxed);
            c.ops.fetch_add(batch.len() as u64, Ordering::Relaxed);
            self.backend.write(batch)?;
        }
        self.applied.store(ticket, Ordering::Release);
        let applied = Instant::now();
        c.apply_micros
            .fetch_add(micros(applied - started), Ordering::Relaxed);
        if !sync {
            return Ok(());
        }
        if let SyncPolicy::Batch(every) = self.policy {
            let due = *last_sync + every;
            if due > applied && !self.pending.lock().closing {
                std::thread::sleep(due - applied);
            }
        }
        *last_sync = Instant::now();
        let result = self.backend.sync();
        c.syncs.fetch_add(1, Ordering::Relaxed);
        c.sync_micros
            .fetch_add(micros(applied.elapsed()), Ordering::Relaxed);
        result
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
