//! The embedded backend: one fjall database in the data directory. Nothing
//! outside this folder knows fjall.
//!
//! Keyspaces:
//! - `meta`: tenants, users, exchanges, bindings, queues, group snapshots,
//!   retained messages, adapter state, counters (keys in `keys.rs`);
//! - `log`: every queue's messages, keyed by (queue id, sequence number);
//! - `bodies`: messages stored once for several durable queues;
//! - `delayed`: messages waiting for their delivery time, keyed by (due, id).
//!
//! Files: `write.rs` turns a batch of writes into one fjall batch; `load.rs`
//! reads the catalog back at start; `heads.rs` drops log entries below each
//! queue's head during compactions; `maintenance.rs` gives the disk back after
//! a backlog drained; `codec.rs` and `keys.rs` are the on-disk format.

mod codec;
pub(crate) mod dir_sync;
mod heads;
mod keys;
mod load;
mod maintenance;
mod write;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, KvSeparationOptions, PersistMode};
use parking_lot::{Mutex, RwLock};

use self::codec::{LogBody, LogRecord, Values};
use self::heads::LogHeads;
use self::keys::kind;
use super::backend::{AdapterRecords, Backend, Catalog, DelayedSchedule, LogRead, StoredQueue};
use super::records::DelayedRecord;
use super::writes::Write;
use crate::error::{Result, StoreError};
use crate::message::Message;
use crate::store::seal::{EncryptionKeys, OpenError};

/// The format this build writes. Any change to a record shape changes it.
pub const STORE_FORMAT: &str = "gateway-store-1";

/// Largest memtable of the message keyspaces: memtables hold whole values
/// until they are flushed (blobs included), so this bounds what a fast
/// publisher keeps in memory.
const MEMTABLE_BYTES: u64 = 16 << 20;
/// Journal bytes kept before fjall flushes the keyspaces that pin the oldest.
const MAX_JOURNALS_BYTES: u64 = 128 << 20;
/// Above this many bytes in memtables (flushes falling behind), publishers
/// should slow down.
const MEMTABLE_PRESSURE_BYTES: u64 = 80 << 20;

/// Which compaction filter a keyspace gets (fjall's assigner type, not exported by it).
type FilterAssigner =
    Arc<dyn Fn(&str) -> Option<Arc<dyn fjall::compaction::filter::Factory>> + Send + Sync>;

pub(crate) struct FjallBackend {
    dir: PathBuf,
    cache_bytes: u64,
    /// Kept for reopening after a failed write.
    values: Values,
    /// Incremented at every start; marks memory-only messages spilled to disk,
    /// so that they are not read back after a restart.
    epoch: u64,
    /// Where each queue's log starts (drives the compaction filter); kept
    /// across reopens, since the engine registered it.
    heads: Arc<LogHeads>,
    /// The open database; `None` while it is being reopened.
    open: RwLock<Option<Arc<Open>>>,
    /// Makes new blob files' directory entries durable (fjall does not).
    dir_watcher: Mutex<Option<dir_sync::NewEntryWatcher>>,
}

/// One opening of the database. After a failed write or sync fjall refuses
/// every later write ("poisoned"), so recovery drops this and opens anew.
pub(super) struct Open {
    db: Database,
    meta: Keyspace,
    log: Keyspace,
    bodies: Keyspace,
    delayed: Keyspace,
    /// How values are encoded (and sealed, when the store is encrypted).
    values: Values,
    maintenance: Mutex<Option<std::thread::JoinHandle<()>>>,
    stop_maintenance: Arc<maintenance::Stop>,
}

