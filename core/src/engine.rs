//! The engine: the one handle adapters hold. It owns the store, the tenants,
//! the users, the timer thread and the delayed-message schedule, recovers all
//! of them at start, and implements the operations that span queues
//! (publishing, dead-lettering, deleting).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use crate::auth::{self, ADMINISTRATOR, Permission, Principal, UserInfo, UserRecord, Users};
use crate::connections::{ConnectionGuard, ConnectionInfo, Connections};
use crate::deadletter;
use crate::delay::{DelayedItem, Delays};
use crate::error::{Error, Result};
use crate::message::{Message, MessageId, UnixMillis, now_millis};
use crate::names::check_name;
use crate::queue::{
    Appended, DEFAULT_GROUP, DeadLetter, DeadLetterTarget, Log, MessageState, MessageTrace,
    Persist, Queue, QueueInit, QueueKind, QueueSettings, StartPosition, group_key,
};
use crate::routing::{BindingSpec, ExchangeSpec};
use crate::store::records::{
    BindingRecord, DelayedRecord, ExchangeRecord, GroupRecord, QueueRecord, QueueStateRecord,
    RetainedRecord, SharedRefsRecord, TenantRecord, encode,
};
use crate::store::{KeyBuf, Ks, Op, Store, SyncPolicy, Ticket, kind};
use crate::tenant::{PublishReceipt, QueueSpec, Tenant, TenantInner};
use crate::timers::Timers;

static NEXT_ENGINE_ID: AtomicU64 = AtomicU64::new(1);

/// Ids are reserved on disk in blocks of this many, so restarts never reuse one.
const ID_BLOCK: u64 = 1 << 20;
/// Above this many bytes waiting for the committer, adapters should slow publishers.
const PRESSURE_BYTES: usize = 256 << 20;
/// Above this many bytes in memtables (flushes falling behind), likewise.
const MEMTABLE_PRESSURE_BYTES: u64 = 80 << 20;
/// Most lost memory-only messages a recovered queue tracks for exact counts.
const MAX_COUNTED_HOLES: usize = 100_000;
/// How long per-group dead letters are kept (DMS keeps them 72 hours).
const DEAD_LETTER_TTL_MS: u64 = 72 * 3_600_000;

/// How to open the engine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Where the store lives.
    pub data_dir: PathBuf,
    /// When confirmed writes are synced.
    pub sync: SyncPolicy,
    /// fjall's block cache.
    pub cache_bytes: u64,
    /// Most message bytes a queue keeps in memory; older ones are read back from disk.
    pub queue_memory_bytes: u64,
    /// Created on first start: tenant `/` and this user with full rights on it,
    /// limited to loopback (RabbitMQ's guest/guest).
    pub default_user: Option<(String, String)>,
}

impl EngineConfig {
    /// Defaults with this data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            data_dir: data_dir.into(),
            sync: SyncPolicy::Always,
            cache_bytes: 32 << 20,
            queue_memory_bytes: 8 << 20,
            default_user: Some(("guest".into(), "guest".into())),
        }
    }
}

/// What queues need from the engine: the store, the timers, and a way back.
pub(crate) struct Services {
    pub store: Arc<Store>,
    pub timers: Arc<Timers>,
    pub queue_memory_bytes: u64,
    engine: OnceLock<Weak<EngineInner>>,
}

impl Services {
    fn engine(&self) -> Option<Arc<EngineInner>> {
        self.engine.get().and_then(Weak::upgrade)
    }

    pub fn dead_letter(&self, from: &Arc<Queue>, dead: Vec<DeadLetter>) {
        if let Some(e) = self.engine() {
            e.dead_letter(from, dead);
        }
    }

    pub fn release_shared(&self, body: u64, queue: u64, seq: u64) {
        if let Some(e) = self.engine() {
            e.release_shared(body, queue, seq);
        }
    }

    pub fn delete_queue_later(&self, tenant: &str, name: &str, id: u64) {
        if let Some(e) = self.engine() {
            let t = e.tenants.read().get(tenant).cloned();
            if let Some(t) = t {
                let q = t.queues.read().get(name).cloned();
                if let Some(q) = q.filter(|q| q.id == id) {
                    tracing::debug!(tenant, queue = name, "deleting unused queue");
                    e.delete_queue(&t, &q);
                }
            }
        }
    }
}

