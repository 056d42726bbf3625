//! How a group picks the next message. In order:
//!
//! 1. messages in the ready set (requeued, released by a FIFO key, recovered
//!    after a restart), highest priority first, then by sequence number;
//! 2. otherwise the message under the cursor, which moves on. On the way a
//!    message is skipped (settled for this group) when the group's tag
//!    filter refuses it or a pre-restart snapshot says it was settled, and
//!    dead-lettered when it has expired;
//! 3. in a FIFO queue, a message whose key already has one out (in flight or
//!    waiting for redelivery) is held back as pending (`fifo.rs`) and becomes
//!    ready when that one is settled;
//! 4. in a priority queue the group first reads ahead (up to
//!    `PRIORITY_LOOKAHEAD` messages) into the ready set, so the highest
//!    priority among them goes first.
//!
//! One call stops at the taker's count and byte limits, or after
//! `MAX_SKIPS_PER_CALL` skips so a lock is never held long.

use std::cmp::Reverse;
use std::time::Duration;

use super::slots::{Slot, SlotState};
use super::source::Read;
use super::{
    DeathReason, Delivery, DeliveryTag, Effects, Group, MAX_SKIPS_PER_CALL, PRIORITY_LOOKAHEAD,
    READ_AHEAD, Source,
};
use crate::queue::log::Entry;

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

pub(super) enum Scan {
    End,
    Skipped,
    Deliverable(u64, Entry),
}

impl Group {
    /// Reads the entry at the cursor, from memory or (behind the window) disk.
    pub(super) fn sequential(&mut self, src: &Source, seq: u64) -> Read {
        if seq >= src.log.window_start() {
            self.read_ahead.clear();
            return src.in_window(seq);
        }
        while self.read_ahead.front().is_some_and(|(s, _)| *s < seq) {
            self.read_ahead.pop_front();
        }
        if self.read_ahead.is_empty() {
            match src.load(seq, src.log.window_start(), READ_AHEAD) {
                Ok(entries) => self.read_ahead.extend(entries),
                Err(()) => return Read::Wait(None),
            }
            if self.read_ahead.is_empty() {
                return Read::Missing;
            }
        }
        match self.read_ahead.front() {
            Some((s, _)) if *s == seq => match self.read_ahead.pop_front() {
                Some((_, e)) => Read::Entry(e),
                None => Read::Missing,
            },
            _ => Read::Missing,
        }
    }

    /// Looks at the message under the cursor and moves the cursor past it.
    pub(super) fn scan_next(&mut self, src: &Source, fx: &mut Effects) -> Scan {
        if self.cursor >= src.log.next_seq || self.fifo.as_ref().is_some_and(|f| f.is_full()) {
            return Scan::End;
        }
        let seq = self.cursor;
        let entry = match self.sequential(src, seq) {
            Read::Entry(e) => Some(e),
            Read::Missing => None,
            Read::Wait(ticket) => {
                // Not visible yet: the cursor stays until it is.
                fx.wait_for(ticket);
                return Scan::End;
            }
        };
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
                    Read::Missing => {
                        skips += 1;
                        self.settle(seq, fx);
                    }
                    Read::Wait(ticket) => {
                        // Unreadable now: keep it ready and stop.
                        self.push_ready(seq);
                        self.newly_ready -= 1;
                        fx.wait_for(ticket);
                        break;
                    }
                    Read::Entry(e) if e.is_expired(src.now) => {
                        skips += 1;
                        self.stats.expired += 1;
                        self.dead_letter(seq, Some(e), DeathReason::Expired, fx);
                    }
                    Read::Entry(e) => {
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

    pub(super) fn fill_priority(&mut self, src: &Source, fx: &mut Effects, skips: &mut usize) {
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

    pub(super) fn deliver(
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
}
