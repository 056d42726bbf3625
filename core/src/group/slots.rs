//! The ring of per-message states between a group's floor and its cursor,
//! the ready set (messages to hand out again, by priority then sequence), and
//! what a restart left the group knowing about messages below its old
//! high-water mark.

use std::cmp::Reverse;
use std::collections::{HashMap, VecDeque};

use super::{Effects, Group};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SlotState {
    Settled,
    InFlight,
    Ready,
    /// Held back behind an earlier message of its FIFO key.
    Pending,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Slot {
    pub(super) state: SlotState,
    pub(super) prio: u8,
    pub(super) attempts: u32,
    pub(super) consumer: u32,
    pub(super) size: u32,
}

/// What the group knew before a restart about messages below `hw`.
pub(super) struct Recovered {
    pub(super) settled: VecDeque<(u64, u64)>,
    pub(super) attempts: HashMap<u64, u32>,
    pub(super) hw: u64,
}

impl Group {
    pub(super) fn slot_mut(&mut self, seq: u64) -> Option<&mut Slot> {
        let i = seq.checked_sub(self.floor)?;
        self.slots.get_mut(usize::try_from(i).ok()?)
    }

    pub(super) fn slot(&self, seq: u64) -> Option<&Slot> {
        let i = seq.checked_sub(self.floor)?;
        self.slots.get(usize::try_from(i).ok()?)
    }

    pub(super) fn advance_floor(&mut self) {
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

    /// What the pre-restart state says of `seq`: (attempts so far, already settled).
    pub(super) fn recovered_info(&mut self, seq: u64) -> (u32, bool) {
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

    pub(super) fn push_ready(&mut self, seq: u64) {
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

    pub(super) fn pop_ready(&mut self) -> Option<u64> {
        let (_, seq) = self.ready.pop_first()?;
        let size = self.slot(seq).map_or(0, |s| s.size);
        self.ready_bytes = self.ready_bytes.saturating_sub(u64::from(size));
        Some(seq)
    }

    /// Marks `seq` settled, releases its FIFO key and moves the floor.
    pub(super) fn settle(&mut self, seq: u64, fx: &mut Effects) {
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
}
