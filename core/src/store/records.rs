//! The records the engine stores, encoded with postcard. Every record type is
//! versioned by the store's format string (see `mod.rs`); a change of any of
//! these shapes changes that string.

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::message::{Headers, Message};
use crate::queue::{QueueSettings, TagFilter};
use crate::routing::{BindingSpec, ExchangeSpec};

/// A message in a queue's log.
#[derive(Serialize, Deserialize)]
pub(crate) struct LogRecord {
    /// Set for a non-persistent message written only to free memory: it is
    /// ignored after a restart (a new epoch).
    pub transient_epoch: Option<u64>,
    pub body: LogBody,
}

#[derive(Serialize, Deserialize)]
pub(crate) enum LogBody {
    Inline(Box<Message>),
    /// Stored once in the `bodies` keyspace because several queues hold it.
    Shared(u64),
}

/// The same as [`LogRecord`] but borrowing the message, so writing does not clone it.
#[derive(Serialize)]
pub(crate) struct LogRecordRef<'a> {
    pub transient_epoch: Option<u64>,
    pub body: LogBodyRef<'a>,
}

#[derive(Serialize)]
pub(crate) enum LogBodyRef<'a> {
    Inline(&'a Message),
    Shared(u64),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct TenantRecord {
    pub name: String,
    pub created_at: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ExchangeRecord {
    pub tenant: String,
    pub name: String,
    pub spec: ExchangeSpec,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct BindingRecord {
    pub tenant: String,
    pub spec: BindingSpec,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct QueueRecord {
    pub id: u64,
    pub tenant: String,
    pub name: String,
    pub settings: QueueSettings,
    pub auto_delete: bool,
    pub arguments: Headers,
    pub created_at: u64,
    /// For a per-group dead-letter queue: the queue id and group it serves.
    pub dead_letters_of: Option<(u64, String)>,
}

/// A queue's counters and log bounds, written with its groups' snapshots.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct QueueStateRecord {
    pub head: u64,
    pub next_seq: u64,
    pub retained_bytes: u64,
    pub published: u64,
}

/// A consumer group: its identity and a snapshot of its delivery state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct GroupRecord {
    pub id: u32,
    pub name: String,
    pub filter: Option<TagFilter>,
    pub created_at: u64,
    /// Every sequence number below is settled.
    pub floor: u64,
    /// Settled ranges `[start, end)` above the floor.
    pub settled: Vec<(u64, u64)>,
    /// Every unsettled message below this may have been delivered.
    pub delivered_hw: u64,
    /// Delivery attempts of unsettled messages that were delivered at least twice.
    pub attempts: Vec<(u64, u32)>,
    pub stats: GroupCounters,
}

/// Monotonic counters of a group, kept across restarts.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct GroupCounters {
    /// Deliveries handed out (first ones and redeliveries).
    pub delivered: u64,
    /// Messages acknowledged.
    pub acked: u64,
    /// Deliveries that were redeliveries.
    pub redelivered: u64,
    /// Messages this group dead-lettered (or dropped for want of a target).
    pub dead_lettered: u64,
    /// Messages skipped by the group's tag filter.
    pub filtered: u64,
    /// Messages that expired before this group got them.
    pub expired: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct DelayedRecord {
    pub tenant: String,
    pub queues: Vec<u64>,
    pub message: Message,
}

/// The same as [`DelayedRecord`], borrowing.
#[derive(Serialize)]
pub(crate) struct DelayedRecordRef<'a> {
    pub tenant: &'a str,
    pub queues: &'a [u64],
    pub message: &'a Message,
}

/// Which (queue, seq) log entries still refer to a body stored once for several queues.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct SharedRefsRecord {
    pub holders: Vec<(u64, u64)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct RetainedRecord {
    pub tenant: String,
    pub topic: String,
    pub message: Message,
}

pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // postcard cannot fail on in-memory structures of these types (no maps with
    // non-string keys, no unsized sequences); an empty record would be refused at
    // decode time and reported as corruption.
    postcard::to_stdvec(value).unwrap_or_default()
}

pub(crate) fn decode<T: for<'de> Deserialize<'de>>(
    keyspace: &'static str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
        keyspace,
        reason: e.to_string(),
    })
}