pub(crate) struct EngineInner {
    services: Arc<Services>,
    config: EngineConfig,
    tenants: RwLock<HashMap<String, Arc<TenantInner>>>,
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
    /// Distinguishes engines opened in one process (tests open many).
    id: u64,
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
    /// Opens the store in `config.data_dir`, recovers everything in it and
    /// starts the engine's threads.
    pub fn open(config: EngineConfig) -> Result<Engine> {
        let store = Store::open(&config.data_dir, config.sync, config.cache_bytes)?;
        let services = Arc::new(Services {
            store: Arc::clone(&store),
            timers: Arc::new(Timers::default()),
            queue_memory_bytes: config.queue_memory_bytes,
            engine: OnceLock::new(),
        });
        let next_id = store.counter("message_id")?.unwrap_or(1);
        let next_queue_id = store.counter("queue_id")?.unwrap_or(1);
        let inner = Arc::new(EngineInner {
            services: Arc::clone(&services),
            config,
            tenants: RwLock::new(HashMap::new()),
            users: Users::default(),
            delays: Delays::default(),
            next_id: AtomicU64::new(next_id),
            id_limit: AtomicU64::new(next_id),
            id_lock: Mutex::new(()),
            next_queue_id: Mutex::new(next_queue_id),
            shared: Mutex::new(HashMap::new()),
            queues_by_id: RwLock::new(HashMap::new()),
            timer_thread: Mutex::new(None),
            closed: AtomicBool::new(false),
            connections: Arc::new(Connections::default()),
            id: NEXT_ENGINE_ID.fetch_add(1, Ordering::Relaxed),
        });
        let _ = services.engine.set(Arc::downgrade(&inner));
        if let Err(e) = inner.recover() {
            store.close();
            return Err(e);
        }
        let weak = Arc::downgrade(&inner);
        let timers = Arc::clone(&services.timers);
        let handle = std::thread::Builder::new()
            .name("gw-timers".into())
            .spawn(move || {
                timers.run(|| weak.upgrade().and_then(|e| e.run_delays()));
            })
            .map_err(|source| crate::error::StoreError::Io {
                context: "starting the timer thread".into(),
                source,
            })?;
        *inner.timer_thread.lock() = Some(handle);
        if let Some(due) = inner.delays.next_due() {
            services.timers.add_delays(instant_at(due));
        }
        Ok(Engine { inner })
    }

    /// Writes every queue's state, syncs and closes the store. The engine refuses
    /// work afterwards. Idempotent.
    pub fn close(&self) {
        let e = &self.inner;
        if e.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        e.services.timers.stop();
        if let Some(h) = e.timer_thread.lock().take() {
            let _ = h.join();
        }
        let mut ops = Vec::new();
        for t in e.tenants.read().values() {
            for q in t.queues.read().values() {
                if q.is_durable() {
                    crate::store::Snapshot::snapshot(&**q, &mut ops);
                }
            }
        }
        e.services.store.submit_all(ops, true);
        e.services.store.close();
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
        self.inner.services.store.submit(
            Op::Del(Ks::Meta, KeyBuf::new(kind::TENANT).str(name).done()),
            true,
        );
        Ok(())
    }

    // ---- users ----

    /// Checks a login; `peer` is the client's address (loopback-only users are
    /// refused from elsewhere).
    pub fn authenticate(
        &self,
        user: &str,
        password: &[u8],
        peer: Option<IpAddr>,
    ) -> Result<Principal> {
        self.inner.users.authenticate(user, password, peer)
    }

    /// A user's principal without a password check (anonymous logins mapped to a user).
    pub fn principal(&self, user: &str) -> Result<Principal> {
        self.inner.users.principal(user)
    }

    /// Creates or replaces a user (password hashed; permissions kept on replace).
    pub fn put_user(&self, name: &str, password: &str, tags: Vec<String>) -> Result<()> {
        check_name("user", name)?;
        let permissions = self
            .inner
            .users
            .get(name)
            .map(|u| u.permissions.clone())
            .unwrap_or_default();
        let rec = UserRecord {
            name: name.to_owned(),
            password_hash: auth::hash_password(password)?,
            tags,
            loopback_only: false,
            permissions,
        };
        self.inner.save_user(rec);
        Ok(())
    }

    /// Deletes a user.
    pub fn delete_user(&self, name: &str) -> Result<()> {
        if !self.inner.users.remove(name) {
            return Err(Error::not_found("user", name));
        }
        self.inner.services.store.submit(
            Op::Del(Ks::Meta, KeyBuf::new(kind::USER).str(name).done()),
            true,
        );
        Ok(())
    }

    /// Sets a user's permission on a tenant (replacing the previous one).
    pub fn set_permission(&self, user: &str, permission: Permission) -> Result<()> {
        auth::validate_permission(&permission)?;
        let mut rec = (*self
            .inner
            .users
            .get(user)
            .ok_or_else(|| Error::not_found("user", user))?)
        .clone();
        rec.permissions.retain(|p| p.tenant != permission.tenant);
        rec.permissions.push(permission);
        self.inner.save_user(rec);
        Ok(())
    }

