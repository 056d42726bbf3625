//! Queues: a durable, ordered log of messages read by consumer groups.
//!
//! A [`Queue`] is shared (`Arc`) by the tenant's registry, bindings, consumers
//! and timers. All of its mutable state sits behind one mutex, held only for
//! in-memory work (and, for a group reading behind the memory window, one
//! bounded disk read). Anything that reaches outside the queue — waking
//! consumers, dead-lettering into other queues, deleting an auto-delete queue —
//! is collected as [`Effects`] and done after the lock is released, so two
//! queues never hold each other's locks.

mod consumer;
mod fifo;
mod group;
mod log;
mod settings;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;

pub use consumer::{Consumer, ConsumerSpec, PullRequest};
use group::{ConsumerSlot, Group, Source, Taker};
pub(crate) use group::{DeadLetter, Effects};
pub use group::{DeathReason, Delivery, DeliveryTag, MessageState};
pub(crate) use log::{Entry, Log};
pub use settings::{
    DeadLetterTarget, Overflow, QueueKind, QueueSettings, StartPosition, TagFilter,
};

use crate::engine::Services;
use crate::error::{Error, Result};
use crate::message::{Headers, Message, UnixMillis, now_millis};
use crate::store::records::{GroupCounters, GroupRecord, QueueRecord, QueueStateRecord};
use crate::store::{KeyBuf, Ks, Op, Snapshot, Store, Ticket, kind};

/// The group every AMQP and MQTT consumer of a queue joins unless told otherwise.
pub const DEFAULT_GROUP: &str = "default";

/// Counters and gauges of one consumer group.
#[derive(Clone, Debug, Default)]
pub struct GroupStats {
    /// Group name.
    pub name: String,
    /// Messages the group has yet to receive.
    pub ready: u64,
    /// Delivered, not yet settled.
    pub in_flight: u64,
    /// Consumers attached.
    pub consumers: usize,
    /// Their tags (AMQP consumer tags, MQTT client ids, …).
    pub consumer_tags: Vec<String>,
    /// The group's tag filter.
    pub filter: Option<TagFilter>,
    /// Monotonic counters.
    pub counters: GroupCounters,
    /// Age in ms of the oldest message not yet settled by this group.
    pub oldest_age_ms: Option<u64>,
    /// When the group was created (ms since epoch).
    pub created_at: UnixMillis,
}

/// Counters and gauges of a queue.
#[derive(Clone, Debug, Default)]
pub struct QueueStats {
    /// Messages retained in the log (settled ones included while retention lasts).
    pub retained: u64,
    /// Bytes retained.
    pub retained_bytes: u64,
    /// Messages published into the queue.
    pub published: u64,
    /// Messages waiting for their delivery time.
    pub delayed: u64,
    /// Consumers over all groups.
    pub consumers: usize,
    /// Per group.
    pub groups: Vec<GroupStats>,
}

impl QueueStats {
    /// RabbitMQ's "messages ready" for the queue: the default group's (or, without
    /// one, the first group's) ready count; the whole log without groups.
    pub fn ready(&self) -> u64 {
        self.groups
            .iter()
            .find(|g| g.name == DEFAULT_GROUP)
            .or(self.groups.first())
            .map_or(self.retained, |g| g.ready)
    }
}

/// A message found by id, and its state in each group.
#[derive(Clone, Debug)]
pub struct MessageTrace {
    /// Its sequence number in the queue.
    pub seq: u64,
    /// The message.
    pub message: Arc<Message>,
    /// Per group: name and state.
    pub groups: Vec<(String, MessageState)>,
}

/// How a message enters a queue's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Persist {
    /// Memory only.
    No,
    /// Written in the log entry.
    Inline,
    /// The log entry refers to a body stored once in `bodies` under this id.
    Shared(u64),
}

/// What happened to one message offered to a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Appended {
    Stored {
        seq: u64,
        ticket: Option<Ticket>,
    },
    /// Refused by `reject-publish` overflow.
    Rejected,
    /// The queue was deleted meanwhile.
    Gone,
}

/// A queue. Shared by the tenant, its bindings and its consumers.
pub struct Queue {
    pub(crate) id: u64,
    name: String,
    tenant: Arc<str>,
    settings: QueueSettings,
    durable: bool,
    auto_delete: bool,
    exclusive_owner: Option<u64>,
    arguments: Headers,
    created_at: UnixMillis,
    /// Boxed: only dead-letter queues of groups have it.
    pub(crate) dead_letters_of: Option<Box<(u64, String)>>,
    me: Weak<Queue>,
    pub(crate) services: Arc<Services>,
    state: Mutex<QueueState>,
    dirty: AtomicBool,
    timer_at: Mutex<Option<Instant>>,
}

struct QueueState {
    log: Log,
    groups: Vec<Group>,
    next_group_id: u32,
    next_consumer_id: u32,
    had_consumers: bool,
    last_used: Instant,
    delayed: u64,
    published: u64,
    deleted: bool,
}

impl QueueState {
    fn group_index(&self, name: &str) -> Result<usize> {
        self.groups
            .iter()
            .position(|g| g.name == name)
            .ok_or_else(|| Error::not_found("group", name))
    }

    fn consumer_count(&self) -> usize {
        self.groups
            .iter()
            .map(|g| g.consumers.iter().filter(|c| !c.stopped).count())
            .sum()
    }

    fn min_floor(&self) -> u64 {
        self.groups
            .iter()
            .map(Group::floor)
            .min()
            .unwrap_or(self.log.next_seq)
    }
}

