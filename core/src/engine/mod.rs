//! The engine: the one handle adapters hold. It owns the store, the tenants,
//! the users, the timer thread and the delayed-message schedule, recovers all
//! of them at start, and implements the operations that span queues.
//!
//! Files, by job: `tenant.rs` (the [`Tenant`] handle: declare, bind,
//! publish), `publish.rs` (routing onto queues, shared bodies, delayed
//! delivery), `queues.rs` (creating and deleting queues; what queues ask of
//! the engine), `dead_letters.rs` (where dead letters go; message tracking),
//! `catalog.rs` (writing tenants, exchanges, bindings, id counters),
//! `recovery.rs` (start-up), `users.rs`, `retained.rs` (retained messages
//! and the doors' own records), `store_faults.rs` (a failed write and the
//! recovery after it), `undo.rs` (declarations that could not be stored).

mod catalog;
mod dead_letters;
mod publish;
mod queues;
mod recovery;
mod retained;
mod store_faults;
mod tenant;
mod undo;
mod users;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

pub use dead_letters::dead_letter_queue_name;
pub use tenant::{ExchangeInfo, PublishReceipt, QueueSpec, Tenant};
pub use undo::Created;

use crate::store::{MemoryStore, Storage};

use crate::auth::Users;
use crate::connections::{ConnectionGuard, ConnectionInfo, Connections};
use crate::delay::Delays;
use crate::error::{Error, Result};
use crate::message::{UnixMillis, now_millis};
use crate::queue::{Queue, QueueHost, Services};
use crate::store::{Store, StoreHealth, StoreHook, SyncPolicy, Ticket, Write};
use crate::tenant::TenantState;
use crate::timers::{Timed, Timers};

static NEXT_ENGINE_ID: AtomicU64 = AtomicU64::new(1);

/// Ids are reserved on disk in blocks of this many, so restarts never reuse one.
const ID_BLOCK: u64 = 1 << 20;
/// Above this many bytes waiting for the committer, adapters should slow publishers.
const PRESSURE_BYTES: usize = 256 << 20;
/// Most lost memory-only messages a recovered queue tracks for exact counts.
const MAX_COUNTED_HOLES: usize = 100_000;
/// How long per-group dead letters are kept (DMS keeps them 72 hours).
const DEAD_LETTER_TTL_MS: u64 = 72 * 3_600_000;

/// How to open the engine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Where the store lives (for [`Storage::Disk`]).
    pub data_dir: PathBuf,
    /// Which backend stores it.
    pub storage: Storage,
    /// When confirmed writes are synced.
    pub sync: SyncPolicy,
    /// The backend's block cache.
    pub cache_bytes: u64,
    /// Most message bytes a queue keeps in memory; older ones are read back from disk.
    pub queue_memory_bytes: u64,
    /// Free-space and memory marks over which publishers are blocked.
    pub watermarks: crate::watermarks::Watermarks,
    /// Created on first start: tenant `/` and this user with full rights on it,
    /// limited to loopback (RabbitMQ's guest/guest).
    pub default_user: Option<(String, String)>,
    /// Encryption at rest: with keys, every value reaches the disk sealed
    /// (the memory backend, which never writes a file, ignores it).
    pub encryption: Option<Arc<crate::store::EncryptionKeys>>,
}

impl EngineConfig {
    /// Defaults with this data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            data_dir: data_dir.into(),
            storage: Storage::Disk,
            sync: SyncPolicy::Always,
            cache_bytes: 32 << 20,
            queue_memory_bytes: 8 << 20,
            watermarks: crate::watermarks::Watermarks::default(),
            default_user: Some(("guest".into(), "guest".into())),
            encryption: None,
        }
    }

    /// Defaults, in memory (see [`Storage::Memory`]).
    pub fn in_memory(store: &MemoryStore) -> Self {
        EngineConfig {
            storage: Storage::Memory(store.clone()),
            ..EngineConfig::new("")
        }
    }
}

pub(crate) struct EngineInner {
    services: Arc<Services>,
    config: EngineConfig,
    tenants: RwLock<HashMap<String, Arc<TenantState>>>,
    users: Users,
    delays: Delays,
    next_id: AtomicU64,
    id_limit: AtomicU64,
    id_lock: Mutex<()>,
    next_queue_id: Mutex<u64>,
    shared: Mutex<HashMap<u64, Vec<(u64, u64)>>>,
    queues_by_id: RwLock<HashMap<u64, Weak<Queue>>>,
    timer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    closed: AtomicBool,
    connections: Arc<Connections>,
    /// The node's disk and memory alarms (sampled by their own thread).
    alarms: Arc<crate::watermarks::Alarms>,
    /// Log entries whose write failed, removed from the backend once it recovers.
    lost_entries: Mutex<Vec<(u64, u64)>>,
    /// Distinguishes engines opened in one process (tests open many).
    id: u64,
    me: Weak<EngineInner>,
}

/// The message engine. Cheap to clone; every clone is the same engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("data_dir", &self.inner.config.data_dir)
            .finish()
    }
}

