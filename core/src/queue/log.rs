//! A queue's log: sequence numbers `[head, next_seq)`, the newest part of it
//! held in memory (the window), the rest on disk.
//!
//! Messages leave memory when the window outgrows its budget (oldest first)
//! and leave the log only from the head, once every group has settled them
//! and their retention has passed. Groups read the log through their own
//! cursors; a group behind the window reads from disk (see `crate::group`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::message::{Message, UnixMillis};

use super::settings::QueueSettings;

/// A message as one queue holds it.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub msg: Arc<Message>,
    /// When it expires in this queue (`u64::MAX`: never).
    pub expires_at: UnixMillis,
    /// Bytes accounted against limits.
    pub size: u32,
    /// The store ticket of the write that put it on disk (0: not written).
    /// It stays in memory until that write is applied, so readers never miss it.
    pub ticket: u64,
    /// `ticket` is the write a publisher waits for: consumers may see the
    /// message only once that write is decided (and not at all if it failed),
    /// so nothing is delivered that the publisher is told was not stored.
    pub gated: bool,
    /// Its write failed: the message is not in the queue.
    pub lost: bool,
}

impl Entry {
    pub fn new(msg: Arc<Message>, settings: &QueueSettings) -> Self {
        let ttl = match (msg.ttl_millis(), settings.message_ttl_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let expires_at = ttl.map_or(u64::MAX, |t| msg.published_at.saturating_add(t));
        let size = u32::try_from(msg.accounted_size()).unwrap_or(u32::MAX);
        Entry {
            msg,
            expires_at,
            size,
            ticket: 0,
            gated: false,
            lost: false,
        }
    }

    pub fn is_expired(&self, now: UnixMillis) -> bool {
        self.expires_at <= now
    }

    pub fn priority(&self, max: Option<u8>) -> u8 {
        match max {
            Some(m) => self.msg.properties.priority.unwrap_or(0).min(m),
            None => 0,
        }
    }
}

pub(crate) struct Log {
    pub queue_id: u64,
    /// Oldest sequence number still retained.
    pub head: u64,
    /// Sequence number the next message gets.
    pub next_seq: u64,
    window_start: u64,
    window: VecDeque<Entry>,
    window_bytes: u64,
    /// Bytes of `[head, next_seq)`.
    pub retained_bytes: u64,
    /// Bytes ever appended (groups subtract what they read to know their backlog).
    pub appended_bytes: u64,
    /// Sequence numbers known to have no message (memory-only messages lost in
    /// a restart), so that backlog counts are exact before a group reads past them.
    pub holes: std::collections::BTreeSet<u64>,
    /// Entries stored as references to a shared body: seq → message id.
    pub shared: BTreeMap<u64, u64>,
}

impl Log {
    pub fn new(queue_id: u64, head: u64, next_seq: u64) -> Self {
        Log {
            queue_id,
            head,
            next_seq,
            window_start: next_seq,
            window: VecDeque::new(),
            window_bytes: 0,
            retained_bytes: 0,
            appended_bytes: 0,
            shared: BTreeMap::new(),
            holes: std::collections::BTreeSet::new(),
        }
    }

    /// Messages retained (holes left by lost memory-only messages excluded).
    pub fn len(&self) -> u64 {
        (self.next_seq - self.head).saturating_sub(self.holes.len() as u64)
    }

    pub fn window_start(&self) -> u64 {
        self.window_start
    }

    pub fn window_bytes(&self) -> u64 {
        self.window_bytes
    }

    /// Appends; returns the new entry's sequence number.
    pub fn push(&mut self, entry: Entry) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.window_bytes += u64::from(entry.size);
        self.retained_bytes += u64::from(entry.size);
        self.appended_bytes += u64::from(entry.size);
        self.window.push_back(entry);
        seq
    }

