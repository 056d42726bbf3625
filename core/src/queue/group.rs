//! A consumer group: one cursor over a queue's log and the delivery state of
//! every message between its floor and its cursor.
//!
//! ```text
//! available --take--> in flight (lease, optional deadline) --ack--> settled
//!     ^                    | nack(requeue) / deadline passed / consumer gone:
//!     +--------------------+   attempts kept, redelivered next time
//!                          \-- attempts ≥ max deliveries, reject, TTL --> dead letter (settled)
//! ```
//!
//! State per sequence number lives in a ring (`slots`) indexed by
//! `seq - floor`; everything below `floor` is settled, nothing at or above
//! `cursor` has been looked at yet. Messages that became available again
//! (requeued, released by a FIFO key, recovered after a restart) sit in
//! `ready`, ordered by priority then sequence number, and go out before new
//! ones. This file is pure state: no locks, no I/O but reads of the log.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::fifo::FifoState;
use super::log::{Entry, Log};
use super::settings::{QueueKind, QueueSettings, TagFilter};
use crate::error::{Error, Result};
use crate::message::{Message, UnixMillis};
use crate::store::Store;
use crate::store::records::{GroupCounters, GroupRecord};

/// How many messages a priority queue's group reads ahead to find the highest priority.
const PRIORITY_LOOKAHEAD: usize = 512;
/// Log entries read from disk at once by a group that is behind the memory window.
const READ_AHEAD: usize = 512;
/// Bound on entries skipped (filtered, expired) in one call, so a lock is never held long.
const MAX_SKIPS_PER_CALL: usize = 4096;

/// What identifies one delivery of one message to one group: acks must name
/// the attempt they answer, so a late ack of a lease that timed out and went to
/// someone else is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeliveryTag {
    /// The message's sequence number in its queue.
    pub seq: u64,
    /// Which delivery attempt (1 = first).
    pub attempt: u32,
}

/// A message handed to a consumer.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// What to ack it with.
    pub tag: DeliveryTag,
    /// The message.
    pub message: Arc<Message>,
    /// True when it was handed out before (to anyone in this group).
    pub redelivered: bool,
}

impl Delivery {
    /// How many times this group has handed the message out, this time included.
    pub fn delivery_count(&self) -> u32 {
        self.tag.attempt
    }
}

/// Where one message stands for one consumer group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageState {
    /// Waiting to be delivered (again, when `delivery_count` > 0).
    Ready {
        /// Deliveries so far.
        delivery_count: u32,
    },
    /// Waiting for its delivery time.
    Delayed,
    /// Delivered, not yet acknowledged.
    InFlight {
        /// Deliveries so far, this one included.
        delivery_count: u32,
    },
    /// Acknowledged (or dropped by a limit) by this group.
    Settled,
    /// Dead-lettered by this group.
    DeadLettered,
    /// Skipped by the group's tag filter.
    Filtered,
}

/// Why a message was dead-lettered (the `reason` of RabbitMQ's `x-death`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeathReason {
    /// Rejected or nacked without requeue.
    Rejected,
    /// Its TTL passed.
    Expired,
    /// Dropped from the head of a full queue.
    MaxLen,
    /// Delivered unsuccessfully too many times.
    DeliveryLimit,
}

impl DeathReason {
    /// RabbitMQ's name for the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            DeathReason::Rejected => "rejected",
            DeathReason::Expired => "expired",
            DeathReason::MaxLen => "maxlen",
            DeathReason::DeliveryLimit => "delivery_limit",
        }
    }
}

pub(crate) struct DeadLetter {
    pub message: Arc<Message>,
    pub reason: DeathReason,
    pub group: String,
}

/// Work to do once the queue's lock is released.
#[derive(Default)]
pub(crate) struct Effects {
    pub dead: Vec<DeadLetter>,
    pub wake: Vec<Arc<Notify>>,
}

/// Read access to the log for one operation.
pub(crate) struct Source<'a> {
    pub log: &'a Log,
    pub store: &'a Store,
    pub settings: &'a QueueSettings,
    pub now: UnixMillis,
    pub instant: Instant,
}