    /// Removes a user's permission on a tenant.
    pub fn clear_permission(&self, user: &str, tenant: &str) -> Result<()> {
        let mut rec = (*self
            .inner
            .users
            .get(user)
            .ok_or_else(|| Error::not_found("user", user))?)
        .clone();
        rec.permissions.retain(|p| p.tenant != tenant);
        self.inner.save_user(rec);
        Ok(())
    }

    /// Every user.
    pub fn users(&self) -> Vec<UserInfo> {
        self.inner.users.list()
    }

    // ---- durability and health ----

    /// Resolves when a receipt's writes are on disk under the sync policy.
    pub async fn wait_durable(&self, ticket: Ticket) -> Result<()> {
        self.inner.services.store.wait(ticket).await
    }

    /// A ticket covering every change made so far (declarations, group
    /// creation and rewinds included): wait for it before answering a client
    /// that expects the change to survive a crash.
    pub fn barrier(&self) -> Ticket {
        self.inner.services.store.submit(Op::Barrier, true)
    }

    /// True when writes are piling up faster than the disk takes them; adapters
    /// should stop reading from publishers until it clears.
    pub fn under_pressure(&self) -> bool {
        let store = &self.inner.services.store;
        // Writes waiting for the committer, or memtables waiting for flushes
        // that a busy machine has not run yet: either way, memory is growing.
        store.backlog_bytes() > PRESSURE_BYTES || store.memtable_bytes() > MEMTABLE_PRESSURE_BYTES
    }

    /// What the store's committer has done (batches, fsyncs and their cost).
    pub fn store_stats(&self) -> crate::store::StoreStats {
        self.inner.services.store.stats()
    }

    /// Bytes the data directory takes.
    pub fn disk_bytes(&self) -> u64 {
        self.inner.services.store.disk_bytes()
    }

    /// Messages waiting for their delivery time, over all tenants.
    pub fn delayed_count(&self) -> usize {
        self.inner.delays.len()
    }

    // ---- connections ----

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

    // ---- adapter state (MQTT sessions and the like) ----

    /// Stores an adapter's record under (namespace, key).
    pub fn put_state(&self, namespace: &str, key: &[u8], value: &[u8]) -> Ticket {
        self.inner.services.store.submit(
            Op::Put(Ks::Meta, state_key(namespace, key), value.to_vec()),
            true,
        )
    }

    /// Deletes an adapter's record.
    pub fn delete_state(&self, namespace: &str, key: &[u8]) -> Ticket {
        self.inner
            .services
            .store
            .submit(Op::Del(Ks::Meta, state_key(namespace, key)), true)
    }

    /// Every record of a namespace, as (key, value).
    pub fn scan_state(&self, namespace: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let prefix = KeyBuf::new(kind::ADAPTER_STATE).str(namespace).done();
        let raw: Vec<(Vec<u8>, Vec<u8>)> = self.inner.services.store.scan_meta_raw(&prefix)?;
        Ok(raw
            .into_iter()
            .filter_map(|(k, v)| {
                let rest = k.get(prefix.len()..)?;
                let len = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
                Some((rest.get(2..2 + len)?.to_vec(), v))
            })
            .collect())
    }
}

fn state_key(namespace: &str, key: &[u8]) -> Vec<u8> {
    KeyBuf::new(kind::ADAPTER_STATE)
        .str(namespace)
        .bytes(key)
        .done()
}

/// The `Instant` at which a wall-clock time comes.
fn instant_at(at: UnixMillis) -> Instant {
    Instant::now() + Duration::from_millis(at.saturating_sub(now_millis()))
}

impl EngineInner {
    fn store(&self) -> &Arc<Store> {
        &self.services.store
    }

