//! The typed writes the engine hands to storage. Each names what it changes
//! (a queue, a binding, a log entry), never how a backend lays it out: the
//! disk backend turns them into keys, the memory backend into map entries.

use std::sync::Arc;

use super::records::{
    BindingRecord, ExchangeRecord, GroupRecord, QueueRecord, QueueStateRecord, TenantRecord,
    TopicPermissionRecord,
};
use crate::auth::UserRecord;
use crate::message::Message;

/// The id counters the engine keeps across restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Counter {
    /// Message (and shared body) ids are reserved up to this value.
    MessageIds,
    /// The next queue id.
    QueueIds,
}

impl Counter {
    /// The counter's stored name.
    pub fn name(self) -> &'static str {
        match self {
            Counter::MessageIds => "message_id",
            Counter::QueueIds => "queue_id",
        }
    }
}

/// One write. Writes are applied in the order they were submitted.
pub(crate) enum Write {
    Tenant(TenantRecord),
    ForgetTenant(String),
    User(UserRecord),
    ForgetUser(String),
    /// A user's topic permission on one exchange of a tenant.
    TopicPermission(TopicPermissionRecord),
    ForgetTopicPermission {
        user: String,
        tenant: String,
        exchange: String,
    },
    Exchange(ExchangeRecord),
    ForgetExchange {
        tenant: String,
        name: String,
    },
    Binding(BindingRecord),
    ForgetBinding(BindingRecord),
    /// A queue's declaration.
    Queue(QueueRecord),
    /// A queue's declaration, its counters and the named groups' snapshots.
    ForgetQueue {
        id: u64,
        groups: Vec<String>,
    },
    /// A queue's counters and log bounds.
    QueueState(u64, QueueStateRecord),
    /// A consumer group's identity and delivery-state snapshot.
    Group(u64, GroupRecord),
    ForgetGroup {
        queue: u64,
        group: String,
    },
    /// A message in a queue's log. `transient`: a non-persistent message
    /// written only to free memory; it must not come back after a restart.
    Append {
        queue: u64,
        seq: u64,
        message: Arc<Message>,
        transient: bool,
    },
    /// Removes one log entry (whose publish was refused after a failed
    /// write, in case part of that write survived).
    ForgetEntry {
        queue: u64,
        seq: u64,
    },
    /// A log entry that refers to a body stored once for several queues.
    AppendShared {
        queue: u64,
        seq: u64,
        body: u64,
    },
    /// A body stored once for several durable queues.
    Body {
        id: u64,
        message: Arc<Message>,
    },
    ForgetBody(u64),
    /// Which (queue, seq) entries still refer to a shared body.
    SharedRefs {
        body: u64,
        holders: Vec<(u64, u64)>,
    },
    ForgetSharedRefs(u64),
    /// A message waiting for its delivery time, and the queues it goes to then.
    Delayed {
        due: u64,
        id: u64,
        tenant: Arc<str>,
        queues: Vec<u64>,
        message: Arc<Message>,
    },
    ForgetDelayed {
        due: u64,
        id: u64,
    },
    /// A tenant's retained message for a topic (MQTT).
    Retained {
        tenant: Arc<str>,
        topic: String,
        message: Arc<Message>,
    },
    ForgetRetained {
        tenant: Arc<str>,
        topic: String,
    },
    /// A door's own record (MQTT sessions and the like).
    AdapterState {
        namespace: String,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    ForgetAdapterState {
        namespace: String,
        key: Vec<u8>,
    },
    Counter(Counter, u64),
    /// Writes nothing; its ticket is durable once everything before it is
    /// (queue snapshots marked dirty before it included).
    Barrier,
}

impl Write {
    /// About how many bytes the write holds in memory until it is applied.
    pub fn approx_bytes(&self) -> usize {
        match self {
            Write::Append { message, .. }
            | Write::Body { message, .. }
            | Write::Delayed { message, .. }
            | Write::Retained { message, .. } => message.body.len() + 64,
            Write::AdapterState { key, value, .. } => key.len() + value.len() + 32,
            Write::SharedRefs { holders, .. } => holders.len() * 16 + 16,
            _ => 64,
        }
    }
}
