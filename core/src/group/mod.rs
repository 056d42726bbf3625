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
//! ones. A group holds no lock of its own (its queue's guards it) and does no
//! I/O but reads of the log through [`Source`], which a test can back with
//! the memory backend.
//!
//! Files: `take.rs` (how the next message is picked), `settle.rs` (acks,
//! nacks, timeouts, overflow, rewind), `slots.rs` (per-message state),
//! `consumers.rs` (consumers, credit, waiters), `fifo.rs` (per-key order),
//! `delivery.rs` (the public delivery types), `source.rs` (reads).

mod consumers;
mod delivery;
mod fifo;
mod settle;
mod slots;
mod source;
mod take;

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, VecDeque};
use std::time::Instant;

use consumers::Waiter;
pub(crate) use consumers::{ConsumerSlot, Turn};
pub(crate) use delivery::{DeadLetter, Effects};
pub use delivery::{DeathReason, Delivery, DeliveryTag, MessageState};
use fifo::FifoState;
use slots::{Recovered, Slot, SlotState};
pub(crate) use source::Source;
pub(crate) use take::Taker;

use crate::queue::log::{Entry, Log};
use crate::queue::settings::{QueueKind, QueueSettings, TagFilter};
use crate::store::records::{GroupCounters, GroupRecord};

/// How many messages a priority queue's group reads ahead to find the highest priority.
const PRIORITY_LOOKAHEAD: usize = 512;
/// Log entries read from disk at once by a group that is behind the memory window.
const READ_AHEAD: usize = 512;
/// Bound on entries skipped (filtered, expired) in one call, so a lock is never held long.
const MAX_SKIPS_PER_CALL: usize = 4096;

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

#[cfg(test)]
mod tests;