impl Engine {
    /// Opens the store, recovers everything in it and starts the engine's threads.
    pub fn open(config: EngineConfig) -> Result<Engine> {
        let backend = crate::store::open(
            &config.storage,
            &config.data_dir,
            config.cache_bytes,
            config.encryption.clone(),
        )?;
        let catalog = match backend.load_catalog() {
            Ok(c) => c,
            Err(e) => {
                let _ = backend.close();
                return Err(e.into());
            }
        };
        let store = Store::start(backend, config.sync)?;
        let services = Arc::new(Services::new(
            Arc::clone(&store),
            Arc::new(Timers::default()),
            config.queue_memory_bytes,
        ));
        let watermarks = config.watermarks;
        let inner = Arc::new_cyclic(|me| EngineInner {
            services: Arc::clone(&services),
            config,
            tenants: RwLock::new(HashMap::new()),
            users: Users::default(),
            delays: Delays::default(),
            next_id: AtomicU64::new(catalog.next_message_id),
            id_limit: AtomicU64::new(catalog.next_message_id),
            id_lock: Mutex::new(()),
            next_queue_id: Mutex::new(catalog.next_queue_id),
            shared: Mutex::new(HashMap::new()),
            queues_by_id: RwLock::new(HashMap::new()),
            timer_thread: Mutex::new(None),
            closed: AtomicBool::new(false),
            connections: Arc::new(Connections::default()),
            alarms: Arc::new(crate::watermarks::Alarms::new(watermarks)),
            lost_entries: Mutex::new(Vec::new()),
            id: NEXT_ENGINE_ID.fetch_add(1, Ordering::Relaxed),
            me: me.clone(),
        });
        let host: Weak<dyn QueueHost> = inner.me.clone();
        services.set_host(host);
        let hook: Weak<dyn StoreHook> = inner.me.clone();
        store.set_hook(hook);
        if let Err(e) = inner.recover(catalog) {
            store.close();
            return Err(e);
        }
        let timers = Arc::clone(&services.timers);
        let handle = std::thread::Builder::new()
            .name("gw-timers".into())
            .spawn(move || timers.run())
            .map_err(|source| crate::error::StoreError::Io {
                context: "starting the timer thread".into(),
                source,
            })?;
        *inner.timer_thread.lock() = Some(handle);
        if let Some(due) = inner.delays.next_due() {
            inner.arm_delays(instant_at(due));
        }
        let disk_dir =
            matches!(inner.config.storage, Storage::Disk).then(|| inner.config.data_dir.clone());
        let me = inner.me.clone();
        crate::watermarks::start_sampler(Arc::clone(&inner.alarms), disk_dir, move || {
            me.upgrade()
                .is_none_or(|e| e.closed.load(Ordering::Acquire))
        });
        Ok(Engine { inner })
    }

    /// Writes every queue's state, syncs and closes the store. The engine refuses
    /// work afterwards. Idempotent. True when everything was stored and the
    /// store closed cleanly (false also for a second call).
    pub fn close(&self) -> bool {
        let e = &self.inner;
        if e.closed.swap(true, Ordering::AcqRel) {
            return false;
        }
        e.services.timers.stop();
        if let Some(h) = e.timer_thread.lock().take() {
            let _ = h.join();
        }
        let mut writes = Vec::new();
        for t in e.tenants.read().values() {
            for q in t.queues.read().values() {
                if q.is_durable() {
                    crate::store::Snapshot::snapshot(&**q, &mut writes);
                }
            }
        }
        e.services.store.submit_all(writes, true);
        e.services.store.close()
    }

    /// Whether the store can write now, and its failures so far.
    pub fn store_health(&self) -> StoreHealth {
        self.inner.services.store.health()
    }