impl Open {
    /// Opens the database and its keyspaces and starts the maintenance thread.
    fn start(
        dir: &Path,
        cache_bytes: u64,
        heads: &Arc<LogHeads>,
        values: Values,
    ) -> Result<Open, StoreError> {
        let factory: Arc<dyn fjall::compaction::filter::Factory> = Arc::new(
            heads::LogFilterFactory(std::panic::AssertUnwindSafe(Arc::clone(heads))),
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
                return Err(StoreError::Locked(dir.display().to_string()));
            }
            Err(e) => {
                return Err(fjall_err(format!(
                    "opening data directory {}",
                    dir.display()
                ))(e));
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
        let stop_maintenance = Arc::new(maintenance::Stop::default());
        let (log2, heads2, stop) = (
            log.clone(),
            Arc::clone(heads),
            Arc::clone(&stop_maintenance),
        );
        let handle = std::thread::Builder::new()
            .name("gw-maintenance".into())
            .spawn(move || maintenance::run(log2, heads2, stop))
            .map_err(|source| StoreError::Io {
                context: "starting the maintenance thread".into(),
                source,
            })?;
        Ok(Open {
            db,
            meta,
            log,
            bodies,
            delayed,
            values,
            maintenance: Mutex::new(Some(handle)),
            stop_maintenance,
        })
    }

    fn stop_maintenance(&self) {
        self.stop_maintenance.stop();
        if let Some(h) = self.maintenance.lock().take() {
            let _ = h.join();
        }
    }
}

/// fjall's error, with what we were doing.
fn fjall_err(context: impl Into<String>) -> impl FnOnce(fjall::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Backend {
        context,
        source: Box::new(source),
    }
}

impl FjallBackend {
    /// Opens (or creates) the store in `dir` and starts its maintenance
    /// thread. With `keys`, values are sealed (`store/seal.rs`); a data
    /// directory is encrypted or not for its whole life.
    pub fn open(
        dir: &Path,
        cache_bytes: u64,
        keys: Option<Arc<EncryptionKeys>>,
    ) -> Result<Arc<FjallBackend>> {
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
        let values = Values::new(keys);
        let open = Open::start(dir, cache_bytes, &heads, values.clone())?;
        let started = first_start(dir, &open).and_then(|epoch| {
            // The folders fjall just made are not all durable yet (dir_sync.rs).
            let blob_dirs = [&open.log, &open.bodies, &open.delayed]
                .map(|ks| ks.path().join("blobs"))
                .to_vec();
            let watcher = dir_sync::NewEntryWatcher::spawn(blob_dirs)
                .map_err(io_err(dir, "starting the blob folder watcher"))?;
            Ok((epoch, watcher))
        });
        let (epoch, watcher) = match started {
            Ok(s) => s,
            Err(e) => {
                open.stop_maintenance();
                return Err(e);
            }
        };
        Ok(Arc::new(FjallBackend {
            dir: dir.to_owned(),
            cache_bytes,
            values,
            epoch,
            heads,
            open: RwLock::new(Some(Arc::new(open))),
            dir_watcher: Mutex::new(Some(watcher)),
        }))
    }

    /// The open database (an error while it is being reopened).
    fn db(&self) -> Result<Arc<Open>, StoreError> {
        self.open.read().clone().ok_or(StoreError::NotWritable(
            "the store is being reopened".into(),
        ))
    }