/// The parts of a queue fixed at declaration.
pub(crate) struct QueueInit {
    pub id: u64,
    pub tenant: Arc<str>,
    pub name: String,
    pub settings: QueueSettings,
    pub durable: bool,
    pub auto_delete: bool,
    pub exclusive_owner: Option<u64>,
    pub arguments: Headers,
    pub created_at: UnixMillis,
    pub dead_letters_of: Option<(u64, String)>,
}

impl Queue {
    pub(crate) fn new(
        init: QueueInit,
        services: Arc<Services>,
        log: Log,
        groups: Vec<GroupRecord>,
    ) -> Arc<Queue> {
        let next_group_id = groups.iter().map(|g| g.id + 1).max().unwrap_or(1);
        let groups = groups
            .into_iter()
            .map(|r| Group::from_record(r, &init.settings, &log))
            .collect();
        // Registered before anything is written to the log (see store/heads.rs).
        services.store.heads.set(init.id, log.head);
        Arc::new_cyclic(|me| Queue {
            id: init.id,
            name: init.name,
            tenant: init.tenant,
            settings: init.settings,
            durable: init.durable,
            auto_delete: init.auto_delete,
            exclusive_owner: init.exclusive_owner,
            arguments: init.arguments,
            created_at: init.created_at,
            dead_letters_of: init.dead_letters_of.map(Box::new),
            me: me.clone(),
            services,
            state: Mutex::new(QueueState {
                log,
                groups,
                next_group_id,
                next_consumer_id: 1,
                had_consumers: false,
                last_used: Instant::now(),
                delayed: 0,
                published: 0,
                deleted: false,
            }),
            dirty: AtomicBool::new(false),
            timer_at: Mutex::new(None),
        })
    }

    /// The record that declares this queue in the store.
    pub(crate) fn record(&self) -> QueueRecord {
        QueueRecord {
            id: self.id,
            tenant: self.tenant.to_string(),
            name: self.name.clone(),
            settings: self.settings.clone(),
            auto_delete: self.auto_delete,
            arguments: self.arguments.clone(),
            created_at: self.created_at,
            dead_letters_of: self.dead_letters_of.as_deref().cloned(),
        }
    }

    /// Queue name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Tenant name.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The engine's id of the queue (stable across restarts for durable queues).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Settings fixed at declaration.
    pub fn settings(&self) -> &QueueSettings {
        &self.settings
    }

    /// Survives restarts.
    pub fn is_durable(&self) -> bool {
        self.durable
    }

    /// Deleted when its last consumer leaves.
    pub fn is_auto_delete(&self) -> bool {
        self.auto_delete
    }

    /// The connection that owns an exclusive queue.
    pub fn exclusive_owner(&self) -> Option<u64> {
        self.exclusive_owner
    }

    /// Declaration arguments as the client gave them (for equivalence checks).
    pub fn arguments(&self) -> &Headers {
        &self.arguments
    }

    /// When the queue was created.
    pub fn created_at(&self) -> UnixMillis {
        self.created_at
    }

    /// The source queue and group this queue collects dead letters for.
    pub fn dead_letters_of(&self) -> Option<(u64, &str)> {
        self.dead_letters_of
            .as_deref()
            .map(|(q, g)| (*q, g.as_str()))
    }

    /// True once deleted.
    pub fn is_deleted(&self) -> bool {
        self.state.lock().deleted
    }

    /// Refuses access by a connection other than an exclusive queue's owner (AMQP 405).
    pub fn check_owner(&self, connection: Option<u64>) -> Result<()> {
        match self.exclusive_owner {
            Some(owner) if connection != Some(owner) => Err(Error::ResourceLocked(format!(
                "cannot obtain exclusive access to locked queue '{}'",
                self.name
            ))),
            _ => Ok(()),
        }
    }

    fn store(&self) -> &Store {
        &self.services.store
    }

    fn source<'a>(&'a self, log: &'a Log) -> Source<'a> {
        Source {
            log,
            store: self.store(),
            settings: &self.settings,
            now: now_millis(),
            instant: Instant::now(),
        }
    }

    /// Messages whose entry must be written are written only by durable queues.
    pub(crate) fn persist_for(&self, message: &Message) -> bool {
        self.durable && message.is_persistent()
    }

    /// Notes that the state changed, so the next commit snapshots it.
    fn touch(&self) {
        if self.durable && !self.dirty.swap(true, Ordering::AcqRel) {
            let weak: Weak<dyn Snapshot> = self.me.clone();
            self.store().mark_dirty(weak);
        }
    }

    /// Runs effects collected under the lock.
    fn finish(&self, fx: Effects) {
        for n in fx.wake {
            n.notify_one();
        }
        if !fx.dead.is_empty()
            && let Some(q) = self.me.upgrade()
        {
            self.services.dead_letter(&q, fx.dead);
        }
    }

    /// Arms the queue's timer for `at` unless an earlier one is armed.
    fn schedule(&self, at: Instant) {
        let mut t = self.timer_at.lock();
        if t.is_none_or(|cur| at < cur) {
            *t = Some(at);
            drop(t);
            self.services.timers.add(at, self.me.clone());
        }
    }

    // ---- publishing ----

