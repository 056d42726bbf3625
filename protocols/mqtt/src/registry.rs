//! The door's state shared by all connections of one engine: who is connected
//! (for session takeover), the persistent sessions nobody is connected to
//! (with their expiry and delayed wills), and how many sessions use each
//! shared-subscription group.
//!
//! TCP and WebSocket connections both arrive through one [`crate::MqttDoor`],
//! which holds the registry. Registries also live in a process-wide list
//! keyed by the engine (see [`Registry::for_engine`]), so that two doors made
//! for one engine still share one.
//!
//! One task per registry (the sweeper) publishes delayed wills and ends
//! expired sessions. Locking: the state mutex is held across engine calls
//! (queue deletion, will publication), which are synchronous and short, so a
//! session never changes hands half-way through.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use gw_core::{
    BindingSpec, Destination, Engine, Headers, Principal, Queue, QueueSpec, StartPosition, Tenant,
};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::session::{
    ClientKey, SESSION_NS, SHARED_QUEUE_PREFIX, SessionRecord, now, queue_settings,
    shared_queue_name,
};
pub use crate::signal::{CloseReason, ConnSignal};
use crate::topic::{self, AMQP_TOPIC_EXCHANGE};
use crate::will;

/// How long a new connection waits for the one it takes over to finish.
const TAKEOVER_WAIT: Duration = Duration::from_secs(10);
/// The sweeper looks at the engine at least this often (to stop with it).
const SWEEP_MAX_SLEEP: Duration = Duration::from_secs(2);

/// How long a user's principal is reused for new connections (see
/// [`Registry::principal`]).
const PRINCIPAL_TTL: Duration = Duration::from_secs(5);

/// Registries in use, keyed by the engine's identity. Weak: a registry holds
/// an engine handle, and the engine's store is only released (and its
/// directory unlocked for a reopen) once every handle is gone; the door's
/// listener and connections hold the registry while they run.
static REGISTRIES: Mutex<Vec<(u64, Weak<Registry>)>> = Mutex::new(Vec::new());

struct Live {
    conn_id: u64,
    signal: Arc<ConnSignal>,
    /// The door's shutdown token the connection was accepted under.
    shutdown: CancellationToken,
}

/// (tenant, shared queue, group).
type SharedKey = (String, String, String);

#[derive(Default)]
struct State {
    live: HashMap<ClientKey, Live>,
    parked: HashMap<ClientKey, SessionRecord>,
    deadlines: BTreeSet<(u64, ClientKey)>,
    shared: HashMap<SharedKey, usize>,
}

impl State {
    fn park(&mut self, rec: SessionRecord) {
        let key = rec.key();
        if let Some(at) = rec.next_deadline() {
            self.deadlines.insert((at, key.clone()));
        }
        if let Some(old) = self.parked.insert(key.clone(), rec)
            && let Some(at) = old.next_deadline()
        {
            self.deadlines.remove(&(at, key));
        }
    }

    fn unpark(&mut self, key: &ClientKey) -> Option<SessionRecord> {
        let rec = self.parked.remove(key)?;
        if let Some(at) = rec.next_deadline() {
            self.deadlines.remove(&(at, key.clone()));
        }
        Some(rec)
    }
}

/// The MQTT door's state for one engine.
pub struct Registry {
    engine: Engine,
    state: Mutex<State>,
    principals: Mutex<HashMap<String, (Principal, std::time::Instant)>>,
    wake: Arc<Notify>,
    /// Shutdown tokens a task waits on (one per token, not per connection).
    watched: Mutex<Vec<CancellationToken>>,
}