    /// A stored log record as the message it holds, or `None` when it is
    /// gone (a memory-only message of an earlier run, a deleted shared body).
    fn message_of(
        &self,
        open: &Open,
        record: LogRecord,
    ) -> Result<Option<Arc<Message>>, StoreError> {
        if record.transient_epoch.is_some_and(|e| e != self.epoch) {
            return Ok(None);
        }
        let message = match record.body {
            LogBody::Inline(m) => *m,
            LogBody::Shared(id) => {
                let key = id.to_be_bytes();
                match open.bodies.get(key).map_err(fjall_err("reading bodies"))? {
                    Some(v) => open.values.decode("bodies", &key, &v)?,
                    None => return Ok(None),
                }
            }
        };
        Ok(Some(Arc::new(message)))
    }
}

/// What the first opening of a process does: check (or write) the format,
/// and start a new epoch.
fn first_start(dir: &Path, open: &Open) -> Result<u64> {
    let fresh = check_format(dir, &open.meta, &open.log)?;
    check_encryption(dir, open, fresh)?;
    let epoch_key = keys::counter("epoch");
    let epoch = load::read_u64(&open.meta, &epoch_key)?.unwrap_or(0) + 1;
    open.meta
        .insert(&epoch_key, epoch.to_be_bytes())
        .map_err(fjall_err("writing epoch"))?;
    open.db
        .persist(PersistMode::SyncAll)
        .map_err(fjall_err("syncing"))?;
    dir_sync::sync_tree(dir).map_err(io_err(dir, "syncing the folders"))?;
    Ok(epoch)
}

/// An I/O error in the data directory, with what we were doing.
fn io_err(dir: &Path, context: &str) -> impl FnOnce(std::io::Error) -> StoreError {
    let context = format!("{context} in {}", dir.display());
    move |source| StoreError::Io { context, source }
}

/// A new data directory gets the format string; an existing one must have
/// ours. True for a new one.
fn check_format(dir: &Path, meta: &Keyspace, log: &Keyspace) -> Result<bool> {
    let format_key = [kind::FORMAT];
    match meta
        .get(format_key)
        .map_err(fjall_err("reading store format"))?
    {
        Some(found) if &*found == STORE_FORMAT.as_bytes() => Ok(false),
        Some(found) => Err(StoreError::Format {
            dir: dir.display().to_string(),
            found: String::from_utf8_lossy(&found).into_owned(),
            expected: STORE_FORMAT,
        }
        .into()),
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
            Ok(true)
        }
    }
}

/// What the encryption record of a data directory holds, sealed.
const ENCRYPTION_CHECK: &[u8] = b"gateway-store-encryption-check";

/// An encrypted data directory holds [`ENCRYPTION_CHECK`] sealed under its
/// current key; a clear one nothing. Start-up stops when the configured keys
/// do not match: no key for an encrypted directory, a key for a clear one
/// that already holds data, a key that is not the one it was written under.
/// A directory opened with a new key whose old one is listed has its
/// metadata and delayed messages sealed anew under the new key (queued
/// messages keep their old key until they are consumed), so the old key is
/// needed only while messages queued under it remain.
fn check_encryption(dir: &Path, open: &Open, fresh: bool) -> Result<()> {
    let key = [kind::ENCRYPTION];
    let aad = codec::aad("meta", &key);
    let stored = open
        .meta
        .get(key)
        .map_err(fjall_err("reading the encryption record"))?;
    let refuse = |why: String| Err(StoreError::Encryption(why).into());
    let dir = dir.display();
    match (stored, open.values.keys()) {
        (None, None) => Ok(()),
        (None, Some(keys)) if fresh => {
            tracing::info!(key = %keys.current_id(), "new data directory: encrypted at rest");
            open.meta
                .insert(key, keys.seal(&aad, ENCRYPTION_CHECK))
                .map_err(fjall_err("writing the encryption record"))?;
            Ok(())
        }
        (None, Some(_)) => refuse(format!(
            "data directory {dir} was created without encryption: encryption at rest applies to new data directories only (remove [storage] encryption_key_file, or start with an empty data directory)"
        )),
        (Some(sealed), None) => refuse(format!(
            "data directory {dir} is encrypted (key {}): set [storage] encryption_key_file to its key",
            EncryptionKeys::key_id_of(&sealed).unwrap_or_else(|| "?".into())
        )),
        (Some(sealed), Some(keys)) => match keys.open(&aad, &sealed) {
            Ok((plain, false)) if plain == ENCRYPTION_CHECK => Ok(()),
            Ok((plain, true)) if plain == ENCRYPTION_CHECK => reseal_metadata(open, keys),
            Ok(_) | Err(OpenError::NotSealed) | Err(OpenError::Forged(_)) => refuse(format!(
                "data directory {dir}: the encryption record does not verify under its key (the key file holds another key with the same id, or the record is damaged)"
            )),
            Err(OpenError::UnknownKey(id)) => refuse(format!(
                "data directory {dir} is encrypted with key {id}, but the configured key is {} (list the key it was written under in [storage] old_keys)",
                keys.current_id()
            )),
        },
    }
}