    /// Appends a message. Called by routing, with the message's id and publish time set.
    pub(crate) fn append(&self, msg: &Arc<Message>, persist: Persist, sync: bool) -> Appended {
        let mut fx = Effects::default();
        let mut st = self.state.lock();
        if st.deleted {
            return Appended::Gone;
        }
        let mut entry = Entry::new(Arc::clone(msg), &self.settings);
        let refuses = matches!(
            self.settings.overflow,
            Overflow::RejectPublish | Overflow::RejectPublishDlx
        );
        if refuses && self.is_full(&st, u64::from(entry.size)) {
            if self.settings.overflow == Overflow::RejectPublishDlx {
                self.dead_letter_refused(&st, msg, &mut fx);
                drop(st);
                self.finish(fx);
            }
            return Appended::Rejected;
        }
        let expires_at = entry.expires_at;
        let seq = st.log.next_seq;
        let ticket = match persist {
            Persist::No => None,
            Persist::Inline => Some(self.store().submit(
                Op::PutLog {
                    queue: self.id,
                    seq,
                    message: Arc::clone(msg),
                    transient_epoch: None,
                },
                sync,
            )),
            Persist::Shared(body) => {
                st.log.shared.insert(seq, body);
                Some(self.store().submit(
                    Op::PutLogShared {
                        queue: self.id,
                        seq,
                        body,
                    },
                    sync,
                ))
            }
        };
        entry.ticket = ticket.unwrap_or(0);
        st.log.push(entry);
        st.published += 1;
        if self.settings.max_length.is_some() || self.settings.max_bytes.is_some() {
            self.enforce_limits(&mut st, &mut fx);
        }
        for g in &mut st.groups {
            g.arrived(1);
            g.wake(&mut fx);
        }
        self.evict(&mut st);
        if st.groups.is_empty() || self.settings.retention_ms > 0 {
            // Nobody settles these; only retention removes them.
            self.trim(&mut st);
        }
        drop(st);
        self.touch();
        if expires_at != u64::MAX {
            self.schedule(instant_at(expires_at));
        }
        self.finish(fx);
        Appended::Stored { seq, ticket }
    }

    /// A publish refused by `reject-publish-dlx` goes to the dead-letter
    /// target once; a per-group target gets it in every group's dead letters
    /// (each group would have seen it).
    fn dead_letter_refused(&self, st: &QueueState, msg: &Arc<Message>, fx: &mut Effects) {
        let dead = |group: &str| DeadLetter {
            message: Arc::clone(msg),
            reason: DeathReason::MaxLen,
            group: group.to_owned(),
        };
        match (&self.settings.dead_letter, st.groups.first()) {
            (None, _) => {}
            (Some(DeadLetterTarget::PerGroup), Some(_)) => {
                fx.dead.extend(st.groups.iter().map(|g| dead(&g.name)));
            }
            (_, first) => fx
                .dead
                .push(dead(first.map_or(DEFAULT_GROUP, |g| g.name.as_str()))),
        }
    }

    fn is_full(&self, st: &QueueState, extra_bytes: u64) -> bool {
        let (len, bytes) = self.backlog(st);
        self.settings.max_length.is_some_and(|m| len >= m)
            || self
                .settings
                .max_bytes
                .is_some_and(|m| bytes + extra_bytes > m)
    }

    /// The largest backlog over the groups (the whole log when there are none).
    fn backlog(&self, st: &QueueState) -> (u64, u64) {
        if st.groups.is_empty() {
            return (st.log.len(), st.log.retained_bytes);
        }
        st.groups.iter().fold((0, 0), |(l, b), g| {
            (l.max(g.ready_count(&st.log)), b.max(g.ready_bytes(&st.log)))
        })
    }

    fn enforce_limits(&self, st: &mut QueueState, fx: &mut Effects) {
        let over = |log: &Log, g: &Group| {
            self.settings
                .max_length
                .is_some_and(|m| g.ready_count(log) > m)
                || self
                    .settings
                    .max_bytes
                    .is_some_and(|m| g.ready_bytes(log) > m)
        };
        let dead_letter = self.settings.overflow == Overflow::DeadLetterHead;
        if st.groups.is_empty() {
            while self.settings.max_length.is_some_and(|m| st.log.len() > m)
                || self
                    .settings
                    .max_bytes
                    .is_some_and(|m| st.log.retained_bytes > m && st.log.len() > 1)
            {
                let head = st.log.head + 1;
                self.trim_to(st, head);
            }
            return;
        }
        let QueueState { log, groups, .. } = st;
        let src = self.source(log);
        for g in groups.iter_mut() {
            let mut guard = 0;
            while over(log, g) && guard < 100_000 {
                if !g.drop_oldest(&src, dead_letter, fx) {
                    break;
                }
                guard += 1;
            }
        }
    }

    /// Moves the oldest in-memory messages to disk while the window is over
    /// budget. An entry leaves memory only once its write has been applied to
    /// the store, so a reader never finds it in neither place.
    fn evict(&self, st: &mut QueueState) {
        let budget = self.services.queue_memory_bytes;
        let mut excess = st.log.window_bytes().saturating_sub(budget);
        if excess == 0 {
            return;
        }
        let store = self.store();
        for (seq, e) in st.log.window_mut() {
            if excess == 0 {
                break;
            }
            excess = excess.saturating_sub(u64::from(e.size));
            if e.ticket == 0 {
                let op = Op::PutLog {
                    queue: self.id,
                    seq,
                    message: Arc::clone(&e.msg),
                    transient_epoch: Some(store.epoch),
                };
                e.ticket = store.submit(op, false);
            }
        }
        let applied = store.applied_ticket();
        while st.log.window_bytes() > budget
            && st
                .log
                .front()
                .is_some_and(|e| e.ticket != 0 && e.ticket <= applied)
        {
            st.log.evict_front();
        }
    }