    /// An id unique to this engine among those opened by the process (adapters
    /// keep per-engine registries keyed by it).
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// A tenant by name.
    pub fn tenant(&self, name: &str) -> Result<Tenant> {
        let inner = self
            .inner
            .tenants
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::not_found("tenant", name))?;
        Ok(Tenant {
            engine: Arc::clone(&self.inner),
            inner,
        })
    }

    /// Every tenant, by name.
    pub fn tenants(&self) -> Vec<Tenant> {
        let mut v: Vec<Tenant> = self
            .inner
            .tenants
            .read()
            .values()
            .map(|t| Tenant {
                engine: Arc::clone(&self.inner),
                inner: Arc::clone(t),
            })
            .collect();
        v.sort_by(|a, b| a.name().cmp(b.name()));
        v
    }

    /// Creates a tenant; false when it existed.
    pub fn create_tenant(&self, name: &str) -> Result<bool> {
        self.inner.create_tenant(name)
    }

    /// Deletes a tenant with all its queues and exchanges.
    pub fn delete_tenant(&self, name: &str) -> Result<()> {
        let t = self.tenant(name)?;
        for q in t.queues() {
            self.inner.delete_queue(&t.inner, &q);
        }
        for x in t.exchanges() {
            if !x.name.is_empty() && !crate::names::is_reserved(&x.name) {
                let _ = t.delete_exchange(&x.name, false);
            }
        }
        let topics: Vec<String> = t.inner.retained.read().keys().cloned().collect();
        for topic in topics {
            self.inner.set_retained(&t.inner, &topic, None);
        }
        self.inner.tenants.write().remove(name);
        self.inner
            .services
            .store
            .submit(Write::ForgetTenant(name.to_owned()), true);
        Ok(())
    }

    /// Resolves when a receipt's writes are on disk under the sync policy.
    pub async fn wait_durable(&self, ticket: Ticket) -> Result<()> {
        self.inner.services.store.wait(ticket).await
    }

    /// True once `ticket` is decided (stored, or its batch failed): a cheap
    /// look for callers that only need to know whether to wait.
    pub fn is_decided(&self, ticket: Ticket) -> bool {
        ticket <= self.inner.services.store.decided_ticket()
    }

    /// True when `ticket` was decided and its batch failed (nothing of it was
    /// stored): callers that waited for a later ticket ask about each.
    pub fn ticket_failed(&self, ticket: Ticket) -> bool {
        self.inner.services.store.has_failed(ticket)
    }

    /// A ticket covering every change made so far (declarations, group
    /// creation and rewinds included): wait for it before answering a client
    /// that expects the change to survive a crash.
    pub fn barrier(&self) -> Ticket {
        self.inner.services.store.submit(Write::Barrier, true)
    }

    /// True when publishers must wait: writes are piling up faster than the
    /// disk takes them, or a disk or memory alarm is raised. Adapters stop
    /// reading from publishers until it clears (and keep serving consumers).
    pub fn under_pressure(&self) -> bool {
        if self.inner.alarms.any() {
            return true;
        }
        let store = &self.inner.services.store;
        // Writes waiting for the committer, or the backend's own buffers
        // waiting for it: either way, memory is growing.
        store.backlog_bytes() > PRESSURE_BYTES || store.backend().under_pressure()
    }

    /// What the store's committer has done (batches, fsyncs and their cost).
    pub fn store_stats(&self) -> crate::store::StoreStats {
        self.inner.services.store.stats()
    }

    /// Bytes the data directory takes.
    pub fn disk_bytes(&self) -> u64 {
        self.inner.services.store.backend().disk_bytes()
    }

    /// The node's disk and memory alarms, raised or not.
    pub fn alarms(&self) -> Vec<crate::watermarks::NodeAlarm> {
        self.inner.alarms.list()
    }

    /// The disk and memory marks in force.
    pub fn watermarks(&self) -> crate::watermarks::Watermarks {
        self.inner.alarms.marks()
    }

    /// Changes the disk and memory marks while the node runs; alarms follow
    /// from the next reading (within a second).
    pub fn set_watermarks(&self, marks: crate::watermarks::Watermarks) {
        tracing::info!(?marks, "resource watermarks changed");
        self.inner.alarms.set_marks(marks);
    }

    /// Bytes free (for an unprivileged writer) on the data directory's
    /// filesystem; `None` where it cannot be asked (an in-memory store).
    pub fn disk_free_bytes(&self) -> Option<u64> {
        if !matches!(self.inner.config.storage, crate::store::Storage::Disk) {
            return None;
        }
        crate::watermarks::disk_space(&self.inner.config.data_dir).map(|(free, _)| free)
    }

    /// Messages waiting for their delivery time, over all tenants.
    pub fn delayed_count(&self) -> usize {
        self.inner.delays.len()
    }

    /// A fresh connection id (also the owner id of its exclusive queues).
    pub fn next_connection_id(&self) -> u64 {
        self.inner.connections.next_id()
    }

    /// Registers an open connection; `closer` closes it when an operator asks
    /// (it receives the reason). The connection is listed until the guard drops.
    pub fn register_connection(
        &self,
        info: ConnectionInfo,
        closer: Arc<dyn Fn(&str) + Send + Sync>,
    ) -> ConnectionGuard {
        self.inner.connections.register(info, closer)
    }

    /// Open connections of all doors.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        self.inner.connections.list()
    }

    /// Asks a connection to close.
    pub fn close_connection(&self, id: u64, reason: &str) -> Result<()> {
        self.inner.connections.close(id, reason)
    }

    /// True once [`Engine::close`] ran.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }
}

/// The `Instant` at which a wall-clock time comes.
fn instant_at(at: UnixMillis) -> Instant {
    Instant::now() + Duration::from_millis(at.saturating_sub(now_millis()))
}

impl EngineInner {
    fn store(&self) -> &Arc<Store> {
        &self.services.store
    }

    /// Calls the delayed-message schedule back at `at`.
    fn arm_delays(&self, at: Instant) {
        let me: Weak<dyn Timed> = self.me.clone();
        self.services.timers.add(at, me);
    }
}

/// The engine's timer target is the delayed-message schedule.
impl Timed for EngineInner {
    fn fire(&self) -> Option<Instant> {
        self.run_delays()
    }
}
