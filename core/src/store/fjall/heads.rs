//! How queue logs shrink: not by deleting keys one by one (every delete is a
//! tombstone in the memtable — ~100 bytes of memory each — and a scan hazard)
//! but by telling the LSM's compactions where each queue's log now starts.
//! A compaction filter destroys entries below their queue's head, and entries
//! of queues that no longer exist, as it rewrites tables anyway.
//!
//! Log keys are written once and never rewritten, so destroying an entry
//! without a tombstone cannot resurrect an older version. The filter does
//! nothing until recovery has registered every queue ([`LogHeads::arm`]):
//! before that an unknown queue id may just not be loaded yet.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use fjall::compaction::filter::{
    CompactionFilter, CompactionFilterResult, Context, Factory, ItemAccessor, Verdict,
};
use parking_lot::RwLock;

use super::keys::parse_log_key;

/// Each live queue's first retained sequence number.
#[derive(Default)]
pub(crate) struct LogHeads {
    armed: AtomicBool,
    heads: RwLock<HashMap<u64, u64>>,
    /// Queue ids below this were allocated before the current snapshot of heads.
    id_limit: AtomicU64,
    /// Entries trimmed since the last full compaction (a hint for when to run one).
    pub trimmed: AtomicU64,
}

impl LogHeads {
    /// Registers a queue (before anything is written to its log) or moves its head.
    pub fn set(&self, queue: u64, head: u64) {
        let mut h = self.heads.write();
        let old = h.insert(queue, head).unwrap_or(head);
        drop(h);
        self.trimmed
            .fetch_add(head.saturating_sub(old), Ordering::Relaxed);
        self.id_limit.fetch_max(queue + 1, Ordering::AcqRel);
    }

    /// Forgets a deleted queue: its whole log becomes garbage.
    pub fn remove(&self, queue: u64) {
        self.heads.write().remove(&queue);
        self.trimmed.fetch_add(1, Ordering::Relaxed);
    }

    /// Lets the filter act: every existing queue is registered.
    pub fn arm(&self, next_queue_id: u64) {
        self.id_limit.fetch_max(next_queue_id, Ordering::AcqRel);
        self.armed.store(true, Ordering::Release);
    }
}

/// `AssertUnwindSafe`: the factory only reads the heads under their lock; a
/// panic elsewhere cannot leave them half-updated in a way that matters (heads
/// only grow, and a stale value keeps more, never less).
pub(crate) struct LogFilterFactory(pub std::panic::AssertUnwindSafe<Arc<LogHeads>>);

impl Factory for LogFilterFactory {
    fn name(&self) -> &str {
        "queue-log-heads"
    }

    fn make_filter(&self, _ctx: &Context) -> Box<dyn CompactionFilter> {
        // A copy per compaction: heads only move forward, so a stale copy keeps
        // more than needed, never less. Queues created after the copy have ids
        // at or above `limit` and are kept.
        let heads = &self.0;
        let limit = heads.id_limit.load(Ordering::Acquire);
        Box::new(LogFilter {
            armed: heads.armed.load(Ordering::Acquire),
            heads: heads.heads.read().clone(),
            limit,
        })
    }
}

struct LogFilter {
    armed: bool,
    heads: HashMap<u64, u64>,
    limit: u64,
}

impl CompactionFilter for LogFilter {
    fn filter_item(&mut self, item: ItemAccessor<'_>, _ctx: &Context) -> CompactionFilterResult {
        if !self.armed {
            return Ok(Verdict::Keep);
        }
        let Some((queue, seq)) = parse_log_key(item.key()) else {
            return Ok(Verdict::Keep);
        };
        let dead = match self.heads.get(&queue) {
            Some(&head) => seq < head,
            None => queue < self.limit,
        };
        Ok(if dead {
            Verdict::Destroy
        } else {
            Verdict::Keep
        })
    }
}
