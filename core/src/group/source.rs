//! Read access to a queue's log for one group operation: the memory window
//! first, then the backend for what is behind it.

use std::time::Instant;

use crate::message::UnixMillis;
use crate::queue::log::{Entry, Log};
use crate::queue::settings::QueueSettings;
use crate::store::Store;

/// Read access to the log for one operation.
pub(crate) struct Source<'a> {
    pub log: &'a Log,
    pub store: &'a Store,
    pub settings: &'a QueueSettings,
    pub now: UnixMillis,
    pub instant: Instant,
}

/// One log position as a group reads it.
pub(crate) enum Read {
    Entry(Entry),
    /// No message there (never stored, trimmed, or its write failed).
    Missing,
    /// Not readable now: its write is not decided yet (the ticket), or the
    /// backend failed to read (`None`). The group stops and looks again.
    Wait(Option<u64>),
}

impl Read {
    /// The entry, when there is one to read now.
    pub(super) fn into_entry(self) -> Option<Entry> {
        match self {
            Read::Entry(e) => Some(e),
            Read::Missing | Read::Wait(_) => None,
        }
    }
}

impl Source<'_> {
    /// An in-memory entry as consumers may see it.
    fn visible(&self, e: &Entry) -> Read {
        if e.lost {
            Read::Missing
        } else if e.gated && e.ticket > self.store.decided_ticket() {
            Read::Wait(Some(e.ticket))
        } else if e.gated && self.store.has_failed(e.ticket) {
            // Decided, but failed: the engine marks it lost on the committer
            // thread; it is not in the queue either way.
            Read::Missing
        } else {
            Read::Entry(e.clone())
        }
    }

    /// Any retained entry, from memory or the backend.
    pub(super) fn random(&self, seq: u64) -> Read {
        if seq < self.log.head || seq >= self.log.next_seq || self.log.holes.contains(&seq) {
            return Read::Missing;
        }
        if let Some(e) = self.log.in_memory(seq) {
            return self.visible(e);
        }
        match self.store.backend().get_log(self.log.queue_id, seq) {
            Ok(Some(m)) => Read::Entry(Entry::new(m, self.settings)),
            Ok(None) => Read::Missing,
            Err(e) => {
                tracing::error!(queue = self.log.queue_id, seq, cause = %e, "cannot read message");
                Read::Wait(None)
            }
        }
    }

    /// In-memory entry `seq`, as consumers may see it.
    pub(super) fn in_window(&self, seq: u64) -> Read {
        match self.log.in_memory(seq) {
            Some(e) => self.visible(e),
            None => Read::Missing,
        }
    }

    /// Entries `[from, end)` from the backend, at most `n`; an error when the
    /// backend cannot be read now.
    pub(super) fn load(&self, from: u64, end: u64, n: usize) -> Result<Vec<(u64, Entry)>, ()> {
        match self
            .store
            .backend()
            .read_log(self.log.queue_id, from, n, 4 << 20)
        {
            Ok(messages) => Ok(messages
                .into_iter()
                .take_while(|(seq, _)| *seq < end)
                .filter(|(seq, _)| !self.log.holes.contains(seq))
                .filter_map(|(seq, m)| Some((seq, Entry::new(m?, self.settings))))
                .collect()),
            Err(e) => {
                tracing::error!(queue = self.log.queue_id, from, cause = %e, "cannot read queue log");
                Err(())
            }
        }
    }
}