    fn next_id(&self) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if id >= self.id_limit.load(Ordering::Acquire) {
            let _g = self.id_lock.lock();
            if id >= self.id_limit.load(Ordering::Acquire) {
                let limit = (id / ID_BLOCK + 2) * ID_BLOCK;
                self.store()
                    .submit(Store::set_counter_op("message_id", limit), false);
                self.id_limit.store(limit, Ordering::Release);
            }
        }
        id
    }

    fn next_queue_id(&self) -> u64 {
        let mut n = self.next_queue_id.lock();
        let id = *n;
        *n += 1;
        self.store()
            .submit(Store::set_counter_op("queue_id", *n), false);
        id
    }

    // ---- recovery ----

    fn recover(self: &Arc<Self>) -> Result<()> {
        let store = Arc::clone(self.store());
        let users: Vec<(Vec<u8>, UserRecord)> = store.scan_meta(&[kind::USER])?;
        self.users.load(users.into_iter().map(|(_, u)| u));
        let tenants: Vec<(Vec<u8>, TenantRecord)> = store.scan_meta(&[kind::TENANT])?;
        let fresh = tenants.is_empty() && self.users.is_empty();
        for (_, t) in tenants {
            self.tenants.write().insert(
                t.name.clone(),
                Arc::new(TenantInner::new(&t.name, t.created_at)),
            );
        }
        if fresh {
            self.create_tenant("/")?;
            if let Some((user, password)) = self.config.default_user.clone() {
                self.save_user(UserRecord {
                    name: user,
                    password_hash: auth::hash_password(&password)?,
                    tags: vec![ADMINISTRATOR.into()],
                    loopback_only: true,
                    permissions: vec![Permission::full("/")],
                });
            }
        }
        let exchanges: Vec<(Vec<u8>, ExchangeRecord)> = store.scan_meta(&[kind::EXCHANGE])?;
        for (_, x) in exchanges {
            if let Some(t) = self.tenants.read().get(&x.tenant) {
                t.exchanges.write().insert(
                    x.name.clone(),
                    Arc::new(crate::routing::Exchange::new(x.name, x.spec)),
                );
            }
        }
        let queues: Vec<(Vec<u8>, QueueRecord)> = store.scan_meta(&[kind::QUEUE])?;
        for (_, rec) in queues {
            let Some(tenant) = self.tenants.read().get(&rec.tenant).cloned() else {
                continue;
            };
            let state: QueueStateRecord = store
                .get_meta(&KeyBuf::new(kind::QUEUE_STATE).u64(rec.id).done())?
                .unwrap_or_default();
            let mut groups: Vec<GroupRecord> = store
                .scan_meta(&KeyBuf::new(kind::GROUP).u64(rec.id).done())?
                .into_iter()
                .map(|(_, g)| g)
                .collect();
            groups.sort_by_key(|g| g.id);
            let last = store.last_log_seq(rec.id)?;
            let next_seq = groups
                .iter()
                .map(|g| g.floor.max(g.delivered_hw))
                .chain([state.next_seq, last.map_or(0, |l| l + 1)])
                .max()
                .unwrap_or(0);
            let mut log = Log::new(rec.id, state.head.min(next_seq), next_seq);
            log.retained_bytes = state.retained_bytes;
            log.appended_bytes = state.retained_bytes;
            let unread_from = groups
                .iter()
                .map(|g| g.floor)
                .min()
                .unwrap_or(log.head)
                .max(log.head);
            if let Some(holes) =
                store.log_holes(rec.id, unread_from, next_seq, MAX_COUNTED_HOLES)?
            {
                log.holes.extend(holes);
            }
            let init = QueueInit {
                id: rec.id,
                tenant: Arc::clone(&tenant.name),
                name: rec.name.clone(),
                settings: rec.settings,
                durable: true,
                auto_delete: rec.auto_delete,
                exclusive_owner: None,
                arguments: rec.arguments,
                created_at: rec.created_at,
                dead_letters_of: rec.dead_letters_of,
            };
            let q = Queue::new(init, Arc::clone(&self.services), log, groups);
            q.restore_published(state.published);
            self.queues_by_id.write().insert(rec.id, Arc::downgrade(&q));
            tenant.queues.write().insert(rec.name, Arc::clone(&q));
            q.start_timers();
        }
        let shared: Vec<(Vec<u8>, SharedRefsRecord)> = store.scan_meta(&[kind::SHARED_REFS])?;
        for (key, refs) in shared {
            let Some(body) = key
                .get(1..9)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
            else {
                continue;
            };
            for &(queue, seq) in &refs.holders {
                if let Some(q) = self.queue_by_id(queue) {
                    q.restore_shared(seq, body);
                }
            }
            self.shared.lock().insert(body, refs.holders);
        }
        for ((due, id), rec) in store.scan_delayed()? {
            self.restore_delayed(due, id, rec);
        }
        let retained: Vec<(Vec<u8>, RetainedRecord)> = store.scan_meta(&[kind::RETAINED])?;
        for (_, r) in retained {
            if let Some(t) = self.tenants.read().get(&r.tenant) {
                t.retained.write().insert(r.topic, Arc::new(r.message));
            }
        }
        let bindings: Vec<(Vec<u8>, BindingRecord)> = store.scan_meta(&[kind::BINDING])?;
        for (key, b) in bindings {
            let Some(t) = self.tenants.read().get(&b.tenant).cloned() else {
                continue;
            };
            let source = t.exchanges.read().get(&b.spec.source).cloned();
            match (source, t.target(&b.spec.destination)) {
                (Some(x), Ok(target)) => {
                    let _ = x.bind(b.spec, target);
                }
                _ => {
                    store.submit(Op::Del(Ks::Meta, key), false);
                }
            }
        }
        // Every queue is registered: the compaction filter may now drop the
        // logs of queues that no longer exist and entries below each head.
        store.heads.arm(*self.next_queue_id.lock());
        Ok(())
    }

    fn restore_delayed(&self, due: u64, id: u64, rec: DelayedRecord) {
        let queues: Vec<Arc<Queue>> = rec
            .queues
            .iter()
            .filter_map(|&q| self.queue_by_id(q))
            .collect();
        for q in &queues {
            q.delayed_changed(1);
        }
        let size = rec.message.accounted_size();
        self.delays.insert(
            due,
            id,
            DelayedItem {
                queues: queues.iter().map(Arc::downgrade).collect(),
                message: Some(Arc::new(rec.message)),
                stored: true,
                size,
            },
        );
    }

    fn queue_by_id(&self, id: u64) -> Option<Arc<Queue>> {
        self.queues_by_id.read().get(&id).and_then(Weak::upgrade)
    }

    // ---- tenants, users ----

    fn create_tenant(&self, name: &str) -> Result<bool> {
        check_name("tenant", name)?;
        let mut ts = self.tenants.write();
        if ts.contains_key(name) {
            return Ok(false);
        }
        let created_at = now_millis();
        ts.insert(
            name.to_owned(),
            Arc::new(TenantInner::new(name, created_at)),
        );
        drop(ts);
        let rec = TenantRecord {
            name: name.to_owned(),
            created_at,
        };
        self.store().submit(
            Store::put_meta(KeyBuf::new(kind::TENANT).str(name).done(), &rec),
            true,
        );
        Ok(true)
    }

    fn save_user(&self, rec: UserRecord) {
        self.store().submit(
            Store::put_meta(KeyBuf::new(kind::USER).str(&rec.name).done(), &rec),
            true,
        );
        self.users.put(rec);
    }

    // ---- exchanges and bindings in the store ----

    pub(crate) fn persist_exchange(&self, tenant: &str, name: &str, spec: &ExchangeSpec) {
        let rec = ExchangeRecord {
            tenant: tenant.to_owned(),
            name: name.to_owned(),
            spec: spec.clone(),
        };
        self.store().submit(
            Store::put_meta(
                KeyBuf::new(kind::EXCHANGE).str(tenant).str(name).done(),
                &rec,
            ),
            true,
        );
    }

    pub(crate) fn forget_exchange(
        &self,
        tenant: &str,
        name: &str,
        durable: bool,
        bindings: &[BindingSpec],
    ) {
        if durable {
            self.store().submit(
                Op::Del(
                    Ks::Meta,
                    KeyBuf::new(kind::EXCHANGE).str(tenant).str(name).done(),
                ),
                true,
            );
        }
        for b in bindings {
            self.forget_binding(tenant, b);
        }
    }

    fn binding_key(tenant: &str, spec: &BindingSpec) -> Vec<u8> {
        KeyBuf::new(kind::BINDING)
            .str(tenant)
            .bytes(&encode(spec))
            .done()
    }

    pub(crate) fn persist_binding(&self, tenant: &str, spec: &BindingSpec) {
        let rec = BindingRecord {
            tenant: tenant.to_owned(),
            spec: spec.clone(),
        };
        self.store()
            .submit(Store::put_meta(Self::binding_key(tenant, spec), &rec), true);
    }

    pub(crate) fn forget_binding(&self, tenant: &str, spec: &BindingSpec) {
        self.store()
            .submit(Op::Del(Ks::Meta, Self::binding_key(tenant, spec)), false);
    }

    // ---- queues ----

    pub(crate) fn create_queue(
        &self,
        tenant: &Arc<TenantInner>,
        name: &str,
        spec: QueueSpec,
        dead_letters_of: Option<(u64, String)>,
    ) -> Result<(Arc<Queue>, bool)> {
        let mut qs = tenant.queues.write();
        if let Some(q) = qs.get(name) {
            return Ok((Arc::clone(q), false));
        }
        // Exclusive queues die with their connection, so they are never stored.
        let durable = spec.durable && spec.exclusive_owner.is_none();
        let id = self.next_queue_id();
        let init = QueueInit {
            id,
            tenant: Arc::clone(&tenant.name),
            name: name.to_owned(),
            settings: spec.settings,
            durable,
            auto_delete: spec.auto_delete,
            exclusive_owner: spec.exclusive_owner,
            arguments: spec.arguments,
            created_at: now_millis(),
            dead_letters_of,
        };
        let groups = if spec.default_group {
            vec![GroupRecord {
                id: 1,
                name: DEFAULT_GROUP.into(),
                created_at: now_millis(),
                ..GroupRecord::default()
            }]
        } else {
            Vec::new()
        };
        let q = Queue::new(init, Arc::clone(&self.services), Log::new(id, 0, 0), groups);
        qs.insert(name.to_owned(), Arc::clone(&q));
        drop(qs);
        self.queues_by_id.write().insert(id, Arc::downgrade(&q));
        if durable {
            self.store().submit(
                Store::put_meta(KeyBuf::new(kind::QUEUE).u64(id).done(), &q.record()),
                true,
            );
            if spec.default_group {
                let g = GroupRecord {
                    id: 1,
                    name: DEFAULT_GROUP.into(),
                    created_at: now_millis(),
                    ..GroupRecord::default()
                };
                self.store()
                    .submit(Store::put_meta(group_key(id, DEFAULT_GROUP), &g), true);
            }
        }
        q.start_timers();
        Ok((q, true))
    }

    pub(crate) fn delete_queue(&self, tenant: &Arc<TenantInner>, q: &Arc<Queue>) {
        {
            let mut qs = tenant.queues.write();
            match qs.get(q.name()) {
                Some(cur) if Arc::ptr_eq(cur, q) => {
                    qs.remove(q.name());
                }
                _ => return,
            }
        }
        self.queues_by_id.write().remove(&q.id);
        let dest = crate::routing::Destination::Queue(q.name().to_owned());
        let target = crate::routing::Target::Queue(Arc::clone(q));
        let exchanges: Vec<_> = tenant.exchanges.read().values().cloned().collect();
        for x in exchanges {
            let gone = x.unbind_destination(&dest, &target);
            for b in &gone {
                self.forget_binding(&tenant.name, b);
            }
            if !gone.is_empty() && x.spec.auto_delete && x.binding_count() == 0 {
                tenant.exchanges.write().remove(&x.name);
                self.forget_exchange(&tenant.name, &x.name, x.spec.durable, &[]);
            }
        }
        let shared = q.mark_deleted();
        let store = self.store();
        if q.is_durable() {
            store.submit(
                Op::Del(Ks::Meta, KeyBuf::new(kind::QUEUE).u64(q.id).done()),
                true,
            );
            store.submit(
                Op::Del(Ks::Meta, KeyBuf::new(kind::QUEUE_STATE).u64(q.id).done()),
                false,
            );
            for g in q.group_names() {
                store.submit(Op::Del(Ks::Meta, group_key(q.id, &g)), false);
            }
        }
        store.heads.remove(q.id);
        for (seq, body) in shared {
            self.release_shared(body, q.id, seq);
        }
        // Per-group dead-letter queues go with their queue.
        let dlqs: Vec<Arc<Queue>> = tenant
            .queues
            .read()
            .values()
            .filter(|d| d.dead_letters_of().is_some_and(|(src, _)| src == q.id))
            .cloned()
            .collect();
        for d in dlqs {
            self.delete_queue(tenant, &d);
        }
    }

    // ---- publishing ----

    pub(crate) fn publish(
        &self,
        tenant: &Arc<TenantInner>,
        mut msg: Message,
    ) -> Result<PublishReceipt> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::ShuttingDown);
        }
        let queues = tenant.route(&msg)?;
        msg.id = self.next_id();
        msg.published_at = now_millis();
        let mut receipt = PublishReceipt {
            message_id: msg.id,
            ..PublishReceipt::default()
        };
        if queues.is_empty() {
            return Ok(receipt);
        }
        if msg.is_persistent()
            && self.store().is_poisoned()
            && queues.iter().any(|q| q.is_durable())
        {
            return Err(crate::error::StoreError::Poisoned.into());
        }
        if let Some(due) = msg.deliver_at.filter(|&d| d > msg.published_at) {
            let stored = msg.is_persistent() && queues.iter().any(|q| q.is_durable());
            let msg = Arc::new(msg);
            if stored {
                let ids = queues
                    .iter()
                    .filter(|q| q.is_durable())
                    .map(|q| q.id)
                    .collect();
                let op = Op::PutDelayed {
                    due,
                    id: msg.id,
                    tenant: Arc::clone(&tenant.name),
                    queues: ids,
                    message: Arc::clone(&msg),
                };
                receipt.ticket = Some(self.store().submit(op, true));
            }
            for q in &queues {
                q.delayed_changed(1);
            }
            let item = DelayedItem {
                queues: queues.iter().map(Arc::downgrade).collect(),
                size: msg.accounted_size(),
                message: Some(msg),
                stored,
            };
            if self.delays.insert(due, receipt.message_id, item) {
                self.services.timers.add_delays(instant_at(due));
            }
            receipt.routed = queues.len();
            receipt.delayed = true;
            return Ok(receipt);
        }
        let msg = Arc::new(msg);
        self.append_to(&queues, &msg, true, &mut receipt);
        Ok(receipt)
    }

    /// Appends one message to several queues, storing its body once when more
    /// than one of them keeps it on disk.
    fn append_to(
        &self,
        queues: &[Arc<Queue>],
        msg: &Arc<Message>,
        sync: bool,
        receipt: &mut PublishReceipt,
    ) {
        let durable = queues.iter().filter(|q| q.persist_for(msg)).count();
        let body = (durable > 1).then(|| {
            let id = self.next_id();
            self.store().submit(
                Op::PutBody {
                    id,
                    message: Arc::clone(msg),
                },
                sync,
            );
            id
        });
        let mut holders = Vec::new();
        for q in queues {
            let persist = match (q.persist_for(msg), body) {
                (false, _) => Persist::No,
                (true, Some(b)) => Persist::Shared(b),
                (true, None) => Persist::Inline,
            };
            match q.append(msg, persist, sync) {
                Appended::Stored { seq, ticket } => {
                    receipt.routed += 1;
                    if ticket.is_some() {
                        receipt.ticket = receipt.ticket.max(ticket);
                    }
                    if matches!(persist, Persist::Shared(_)) {
                        holders.push((q.id, seq));
                    }
                }
                Appended::Rejected => receipt.rejected += 1,
                Appended::Gone => {}
            }
        }
        if let Some(b) = body {
            if holders.is_empty() {
                self.store().submit(Op::DelBody(b), false);
            } else {
                let rec = SharedRefsRecord {
                    holders: holders.clone(),
                };
                let t = self.store().submit(
                    Store::put_meta(KeyBuf::new(kind::SHARED_REFS).u64(b).done(), &rec),
                    sync,
                );
                receipt.ticket = receipt.ticket.max(Some(t));
                self.shared.lock().insert(b, holders);
            }
        }
    }

    /// A queue dropped its entry of a shared body; the last one deletes it.
    pub(crate) fn release_shared(&self, body: u64, queue: u64, seq: u64) {
        let mut shared = self.shared.lock();
        let Some(holders) = shared.get_mut(&body) else {
            return;
        };
        holders.retain(|&h| h != (queue, seq));
        let key = KeyBuf::new(kind::SHARED_REFS).u64(body).done();
        if holders.is_empty() {
            shared.remove(&body);
            drop(shared);
            self.store()
                .submit_all([Op::Del(Ks::Meta, key), Op::DelBody(body)], false);
        } else {
            let rec = SharedRefsRecord {
                holders: holders.clone(),
            };
            drop(shared);
            self.store().submit(Store::put_meta(key, &rec), false);
        }
    }

    /// Timer callback: appends due delayed messages to their queues.
    fn run_delays(&self) -> Option<Instant> {
        let now = now_millis();
        for ((due, id), item) in self.delays.take_due(now) {
            let msg = match item.message {
                Some(m) => Some(m),
                None => match self.store().get_delayed(due, id) {
                    Ok(Some(rec)) => Some(Arc::new(rec.message)),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::error!(cause = %e, "cannot read a delayed message");
                        None
                    }
                },
            };
            let queues: Vec<Arc<Queue>> = item.queues.iter().filter_map(Weak::upgrade).collect();
            for q in &queues {
                q.delayed_changed(-1);
            }
            if let Some(m) = msg {
                let mut receipt = PublishReceipt::default();
                self.append_to(&queues, &m, false, &mut receipt);
            }
            if item.stored {
                self.store().submit(Op::DelDelayed { due, id }, false);
            }
        }
        self.delays.next_due().map(instant_at)
    }

    // ---- dead letters ----

    pub(crate) fn dead_letter(&self, from: &Arc<Queue>, dead: Vec<DeadLetter>) {
        let Some(target) = from.settings().dead_letter.clone() else {
            return;
        };
        let Some(tenant) = self.tenants.read().get(from.tenant()).cloned() else {
            return;
        };
        let now = now_millis();
        for d in dead {
            let mut m = deadletter::dead_lettered(&d.message, from.name(), d.reason, now);
            let queues = match &target {
                DeadLetterTarget::Exchange {
                    exchange,
                    routing_key,
                } => {
                    m.exchange = exchange.clone();
                    if let Some(rk) = routing_key {
                        m.routing_key = rk.clone();
                    }
                    match tenant.route(&m) {
                        Ok(qs) => qs,
                        Err(e) => {
                            tracing::debug!(queue = from.name(), cause = %e, "dead letter dropped");
                            continue;
                        }
                    }
                }
                DeadLetterTarget::Queue(name) => tenant
                    .queues
                    .read()
                    .get(name)
                    .cloned()
                    .into_iter()
                    .collect(),
                DeadLetterTarget::PerGroup => {
                    match self.group_dead_letters(&tenant, from, &d.group) {
                        Ok(q) => vec![q],
                        Err(e) => {
                            tracing::error!(queue = from.name(), cause = %e, "cannot create a dead-letter queue");
                            continue;
                        }
                    }
                }
            };
            let queues: Vec<Arc<Queue>> = queues
                .into_iter()
                .filter(|q| !deadletter::is_cycle(&d.message, q.name()))
                .collect();
            let mut receipt = PublishReceipt::default();
            self.append_to(&queues, &Arc::new(m), false, &mut receipt);
        }
    }

    /// The queue holding a group's dead letters (created on first use).
    fn group_dead_letters(
        &self,
        tenant: &Arc<TenantInner>,
        from: &Queue,
        group: &str,
    ) -> Result<Arc<Queue>> {
        let name = dead_letter_queue_name(from.id, group);
        if let Some(q) = tenant.queues.read().get(&name) {
            return Ok(Arc::clone(q));
        }
        let settings = QueueSettings {
            kind: if from.settings().kind == QueueKind::Fifo {
                QueueKind::Fifo
            } else {
                QueueKind::Standard
            },
            retention_ms: 0,
            ack_timeout_ms: from.settings().ack_timeout_ms,
            message_ttl_ms: Some(DEAD_LETTER_TTL_MS),
            ..QueueSettings::default()
        };
        let spec = QueueSpec {
            durable: from.is_durable(),
            settings,
            default_group: true,
            ..QueueSpec::default()
        };
        self.create_queue(tenant, &name, spec, Some((from.id, group.to_owned())))
            .map(|(q, _)| q)
    }

    // ---- retained ----

    pub(crate) fn set_retained(
        &self,
        tenant: &Arc<TenantInner>,
        topic: &str,
        msg: Option<Arc<Message>>,
    ) -> Option<Ticket> {
        let key = KeyBuf::new(kind::RETAINED)
            .str(&tenant.name)
            .bytes(topic.as_bytes())
            .done();
        match msg {
            Some(m) => {
                let persist = m.is_persistent();
                tenant
                    .retained
                    .write()
                    .insert(topic.to_owned(), Arc::clone(&m));
                persist.then(|| {
                    let rec = RetainedRecord {
                        tenant: tenant.name.to_string(),
                        topic: topic.to_owned(),
                        message: (*m).clone(),
                    };
                    self.store().submit(Store::put_meta(key, &rec), true)
                })
            }
            None => {
                tenant.retained.write().remove(topic);
                Some(self.store().submit(Op::Del(Ks::Meta, key), true))
            }
        }
    }
}

