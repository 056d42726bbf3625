//! The one storage trait: everything durable the engine needs.
//!
//! The engine never sees keys or files. It submits typed [`Write`]s to the
//! committer (`commit.rs`), which hands them to the backend in batches; it
//! reads a queue's log from a sequence number; and at start it loads the
//! catalog, then each queue's counters, groups and log bounds. A backend is
//! told where each queue's log now starts, so it can drop what is below.
//!
//! Two backends implement it: an embedded LSM store on the local disk and memory
//! (`memory.rs`, for tests). Both pass the same behavioural suite
//! (`core/tests/backends.rs`).

use std::sync::Arc;

use super::records::{
    BindingRecord, DelayedRecord, ExchangeRecord, GroupRecord, QueueRecord, QueueStateRecord,
    RetainedRecord, TenantRecord, TopicPermissionRecord,
};
use super::writes::Write;
use crate::auth::UserRecord;
use crate::error::StoreError;
use crate::message::Message;

/// Entries of a queue's log: sequence number and message (`None`: gone).
pub(crate) type LogRead = Vec<(u64, Option<Arc<Message>>)>;
/// Delayed messages keyed by (due, id).
pub(crate) type DelayedSchedule = Vec<((u64, u64), DelayedRecord)>;
/// A door's records of one namespace, as (key, value).
pub(crate) type AdapterRecords = Vec<(Vec<u8>, Vec<u8>)>;

/// What the engine recovers at start, before it loads each queue.
#[derive(Default)]
pub(crate) struct Catalog {
    /// Message ids are reserved below this (the next free one, or 1).
    pub next_message_id: u64,
    /// The next queue id (or 1).
    pub next_queue_id: u64,
    pub users: Vec<UserRecord>,
    pub topic_permissions: Vec<TopicPermissionRecord>,
    pub tenants: Vec<TenantRecord>,
    pub exchanges: Vec<ExchangeRecord>,
    pub queues: Vec<QueueRecord>,
    pub bindings: Vec<BindingRecord>,
    /// Bodies stored once: id → the (queue, seq) entries that refer to them.
    pub shared_bodies: Vec<(u64, Vec<(u64, u64)>)>,
    pub retained: Vec<RetainedRecord>,
}

/// One queue's durable state, read when the queue is recovered.
#[derive(Default)]
pub(crate) struct StoredQueue {
    /// Counters and log bounds as of the last snapshot.
    pub state: QueueStateRecord,
    /// Its groups, by id.
    pub groups: Vec<GroupRecord>,
    /// The highest sequence number in its log.
    pub last_seq: Option<u64>,
}

/// A durable store. Writes come only from the committer thread, in order;
/// reads from any thread.
pub(crate) trait Backend: Send + Sync + 'static {
    /// Applies a batch, in order. On `Ok` every write can be read back and
    /// survives the process being killed. On `Err` any prefix of the batch
    /// may have been applied.
    fn write(&self, batch: &[Write]) -> Result<(), StoreError>;

    /// Makes everything written so far survive a power loss.
    fn sync(&self) -> Result<(), StoreError>;

    /// After a failed write or sync, makes the backend writable again if it
    /// can (the disk backend reopens its database, replaying its journal). `Ok` means
    /// writes may be tried again; what is stored is what survived.
    fn recover(&self) -> Result<(), StoreError>;

    /// Up to `max` entries of a queue's log from `from` on, stopping after
    /// about `max_bytes`. An entry whose message is gone (a memory-only
    /// message of an earlier run, a shared body already deleted) comes as
    /// `None`, so callers still see how far the log goes.
    fn read_log(
        &self,
        queue: u64,
        from: u64,
        max: usize,
        max_bytes: u64,
    ) -> Result<LogRead, StoreError>;

    /// One message of a queue's log (`None` as for `read_log`).
    fn get_log(&self, queue: u64, seq: u64) -> Result<Option<Arc<Message>>, StoreError>;

    /// Sequence numbers in `[from, to)` with no entry at all (memory-only
    /// messages lost in a restart), or `None` past `limit` of them.
    fn log_holes(
        &self,
        queue: u64,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Option<Vec<u64>>, StoreError>;

    /// Everything but queue state, for recovery.
    fn load_catalog(&self) -> Result<Catalog, StoreError>;

    /// One queue's counters, groups and last sequence number.
    fn load_queue(&self, id: u64) -> Result<StoredQueue, StoreError>;

    /// Every delayed message, in due order, keyed by (due, id).
    fn load_delayed(&self) -> Result<DelayedSchedule, StoreError>;

    /// The (due, id) keys of every delayed message.
    fn delayed_keys(&self) -> Result<Vec<(u64, u64)>, StoreError>;

    /// One delayed message.
    fn get_delayed(&self, due: u64, id: u64) -> Result<Option<DelayedRecord>, StoreError>;

    /// A door's records of one namespace, as (key, value).
    fn load_adapter_state(&self, namespace: &str) -> Result<AdapterRecords, StoreError>;

    /// A queue's log now starts at `head`: entries below it may go. Called
    /// with head 0 when a queue is created or recovered, before anything is
    /// written to its log.
    fn set_log_head(&self, queue: u64, head: u64);

    /// A queue is gone: its whole log may go.
    fn drop_log(&self, queue: u64);

    /// Recovery has registered every queue (ids below `next_queue_id`): logs
    /// of ids not registered belong to deleted queues.
    fn catalog_loaded(&self, next_queue_id: u64);

    /// True while the backend's own buffers grow faster than it writes them
    /// out (publishers should slow down).
    fn under_pressure(&self) -> bool;

    /// Bytes the backend occupies on disk (0 for memory).
    fn disk_bytes(&self) -> u64;

    /// Makes everything written durable and stops background work.
    fn close(&self) -> Result<(), StoreError>;
}

/// The sequence numbers of `[from, to)` missing from `present` (ascending),
/// or `None` past `limit` of them.
pub(crate) fn holes_between(
    from: u64,
    to: u64,
    present: impl IntoIterator<Item = u64>,
    limit: usize,
) -> Option<Vec<u64>> {
    let mut holes = Vec::new();
    let mut expected = from;
    for seq in present.into_iter().chain([to]) {
        while expected < seq.min(to) {
            holes.push(expected);
            expected += 1;
            if holes.len() > limit {
                return None;
            }
        }
        expected = expected.max(seq.saturating_add(1));
    }
    Some(holes)
}

#[cfg(test)]
mod tests {
    use super::holes_between;

    #[test]
    fn holes_are_the_missing_numbers() {
        assert_eq!(holes_between(0, 5, [1, 3], 10), Some(vec![0, 2, 4]));
        assert_eq!(holes_between(2, 4, [], 10), Some(vec![2, 3]));
        assert_eq!(holes_between(0, 3, [0, 1, 2], 10), Some(vec![]));
        assert_eq!(holes_between(0, 100, [], 3), None);
    }
}