/// After a key change: every value of the metadata and of the delayed
/// messages (both may be kept for a long time) sealed under the new key, in
/// one batch with the encryption record, so a crash half-way repeats it. Log
/// entries and shared bodies keep their key until they are consumed.
fn reseal_metadata(open: &Open, keys: &EncryptionKeys) -> Result<()> {
    let mut batch = open.db.batch();
    let mut count = 0usize;
    for (name, keyspace) in [("meta", &open.meta), ("delayed", &open.delayed)] {
        for guard in keyspace.iter() {
            let (k, v) = guard
                .into_inner()
                .map_err(fjall_err("reading for re-encryption"))?;
            let clear = matches!(
                k.first(),
                Some(&kind::FORMAT | &kind::COUNTER | &kind::ENCRYPTION)
            );
            if name == "meta" && clear {
                continue;
            }
            let aad = codec::aad(name, &k);
            let (plain, old) = keys.open(&aad, &v).map_err(|e| StoreError::Corrupt {
                keyspace: name,
                reason: e.to_string(),
            })?;
            if old {
                batch.insert(keyspace, k.to_vec(), keys.seal(&aad, &plain));
                count += 1;
            }
        }
    }
    let key = [kind::ENCRYPTION];
    batch.insert(
        &open.meta,
        key,
        keys.seal(&codec::aad("meta", &key), ENCRYPTION_CHECK),
    );
    batch
        .commit()
        .map_err(fjall_err("re-encrypting metadata"))?;
    tracing::info!(key = %keys.current_id(), records = count, "metadata and delayed messages encrypted under the new key");
    Ok(())
}

impl Backend for FjallBackend {
    fn write(&self, batch: &[Write]) -> Result<(), StoreError> {
        let open = self.db()?;
        write::apply(&open, self.epoch, batch).map_err(fjall_err("writing a batch"))
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.db()?
            .db
            .persist(PersistMode::SyncData)
            .map_err(fjall_err("syncing"))
    }

