//! The committer: the engine's handle on storage. Callers submit [`Write`]s
//! and get a [`Ticket`]; one thread hands whatever accumulated to the backend
//! as one batch and reports the batch's ticket decided: stored, or failed.
//!
//! Group commit is the whole game on these disks (one fsync costs ~0.25 ms, so
//! one write per fsync would cap durable publishing near 4k/s): whatever
//! accumulated while the previous batch was being synced goes into the next
//! batch, and all its writers are released by one sync. The same committer
//! serves every backend, so tickets, waiting and failure mean the same on each.
//!
//! A failed batch fails its writers (they learn it from [`Store::wait`]) and
//! the engine is told which writes were lost ([`StoreHook`]) before anyone
//! learns the batch's fate. The store then stops writing and keeps trying to
//! recover the backend; once it can, the engine adds the writes that make the
//! backend match memory again, and writing resumes. Nothing that failed is
//! ever reported stored.

use std::collections::{BTreeMap, VecDeque};
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
/// How often a store that cannot write tries to recover.
const RECOVER_EVERY: Duration = Duration::from_millis(500);
/// Failed ticket ranges remembered for late waiters.
const MAX_FAILED_RANGES: usize = 4096;

/// What the committer tells the engine about failures and recovery.
pub(crate) trait StoreHook: Send + Sync {
    /// A batch failed: none of these writes may be taken as stored. Called
    /// on the committer thread before any waiter learns the batch's fate.
    fn writes_lost(&self, lost: &[Write]);
    /// The backend is writable again: add the writes that make it match
    /// what the engine holds in memory.
    fn reconcile(&self, out: &mut Vec<Write>);
}

/// Something waiting for a ticket to be decided (a queue whose consumers wait
/// for a message to be stored before they may see it).
pub(crate) trait AwaitsTicket: Send + Sync {
    /// Every ticket it asked for is decided, stored or failed.
    fn ticket_decided(&self);
}

/// Whether the store can write, for health checks and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreHealth {
    /// Writes are accepted.
    pub writable: bool,
    /// Batches that failed since the store opened.
    pub write_errors: u64,
    /// The last failure, while the store cannot write.
    pub last_error: Option<String>,
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
    write_errors: AtomicU64,
}

/// The engine's store: one committer in front of one backend.
pub(crate) struct Store {
    backend: Arc<dyn Backend>,
    pending: Mutex<Pending>,
    wake: Condvar,
    /// Every ticket up to this one is decided.
    decided: tokio::sync::watch::Sender<Ticket>,
    decided_now: AtomicU64,
    /// Last ticket whose write is in the backend (readable), synced or not.
    applied: AtomicU64,
    /// Ticket ranges `(after, up_to]` whose batches failed.
    failed: Mutex<VecDeque<(Ticket, Ticket)>>,
    /// Set once a range is in `failed`: confirms ask about every ticket, and
    /// a store that never failed answers them without the lock.
    any_failed: AtomicBool,
    writable: AtomicBool,
    last_error: Mutex<Option<String>>,
    counters: Counters,
    policy: SyncPolicy,
    hook: Mutex<Option<Weak<dyn StoreHook>>>,
    awaiting: Mutex<BTreeMap<Ticket, Vec<Weak<dyn AwaitsTicket>>>>,
    committer: Mutex<Option<std::thread::JoinHandle<()>>>,
    closed_cleanly: AtomicBool,
}

