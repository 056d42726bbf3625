//! How deliveries end for a group: ack, nack (requeue or dead-letter), lease
//! timeouts, expiry at the front, a departing consumer, overflow, purge and
//! rewind.

use std::cmp::Reverse;
use std::time::Instant;

use super::slots::{Slot, SlotState};
use super::source::Read;
use super::take::Scan;
use super::{
    DeadLetter, DeathReason, DeliveryTag, Effects, Group, MAX_SKIPS_PER_CALL, Source,
    estimate_scanned,
};
use crate::error::{Error, Result};
use crate::message::UnixMillis;
use crate::queue::log::{Entry, Log};

impl Group {
    pub(super) fn check_in_flight(&self, tag: DeliveryTag) -> Result<(u32, u32)> {
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
            let e = src.random(tag.seq).into_entry();
            self.dead_letter(tag.seq, e, DeathReason::Rejected, fx);
        }
        Ok(r)
    }

    pub(super) fn requeue(&mut self, seq: u64, src: &Source, fx: &mut Effects) {
        let Some(s) = self.slot_mut(seq) else { return };
        if s.state == SlotState::InFlight {
            s.state = SlotState::Ready;
            self.in_flight -= 1;
        }
        let attempts = self.slot(seq).map_or(0, |s| s.attempts);
        if self.max_deliveries.is_some_and(|m| attempts >= m) {
            let e = src.random(seq).into_entry();
            self.dead_letter(seq, e, DeathReason::DeliveryLimit, fx);
        } else {
            self.push_ready(seq);
        }
    }

    pub(super) fn dead_letter(
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
                    Read::Entry(e) if e.is_expired(src.now) => {
                        self.pop_ready();
                        self.stats.expired += 1;
                        self.dead_letter(seq, Some(e), DeathReason::Expired, fx);
                        continue;
                    }
                    Read::Entry(e) if e.expires_at != u64::MAX => return Some(e.expires_at),
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
                        let e = if dead_letter {
                            src.random(seq).into_entry()
                        } else {
                            None
                        };
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
            let e = if dead_letter {
                src.random(seq).into_entry()
            } else {
                None
            };
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
}
