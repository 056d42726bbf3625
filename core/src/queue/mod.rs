//! Queues: a durable, ordered log of messages read by consumer groups.
//!
//! A [`Queue`] is shared (`Arc`) by the tenant's registry, bindings, consumers
//! and timers. All of its mutable state sits behind one mutex, held only for
//! in-memory work (and, for a group reading behind the memory window, one
//! bounded disk read). Anything that reaches outside the queue — waking
//! consumers, dead-lettering into other queues, deleting an auto-delete queue —
//! is collected as [`Effects`] and done after the lock is released, so two
//! queues never hold each other's locks.
//!
//! What a queue needs from outside itself (storage, timers, dead-lettering
//! into other queues) it reaches through [`Services`] (`services.rs`), never
//! through the engine.
//!
//! Files, by job: `append.rs` (a message comes in), `limits.rs` (max length
//! and bytes), `retention.rs` (the log shrinks), `groups.rs` (create, delete,
//! rewind), `consume.rs` (push consumers), `pull.rs` (pulls, long polls),
//! `settle.rs` (ack, nack, purge), `inspect.rs` (stats, message tracking),
//! `timers.rs` (deadlines, TTL, expiry), `snapshot.rs` (durable state),
//! `log.rs` (the log and its memory window), `settings.rs`, `consumer.rs`
//! (the consumer handle). How a group picks the next message is in
//! `crate::group`.

mod append;
mod consume;
mod consumer;
mod groups;
mod inspect;
mod limits;
pub(crate) mod log;
mod pull;
mod retention;
mod services;
pub(crate) mod settings;
mod settle;
mod snapshot;
mod timers;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub use consumer::{Consumer, ConsumerSpec, PullRequest};
pub(crate) use log::{Entry, Log};
pub(crate) use services::{QueueHost, Services};
pub use settings::{
    DeadLetterTarget, Overflow, QueueKind, QueueSettings, StartPosition, TagFilter,
};

use crate::error::{Error, Result};
use crate::group::{Effects, Group, MessageState, Source};
use crate::message::{Headers, Message, UnixMillis, now_millis};
use crate::store::records::{GroupCounters, GroupRecord};
use crate::store::{AwaitsTicket, Snapshot, Store, Ticket};

/// How long a queue waits before trying a failed read of the backend again.
const READ_RETRY: Duration = Duration::from_millis(200);

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
    /// A read of the backend failed; the timer wakes consumers to try again.
    retry_reads: AtomicBool,
}

pub(crate) struct QueueState {
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
        // Registered before anything is written to the log, so the backend
        // keeps what is written.
        services.store.backend().set_log_head(init.id, log.head);
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
            retry_reads: AtomicBool::new(false),
        })
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
        if let Some(ticket) = fx.await_ticket {
            let me: Weak<dyn AwaitsTicket> = self.me.clone();
            self.store().when_decided(ticket, me);
        }
        if fx.retry_read {
            self.retry_reads.store(true, Ordering::Release);
            self.schedule(Instant::now() + READ_RETRY);
        }
    }

    /// Log entries whose write failed: no consumer may see them (the
    /// publisher was told they were not stored).
    pub(crate) fn mark_lost(&self, seqs: &[u64]) {
        let mut st = self.state.lock();
        for &seq in seqs {
            if seq >= st.log.head && seq < st.log.next_seq && !st.log.mark_lost(seq) {
                // Already out of memory: readers of the backend skip it.
                st.log.holes.insert(seq);
            }
        }
    }

    /// Wakes every consumer and waiter of every group: what they stopped at
    /// may be readable now.
    fn wake_everyone(&self) {
        let mut fx = Effects::default();
        let mut st = self.state.lock();
        for g in &mut st.groups {
            g.wake_all(&mut fx);
        }
        drop(st);
        self.finish(fx);
    }

    /// Arms the queue's timer for `at` unless an earlier one is armed.
    fn schedule(&self, at: Instant) {
        let mut t = self.timer_at.lock();
        if t.is_none_or(|cur| at < cur) {
            *t = Some(at);
            drop(t);
            let me: Weak<dyn crate::timers::Timed> = self.me.clone();
            self.services.timers.add(at, me);
        }
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
}

/// The `Instant` at which a wall-clock time comes.
fn instant_at(at: UnixMillis) -> Instant {
    let now = now_millis();
    Instant::now() + Duration::from_millis(at.saturating_sub(now))
}

/// Consumers stopped at a message not yet stored look again once it is
/// (stored or failed).
impl AwaitsTicket for Queue {
    fn ticket_decided(&self) {
        self.wake_everyone();
    }
}
