//! What a consumer group hands out and reports: the public delivery types
//! (tag, delivery, per-group message state, death reason) and the work a
//! group leaves for its queue to do once the queue's lock is released.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::message::Message;

/// What identifies one delivery of one message to one group: acks must name
/// the attempt they answer, so a late ack of a lease that timed out and went to
/// someone else is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeliveryTag {
    /// The message's sequence number in its queue.
    pub seq: u64,
    /// Which delivery attempt (1 = first).
    pub attempt: u32,
}

/// A message handed to a consumer.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// What to ack it with.
    pub tag: DeliveryTag,
    /// The message.
    pub message: Arc<Message>,
    /// True when it was handed out before (to anyone in this group).
    pub redelivered: bool,
}

impl Delivery {
    /// How many times this group has handed the message out, this time included.
    pub fn delivery_count(&self) -> u32 {
        self.tag.attempt
    }
}

/// Where one message stands for one consumer group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageState {
    /// Waiting to be delivered (again, when `delivery_count` > 0).
    Ready {
        /// Deliveries so far.
        delivery_count: u32,
    },
    /// Waiting for its delivery time.
    Delayed,
    /// Delivered, not yet acknowledged.
    InFlight {
        /// Deliveries so far, this one included.
        delivery_count: u32,
    },
    /// Acknowledged (or dropped by a limit) by this group.
    Settled,
    /// Dead-lettered by this group.
    DeadLettered,
    /// Skipped by the group's tag filter.
    Filtered,
}

/// Why a message was dead-lettered (the `reason` of RabbitMQ's `x-death`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeathReason {
    /// Rejected or nacked without requeue.
    Rejected,
    /// Its TTL passed.
    Expired,
    /// Dropped from the head of a full queue.
    MaxLen,
    /// Delivered unsuccessfully too many times.
    DeliveryLimit,
}

impl DeathReason {
    /// RabbitMQ's name for the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            DeathReason::Rejected => "rejected",
            DeathReason::Expired => "expired",
            DeathReason::MaxLen => "maxlen",
            DeathReason::DeliveryLimit => "delivery_limit",
        }
    }
}

pub(crate) struct DeadLetter {
    pub message: Arc<Message>,
    pub reason: DeathReason,
    pub group: String,
}

/// Work to do once the queue's lock is released.
#[derive(Default)]
pub(crate) struct Effects {
    pub dead: Vec<DeadLetter>,
    pub wake: Vec<Arc<Notify>>,
    /// A group stopped at a message whose write is not decided yet: wake
    /// its consumers once this ticket is.
    pub await_ticket: Option<u64>,
    /// A read of the backend failed: look again a little later.
    pub retry_read: bool,
}

impl Effects {
    /// A group stopped at something not readable now (see `Read::Wait`).
    pub fn wait_for(&mut self, ticket: Option<u64>) {
        match ticket {
            Some(t) => self.await_ticket = self.await_ticket.max(Some(t)),
            None => self.retry_read = true,
        }
    }
}
