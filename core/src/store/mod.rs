//! The storage boundary: one fjall database in the data directory.
//!
//! Keyspaces:
//! - `meta`: tenants, users, exchanges, bindings, queues, group snapshots,
//!   retained messages, adapter state, counters (keys in `keys.rs`);
//! - `log`: every queue's messages, keyed by (queue id, sequence number);
//! - `bodies`: messages stored once for several durable queues;
//! - `delayed`: messages waiting for their delivery time, keyed by (due, id).
//!
//! Writes never happen on the caller's thread: callers hand [`Op`]s to the
//! committer (`commit.rs`), which applies everything that accumulated in one
//! batch and one sync (group commit), then reports the batch's ticket as
//! durable. Reads go straight to fjall.

mod commit;
pub(crate) mod dir_sync;
mod heads;
pub(crate) mod keys;
mod maintenance;
pub(crate) mod records;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, KvSeparationOptions};
use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};

pub(crate) use commit::Op;
use commit::{Durable, Pending};
pub(crate) use heads::LogHeads;
pub(crate) use keys::{KeyBuf, kind};
use records::{LogRecord, decode, encode};

use crate::error::{Error, Result, StoreError};
use crate::message::Message;

/// Largest memtable of the message keyspaces: memtables hold whole values
/// until they are flushed (blobs included), so this bounds what a fast
/// publisher keeps in memory.
const MEMTABLE_BYTES: u64 = 16 << 20;
/// Journal bytes kept before fjall flushes the keyspaces that pin the oldest.
const MAX_JOURNALS_BYTES: u64 = 128 << 20;

/// The format this build writes. Any change to a record shape changes it.
pub const STORE_FORMAT: &str = "gateway-store-1";

/// How hard the engine works to make confirmed writes survive a power loss.
///
/// Every policy survives the gateway process being killed: a confirmed write
/// has reached the operating system. Only `Always` also survives the machine
/// losing power without losing anything confirmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum SyncPolicy {
    /// fsync before confirming (many writes share one fsync).
    #[default]
    Always,
    /// fsync at most once per interval; confirms wait for it.
    Batch(Duration),
    /// Never fsync; confirm once the write reached the operating system.
    Never,
}

/// What the committer has done since the store opened.
#[derive(Debug, Default)]
pub(crate) struct StoreCounters {
    pub batches: AtomicU64,
    pub ops: AtomicU64,
    pub syncs: AtomicU64,
    pub sync_micros: AtomicU64,
    pub apply_micros: AtomicU64,
}

/// A snapshot of the committer's counters (for metrics and benchmarks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Batches written.
    pub batches: u64,
    /// Writes in them.
    pub ops: u64,
    /// fsyncs done.
    pub syncs: u64,
    /// Time spent in fsync, in µs.
    pub sync_micros: u64,
    /// Time spent applying batches (before fsync), in µs.
    pub apply_micros: u64,
    /// Bytes waiting for the committer now.
    pub backlog_bytes: u64,
}

/// Which compaction filter a keyspace gets (fjall's assigner type, not exported by it).
type FilterAssigner =
    Arc<dyn Fn(&str) -> Option<Arc<dyn fjall::compaction::filter::Factory>> + Send + Sync>;

/// A position in the stream of submitted writes; durable once the committer reports it.
pub type Ticket = u64;

/// Something (a queue) whose in-memory state is written out at the next commit.
pub(crate) trait Snapshot: Send + Sync {
    fn snapshot(&self, out: &mut Vec<Op>);
}

/// Keyspaces that take generic puts and deletes (the others have their own ops).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ks {
    Meta,
}

pub(crate) struct Store {
    db: Database,
    meta: Keyspace,
    log: Keyspace,
    bodies: Keyspace,
    delayed: Keyspace,
    /// Incremented at every start; marks memory-only messages spilled to disk.
    pub epoch: u64,
    pending: Mutex<Pending>,
    wake: Condvar,
    durable: tokio::sync::watch::Sender<Durable>,
    /// Last ticket whose write is in fjall (readable), synced or not.
    applied: AtomicU64,
    counters: StoreCounters,
    /// Where each queue's log starts (drives the compaction filter).
    pub heads: Arc<LogHeads>,
    failed: AtomicBool,
    policy: SyncPolicy,
    committer: Mutex<Option<std::thread::JoinHandle<()>>>,
    maintenance: Mutex<Option<std::thread::JoinHandle<()>>>,
    stop_maintenance: Arc<maintenance::Stop>,
    dir_watcher: Mutex<Option<dir_sync::NewEntryWatcher>>,
}