impl Registry {
    /// The registry of `engine`, created (and its sessions loaded) on first use.
    ///
    /// Keyed by the engine's id; the entry of a closed engine is replaced.
    pub fn for_engine(engine: &Engine) -> Arc<Registry> {
        let key = engine.id();
        let mut all = REGISTRIES.lock();
        all.retain(|(_, r)| r.strong_count() > 0);
        if let Some(r) = all
            .iter()
            .filter(|(k, _)| *k == key)
            .find_map(|(_, r)| r.upgrade())
            .filter(|r| !r.engine.is_closed())
        {
            return r;
        }
        all.retain(|(k, _)| *k != key);
        let registry = Arc::new(Registry {
            engine: engine.clone(),
            state: Mutex::new(State::default()),
            principals: Mutex::new(HashMap::new()),
            wake: Arc::new(Notify::new()),
            watched: Mutex::new(Vec::new()),
        });
        registry.load();
        all.push((key, Arc::downgrade(&registry)));
        drop(all);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(sweep(Arc::downgrade(&registry), Arc::clone(&registry.wake)));
        }
        registry
    }

    /// The principal connections of `user` share. The engine compiles a
    /// user's permission patterns into a fresh principal on every login
    /// (tens of KiB of regex state); sharing one per user keeps idle
    /// connections small and spares anonymous logins the compilation. A
    /// principal is reused for [`PRINCIPAL_TTL`], so permission changes reach
    /// new connections within that time (open ones keep theirs, as in RabbitMQ).
    /// `fresh` is called when none is cached (or it is too old); with
    /// `Some`, a principal just obtained (a password login) is cached or
    /// replaced by the cached one.
    pub fn principal(
        &self,
        user: &str,
        fresh: impl FnOnce() -> gw_core::Result<Principal>,
    ) -> gw_core::Result<Principal> {
        let now = std::time::Instant::now();
        if let Some((p, at)) = self.principals.lock().get(user)
            && now.duration_since(*at) < PRINCIPAL_TTL
        {
            return Ok(p.clone());
        }
        let p = fresh()?;
        let mut cache = self.principals.lock();
        cache.retain(|_, (_, at)| now.duration_since(*at) < PRINCIPAL_TTL);
        cache.insert(user.to_owned(), (p.clone(), now));
        Ok(p)
    }

    /// Closes every live connection accepted under `shutdown` (reason
    /// [`CloseReason::Shutdown`]) once it is cancelled. One task per token
    /// waits for it, so an idle connection holds no future of its own for
    /// the shutdown; a connection that becomes live after the token was
    /// cancelled sees it in its loop ([`CancellationToken::is_cancelled`]).
    pub fn watch_shutdown(self: &Arc<Self>, shutdown: &CancellationToken) {
        let mut watched = self.watched.lock();
        if watched.contains(shutdown) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        watched.push(shutdown.clone());
        let (registry, token) = (Arc::downgrade(self), shutdown.clone());
        rt.spawn(async move {
            token.cancelled().await;
            let Some(reg) = registry.upgrade() else {
                return;
            };
            reg.watched.lock().retain(|t| *t != token);
            let st = reg.state.lock();
            for live in st.live.values().filter(|l| l.shutdown == token) {
                live.signal.close(CloseReason::Shutdown);
            }
        });
    }

    /// Reads the stored sessions: the ones that expired while the gateway was
    /// down end now (publishing a pending will); the ones that were connected
    /// when it stopped count as disconnected now (their will becomes due).
    fn load(&self) {
        let records = match self.engine.scan_state(SESSION_NS) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(cause = %e, "cannot read stored MQTT sessions");
                return;
            }
        };
        let now = now();
        let mut st = self.state.lock();
        for (key, value) in records {
            let Some(mut rec) = SessionRecord::decode(&value) else {
                tracing::warn!(key = %String::from_utf8_lossy(&key), "dropping an unreadable MQTT session record");
                self.engine.delete_state(SESSION_NS, &key);
                continue;
            };
            if rec.disconnected_at.is_none() {
                rec.mark_disconnected(now);
                self.engine.put_state(SESSION_NS, &key, &rec.encode());
            }
            for sub in &rec.subscriptions {
                if let Some(share) = &sub.share {
                    let k = (
                        rec.tenant.clone(),
                        shared_queue_name(&sub.filter),
                        share.to_string(),
                    );
                    *st.shared.entry(k).or_default() += 1;
                }
            }
            st.park(rec);
        }
        self.remove_orphan_groups(&st);
        let n = st.parked.len();
        drop(st);
        self.fire_due(now);
        if n > 0 {
            tracing::info!(sessions = n, "MQTT sessions restored");
        }
    }

    /// Shared-subscription groups of clean sessions do not outlive a restart.
    fn remove_orphan_groups(&self, st: &State) {
        for tenant in self.engine.tenants() {
            for q in tenant.queues() {
                if !q.name().starts_with(SHARED_QUEUE_PREFIX) {
                    continue;
                }
                for g in q.group_names() {
                    let k = (tenant.name().to_owned(), q.name().to_owned(), g.clone());
                    if !st.shared.contains_key(&k) {
                        let _ = q.delete_group(&g);
                    }
                }
                if q.group_names().is_empty() {
                    let _ = tenant.delete_queue(q.name(), false, false);
                }
            }
        }
    }

    /// Registers a connection as the live one for `key`, taking over (closing
    /// and waiting for) a previous one [MQTT-3.1.4-3]; returns the stored
    /// session to resume, if any.
    ///
    /// With `clean_start` an existing session ends first: its queue and
    /// record go, a will it still had pending is published [MQTT-3.1.2-4].
    /// Without it, a delayed will of the session is cancelled [MQTT-3.1.3-9].
    pub async fn claim(
        &self,
        key: &ClientKey,
        conn_id: u64,
        signal: Arc<ConnSignal>,
        shutdown: &CancellationToken,
        clean_start: bool,
    ) -> Option<SessionRecord> {
        let live = Live {
            conn_id,
            signal,
            shutdown: shutdown.clone(),
        };
        let old = self.state.lock().live.insert(key.clone(), live);
        if let Some(old) = old {
            tracing::debug!(client_id = key.client_id(), "taking over a session");
            old.signal.close(CloseReason::TakenOver);
            if tokio::time::timeout(TAKEOVER_WAIT, old.signal.wait_finished())
                .await
                .is_err()
            {
                tracing::warn!(
                    client_id = key.client_id(),
                    "previous connection did not end in time"
                );
            }
        }
        let mut st = self.state.lock();
        let mut rec = st.unpark(key)?;
        if clean_start {
            self.end_session(&mut st, rec);
            return None;
        }
        rec.will = None;
        rec.disconnected_at = None;
        Some(rec)
    }

    /// A connection ended: it stops being the live one for `key` (unless a
    /// newer one already is) and a persistent session is parked until the
    /// client returns, its will is due or it expires.
    pub fn release(&self, key: &ClientKey, conn_id: u64, record: Option<SessionRecord>) {
        let mut st = self.state.lock();
        if st.live.get(key).is_some_and(|l| l.conn_id == conn_id) {
            st.live.remove(key);
        }
        if let Some(rec) = record {
            st.park(rec);
            drop(st);
            self.wake.notify_one();
        }
    }

    /// Ends a session: publishes a will it still holds, deletes its queue, its
    /// shared-group references and its record. State lock held.
    fn end_session(&self, st: &mut State, rec: SessionRecord) {
        tracing::debug!(client_id = %rec.client_id, "MQTT session ended");
        if let Ok(tenant) = self.engine.tenant(&rec.tenant) {
            if let Some(w) = &rec.will {
                will::publish(&tenant, w, &rec.client_id);
            }
            if let Some(q) = &rec.queue {
                let _ = tenant.delete_queue(q, false, false);
            }
            for sub in &rec.subscriptions {
                if let Some(share) = &sub.share {
                    self.unref_shared(st, &tenant, &shared_queue_name(&sub.filter), share);
                }
            }
        }
        self.engine.delete_state(SESSION_NS, rec.key().as_bytes());
    }

    /// Publishes wills that are due and ends sessions that expired; returns
    /// the next deadline.
    fn fire_due(&self, now: u64) -> Option<u64> {
        let mut st = self.state.lock();
        loop {
            let (at, key) = st.deadlines.first().cloned()?;
            if at > now {
                return Some(at);
            }
            let Some(mut rec) = st.unpark(&key) else {
                st.deadlines.remove(&(at, key));
                continue;
            };
            if rec.expires_at().is_some_and(|e| e <= now) {
                self.end_session(&mut st, rec);
                continue;
            }
            if let Some(w) = rec.will.take()
                && let Ok(tenant) = self.engine.tenant(&rec.tenant)
            {
                will::publish(&tenant, &w, &rec.client_id);
            }
            self.engine
                .put_state(SESSION_NS, key.as_bytes(), &rec.encode());
            st.park(rec);
        }
    }

    /// The queue of a shared subscription's filter with the share group on it,
    /// created when missing (durable, bound to `amq.topic`, the group starting
    /// at the newest message). Adds a reference from one session when `count`.
    pub fn shared_queue(
        &self,
        tenant: &Tenant,
        filter: &str,
        group: &str,
        max_len: Option<u64>,
        count: bool,
    ) -> gw_core::Result<Arc<Queue>> {
        let name = shared_queue_name(filter);
        let binding =
            topic::filter_to_binding_key(filter).map_err(|e| gw_core::Error::Invalid {
                field: "topic filter",
                reason: e.to_string(),
            })?;
        let mut st = self.state.lock();
        let queue = match tenant.queue(&name) {
            Ok(q) => q,
            Err(_) => {
                let spec = QueueSpec {
                    durable: true,
                    settings: queue_settings(max_len),
                    default_group: false,
                    ..QueueSpec::default()
                };
                tenant.declare_queue(&name, spec)?.0
            }
        };
        tenant.bind(BindingSpec {
            source: AMQP_TOPIC_EXCHANGE.into(),
            destination: Destination::Queue(name.clone()),
            routing_key: binding,
            arguments: Headers::new(),
        })?;
        queue.create_group(group, StartPosition::Latest, None)?;
        if count {
            let k = (tenant.name().to_owned(), name, group.to_owned());
            *st.shared.entry(k).or_default() += 1;
        }
        Ok(queue)
    }

    /// Drops one session's reference to a share group; the last one deletes
    /// the group, and the queue with its last group.
    pub fn release_shared(&self, tenant: &Tenant, filter: &str, group: &str) {
        let mut st = self.state.lock();
        self.unref_shared(&mut st, tenant, &shared_queue_name(filter), group);
    }

    fn unref_shared(&self, st: &mut State, tenant: &Tenant, queue: &str, group: &str) {
        let k = (tenant.name().to_owned(), queue.to_owned(), group.to_owned());
        let Some(n) = st.shared.get_mut(&k) else {
            return;
        };
        *n -= 1;
        if *n > 0 {
            return;
        }
        st.shared.remove(&k);
        if let Ok(q) = tenant.queue(queue) {
            let _ = q.delete_group(group);
            if q.group_names().is_empty() {
                let _ = tenant.delete_queue(queue, false, false);
            }
        }
    }
}

/// The registry's timer task: wills whose delay passed, sessions that
/// expired. It holds the registry only while working, so the registry (and
/// its engine handle) goes when the door stops.
async fn sweep(registry: Weak<Registry>, wake: Arc<Notify>) {
    loop {
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let sleep = {
            let Some(reg) = registry.upgrade() else {
                return;
            };
            if reg.engine.is_closed() {
                return;
            }
            let now = now();
            reg.fire_due(now)
                .map_or(SWEEP_MAX_SLEEP, |at| {
                    Duration::from_millis(at.saturating_sub(now))
                })
                .min(SWEEP_MAX_SLEEP)
        };
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}