impl Source<'_> {
    /// Any retained entry, from memory or disk.
    fn random(&self, seq: u64) -> Option<Entry> {
        if seq < self.log.head || seq >= self.log.next_seq {
            return None;
        }
        if let Some(e) = self.log.in_memory(seq) {
            return Some(e.clone());
        }
        let record = self.store.get_log(self.log.queue_id, seq);
        match record.and_then(|r| match r {
            Some(r) => Log::entry_from_record(self.store, self.settings, r),
            None => Ok(None),
        }) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(queue = self.log.queue_id, seq, cause = %e, "cannot read message");
                None
            }
        }
    }

    /// Entries `[from, end)` from disk, at most `n`.
    fn load(&self, from: u64, end: u64, n: usize) -> Vec<(u64, Entry)> {
        let records = match self.store.read_log(self.log.queue_id, from, n, 4 << 20) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(queue = self.log.queue_id, from, cause = %e, "cannot read queue log");
                return Vec::new();
            }
        };
        let mut out = Vec::with_capacity(records.len());
        for (seq, rec) in records {
            if seq >= end {
                break;
            }
            match Log::entry_from_record(self.store, self.settings, rec) {
                Ok(Some(e)) => out.push((seq, e)),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(queue = self.log.queue_id, seq, cause = %e, "cannot read message")
                }
            }
        }
        out
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    Settled,
    InFlight,
    Ready,
    /// Held back behind an earlier message of its FIFO key.
    Pending,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    state: SlotState,
    prio: u8,
    attempts: u32,
    consumer: u32,
    size: u32,
}

/// How a consumer (or a pull) asks for messages.
pub(crate) struct Taker {
    /// 0 for pulls that belong to no consumer.
    pub consumer: u32,
    pub no_ack: bool,
    pub lease: Option<Duration>,
    pub max: usize,
    pub max_bytes: u64,
}

/// What one `take` did.
#[derive(Default, Clone, Copy)]
pub(crate) struct Taken {
    pub count: usize,
    pub bytes: u64,
    /// Stopped early (skip budget): call again without waiting.
    pub more: bool,
}

enum Scan {
    End,
    Skipped,
    Deliverable(u64, Entry),
}

/// A consumer's place in its group.
pub(crate) struct ConsumerSlot {
    pub id: u32,
    pub tag: String,
    pub prefetch_count: u32,
    pub prefetch_bytes: u64,
    pub in_flight: u32,
    pub in_flight_bytes: u64,
    pub no_ack: bool,
    pub lease: Option<Duration>,
    pub notify: Arc<Notify>,
    pub cancelled: Arc<std::sync::atomic::AtomicBool>,
    pub priority: i32,
    pub exclusive: bool,
    /// Cancelled by its client but still holding deliveries (see `Queue::stop_consumer`).
    pub stopped: bool,
    /// In the group's waiter list.
    registered: bool,
    /// Stopped by its prefetch window; woken when an ack frees room.
    credit_blocked: bool,
}

impl ConsumerSlot {
    pub fn new(
        id: u32,
        tag: String,
        notify: Arc<Notify>,
        cancelled: Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        ConsumerSlot {
            id,
            tag,
            prefetch_count: 0,
            prefetch_bytes: 0,
            in_flight: 0,
            in_flight_bytes: 0,
            no_ack: false,
            lease: None,
            notify,
            cancelled,
            priority: 0,
            exclusive: false,
            stopped: false,
            registered: false,
            credit_blocked: false,
        }
    }

    /// How many messages and bytes it may take now.
    pub fn credit(&self) -> (usize, u64) {
        if self.stopped {
            return (0, 0);
        }
        if self.no_ack {
            return (usize::MAX, u64::MAX);
        }
        let count = if self.prefetch_count == 0 {
            usize::MAX
        } else {
            self.prefetch_count.saturating_sub(self.in_flight) as usize
        };
        let bytes = if self.prefetch_bytes == 0 {
            u64::MAX
        } else {
            self.prefetch_bytes.saturating_sub(self.in_flight_bytes)
        };
        (count, bytes)
    }
}

struct Waiter {
    consumer: u32,
    notify: Arc<Notify>,
}

impl Waiter {
    /// A pull's waiter is alive while the pull holds its `Notify` too.
    fn is_alive(&self) -> bool {
        self.consumer != 0 || Arc::strong_count(&self.notify) > 1
    }
}

/// What the group knew before a restart about messages below `hw`.
struct Recovered {
    settled: VecDeque<(u64, u64)>,
    attempts: HashMap<u64, u32>,
    hw: u64,
}

