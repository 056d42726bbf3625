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
pub(crate) mod keys;
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
pub(crate) use keys::{KeyBuf, kind};
use records::{LogRecord, decode, encode};

use crate::error::{Error, Result, StoreError};
use crate::message::Message;

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
    failed: AtomicBool,
    policy: SyncPolicy,
    committer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn fjall_err(context: impl Into<String>) -> impl FnOnce(fjall::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Fjall { context, source }
}

impl Store {
    /// Opens (or creates) the store in `dir` and starts the committer thread.
    pub fn open(dir: &Path, policy: SyncPolicy, cache_bytes: u64) -> Result<Arc<Store>> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            context: format!("creating data directory {}", dir.display()),
            source,
        })?;
        let db = match Database::builder(dir).cache_size(cache_bytes).open() {
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
            failed: AtomicBool::new(false),
            policy,
            committer: Mutex::new(None),
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
        {
            let mut p = self.pending.lock();
            p.closing = true;
        }
        self.wake.notify_one();
        if let Some(h) = self.committer.lock().take() {
            let _ = h.join();
        }
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