    /// How many of the newest entries consumers cannot see yet because a
    /// write they wait for is not decided (`decided`: the store's decided
    /// ticket). Gated entries get their tickets in order, so the walk from
    /// the newest stops at the first decided one; it looks at 256 entries at
    /// most (a cheap estimate for sharing, not an exact count).
    pub fn undecided_tail(&self, decided: u64) -> u64 {
        let mut undecided = 0;
        for (i, e) in self.window.iter().rev().take(256).enumerate() {
            if e.gated && e.ticket <= decided {
                break;
            }
            if e.gated {
                // This one and every newer entry wait for it.
                undecided = i as u64 + 1;
            }
        }
        undecided
    }

    /// The entry if it is in memory.
    pub fn in_memory(&self, seq: u64) -> Option<&Entry> {
        let i = seq.checked_sub(self.window_start)?;
        self.window.get(usize::try_from(i).ok()?)
    }

    /// In-memory entries, oldest first, for the eviction pass to write out.
    pub fn window_mut(&mut self) -> impl Iterator<Item = (u64, &mut Entry)> {
        let start = self.window_start;
        self.window
            .iter_mut()
            .enumerate()
            .map(move |(i, e)| (start + i as u64, e))
    }

    /// Marks an entry whose write failed as gone; `false` when it is not in
    /// memory (the caller records it as a hole).
    pub fn mark_lost(&mut self, seq: u64) -> bool {
        let Some(i) = seq
            .checked_sub(self.window_start)
            .and_then(|i| usize::try_from(i).ok())
        else {
            return false;
        };
        match self.window.get_mut(i) {
            Some(e) => {
                e.lost = true;
                true
            }
            None => false,
        }
    }

    /// Takes the oldest in-memory entry out of memory (the caller makes sure it is on disk).
    pub fn evict_front(&mut self) -> Option<(u64, Entry)> {
        let e = self.window.pop_front()?;
        let seq = self.window_start;
        self.window_start += 1;
        self.window_bytes -= u64::from(e.size);
        Some((seq, e))
    }

    /// The oldest in-memory entry.
    pub fn front(&self) -> Option<&Entry> {
        self.window.front()
    }

    /// Drops `[head, new_head)` from the log (the store forgets them lazily).
    pub fn trim_head(&mut self, new_head: u64) {
        let new_head = new_head.min(self.next_seq);
        if new_head <= self.head {
            return;
        }
        while self.window_start < new_head {
            let Some(e) = self.window.pop_front() else {
                break;
            };
            self.window_start += 1;
            self.window_bytes -= u64::from(e.size);
            self.retained_bytes = self.retained_bytes.saturating_sub(u64::from(e.size));
        }
        if self.head < self.window_start.min(new_head) {
            // Entries that were only on disk: their sizes are unknown here, so
            // scale the retained bytes down by the share removed.
            let removed = self.window_start.min(new_head) - self.head;
            let total = self.next_seq - self.head;
            if let Some(share) = self
                .retained_bytes
                .saturating_mul(removed)
                .checked_div(total)
            {
                self.retained_bytes -= share;
            }
        }
        self.head = new_head;
        if self.holes.first().is_some_and(|&h| h < new_head) {
            self.holes = self.holes.split_off(&new_head);
        }
        if self.window_start < new_head {
            self.window_start = new_head;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8) -> Entry {
        Entry::new(
            Arc::new(Message::new(vec![n; 10])),
            &QueueSettings::default(),
        )
    }

    #[test]
    fn trim_drops_memory_and_moves_the_head() {
        let mut log = Log::new(1, 0, 0);
        for i in 0..6 {
            log.push(entry(i));
        }
        log.evict_front();
        log.trim_head(4);
        assert_eq!(log.head, 4);
        assert!(log.in_memory(4).is_some());
        assert!(log.in_memory(3).is_none());
        assert_eq!(log.len(), 2);
        log.trim_head(2);
        assert_eq!(log.head, 4, "the head never moves back");
    }
}