pub(crate) struct Group {
    pub id: u32,
    pub name: String,
    /// Boxed: most groups filter on nothing, and an MQTT deployment has a
    /// group per device.
    pub filter: Option<Box<TagFilter>>,
    pub created_at: u64,
    floor: u64,
    cursor: u64,
    slots: VecDeque<Slot>,
    ready: BTreeSet<(Reverse<u8>, u64)>,
    ready_bytes: u64,
    deadlines: BinaryHeap<Reverse<(Instant, u64, u32)>>,
    in_flight: u64,
    delivered_hw: u64,
    // Boxed: most groups never need them, and an MQTT deployment has a group per device.
    fifo: Option<Box<FifoState>>,
    recovered: Option<Box<Recovered>>,
    read_ahead: VecDeque<(u64, Entry)>,
    scanned_bytes: u64,
    newly_ready: usize,
    max_priority: Option<u8>,
    max_deliveries: Option<u32>,
    pub consumers: Vec<ConsumerSlot>,
    waiters: VecDeque<Waiter>,
    pub stats: GroupCounters,
}

impl Group {
    pub fn new(
        id: u32,
        name: String,
        filter: Option<TagFilter>,
        start: u64,
        settings: &QueueSettings,
        log: &Log,
    ) -> Self {
        Group {
            id,
            name,
            filter: filter.map(Box::new),
            created_at: crate::message::now_millis(),
            floor: start,
            cursor: start,
            slots: VecDeque::new(),
            ready: BTreeSet::new(),
            ready_bytes: 0,
            deadlines: BinaryHeap::new(),
            in_flight: 0,
            delivered_hw: start,
            fifo: (settings.kind == QueueKind::Fifo).then(Box::default),
            recovered: None,
            read_ahead: VecDeque::new(),
            scanned_bytes: estimate_scanned(log, start),
            newly_ready: 0,
            max_priority: settings.max_priority,
            max_deliveries: settings.max_deliveries,
            consumers: Vec::new(),
            waiters: VecDeque::new(),
            stats: GroupCounters::default(),
        }
    }

    /// Rebuilds a group from its last snapshot. Messages that may have been
    /// delivered before the restart come back as redeliveries.
    pub fn from_record(rec: GroupRecord, settings: &QueueSettings, log: &Log) -> Self {
        let floor = rec.floor.max(log.head);
        let mut g = Group::new(rec.id, rec.name, rec.filter, floor, settings, log);
        g.created_at = rec.created_at;
        g.stats = rec.stats;
        g.delivered_hw = rec.delivered_hw.max(floor);
        if rec.delivered_hw > floor {
            g.recovered = Some(Box::new(Recovered {
                settled: rec.settled.into_iter().collect(),
                attempts: rec.attempts.into_iter().collect(),
                hw: rec.delivered_hw,
            }));
        }
        g
    }

    /// A snapshot of the delivery state, small when acks come in order.
    pub fn to_record(&self) -> GroupRecord {
        let mut settled = Vec::new();
        let mut attempts = Vec::new();
        let mut run: Option<(u64, u64)> = None;
        for (i, s) in self.slots.iter().enumerate() {
            let seq = self.floor + i as u64;
            if s.state == SlotState::Settled {
                run = match run {
                    Some((a, b)) if b == seq => Some((a, seq + 1)),
                    Some(r) => {
                        settled.push(r);
                        Some((seq, seq + 1))
                    }
                    None => Some((seq, seq + 1)),
                };
            } else if s.attempts >= 2 {
                attempts.push((seq, s.attempts));
            }
        }
        settled.extend(run);
        // Parts of a pre-restart state not yet re-read keep their information.
        if let Some(r) = &self.recovered {
            settled.extend(
                r.settled
                    .iter()
                    .filter(|(_, b)| *b > self.cursor)
                    .map(|&(a, b)| (a.max(self.cursor), b)),
            );
            attempts.extend(
                r.attempts
                    .iter()
                    .filter(|(s, _)| **s >= self.cursor)
                    .map(|(s, a)| (*s, *a)),
            );
        }
        GroupRecord {
            id: self.id,
            name: self.name.clone(),
            filter: self.filter.as_deref().cloned(),
            created_at: self.created_at,
            floor: self.floor,
            settled,
            delivered_hw: self.delivered_hw,
            attempts,
            stats: self.stats,
        }
    }

