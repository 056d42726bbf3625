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

impl Source<'_> {
    /// Any retained entry, from memory or the backend.
    pub(super) fn random(&self, seq: u64) -> Option<Entry> {
        if seq < self.log.head || seq >= self.log.next_seq {
            return None;
        }
        if let Some(e) = self.log.in_memory(seq) {
            return Some(e.clone());
        }
        match self.store.backend().get_log(self.log.queue_id, seq) {
            Ok(m) => m.map(|m| Entry::new(m, self.settings)),
            Err(e) => {
                tracing::error!(queue = self.log.queue_id, seq, cause = %e, "cannot read message");
                None
            }
        }
    }

    /// Entries `[from, end)` from the backend, at most `n`.
    pub(super) fn load(&self, from: u64, end: u64, n: usize) -> Vec<(u64, Entry)> {
        match self
            .store
            .backend()
            .read_log(self.log.queue_id, from, n, 4 << 20)
        {
            Ok(messages) => messages
                .into_iter()
                .take_while(|(seq, _)| *seq < end)
                .filter_map(|(seq, m)| Some((seq, Entry::new(m?, self.settings))))
                .collect(),
            Err(e) => {
                tracing::error!(queue = self.log.queue_id, from, cause = %e, "cannot read queue log");
                Vec::new()
            }
        }
    }
}