    /// Deletes messages every group has settled and whose retention has passed.
    fn trim(&self, st: &mut QueueState) {
        let floor = st.min_floor();
        if floor <= st.log.head {
            return;
        }
        if self.settings.retention_ms == 0 {
            self.trim_to(st, floor);
            return;
        }
        let cutoff = now_millis().saturating_sub(self.settings.retention_ms);
        let mut new_head = st.log.head;
        // Only in-memory entries are checked here; older ones by the timer's sweep.
        while new_head < floor {
            match st.log.in_memory(new_head) {
                Some(e) if e.msg.published_at <= cutoff => new_head += 1,
                _ => break,
            }
        }
        self.trim_to(st, new_head);
    }

    /// Moves the log's head. Entries below it leave the disk when compactions
    /// pass over them (see `store/heads.rs`), not by per-key deletes.
    fn trim_to(&self, st: &mut QueueState, new_head: u64) {
        let old_head = st.log.head;
        st.log.trim_head(new_head);
        if st.log.head > old_head {
            self.store().heads.set(self.id, st.log.head);
        }
        let shared: Vec<(u64, u64)> = st
            .log
            .shared
            .range(old_head..new_head)
            .map(|(s, b)| (*s, *b))
            .collect();
        for (seq, body) in shared {
            st.log.shared.remove(&seq);
            self.services.release_shared(body, self.id, seq);
        }
    }

    /// Retention sweep for messages behind the memory window: reads their publish
    /// times from disk, a chunk at a time.
    fn sweep_retention(&self, st: &mut QueueState) {
        let floor = st.min_floor();
        let cutoff = now_millis().saturating_sub(self.settings.retention_ms);
        let mut new_head = st.log.head;
        while new_head < floor.min(st.log.window_start()) {
            let Ok(records) = self.store().read_log(self.id, new_head, 256, 1 << 20) else {
                break;
            };
            if records.is_empty() {
                new_head = floor.min(st.log.window_start());
                break;
            }
            let mut stop = false;
            for (seq, rec) in records {
                if seq >= floor {
                    stop = true;
                    break;
                }
                let published_at = match &rec.body {
                    crate::store::records::LogBody::Inline(m) => m.published_at,
                    crate::store::records::LogBody::Shared(_) => 0,
                };
                if published_at > cutoff {
                    stop = true;
                    break;
                }
                new_head = seq + 1;
            }
            if stop {
                break;
            }
        }
        self.trim_to(st, new_head);
        self.trim(st);
    }

    // ---- groups ----

    /// Names of the queue's consumer groups.
    pub fn group_names(&self) -> Vec<String> {
        self.state
            .lock()
            .groups
            .iter()
            .map(|g| g.name.clone())
            .collect()
    }

    /// Creates a consumer group; false when it existed already (unchanged).
    pub fn create_group(
        &self,
        name: &str,
        start: StartPosition,
        filter: Option<TagFilter>,
    ) -> Result<bool> {
        crate::names::check_name("group", name)?;
        if let Some(f) = &filter {
            f.validate()?;
        }
        let mut st = self.state.lock();
        if st.deleted {
            return Err(Error::not_found("queue", &self.name));
        }
        if st.groups.iter().any(|g| g.name == name) {
            return Ok(false);
        }
        let seq = self.resolve_start(&st.log, start);
        let id = st.next_group_id;
        st.next_group_id += 1;
        let mut g = Group::new(id, name.to_owned(), filter, seq, &self.settings, &st.log);
        g.arrived(1);
        st.groups.push(g);
        drop(st);
        self.touch();
        Ok(true)
    }

    /// Deletes a group and everything it had in flight.
    pub fn delete_group(&self, name: &str) -> Result<()> {
        let mut fx = Effects::default();
        let mut st = self.state.lock();
        let i = st.group_index(name)?;
        let mut g = st.groups.remove(i);
        for c in &g.consumers {
            c.cancelled.store(true, Ordering::Release);
        }
        g.wake_all(&mut fx);
        self.trim(&mut st);
        drop(st);
        if self.durable {
            self.store()
                .submit(Op::Del(Ks::Meta, group_key(self.id, name)), false);
        }
        self.finish(fx);
        Ok(())
    }

    /// Moves a group back (or forward) to a position; returns the sequence number it now reads from.
    pub fn rewind(&self, group: &str, to: StartPosition) -> Result<u64> {
        let mut fx = Effects::default();
        let mut st = self.state.lock();
        let i = st.group_index(group)?;
        let seq = self.resolve_start(&st.log, to);
        let QueueState { log, groups, .. } = &mut *st;
        groups[i].rewind(seq, log);
        groups[i].wake(&mut fx);
        for c in &groups[i].consumers {
            fx.wake.push(Arc::clone(&c.notify));
        }
        drop(st);
        self.touch();
        self.finish(fx);
        Ok(seq)
    }

    /// The tag filter a group keeps (DMS: fixed by its first filtered pull).
    pub fn group_filter(&self, group: &str) -> Result<Option<TagFilter>> {
        let st = self.state.lock();
        let i = st.group_index(group)?;
        Ok(st.groups[i].filter.as_deref().cloned())
    }

    fn resolve_start(&self, log: &Log, start: StartPosition) -> u64 {
        match start {
            StartPosition::Oldest => log.head,
            StartPosition::Latest => log.next_seq,
            StartPosition::Sequence(s) => s.clamp(log.head, log.next_seq),
            StartPosition::Time(t) => self.seq_at_time(log, t),
        }
    }