    /// Where a message stands for this group (message tracking).
    pub fn status_of(&self, seq: u64, tags: &[String]) -> MessageState {
        if seq < self.floor {
            return MessageState::Settled;
        }
        match self.slot(seq) {
            Some(s) => match s.state {
                SlotState::Settled => MessageState::Settled,
                SlotState::InFlight => MessageState::InFlight {
                    delivery_count: s.attempts,
                },
                SlotState::Ready | SlotState::Pending => MessageState::Ready {
                    delivery_count: s.attempts,
                },
            },
            None if self.filter.as_ref().is_some_and(|f| !f.matches(tags)) => {
                MessageState::Filtered
            }
            None => MessageState::Ready { delivery_count: 0 },
        }
    }

    pub fn floor(&self) -> u64 {
        self.floor
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }

    /// Messages this group has yet to receive (approximate: messages ahead of
    /// the cursor that the filter will skip are counted).
    pub fn ready_count(&self, log: &Log) -> u64 {
        let pending = self.fifo.as_ref().map_or(0, |f| f.pending_total()) as u64;
        let holes = log.holes.range(self.cursor..).count() as u64;
        log.next_seq
            .saturating_sub(self.cursor)
            .saturating_sub(holes)
            + self.ready.len() as u64
            + pending
    }

    /// Bytes this group has yet to receive (approximate, like `ready_count`).
    pub fn ready_bytes(&self, log: &Log) -> u64 {
        log.appended_bytes.saturating_sub(self.scanned_bytes) + self.ready_bytes
    }

    fn slot_mut(&mut self, seq: u64) -> Option<&mut Slot> {
        let i = seq.checked_sub(self.floor)?;
        self.slots.get_mut(usize::try_from(i).ok()?)
    }

    fn slot(&self, seq: u64) -> Option<&Slot> {
        let i = seq.checked_sub(self.floor)?;
        self.slots.get(usize::try_from(i).ok()?)
    }

    fn advance_floor(&mut self) {
        while let Some(s) = self.slots.front() {
            if s.state != SlotState::Settled {
                break;
            }
            self.slots.pop_front();
            self.floor += 1;
        }
        if self.slots.is_empty() {
            self.floor = self.cursor;
        }
    }

    /// Reads the entry at the cursor, from memory or (behind the window) disk.
    fn sequential(&mut self, src: &Source, seq: u64) -> Option<Entry> {
        if seq >= src.log.window_start() {
            self.read_ahead.clear();
            return src.log.in_memory(seq).cloned();
        }
        while self.read_ahead.front().is_some_and(|(s, _)| *s < seq) {
            self.read_ahead.pop_front();
        }
        if self.read_ahead.is_empty() {
            self.read_ahead
                .extend(src.load(seq, src.log.window_start(), READ_AHEAD));
            if self.read_ahead.is_empty() {
                return None;
            }
        }
        match self.read_ahead.front() {
            Some((s, _)) if *s == seq => self.read_ahead.pop_front().map(|(_, e)| e),
            _ => None,
        }
    }

    /// What the pre-restart state says of `seq`: (attempts so far, already settled).
    fn recovered_info(&mut self, seq: u64) -> (u32, bool) {
        let Some(r) = &mut self.recovered else {
            return (0, false);
        };
        if seq >= r.hw {
            self.recovered = None;
            return (0, false);
        }
        while r.settled.front().is_some_and(|&(_, b)| b <= seq) {
            r.settled.pop_front();
        }
        let settled = r.settled.front().is_some_and(|&(a, b)| a <= seq && seq < b);
        let attempts = r.attempts.remove(&seq).unwrap_or(1);
        (attempts, settled)
    }

