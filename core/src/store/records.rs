//! The catalog records the engine stores: what a tenant, exchange, binding,
//! queue, group or delayed message is, as data. Backends store them as they
//! like; the disk backend encodes them with postcard, so a change of any of
//! these shapes changes its format string ([`crate::STORE_FORMAT`]).

use serde::{Deserialize, Serialize};

use crate::message::{Headers, Message};
use crate::queue::settings::{QueueSettings, TagFilter};
use crate::routing::spec::{BindingSpec, ExchangeSpec};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct TenantRecord {
    pub name: String,
    pub created_at: u64,
}

/// A user's topic permission (keyed by user, tenant and exchange).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct TopicPermissionRecord {
    pub user: String,
    pub permission: crate::topic_auth::TopicPermission,
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

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct RetainedRecord {
    pub tenant: String,
    pub topic: String,
    pub message: Message,
}