impl Store {
    /// Starts the committer in front of `backend`.
    pub fn start(backend: Arc<dyn Backend>, policy: SyncPolicy) -> Result<Arc<Store>> {
        let (decided, _) = tokio::sync::watch::channel(0);
        let store = Arc::new(Store {
            backend,
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            decided,
            decided_now: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            failed: Mutex::new(VecDeque::new()),
            any_failed: AtomicBool::new(false),
            writable: AtomicBool::new(true),
            last_error: Mutex::new(None),
            counters: Counters::default(),
            policy,
            hook: Mutex::new(None),
            awaiting: Mutex::new(BTreeMap::new()),
            committer: Mutex::new(None),
            closed_cleanly: AtomicBool::new(false),
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

    /// Who hears about lost writes and reconciles after recovery (the engine).
    pub fn set_hook(&self, hook: Weak<dyn StoreHook>) {
        *self.hook.lock() = Some(hook);
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

    /// Resolves when `ticket` is decided: `Ok` once its write is durable under
    /// the sync policy, an error if its batch failed.
    pub async fn wait(&self, ticket: Ticket) -> Result<()> {
        let mut rx = self.decided.subscribe();
        rx.wait_for(|&d| d >= ticket)
            .await
            .map_err(|_| Error::ShuttingDown)?;
        if self.has_failed(ticket) {
            Err(self.not_writable().into())
        } else {
            Ok(())
        }
    }

    /// Every ticket up to the returned one is decided (stored or failed).
    pub fn decided_ticket(&self) -> Ticket {
        self.decided_now.load(Ordering::Acquire)
    }

    /// True when `ticket`'s batch failed.
    pub fn has_failed(&self, ticket: Ticket) -> bool {
        if !self.any_failed.load(Ordering::Acquire) {
            return false;
        }
        self.failed
            .lock()
            .iter()
            .any(|&(after, up_to)| ticket > after && ticket <= up_to)
    }

    /// Calls `who` back once `ticket` is decided.
    pub fn when_decided(&self, ticket: Ticket, who: Weak<dyn AwaitsTicket>) {
        if ticket <= self.decided_ticket() {
            if let Some(w) = who.upgrade() {
                w.ticket_decided();
            }
            return;
        }
        self.awaiting.lock().entry(ticket).or_default().push(who);
        // The committer may have decided it between the check and the insert.
        if ticket <= self.decided_ticket() {
            self.call_awaiting(self.decided_ticket());
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

    /// Whether the store can write, and its failures so far.
    pub fn health(&self) -> StoreHealth {
        let writable = self.is_writable();
        StoreHealth {
            writable,
            write_errors: self.counters.write_errors.load(Ordering::Relaxed),
            last_error: if writable {
                None
            } else {
                self.last_error.lock().clone()
            },
        }
    }

    /// The last ticket whose write can be read back from the backend.
    pub fn applied_ticket(&self) -> Ticket {
        self.applied.load(Ordering::Acquire)
    }

    /// False after a failed write until the backend recovered.
    pub fn is_writable(&self) -> bool {
        self.writable.load(Ordering::Acquire)
    }

    /// The error callers get while the store cannot write.
    pub fn not_writable(&self) -> StoreError {
        let reason = self
            .last_error
            .lock()
            .clone()
            .unwrap_or_else(|| "a write failed".into());
        StoreError::NotWritable(reason)
    }

    /// Writes everything pending, makes it durable, and stops the committer
    /// and the backend. True when everything submitted was stored and the
    /// backend closed without error.
    pub fn close(&self) -> bool {
        self.pending.lock().closing = true;
        self.wake.notify_one();
        if let Some(h) = self.committer.lock().take() {
            let _ = h.join();
        }
        let closed = match self.backend.close() {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(cause = %e, "closing the store failed");
                false
            }
        };
        closed && self.closed_cleanly.load(Ordering::Acquire)
    }

    /// The committer thread's loop.
    fn run(&self) {
        let mut batch: Vec<Write> = Vec::new();
        let mut dirty: Vec<Weak<dyn Snapshot>> = Vec::new();
        let mut last_sync = Instant::now();
        let mut next_recovery = Instant::now();
        // How many writers waited on the last sync: when about as many are
        // expected again, it pays to wait a few microseconds for them so that one
        // fsync serves them all instead of the first few.
        let mut last_waiters = 0usize;
        loop {
            let (ticket, need_sync, closing) = {
                let mut p = self.pending.lock();
                while p.writes.is_empty() && p.dirty.is_empty() && !p.closing {
                    if self.is_writable() {
                        self.wake.wait(&mut p);
                    } else if self.wake.wait_until(&mut p, next_recovery).timed_out() {
                        // Nothing to write, but a store that cannot write
                        // keeps trying to recover, so health comes back too.
                        break;
                    }
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
            if !self.is_writable() && Instant::now() >= next_recovery {
                next_recovery = Instant::now() + RECOVER_EVERY;
                self.try_recover(&mut batch);
            }
            let sync = closing || (need_sync && self.policy != SyncPolicy::Never);
            let result = if self.is_writable() {
                self.write(&batch, ticket, sync, &mut last_sync)
            } else {
                Err(self.not_writable())
            };
            match result {
                Ok(()) => {
                    if closing {
                        self.closed_cleanly.store(true, Ordering::Release);
                    }
                }
                Err(e) => self.failed(&batch, ticket, e),
            }
            batch.clear();
            self.decide(ticket);
            if closing {
                let p = self.pending.lock();
                if p.writes.is_empty() && p.dirty.is_empty() {
                    return;
                }
            }
        }
    }

    /// A batch failed: stop writing, tell the engine what was lost, and
    /// remember the tickets so that their waiters fail.
    fn failed(&self, batch: &[Write], ticket: Ticket, e: StoreError) {
        let was_writable = self.writable.swap(false, Ordering::AcqRel);
        if was_writable {
            self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(cause = %e, "store write failed; refusing writes until the store recovers");
            *self.last_error.lock() = Some(e.to_string());
        }
        let after = self.decided_ticket();
        if ticket > after {
            let mut failed = self.failed.lock();
            if failed.len() >= MAX_FAILED_RANGES {
                failed.pop_front();
            }
            match failed.back_mut() {
                Some(last) if last.1 == after => last.1 = ticket,
                _ => failed.push_back((after, ticket)),
            }
            // Before the batch is decided: a waiter that sees it decided
            // also sees the flag.
            self.any_failed.store(true, Ordering::Release);
        }
        if !batch.is_empty()
            && let Some(hook) = self.hook.lock().as_ref().and_then(Weak::upgrade)
        {
            hook.writes_lost(batch);
        }
    }

    /// Tries to make the backend writable again; on success the engine's
    /// reconciling writes go after what is pending, so the backend ends up
    /// matching memory.
    fn try_recover(&self, batch: &mut Vec<Write>) {
        match self.backend.recover() {
            Ok(()) => {
                self.writable.store(true, Ordering::Release);
                *self.last_error.lock() = None;
                if let Some(hook) = self.hook.lock().as_ref().and_then(Weak::upgrade) {
                    hook.reconcile(batch);
                }
                tracing::warn!(
                    writes = batch.len(),
                    "the store can write again; rewriting what memory holds"
                );
            }
            Err(e) => {
                tracing::debug!(cause = %e, "the store cannot recover yet");
                *self.last_error.lock() = Some(e.to_string());
            }
        }
    }

    /// Every ticket up to `ticket` is decided: tell waiters and those awaiting.
    fn decide(&self, ticket: Ticket) {
        self.decided_now.store(ticket, Ordering::Release);
        self.decided.send_replace(ticket);
        self.call_awaiting(ticket);
    }

    fn call_awaiting(&self, ticket: Ticket) {
        let due = {
            let mut awaiting = self.awaiting.lock();
            let later = awaiting.split_off(&(ticket + 1));
            std::mem::replace(&mut *awaiting, later)
        };
        for who in due.into_values().flatten() {
            if let Some(w) = who.upgrade() {
                w.ticket_decided();
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