    /// Looks at the message under the cursor and moves the cursor past it.
    fn scan_next(&mut self, src: &Source, fx: &mut Effects) -> Scan {
        if self.cursor >= src.log.next_seq || self.fifo.as_ref().is_some_and(|f| f.is_full()) {
            return Scan::End;
        }
        let seq = self.cursor;
        let entry = self.sequential(src, seq);
        let (attempts, settled_before) = self.recovered_info(seq);
        self.cursor += 1;
        let Some(e) = entry else {
            self.slots.push_back(Slot {
                state: SlotState::Settled,
                prio: 0,
                attempts,
                consumer: 0,
                size: 0,
            });
            self.advance_floor();
            return Scan::Skipped;
        };
        self.scanned_bytes += u64::from(e.size);
        let prio = e.priority(self.max_priority);
        self.slots.push_back(Slot {
            state: SlotState::Ready,
            prio,
            attempts,
            consumer: 0,
            size: e.size,
        });
        if settled_before {
            self.settle(seq, fx);
            return Scan::Skipped;
        }
        if let Some(f) = &self.filter
            && !f.matches(&e.msg.tags)
        {
            self.stats.filtered += 1;
            self.settle(seq, fx);
            return Scan::Skipped;
        }
        if e.is_expired(src.now) {
            self.stats.expired += 1;
            self.dead_letter(seq, Some(e), DeathReason::Expired, fx);
            return Scan::Skipped;
        }
        if let Some(fifo) = &mut self.fifo {
            let key = e.msg.group_key.as_deref().unwrap_or("");
            if !fifo.admit(key, seq) {
                if let Some(s) = self.slot_mut(seq) {
                    s.state = SlotState::Pending;
                }
                return Scan::Skipped;
            }
        }
        Scan::Deliverable(seq, e)
    }

    fn push_ready(&mut self, seq: u64) {
        if let Some(s) = self.slot_mut(seq) {
            s.state = SlotState::Ready;
            s.consumer = 0;
            let (prio, size) = (s.prio, s.size);
            if self.ready.insert((Reverse(prio), seq)) {
                self.ready_bytes += u64::from(size);
                self.newly_ready += 1;
            }
        }
    }

    fn pop_ready(&mut self) -> Option<u64> {
        let (_, seq) = self.ready.pop_first()?;
        let size = self.slot(seq).map_or(0, |s| s.size);
        self.ready_bytes = self.ready_bytes.saturating_sub(u64::from(size));
        Some(seq)
    }

    /// Hands out up to `t.max` messages (and about `t.max_bytes`) to one taker.
    pub fn take(
        &mut self,
        src: &Source,
        t: &Taker,
        out: &mut Vec<Delivery>,
        fx: &mut Effects,
    ) -> Taken {
        let mut taken = Taken::default();
        let mut skips = 0;
        while taken.count < t.max && taken.bytes < t.max_bytes {
            if skips >= MAX_SKIPS_PER_CALL {
                taken.more = true;
                break;
            }
            if self.max_priority.is_some() && self.ready.len() < PRIORITY_LOOKAHEAD / 2 {
                self.fill_priority(src, fx, &mut skips);
            }
            if let Some(seq) = self.pop_ready() {
                match src.random(seq) {
                    None => {
                        skips += 1;
                        self.settle(seq, fx);
                    }
                    Some(e) if e.is_expired(src.now) => {
                        skips += 1;
                        self.stats.expired += 1;
                        self.dead_letter(seq, Some(e), DeathReason::Expired, fx);
                    }
                    Some(e) => {
                        taken.bytes += u64::from(e.size);
                        taken.count += 1;
                        self.deliver(seq, e, t, src, out, fx);
                    }
                }
                continue;
            }
            if self.max_priority.is_some() {
                break; // fill_priority found nothing more
            }
            match self.scan_next(src, fx) {
                Scan::End => break,
                Scan::Skipped => skips += 1,
                Scan::Deliverable(seq, e) => {
                    taken.bytes += u64::from(e.size);
                    taken.count += 1;
                    self.deliver(seq, e, t, src, out, fx);
                }
            }
        }
        taken
    }

    fn fill_priority(&mut self, src: &Source, fx: &mut Effects, skips: &mut usize) {
        while self.ready.len() < PRIORITY_LOOKAHEAD && *skips < MAX_SKIPS_PER_CALL {
            match self.scan_next(src, fx) {
                Scan::End => break,
                Scan::Skipped => *skips += 1,
                Scan::Deliverable(seq, _) => {
                    self.push_ready(seq);
                    self.newly_ready -= 1;
                }
            }
        }
    }

    fn deliver(
        &mut self,
        seq: u64,
        e: Entry,
        t: &Taker,
        src: &Source,
        out: &mut Vec<Delivery>,
        fx: &mut Effects,
    ) {
        let Some(slot) = self.slot_mut(seq) else {
            return;
        };
        slot.attempts = slot.attempts.saturating_add(1);
        let attempt = slot.attempts;
        if t.no_ack {
            slot.state = SlotState::Settled;
        } else {
            slot.state = SlotState::InFlight;
            slot.consumer = t.consumer;
            self.in_flight += 1;
            if let Some(lease) = t.lease {
                self.deadlines
                    .push(Reverse((src.instant + lease, seq, attempt)));
            }
        }
        self.delivered_hw = self.delivered_hw.max(seq + 1);
        self.stats.delivered += 1;
        if attempt > 1 {
            self.stats.redelivered += 1;
        }
        out.push(Delivery {
            tag: DeliveryTag { seq, attempt },
            message: e.msg,
            redelivered: attempt > 1,
        });
        if t.no_ack {
            self.stats.acked += 1;
            self.settle(seq, fx);
        }
    }