    fn recover(&self) -> Result<(), StoreError> {
        let mut slot = self.open.write();
        if let Some(old) = slot.take() {
            old.stop_maintenance();
            // fjall releases the directory once its last handle is gone;
            // readers hold theirs for one read at most.
            let mut old = Some(old);
            for _ in 0..500 {
                match old.take().map(Arc::try_unwrap) {
                    Some(Ok(open)) => {
                        drop(open);
                        break;
                    }
                    Some(Err(shared)) => {
                        old = Some(shared);
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                    None => break,
                }
            }
        }
        let open = Open::start(
            &self.dir,
            self.cache_bytes,
            &self.heads,
            self.values.clone(),
        )?;
        // What recovery reads back (the journal) must be durable before
        // anything new is confirmed on top of it, folders included.
        open.db
            .persist(PersistMode::SyncAll)
            .map_err(fjall_err("syncing after reopening"))?;
        dir_sync::sync_tree(&self.dir).map_err(io_err(&self.dir, "syncing the folders"))?;
        *slot = Some(Arc::new(open));
        Ok(())
    }

    fn read_log(
        &self,
        queue: u64,
        from: u64,
        max: usize,
        max_bytes: u64,
    ) -> Result<LogRead, StoreError> {
        let open = self.db()?;
        let mut out = Vec::new();
        let mut bytes = 0u64;
        for guard in open
            .log
            .range(keys::log_key(queue, from)..=keys::log_key(queue, u64::MAX))
        {
            let (k, v) = guard.into_inner().map_err(fjall_err("reading queue log"))?;
            let Some((_, seq)) = keys::parse_log_key(&k) else {
                continue;
            };
            bytes += v.len() as u64;
            let record = open.values.decode("log", &k, &v)?;
            out.push((seq, self.message_of(&open, record)?));
            if out.len() >= max || bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    fn get_log(&self, queue: u64, seq: u64) -> Result<Option<Arc<Message>>, StoreError> {
        let open = self.db()?;
        let key = keys::log_key(queue, seq);
        match open.log.get(key).map_err(fjall_err("reading queue log"))? {
            Some(v) => self.message_of(&open, open.values.decode("log", &key, &v)?),
            None => Ok(None),
        }
    }

    fn log_holes(
        &self,
        queue: u64,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Option<Vec<u64>>, StoreError> {
        let open = self.db()?;
        let mut present = Vec::new();
        for guard in open
            .log
            .range(keys::log_key(queue, from)..keys::log_key(queue, to))
        {
            let k = guard.key().map_err(fjall_err("reading queue log"))?;
            if let Some((_, seq)) = keys::parse_log_key(&k) {
                present.push(seq);
            }
        }
        Ok(super::backend::holes_between(from, to, present, limit))
    }

    fn load_catalog(&self) -> Result<Catalog, StoreError> {
        load::catalog(&*self.db()?)
    }

    fn load_queue(&self, id: u64) -> Result<StoredQueue, StoreError> {
        let open = self.db()?;
        let mut stored = load::queue(&open, id)?;
        let range = keys::log_key(id, 0)..=keys::log_key(id, u64::MAX);
        stored.last_seq = match open.log.range(range).next_back() {
            Some(g) => {
                let k = g.key().map_err(fjall_err("reading queue log"))?;
                keys::parse_log_key(&k).map(|(_, s)| s)
            }
            None => None,
        };
        Ok(stored)
    }

    fn load_delayed(&self) -> Result<DelayedSchedule, StoreError> {
        let open = self.db()?;
        let mut out = Vec::new();
        for guard in open.delayed.iter() {
            let (k, v) = guard.into_inner().map_err(fjall_err("reading delayed"))?;
            let Some(key) = keys::parse_log_key(&k) else {
                continue;
            };
            out.push((key, open.values.decode("delayed", &k, &v)?));
        }
        Ok(out)
    }

    fn delayed_keys(&self) -> Result<Vec<(u64, u64)>, StoreError> {
        let open = self.db()?;
        let mut out = Vec::new();
        for guard in open.delayed.iter() {
            let k = guard.key().map_err(fjall_err("reading delayed"))?;
            out.extend(keys::parse_log_key(&k));
        }
        Ok(out)
    }

    fn get_delayed(&self, due: u64, id: u64) -> Result<Option<DelayedRecord>, StoreError> {
        let open = self.db()?;
        let key = keys::delay_key(due, id);
        match open
            .delayed
            .get(key)
            .map_err(fjall_err("reading delayed"))?
        {
            Some(v) => Ok(Some(open.values.decode("delayed", &key, &v)?)),
            None => Ok(None),
        }
    }

    fn load_adapter_state(&self, namespace: &str) -> Result<AdapterRecords, StoreError> {
        load::adapter_state(&*self.db()?, namespace)
    }

    fn set_log_head(&self, queue: u64, head: u64) {
        self.heads.set(queue, head);
    }

    fn drop_log(&self, queue: u64) {
        self.heads.remove(queue);
    }

    fn catalog_loaded(&self, next_queue_id: u64) {
        self.heads.arm(next_queue_id);
    }

    fn under_pressure(&self) -> bool {
        // Memtables waiting for flushes that a busy machine has not run yet.
        self.db()
            .is_ok_and(|o| o.db.write_buffer_size() > MEMTABLE_PRESSURE_BYTES)
    }

    fn disk_bytes(&self) -> u64 {
        self.db()
            .ok()
            .and_then(|o| o.db.disk_space().ok())
            .unwrap_or(0)
    }

    fn close(&self) -> Result<(), StoreError> {
        drop(self.dir_watcher.lock().take());
        let open = self.db()?;
        open.stop_maintenance();
        open.db
            .persist(PersistMode::SyncAll)
            .map_err(fjall_err("syncing at close"))
    }
}

#[cfg(test)]
mod tests;