    /// First retained sequence number published at or after `t` (binary search
    /// over the log; entries are in publish order).
    fn seq_at_time(&self, log: &Log, t: UnixMillis) -> u64 {
        let (mut lo, mut hi) = (log.head, log.next_seq);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let published = match log.in_memory(mid) {
                Some(e) => Some(e.msg.published_at),
                None => self
                    .store()
                    .read_log(self.id, mid, 1, u64::MAX)
                    .ok()
                    .and_then(|r| r.into_iter().next())
                    .and_then(|(_, rec)| {
                        Log::entry_from_record(self.store(), &self.settings, rec)
                            .ok()
                            .flatten()
                    })
                    .map(|e| e.msg.published_at),
            };
            match published {
                Some(p) if p < t => lo = mid + 1,
                Some(_) => hi = mid,
                // A hole (memory-only message lost in a restart): move past it.
                None => lo = mid + 1,
            }
        }
        lo
    }

    // ---- consuming ----

    /// Attaches a push consumer to a group.
    pub fn consume(&self, group: &str, spec: ConsumerSpec) -> Result<Consumer> {
        let mut st = self.state.lock();
        if st.deleted {
            return Err(Error::not_found("queue", &self.name));
        }
        let i = st.group_index(group)?;
        Self::check_filter(&mut st.groups[i], spec.filter.as_ref())?;
        if st
            .groups
            .iter()
            .any(|g| g.consumers.iter().any(|c| c.exclusive && !c.stopped))
        {
            return Err(Error::AccessRefused(format!(
                "queue '{}' in exclusive use",
                self.name
            )));
        }
        if spec.exclusive && st.consumer_count() > 0 {
            return Err(Error::AccessRefused(format!(
                "queue '{}' in exclusive use",
                self.name
            )));
        }
        let id = st.next_consumer_id;
        st.next_consumer_id = st.next_consumer_id.wrapping_add(1).max(1);
        st.had_consumers = true;
        st.last_used = Instant::now();
        let notify = Arc::new(Notify::new());
        let cancelled = Arc::new(AtomicBool::new(false));
        let mut slot = ConsumerSlot::new(
            id,
            spec.tag.clone(),
            Arc::clone(&notify),
            Arc::clone(&cancelled),
        );
        slot.prefetch_count = spec.prefetch_count;
        slot.prefetch_bytes = spec.prefetch_bytes;
        slot.no_ack = spec.no_ack;
        slot.lease = spec.lease_timeout;
        slot.priority = spec.priority;
        slot.exclusive = spec.exclusive;
        let g = &mut st.groups[i];
        g.consumers.reserve_exact(1);
        g.consumers.push(slot);
        let group_id = g.id;
        drop(st);
        // Let the new consumer look at once: messages may be waiting.
        notify.notify_one();
        Ok(Consumer::new(
            self.me.upgrade().ok_or(Error::ShuttingDown)?,
            group_id,
            id,
            notify,
            cancelled,
        ))
    }

    fn check_filter(g: &mut Group, wanted: Option<&TagFilter>) -> Result<bool> {
        match (wanted, g.filter.as_deref()) {
            (None, _) => Ok(false),
            (Some(w), Some(have)) if w == have => Ok(false),
            (Some(w), Some(have)) => Err(Error::PreconditionFailed(format!(
                "group '{}' filters on tags {:?} ({}); it cannot switch to {:?}",
                g.name,
                have.tags,
                if have.match_all { "all" } else { "any" },
                w.tags
            ))),
            (Some(w), None) => {
                w.validate()?;
                g.filter = Some(Box::new(w.clone()));
                Ok(true)
            }
        }
    }

    /// Takes deliveries for a consumer; registers it for a wake-up when it gets none.
    pub(crate) fn take_for(
        &self,
        group_id: u32,
        consumer: u32,
        max: usize,
        out: &mut Vec<Delivery>,
    ) -> Result<(usize, bool)> {
        let mut fx = Effects::default();
        let mut st = self.state.lock();
        let QueueState { log, groups, .. } = &mut *st;
        let Some(g) = groups.iter_mut().find(|g| g.id == group_id) else {
            return Err(Error::ConsumerCancelled(format!(
                "group of queue '{}' deleted",
                self.name
            )));
        };
        let Some(c) = g.consumer_mut(consumer) else {
            return Err(Error::ConsumerCancelled(format!(
                "consumer of queue '{}' cancelled",
                self.name
            )));
        };
        let (credit, credit_bytes) = c.credit();
        let (no_ack, lease, priority, notify) =
            (c.no_ack, c.lease, c.priority, Arc::clone(&c.notify));
        if credit == 0 || credit_bytes == 0 {
            g.set_credit_blocked(consumer);
            return Ok((0, false));
        }
        // Single active consumer: only the longest-standing consumer receives.
        // Consumer priorities: a lower-priority consumer waits while a
        // higher-priority one has room and is waiting.
        let passive = (self.settings.single_active_consumer
            && g.consumers
                .iter()
                .find(|c| !c.stopped)
                .is_some_and(|f| f.id != consumer))
            || g.consumers
                .iter()
                .any(|o| o.id != consumer && o.priority > priority && o.credit().0 > 0);
        if passive {
            g.register_waiter(consumer, &notify);
            return Ok((0, false));
        }
        let src = self.source(log);
        let taker = Taker {
            consumer,
            no_ack,
            lease,
            max: max.min(credit),
            max_bytes: credit_bytes,
        };
        let before = out.len();
        let taken = g.take(&src, &taker, out, &mut fx);
        if !no_ack && let Some(c) = g.consumer_mut(consumer) {
            c.in_flight += taken.count as u32;
            c.in_flight_bytes += taken.bytes;
        }
        if taken.count == 0 && !taken.more {
            g.register_waiter(consumer, &notify);
        }
        let deadline = g.next_deadline();
        g.wake(&mut fx);
        if no_ack {
            self.trim(&mut st);
        }
        st.last_used = Instant::now();
        drop(st);
        if out.len() > before {
            self.touch();
        }
        if let Some(d) = deadline {
            self.schedule(d);
        }
        self.finish(fx);
        Ok((taken.count, taken.more))
    }

    /// Changes a consumer's prefetch window.
    pub(crate) fn set_prefetch(&self, group_id: u32, consumer: u32, count: u32, bytes: u64) {
        let mut st = self.state.lock();
        if let Some(g) = st.groups.iter_mut().find(|g| g.id == group_id)
            && let Some(c) = g.consumer_mut(consumer)
        {
            c.prefetch_count = count;
            c.prefetch_bytes = bytes;
            c.notify.notify_one();
        }
    }

    /// Stops a consumer from receiving while keeping what it holds in flight
    /// (AMQP basic.cancel: unacked deliveries stay acknowledgeable). It no
    /// longer counts as a consumer (exclusivity, single active consumer,
    /// auto-delete); dropping the handle later requeues what is left.
    pub(crate) fn stop_consumer(&self, group_id: u32, consumer: u32) {
        let mut fx = Effects::default();
        let mut st = self.state.lock();
        if let Some(g) = st.groups.iter_mut().find(|g| g.id == group_id)
            && let Some(c) = g.consumer_mut(consumer)
        {
            c.stopped = true;
            // Whoever waited behind it (single active consumer, priorities) may go.
            for c in &g.consumers {
                fx.wake.push(Arc::clone(&c.notify));
            }
        }
        let auto_delete =
            self.auto_delete && st.had_consumers && st.consumer_count() == 0 && !st.deleted;
        drop(st);
        self.finish(fx);
        if auto_delete {
            self.services
                .delete_queue_later(&self.tenant, &self.name, self.id);
        }
    }

    /// Detaches a consumer; what it held goes back to its group.
    pub(crate) fn remove_consumer(&self, group_id: u32, consumer: u32) {
        let mut fx = Effects::default();
        let mut st = self.state.lock();
        let QueueState { log, groups, .. } = &mut *st;
        if let Some(g) = groups.iter_mut().find(|g| g.id == group_id)
            && let Some(pos) = g.consumers.iter().position(|c| c.id == consumer)
        {
            let was_first = pos == 0;
            g.consumers.remove(pos);
            let src = self.source(log);
            g.release_consumer(consumer, &src, &mut fx);
            g.wake(&mut fx);
            if was_first
                && self.settings.single_active_consumer
                && let Some(next) = g.consumers.first()
            {
                fx.wake.push(Arc::clone(&next.notify));
            }
            // A higher-priority consumer left: lower ones may now receive.
            for c in &g.consumers {
                fx.wake.push(Arc::clone(&c.notify));
            }
        }
        st.last_used = Instant::now();
        let auto_delete =
            self.auto_delete && st.had_consumers && st.consumer_count() == 0 && !st.deleted;
        drop(st);
        self.touch();
        self.finish(fx);
        if auto_delete {
            self.services
                .delete_queue_later(&self.tenant, &self.name, self.id);
        }
        if let Some(expires) = self.settings.expires_ms {
            self.schedule(Instant::now() + Duration::from_millis(expires));
        }
    }

    /// Pulls up to `max` messages for a group without a consumer (HTTP, AMQP basic.get).
    pub fn pull(&self, group: &str, req: &PullRequest) -> Result<Vec<Delivery>> {
        let mut out = Vec::new();
        self.pull_into(group, req, &mut out, None)?;
        Ok(out)
    }

    /// Like [`Queue::pull`], but waits up to `wait` for the first message (long poll).
    pub async fn pull_wait(
        &self,
        group: &str,
        req: &PullRequest,
        wait: Duration,
    ) -> Result<Vec<Delivery>> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut out = Vec::new();
        loop {
            // A fresh waiter per round: one the group still holds after this
            // future is gone (client left, round over) is dead, and `wake`
            // skips it (it is only alive while this side holds its Arc too).
            let notify = Arc::new(Notify::new());
            let more = self.pull_into(group, req, &mut out, Some(&notify))?;
            if !out.is_empty() {
                return Ok(out);
            }
            if more {
                continue;
            }
            if tokio::time::timeout_at(deadline, notify.notified())
                .await
                .is_err()
            {
                // A wake-up may have raced the deadline: look once more.
                self.pull_into(group, req, &mut out, None)?;
                return Ok(out);
            }
        }
    }

    fn pull_into(
        &self,
        group: &str,
        req: &PullRequest,
        out: &mut Vec<Delivery>,
        waiter: Option<&Arc<Notify>>,
    ) -> Result<bool> {
        let mut fx = Effects::default();
        let mut st = self.state.lock();
        if st.deleted {
            return Err(Error::not_found("queue", &self.name));
        }
        let i = st.group_index(group)?;
        let filter_changed = Self::check_filter(&mut st.groups[i], req.filter.as_ref())?;
        st.last_used = Instant::now();
        let QueueState { log, groups, .. } = &mut *st;
        let g = &mut groups[i];
        let src = self.source(log);
        let taker = Taker {
            consumer: 0,
            no_ack: req.no_ack,
            lease: req.lease_timeout,
            max: req.max,
            max_bytes: req.max_bytes,
        };
        let taken = g.take(&src, &taker, out, &mut fx);
        if taken.count == 0
            && !taken.more
            && let Some(n) = waiter
        {
            g.register_waiter(0, n);
        }
        let deadline = g.next_deadline();
        g.wake(&mut fx);
        if req.no_ack {
            self.trim(&mut st);
        }
        drop(st);
        if taken.count > 0 || filter_changed {
            self.touch();
        }
        if let Some(d) = deadline {
            self.schedule(d);
        }
        self.finish(fx);
        Ok(taken.more)
    }

    /// Acknowledges a delivery of a group.
    pub fn ack(&self, group: &str, tag: DeliveryTag) -> Result<()> {
        self.settle(GroupRef::Name(group), |g, _src, fx, credit| {
            credit.push(g.ack(tag, fx)?);
            Ok(())
        })
    }

    /// Acknowledges several deliveries of a group under one lock; stops at the
    /// first unknown one (those before it stay acknowledged).
    pub fn ack_many(&self, group: &str, tags: &[DeliveryTag]) -> Result<()> {
        self.settle(GroupRef::Name(group), |g, _src, fx, credit| {
            for &tag in tags {
                credit.push(g.ack(tag, fx)?);
            }
            Ok(())
        })
    }

    /// Returns a delivery: `requeue` hands it out again (until max deliveries),
    /// otherwise it is dead-lettered.
    pub fn nack(&self, group: &str, tag: DeliveryTag, requeue: bool) -> Result<()> {
        self.settle(GroupRef::Name(group), |g, src, fx, credit| {
            credit.push(g.nack(tag, requeue, src, fx)?);
            Ok(())
        })
    }

    pub(crate) fn settle_for(
        &self,
        group_id: u32,
        f: impl FnOnce(&mut Group, &Source, &mut Effects, &mut Vec<(u32, u32)>) -> Result<()>,
    ) -> Result<()> {
        self.settle(GroupRef::Id(group_id), f)
    }

    fn settle(
        &self,
        group: GroupRef,
        f: impl FnOnce(&mut Group, &Source, &mut Effects, &mut Vec<(u32, u32)>) -> Result<()>,
    ) -> Result<()> {
        let mut fx = Effects::default();
        let mut credit = Vec::new();
        let mut st = self.state.lock();
        let QueueState { log, groups, .. } = &mut *st;
        let g = match group {
            GroupRef::Name(n) => groups
                .iter_mut()
                .find(|g| g.name == n)
                .ok_or_else(|| Error::not_found("group", n))?,
            GroupRef::Id(id) => groups.iter_mut().find(|g| g.id == id).ok_or_else(|| {
                Error::ConsumerCancelled(format!("group of queue '{}' deleted", self.name))
            })?,
        };
        let src = self.source(log);
        let result = f(g, &src, &mut fx, &mut credit);
        for &(consumer, size) in &credit {
            if consumer != 0 {
                g.credit_returned(consumer, size, &mut fx);
            }
        }
        g.wake(&mut fx);
        self.trim(&mut st);
        drop(st);
        if !credit.is_empty() {
            self.touch();
        }
        self.finish(fx);
        result
    }

    /// Drops every message not in flight, in every group; returns how many the
    /// default (or first) group dropped.
    pub fn purge(&self) -> Result<u64> {
        let mut fx = Effects::default();
        let mut st = self.state.lock();
        let QueueState { log, groups, .. } = &mut *st;
        let src = self.source(log);
        let mut first = None;
        let mut default = None;
        for g in groups.iter_mut() {
            let n = g.purge(&src, &mut fx);
            first.get_or_insert(n);
            if g.name == DEFAULT_GROUP {
                default = Some(n);
            }
        }
        let none = log.len();
        if st.groups.is_empty() {
            let to = st.log.next_seq;
            self.trim_to(&mut st, to);
        } else {
            self.trim(&mut st);
        }
        drop(st);
        self.touch();
        self.finish(fx);
        Ok(default.or(first).unwrap_or(none))
    }

    /// Counters and gauges.
    pub fn stats(&self) -> QueueStats {
        let st = self.state.lock();
        let now = now_millis();
        let groups = st
            .groups
            .iter()
            .map(|g| GroupStats {
                name: g.name.clone(),
                ready: g.ready_count(&st.log),
                in_flight: g.in_flight(),
                consumers: g.consumers.len(),
                consumer_tags: g.consumers.iter().map(|c| c.tag.clone()).collect(),
                filter: g.filter.as_deref().cloned(),
                counters: g.stats,
                oldest_age_ms: (g.floor() < st.log.next_seq)
                    .then(|| {
                        st.log
                            .in_memory(g.floor())
                            .map(|e| now.saturating_sub(e.msg.published_at))
                    })
                    .flatten(),
                created_at: g.created_at,
            })
            .collect();
        QueueStats {
            retained: st.log.len(),
            retained_bytes: st.log.retained_bytes,
            published: st.published,
            delayed: st.delayed,
            consumers: st.consumer_count(),
            groups,
        }
    }

    /// Messages ready in the default group (RabbitMQ's message count).
    pub fn message_count(&self) -> u64 {
        self.stats().ready()
    }

    /// Consumers over all groups.
    pub fn consumer_count(&self) -> usize {
        self.state.lock().consumer_count()
    }

    /// Finds a retained message by its id and says where it stands in every
    /// group (message tracking). Scans the log: meant for operators, not for
    /// hot paths. `None` when the queue no longer retains it.
    pub fn find_message(&self, id: crate::message::MessageId) -> Option<MessageTrace> {
        let (head, window_start, next) = {
            let st = self.state.lock();
            (st.log.head, st.log.window_start(), st.log.next_seq)
        };
        let mut found: Option<(u64, Arc<Message>)> = None;
        {
            let st = self.state.lock();
            for seq in window_start.max(head)..next {
                if let Some(e) = st.log.in_memory(seq).filter(|e| e.msg.id == id) {
                    found = Some((seq, Arc::clone(&e.msg)));
                    break;
                }
            }
        }
        let mut from = head;
        while found.is_none() && from < window_start {
            let Ok(records) = self.store().read_log(self.id, from, 1024, 8 << 20) else {
                break;
            };
            let Some(last) = records.last().map(|(s, _)| *s) else {
                break;
            };
            for (seq, rec) in records {
                if seq >= window_start {
                    break;
                }
                if let Ok(Some(e)) = Log::entry_from_record(self.store(), &self.settings, rec)
                    && e.msg.id == id
                {
                    found = Some((seq, e.msg));
                    break;
                }
            }
            from = last + 1;
        }
        let (seq, message) = found?;
        let st = self.state.lock();
        let groups = st
            .groups
            .iter()
            .map(|g| (g.name.clone(), g.status_of(seq, &message.tags)))
            .collect();
        Some(MessageTrace {
            seq,
            message,
            groups,
        })
    }

    /// The sequence numbers `[head, next)` the queue retains.
    pub fn bounds(&self) -> (u64, u64) {
        let st = self.state.lock();
        (st.log.head, st.log.next_seq)
    }

    pub(crate) fn restore_published(&self, published: u64) {
        self.state.lock().published = published;
    }

    pub(crate) fn restore_shared(&self, seq: u64, body: u64) {
        self.state.lock().log.shared.insert(seq, body);
    }

    pub(crate) fn delayed_changed(&self, delta: i64) {
        let mut st = self.state.lock();
        st.delayed = st.delayed.saturating_add_signed(delta);
    }

    /// Marks the queue deleted, cancels its consumers and wakes all waiters;
    /// returns the shared-body entries it held.
    pub(crate) fn mark_deleted(&self) -> Vec<(u64, u64)> {
        let mut fx = Effects::default();
        let mut st = self.state.lock();
        st.deleted = true;
        for g in &mut st.groups {
            for c in &g.consumers {
                c.cancelled.store(true, Ordering::Release);
            }
            g.wake_all(&mut fx);
        }
        let shared = std::mem::take(&mut st.log.shared).into_iter().collect();
        drop(st);
        self.finish(fx);
        shared
    }

    /// Timer work: ack deadlines, TTL, queue expiry, retention; re-arms itself.
    pub(crate) fn on_timer(&self) {
        *self.timer_at.lock() = None;
        let mut fx = Effects::default();
        let mut st = self.state.lock();
        if st.deleted {
            return;
        }
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        let mut earliest = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        let QueueState { log, groups, .. } = &mut *st;
        let src = self.source(log);
        let mut freed = Vec::new();
        for g in groups.iter_mut() {
            freed.clear();
            g.expire_leases(&src, &mut fx, &mut freed);
            for &(consumer, size) in &freed {
                if consumer != 0 {
                    g.credit_returned(consumer, size, &mut fx);
                }
            }
            if let Some(at) = g.expire_front(&src, &mut fx) {
                earliest(instant_at(at));
            }
            if let Some(d) = g.next_deadline() {
                earliest(d);
            }
            g.wake(&mut fx);
        }
        if self.settings.retention_ms > 0 && st.log.len() > 0 {
            self.sweep_retention(&mut st);
            earliest(now + Duration::from_secs(1));
        } else {
            self.trim(&mut st);
        }
        let mut expire_queue = false;
        if let Some(ms) = self.settings.expires_ms {
            let unused_since = st.last_used;
            if st.consumer_count() == 0 {
                let at = unused_since + Duration::from_millis(ms);
                if at <= now {
                    expire_queue = true;
                } else {
                    earliest(at);
                }
            }
        }
        drop(st);
        self.touch();
        self.finish(fx);
        if expire_queue {
            self.services
                .delete_queue_later(&self.tenant, &self.name, self.id);
        } else if let Some(n) = next {
            self.schedule(n);
        }
    }

    /// Arms the first timer after creation or recovery.
    pub(crate) fn start_timers(&self) {
        let now = Instant::now();
        if let Some(ms) = self.settings.expires_ms {
            self.schedule(now + Duration::from_millis(ms));
        }
        if self.settings.retention_ms > 0 || self.settings.message_ttl_ms.is_some() {
            self.schedule(now + Duration::from_millis(100));
        }
    }

    /// Notes a use (basic.get, declare) for queue expiry.
    pub fn touch_used(&self) {
        self.state.lock().last_used = Instant::now();
    }
}

enum GroupRef<'a> {
    Name(&'a str),
    Id(u32),
}

impl Snapshot for Queue {
    fn snapshot(&self, out: &mut Vec<Op>) {
        self.dirty.store(false, Ordering::Release);
        let st = self.state.lock();
        if st.deleted {
            return;
        }
        let rec = QueueStateRecord {
            head: st.log.head,
            next_seq: st.log.next_seq,
            retained_bytes: st.log.retained_bytes,
            published: st.published,
        };
        out.push(Store::put_meta(
            KeyBuf::new(kind::QUEUE_STATE).u64(self.id).done(),
            &rec,
        ));
        for g in &st.groups {
            out.push(Store::put_meta(group_key(self.id, &g.name), &g.to_record()));
        }
    }
}

pub(crate) fn group_key(queue: u64, group: &str) -> Vec<u8> {
    KeyBuf::new(kind::GROUP).u64(queue).str(group).done()
}

/// The `Instant` at which a wall-clock time comes.
fn instant_at(at: UnixMillis) -> Instant {
    let now = now_millis();
    Instant::now() + Duration::from_millis(at.saturating_sub(now))
}