    /// Marks `seq` settled, releases its FIFO key and moves the floor.
    fn settle(&mut self, seq: u64, fx: &mut Effects) {
        let _ = fx;
        if let Some(s) = self.slot_mut(seq) {
            match s.state {
                SlotState::InFlight => self.in_flight -= 1,
                SlotState::Ready => {
                    let key = (Reverse(s.prio), seq);
                    let size = s.size;
                    if self.ready.remove(&key) {
                        self.ready_bytes = self.ready_bytes.saturating_sub(u64::from(size));
                    }
                }
                _ => {}
            }
            if let Some(s) = self.slot_mut(seq) {
                s.state = SlotState::Settled;
            }
        }
        if let Some(next) = self.fifo.as_mut().and_then(|f| f.release(seq)) {
            self.push_ready(next);
        }
        self.advance_floor();
    }

    fn check_in_flight(&self, tag: DeliveryTag) -> Result<(u32, u32)> {
        match self.slot(tag.seq) {
            Some(s) if s.state == SlotState::InFlight && s.attempts == tag.attempt => {
                Ok((s.consumer, s.size))
            }
            _ => Err(Error::UnknownDelivery(format!(
                "{}.{} in group '{}'",
                tag.seq, tag.attempt, self.name
            ))),
        }
    }

    /// Settles a delivery; returns its consumer and size for credit accounting.
    pub fn ack(&mut self, tag: DeliveryTag, fx: &mut Effects) -> Result<(u32, u32)> {
        let r = self.check_in_flight(tag)?;
        self.stats.acked += 1;
        self.settle(tag.seq, fx);
        Ok(r)
    }

    /// Returns a delivery: requeued (until max deliveries) or dead-lettered.
    pub fn nack(
        &mut self,
        tag: DeliveryTag,
        requeue: bool,
        src: &Source,
        fx: &mut Effects,
    ) -> Result<(u32, u32)> {
        let r = self.check_in_flight(tag)?;
        if requeue {
            self.requeue(tag.seq, src, fx);
        } else {
            let e = src.random(tag.seq);
            self.dead_letter(tag.seq, e, DeathReason::Rejected, fx);
        }
        Ok(r)
    }

    fn requeue(&mut self, seq: u64, src: &Source, fx: &mut Effects) {
        let Some(s) = self.slot_mut(seq) else { return };
        if s.state == SlotState::InFlight {
            s.state = SlotState::Ready;
            self.in_flight -= 1;
        }
        let attempts = self.slot(seq).map_or(0, |s| s.attempts);
        if self.max_deliveries.is_some_and(|m| attempts >= m) {
            let e = src.random(seq);
            self.dead_letter(seq, e, DeathReason::DeliveryLimit, fx);
        } else {
            self.push_ready(seq);
        }
    }

    fn dead_letter(
        &mut self,
        seq: u64,
        entry: Option<Entry>,
        reason: DeathReason,
        fx: &mut Effects,
    ) {
        self.stats.dead_lettered += 1;
        if let Some(e) = entry {
            fx.dead.push(DeadLetter {
                message: e.msg,
                reason,
                group: self.name.clone(),
            });
        }
        self.settle(seq, fx);
    }