fn fjall_err(context: impl Into<String>) -> impl FnOnce(fjall::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Fjall { context, source }
}

impl Store {
    /// Opens (or creates) the store in `dir` and starts the committer thread.
    pub fn open(dir: &Path, policy: SyncPolicy, cache_bytes: u64) -> Result<Arc<Store>> {
        if dir.as_os_str().is_empty() {
            return Err(StoreError::Io {
                context: "opening the data directory".into(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path is empty"),
            }
            .into());
        }
        dir_sync::create_dir_all_durably(dir).map_err(|source| StoreError::Io {
            context: format!("creating data directory {}", dir.display()),
            source,
        })?;
        let heads = Arc::new(LogHeads::default());
        let factory: Arc<dyn fjall::compaction::filter::Factory> = Arc::new(
            heads::LogFilterFactory(std::panic::AssertUnwindSafe(Arc::clone(&heads))),
        );
        let assigner: FilterAssigner =
            Arc::new(move |keyspace: &str| (keyspace == "log").then(|| Arc::clone(&factory)));
        // Journals are deleted only once every keyspace has flushed what they
        // hold; the metadata keyspace takes small writes into each of them and
        // rarely fills a memtable, so without a cap fjall's default (512 MiB of
        // journals) stays on disk after a backlog has drained.
        let builder = Database::builder(dir)
            .with_compaction_filter_factories(assigner)
            .max_journaling_size(MAX_JOURNALS_BYTES)
            .cache_size(cache_bytes);
        let db = match builder.open() {
            Ok(db) => db,
            Err(fjall::Error::Locked) => {
                return Err(StoreError::Locked(dir.display().to_string()).into());
            }
            Err(e) => {
                return Err(
                    fjall_err(format!("opening data directory {}", dir.display()))(e).into(),
                );
            }
        };
        let blobs = || {
            KeyspaceCreateOptions::default()
                .with_kv_separation(Some(KvSeparationOptions::default()))
                .max_memtable_size(MEMTABLE_BYTES)
        };
        let meta = db
            .keyspace("meta", KeyspaceCreateOptions::default)
            .map_err(fjall_err("opening keyspace meta"))?;
        let log = db
            .keyspace("log", blobs)
            .map_err(fjall_err("opening keyspace log"))?;
        let bodies = db
            .keyspace("bodies", blobs)
            .map_err(fjall_err("opening keyspace bodies"))?;
        let delayed = db
            .keyspace("delayed", blobs)
            .map_err(fjall_err("opening keyspace delayed"))?;

        let format_key = [kind::FORMAT];
        match meta
            .get(format_key)
            .map_err(fjall_err("reading store format"))?
        {
            Some(found) if &*found == STORE_FORMAT.as_bytes() => {}
            Some(found) => {
                return Err(StoreError::Format {
                    dir: dir.display().to_string(),
                    found: String::from_utf8_lossy(&found).into_owned(),
                    expected: STORE_FORMAT,
                }
                .into());
            }
            None => {
                let empty = meta.is_empty().map_err(fjall_err("reading meta"))?
                    && log.is_empty().map_err(fjall_err("reading log"))?;
                if !empty {
                    return Err(StoreError::Format {
                        dir: dir.display().to_string(),
                        found: "(none)".into(),
                        expected: STORE_FORMAT,
                    }
                    .into());
                }
                meta.insert(format_key, STORE_FORMAT.as_bytes())
                    .map_err(fjall_err("writing store format"))?;
            }
        }
        let epoch_key = KeyBuf::new(kind::COUNTER).str("epoch").done();
        let epoch = read_u64(&meta, &epoch_key)?.unwrap_or(0) + 1;
        meta.insert(&epoch_key, epoch.to_be_bytes())
            .map_err(fjall_err("writing epoch"))?;
        db.persist(fjall::PersistMode::SyncAll)
            .map_err(fjall_err("syncing"))?;
        // The folders fjall just made are not all durable yet (dir_sync.rs).
        let io_err = |context: &str| {
            let context = format!("{context} in {}", dir.display());
            move |source| StoreError::Io { context, source }
        };
        dir_sync::sync_tree(dir).map_err(io_err("syncing the folders"))?;
        let blob_dirs = [&log, &bodies, &delayed].map(|ks| ks.path().join("blobs"));
        let dir_watcher = dir_sync::NewEntryWatcher::spawn(blob_dirs.to_vec())
            .map_err(io_err("starting the blob folder watcher"))?;

        let (durable, _) = tokio::sync::watch::channel(Durable {
            ticket: 0,
            failed: false,
        });
        let store = Arc::new(Store {
            db,
            meta,
            log,
            bodies,
            delayed,
            epoch,
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            durable,
            applied: AtomicU64::new(0),
            counters: StoreCounters::default(),
            heads,
            failed: AtomicBool::new(false),
            policy,
            committer: Mutex::new(None),
            maintenance: Mutex::new(None),
            stop_maintenance: Arc::default(),
            dir_watcher: Mutex::new(Some(dir_watcher)),
        });
        let worker = Arc::clone(&store);
        let handle = std::thread::Builder::new()
            .name("gw-committer".into())
            .spawn(move || commit::run(&worker))
            .map_err(|source| StoreError::Io {
                context: "starting the committer thread".into(),
                source,
            })?;
        *store.committer.lock() = Some(handle);
        let (log, heads, stop) = (
            store.log.clone(),
            Arc::clone(&store.heads),
            Arc::clone(&store.stop_maintenance),
        );
        let handle = std::thread::Builder::new()
            .name("gw-maintenance".into())
            .spawn(move || maintenance::run(log, heads, stop))
            .map_err(|source| StoreError::Io {
                context: "starting the maintenance thread".into(),
                source,
            })?;
        *store.maintenance.lock() = Some(handle);
        Ok(store)
    }

    fn keyspace(&self, ks: Ks) -> &Keyspace {
        match ks {
            Ks::Meta => &self.meta,
        }
    }

    /// Queues a write. `sync`: the caller will wait for the ticket and needs the
    /// write on disk under the sync policy.
    pub fn submit(&self, op: Op, sync: bool) -> Ticket {
        let mut p = self.pending.lock();
        p.push(op, sync);
        let t = p.ticket;
        drop(p);
        self.wake.notify_one();
        t
    }

    /// Queues several writes; they land in the same batch or in order.
    pub fn submit_all(&self, ops: impl IntoIterator<Item = Op>, sync: bool) -> Ticket {
        let mut p = self.pending.lock();
        for op in ops {
            p.push(op, sync);
        }
        let t = p.ticket;
        drop(p);
        self.wake.notify_one();
        t
    }

    /// Asks for `target`'s state to be written at the next commit.
    pub fn mark_dirty(&self, target: std::sync::Weak<dyn Snapshot>) {
        let mut p = self.pending.lock();
        p.dirty.push(target);
        drop(p);
        self.wake.notify_one();
    }

    /// Bytes of writes waiting for the committer: adapters slow publishers down
    /// when this grows (see `Engine::under_pressure`).
    pub fn backlog_bytes(&self) -> usize {
        self.pending.lock().bytes
    }

    /// Bytes held in memtables (active and sealed, waiting for their flush).
    pub fn memtable_bytes(&self) -> u64 {
        self.db.write_buffer_size()
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

    /// The last ticket whose write can be read back from the store.
    pub fn applied_ticket(&self) -> Ticket {
        self.applied.load(Ordering::Acquire)
    }

    /// True once a write or sync failed: the store accepts no more writes.
    pub fn is_poisoned(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Writes everything pending, syncs, and stops the committer.
    pub fn close(&self) {
        self.stop_maintenance.stop();
        if let Some(h) = self.maintenance.lock().take() {
            let _ = h.join();
        }
        {
            let mut p = self.pending.lock();
            p.closing = true;
        }
        self.wake.notify_one();
        if let Some(h) = self.committer.lock().take() {
            let _ = h.join();
        }
        drop(self.dir_watcher.lock().take());
    }

    // ---- reads ----

    /// Up to `max` log records of a queue from `from` on, stopping after `max_bytes`.
    pub fn read_log(
        &self,
        queue: u64,
        from: u64,
        max: usize,
        max_bytes: u64,
    ) -> Result<Vec<(u64, LogRecord)>> {
        let mut out = Vec::new();
        let mut bytes = 0u64;
        for guard in self
            .log
            .range(keys::log_key(queue, from)..=keys::log_key(queue, u64::MAX))
        {
            let (k, v) = guard.into_inner().map_err(fjall_err("reading queue log"))?;
            let Some((_, seq)) = keys::parse_log_key(&k) else {
                continue;
            };
            bytes += v.len() as u64;
            out.push((seq, decode::<LogRecord>("log", &v)?));
            if out.len() >= max || bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    /// One log record.
    pub fn get_log(&self, queue: u64, seq: u64) -> Result<Option<LogRecord>> {
        match self
            .log
            .get(keys::log_key(queue, seq))
            .map_err(fjall_err("reading queue log"))?
        {
            Some(v) => Ok(Some(decode("log", &v)?)),
            None => Ok(None),
        }
    }

    /// Sequence numbers in `[from, to)` with no stored entry (memory-only
    /// messages lost in a restart), reading keys only; gives up (`None`) past
    /// `limit` holes.
    pub fn log_holes(
        &self,
        queue: u64,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Option<Vec<u64>>> {
        let mut holes = Vec::new();
        let mut expected = from;
        for guard in self
            .log
            .range(keys::log_key(queue, from)..keys::log_key(queue, to))
        {
            let k = guard.key().map_err(fjall_err("reading queue log"))?;
            let Some((_, seq)) = keys::parse_log_key(&k) else {
                continue;
            };
            while expected < seq {
                holes.push(expected);
                expected += 1;
                if holes.len() > limit {
                    return Ok(None);
                }
            }
            expected = seq + 1;
        }
        while expected < to {
            holes.push(expected);
            expected += 1;
            if holes.len() > limit {
                return Ok(None);
            }
        }
        Ok(Some(holes))
    }

    /// The highest sequence number stored for a queue.
    pub fn last_log_seq(&self, queue: u64) -> Result<Option<u64>> {
        let range = keys::log_key(queue, 0)..=keys::log_key(queue, u64::MAX);
        match self.log.range(range).next_back() {
            Some(g) => {
                let k = g.key().map_err(fjall_err("reading queue log"))?;
                Ok(keys::parse_log_key(&k).map(|(_, s)| s))
            }
            None => Ok(None),
        }
    }

    /// A message stored once for several queues.
    pub fn get_body(&self, id: u64) -> Result<Option<Message>> {
        match self
            .bodies
            .get(id.to_be_bytes())
            .map_err(fjall_err("reading bodies"))?
        {
            Some(v) => Ok(Some(decode("bodies", &v)?)),
            None => Ok(None),
        }
    }

    /// One meta record.
    pub fn get_meta<T: for<'de> Deserialize<'de>>(&self, key: &[u8]) -> Result<Option<T>> {
        match self.meta.get(key).map_err(fjall_err("reading meta"))? {
            Some(v) => Ok(Some(decode("meta", &v)?)),
            None => Ok(None),
        }
    }

    /// Every meta record whose key starts with `prefix`, decoded.
    pub fn scan_meta<T: for<'de> Deserialize<'de>>(
        &self,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, T)>> {
        let mut out = Vec::new();
        for guard in self.meta.prefix(prefix) {
            let (k, v) = guard.into_inner().map_err(fjall_err("reading meta"))?;
            out.push((k.to_vec(), decode("meta", &v)?));
        }
        Ok(out)
    }

    /// Every meta record whose key starts with `prefix`, undecoded.
    pub fn scan_meta_raw(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        for guard in self.meta.prefix(prefix) {
            let (k, v) = guard.into_inner().map_err(fjall_err("reading meta"))?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Every delayed record, in due order.
    pub fn scan_delayed(&self) -> Result<Vec<((u64, u64), records::DelayedRecord)>> {
        let mut out = Vec::new();
        for guard in self.delayed.iter() {
            let (k, v) = guard.into_inner().map_err(fjall_err("reading delayed"))?;
            let Some(key) = keys::parse_log_key(&k) else {
                continue;
            };
            out.push((key, decode("delayed", &v)?));
        }
        Ok(out)
    }

    /// One delayed record.
    pub fn get_delayed(&self, due: u64, id: u64) -> Result<Option<records::DelayedRecord>> {
        match self
            .delayed
            .get(keys::delay_key(due, id))
            .map_err(fjall_err("reading delayed"))?
        {
            Some(v) => Ok(Some(decode("delayed", &v)?)),
            None => Ok(None),
        }
    }

    /// Reads a counter (next ids).
    pub fn counter(&self, name: &str) -> Result<Option<u64>> {
        read_u64(&self.meta, &KeyBuf::new(kind::COUNTER).str(name).done())
    }

    /// An op that sets a counter.
    pub fn set_counter_op(name: &str, value: u64) -> Op {
        Op::Put(
            Ks::Meta,
            KeyBuf::new(kind::COUNTER).str(name).done(),
            value.to_be_bytes().to_vec(),
        )
    }

    /// Bytes the data directory takes on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.db.disk_space().unwrap_or(0)
    }

    /// An op that writes a meta record.
    pub fn put_meta<T: Serialize + ?Sized>(key: Vec<u8>, value: &T) -> Op {
        Op::Put(Ks::Meta, key, encode(value))
    }
}

fn read_u64(ks: &Keyspace, key: &[u8]) -> Result<Option<u64>> {
    match ks.get(key).map_err(fjall_err("reading counter"))? {
        Some(v) => {
            let b: [u8; 8] = (*v).try_into().map_err(|_| StoreError::Corrupt {
                keyspace: "meta",
                reason: "counter is not 8 bytes".into(),
            })?;
            Ok(Some(u64::from_be_bytes(b)))
        }
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(store: &Store, queue: u64, seqs: std::ops::Range<u64>) -> Ticket {
        let mut t = 0;
        for seq in seqs {
            let message = Arc::new(Message::new(vec![7u8; 100]));
            t = store.submit(
                Op::PutLog {
                    queue,
                    seq,
                    message,
                    transient_epoch: None,
                },
                false,
            );
        }
        t
    }

    async fn applied(store: &Store, t: Ticket) {
        while store.applied_ticket() < t {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn compactions_drop_entries_below_heads_and_of_deleted_queues() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), SyncPolicy::Never, 1 << 20).unwrap();
        store.heads.set(1, 0);
        store.heads.set(2, 0);
        store.heads.set(3, 0);
        put(&store, 1, 0..1000);
        put(&store, 2, 0..10);
        let t = put(&store, 3, 0..10);
        applied(&store, t).await;
        store.heads.set(1, 600);
        store.heads.remove(2);
        // Not armed yet: a compaction keeps everything (queues may not be loaded).
        store.log.rotate_memtable_and_wait().unwrap();
        store.log.major_compact().unwrap();
        assert_eq!(store.read_log(2, 0, 100, u64::MAX).unwrap().len(), 10);
        store.heads.arm(4);
        store.log.major_compact().unwrap();
        let first = store.read_log(1, 0, 1, u64::MAX).unwrap();
        assert_eq!(first[0].0, 600, "entries below the head are gone");
        assert!(
            store.read_log(2, 0, 100, u64::MAX).unwrap().is_empty(),
            "a deleted queue's log is gone"
        );
        assert_eq!(
            store.read_log(3, 0, 100, u64::MAX).unwrap().len(),
            10,
            "others are kept"
        );
        // A queue created after arming (id 4) is kept even before compactions see it registered.
        store.heads.set(4, 0);
        let t = put(&store, 4, 0..5);
        applied(&store, t).await;
        store.log.rotate_memtable_and_wait().unwrap();
        store.log.major_compact().unwrap();
        assert_eq!(store.read_log(4, 0, 100, u64::MAX).unwrap().len(), 5);
        store.close();
    }

    #[tokio::test]
    async fn a_drained_log_gives_its_disk_space_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), SyncPolicy::Never, 1 << 20).unwrap();
        store.heads.set(1, 0);
        store.heads.arm(2);
        let mut t = 0;
        for seq in 0..2_000u64 {
            // Large enough to live in blob files, as real bodies do, and
            // not compressible (an LCG's bytes).
            let mut x = seq.wrapping_mul(6364136223846793005) | 1;
            let body: Vec<u8> = (0..8 << 10)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (x >> 56) as u8
                })
                .collect();
            let message = Arc::new(Message::new(body));
            t = store.submit(
                Op::PutLog {
                    queue: 1,
                    seq,
                    message,
                    transient_epoch: None,
                },
                false,
            );
        }
        applied(&store, t).await;
        store.log.rotate_memtable_and_wait().unwrap();
        // Tables and blob files; the journal is preallocated.
        fn bytes_under(p: &std::path::Path) -> u64 {
            std::fs::read_dir(p).map_or(0, |entries| {
                entries
                    .flatten()
                    .map(|e| match e.metadata() {
                        Ok(m) if m.is_dir() => bytes_under(&e.path()),
                        Ok(m) => m.len(),
                        Err(_) => 0,
                    })
                    .sum()
            })
        }
        let keyspaces = dir.path().join("keyspaces");
        let full = bytes_under(&keyspaces);
        store.heads.set(1, 2_000);
        store.log.major_compact().unwrap();
        maintenance::release_dropped_files(&store.log).unwrap();
        let after = bytes_under(&keyspaces);
        assert!(
            after < full / 2,
            "{full} bytes with 16 MB of messages, {after} once they are all trimmed"
        );
        store.close();
    }
}