/// The name of the queue that holds one group's dead letters (hidden from
/// AMQP clients by the reserved `amq.` prefix).
pub fn dead_letter_queue_name(queue_id: u64, group: &str) -> String {
    format!("amq.dlq.{queue_id}.{group}")
}

impl Engine {
    /// The queue holding a group's dead letters, creating it if needed.
    pub fn dead_letter_queue(&self, tenant: &str, queue: &str, group: &str) -> Result<Arc<Queue>> {
        let t = self.tenant(tenant)?;
        let q = t.queue(queue)?;
        self.inner.group_dead_letters(&t.inner, &q, group)
    }

    /// Finds a message of a queue by id and tells where it stands in every
    /// group: ready, delayed, in flight (with its delivery count), settled,
    /// dead-lettered or filtered.
    pub fn trace_message(
        &self,
        tenant: &str,
        queue: &str,
        id: MessageId,
    ) -> Result<Option<MessageTrace>> {
        let t = self.tenant(tenant)?;
        let q = t.queue(queue)?;
        if let Some(mut trace) = q.find_message(id) {
            for (group, state) in &mut trace.groups {
                if *state == MessageState::Settled {
                    let dlq = t
                        .inner
                        .queues
                        .read()
                        .get(&dead_letter_queue_name(q.id, group))
                        .cloned();
                    if dlq.is_some_and(|d| d.find_message(id).is_some()) {
                        *state = MessageState::DeadLettered;
                    }
                }
            }
            return Ok(Some(trace));
        }
        let Some((due, cached)) = self.inner.delays.find(id, &q) else {
            return Ok(None);
        };
        let message = match cached {
            Some(m) => m,
            None => match self.inner.services.store.get_delayed(due, id)? {
                Some(rec) => Arc::new(rec.message),
                None => return Ok(None),
            },
        };
        let groups = q
            .group_names()
            .into_iter()
            .map(|g| (g, MessageState::Delayed))
            .collect();
        Ok(Some(MessageTrace {
            seq: u64::MAX,
            message,
            groups,
        }))
    }

    /// Lets a new group start at a position (convenience over [`Queue::create_group`]).
    pub fn create_group(
        &self,
        tenant: &str,
        queue: &str,
        group: &str,
        start: StartPosition,
    ) -> Result<bool> {
        self.tenant(tenant)?
            .queue(queue)?
            .create_group(group, start, None)
    }
}