    /// Requeues deliveries whose ack deadline passed; returns freed (consumer, size) pairs.
    pub fn expire_leases(&mut self, src: &Source, fx: &mut Effects, freed: &mut Vec<(u32, u32)>) {
        while let Some(Reverse((at, seq, attempt))) = self.deadlines.peek().copied() {
            if at > src.instant {
                break;
            }
            self.deadlines.pop();
            if let Ok((consumer, size)) = self.check_in_flight(DeliveryTag { seq, attempt }) {
                freed.push((consumer, size));
                self.requeue(seq, src, fx);
            }
        }
        // Acked leases stay in the heap until their time; drop them when they pile up.
        if self.deadlines.len() > 1024 + 2 * self.in_flight as usize {
            let slots = &self.slots;
            let floor = self.floor;
            self.deadlines.retain(|Reverse((_, seq, attempt))| {
                seq.checked_sub(floor)
                    .and_then(|i| slots.get(i as usize))
                    .is_some_and(|s| s.state == SlotState::InFlight && s.attempts == *attempt)
            });
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Dead-letters expired messages at the front of what this group has to
    /// deliver; returns when the next one there expires, if known.
    pub fn expire_front(&mut self, src: &Source, fx: &mut Effects) -> Option<UnixMillis> {
        for _ in 0..MAX_SKIPS_PER_CALL {
            if let Some(&(Reverse(_), seq)) = self.ready.first() {
                match src.random(seq) {
                    Some(e) if e.is_expired(src.now) => {
                        self.pop_ready();
                        self.stats.expired += 1;
                        self.dead_letter(seq, Some(e), DeathReason::Expired, fx);
                        continue;
                    }
                    Some(e) if e.expires_at != u64::MAX => return Some(e.expires_at),
                    _ => {}
                }
            }
            if self.cursor >= src.log.next_seq {
                return None;
            }
            let expires_at = match src.log.in_memory(self.cursor) {
                Some(e) => e.expires_at,
                // Behind the window: look again in a second.
                None => return Some(src.now + 1000),
            };
            if expires_at > src.now {
                return (expires_at != u64::MAX).then_some(expires_at);
            }
            // Scanning dead-letters it (or hands it back as deliverable, if it
            // was a FIFO head that expired between the two reads).
            if let Scan::Deliverable(seq, _) = self.scan_next(src, fx) {
                self.push_ready(seq);
            }
        }
        Some(src.now + 10)
    }

    /// Requeues everything a departing consumer held.
    pub fn release_consumer(&mut self, consumer: u32, src: &Source, fx: &mut Effects) {
        let held: Vec<u64> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.state == SlotState::InFlight && s.consumer == consumer)
            .map(|(i, _)| self.floor + i as u64)
            .collect();
        for seq in held {
            self.requeue(seq, src, fx);
        }
    }

    /// Drops (or dead-letters) the oldest message this group has yet to
    /// receive; false when it has none.
    pub fn drop_oldest(&mut self, src: &Source, dead_letter: bool, fx: &mut Effects) -> bool {
        let oldest_ready = self.ready.iter().map(|&(_, s)| s).min();
        if self.cursor < src.log.next_seq && oldest_ready.is_none_or(|r| self.cursor < r) {
            let seq = self.cursor;
            match self.scan_next(src, fx) {
                Scan::End => false,
                Scan::Skipped => {
                    if self
                        .slot(seq)
                        .is_some_and(|s| s.state == SlotState::Pending)
                    {
                        if let Some(f) = &mut self.fifo {
                            f.forget_pending(seq);
                        }
                        let e = if dead_letter { src.random(seq) } else { None };
                        self.dead_letter(seq, e, DeathReason::MaxLen, fx);
                    }
                    true
                }
                Scan::Deliverable(seq, e) => {
                    self.dead_letter(seq, dead_letter.then_some(e), DeathReason::MaxLen, fx);
                    true
                }
            }
        } else if let Some(seq) = oldest_ready {
            let e = if dead_letter { src.random(seq) } else { None };
            self.dead_letter(seq, e, DeathReason::MaxLen, fx);
            true
        } else {
            false
        }
    }

    /// Settles everything not in flight; returns how many messages that dropped.
    pub fn purge(&mut self, src: &Source, fx: &mut Effects) -> u64 {
        let dropped = self.ready_count(src.log);
        let waiting: Vec<u64> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s.state, SlotState::Ready | SlotState::Pending))
            .map(|(i, _)| self.floor + i as u64)
            .collect();
        if let Some(f) = &mut self.fifo {
            for &seq in &waiting {
                f.forget_pending(seq);
            }
        }
        for seq in waiting {
            self.settle(seq, fx);
        }
        self.read_ahead.clear();
        self.recovered = None;
        if self.slots.is_empty() {
            self.floor = src.log.next_seq;
        } else {
            for _ in self.cursor..src.log.next_seq {
                self.slots.push_back(Slot {
                    state: SlotState::Settled,
                    prio: 0,
                    attempts: 0,
                    consumer: 0,
                    size: 0,
                });
            }
        }
        self.cursor = src.log.next_seq;
        self.scanned_bytes = src.log.appended_bytes;
        self.advance_floor();
        dropped
    }

    /// Moves the cursor to `seq` and forgets all delivery state (message
    /// tracking: the group reads again from there). Leases in flight become
    /// unknown; their acks are refused.
    pub fn rewind(&mut self, seq: u64, log: &Log) {
        self.floor = seq;
        self.cursor = seq;
        self.delivered_hw = seq;
        self.slots.clear();
        self.ready.clear();
        self.ready_bytes = 0;
        self.deadlines.clear();
        self.in_flight = 0;
        if let Some(f) = &mut self.fifo {
            f.clear();
        }
        self.recovered = None;
        self.read_ahead.clear();
        self.scanned_bytes = estimate_scanned(log, seq);
        self.newly_ready += 1;
        for c in &mut self.consumers {
            c.in_flight = 0;
            c.in_flight_bytes = 0;
        }
    }

    // ---- consumers and waiters ----

    pub fn consumer_mut(&mut self, id: u32) -> Option<&mut ConsumerSlot> {
        self.consumers.iter_mut().find(|c| c.id == id)
    }

    /// Puts a consumer (or, with id 0, a pull) on the list of those woken when
    /// messages become available.
    pub fn register_waiter(&mut self, consumer: u32, notify: &Arc<Notify>) {
        if consumer != 0 {
            match self.consumer_mut(consumer) {
                Some(c) if c.registered => return,
                Some(c) => c.registered = true,
                None => return,
            }
        }
        // Pulls that gave up leave dead entries behind: sweep them now and
        // then (amortized O(1) per registration).
        if self.waiters.len() >= 64 && self.waiters.len().is_power_of_two() {
            self.waiters.retain(Waiter::is_alive);
        }
        if self.waiters.capacity() == 0 {
            // Most groups have one consumer waiting at a time (an MQTT
            // session's queue always): room for one, not the four of a
            // VecDeque's first growth.
            self.waiters.reserve_exact(1);
        }
        self.waiters.push_back(Waiter {
            consumer,
            notify: Arc::clone(notify),
        });
    }

    pub fn set_credit_blocked(&mut self, consumer: u32) {
        if let Some(c) = self.consumer_mut(consumer) {
            c.credit_blocked = true;
        }
    }

    /// Gives a consumer back the credit of settled deliveries.
    pub fn credit_returned(&mut self, consumer: u32, size: u32, fx: &mut Effects) {
        if let Some(c) = self.consumer_mut(consumer) {
            c.in_flight = c.in_flight.saturating_sub(1);
            c.in_flight_bytes = c.in_flight_bytes.saturating_sub(u64::from(size));
            if c.credit_blocked {
                c.credit_blocked = false;
                fx.wake.push(Arc::clone(&c.notify));
            }
        }
    }

    /// Notes that `n` messages arrived (the queue calls this on append).
    pub fn arrived(&mut self, n: usize) {
        self.newly_ready += n;
    }

    /// Wakes one waiter per message that became available since the last call.
    pub fn wake(&mut self, fx: &mut Effects) {
        let mut n = std::mem::take(&mut self.newly_ready);
        while n > 0 {
            let Some(w) = self.waiters.pop_front() else {
                break;
            };
            if !w.is_alive() {
                continue;
            }
            if w.consumer != 0 {
                match self.consumer_mut(w.consumer) {
                    Some(c) => c.registered = false,
                    None => continue,
                }
            }
            fx.wake.push(w.notify);
            n -= 1;
        }
    }

    /// Wakes every waiter (the queue is going away).
    pub fn wake_all(&mut self, fx: &mut Effects) {
        for w in self.waiters.drain(..) {
            fx.wake.push(w.notify);
        }
        for c in &mut self.consumers {
            c.registered = false;
            fx.wake.push(Arc::clone(&c.notify));
        }
    }
}

/// Bytes a group at `seq` has already read, guessed from the average entry size.
fn estimate_scanned(log: &Log, seq: u64) -> u64 {
    let len = log.next_seq.saturating_sub(log.head);
    if len == 0 {
        return log.appended_bytes;
    }
    let unread = log.next_seq.saturating_sub(seq.max(log.head));
    let avg = log.retained_bytes / len;
    log.appended_bytes.saturating_sub(unread * avg)
}
