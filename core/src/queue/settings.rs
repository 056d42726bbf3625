//! What a queue is declared with: its kind, limits and what happens to messages
//! that cannot be delivered. Settings are fixed at declaration; declaring an
//! existing queue with other settings fails, as in RabbitMQ.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::names::check_name;

/// One hour in milliseconds.
const HOUR_MS: u64 = 3_600_000;

/// Standard queues hand out messages in parallel with best-effort order; FIFO
/// queues keep strict order per message group key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum QueueKind {
    /// Many messages of a group in flight at once.
    #[default]
    Standard,
    /// The next message of an order waits until the one before it is settled.
    Fifo,
}

/// What a full queue does with one more message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Overflow {
    /// Drop the oldest ready message (RabbitMQ's default).
    #[default]
    DropHead,
    /// Refuse the new message (the publisher gets a negative confirm).
    RejectPublish,
    /// Dead-letter the oldest ready message.
    DeadLetterHead,
    /// Refuse the new message and dead-letter it (reason `maxlen`), as
    /// RabbitMQ's `reject-publish-dlx`: the publisher still gets a negative
    /// confirm.
    RejectPublishDlx,
}

/// Where dead letters go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeadLetterTarget {
    /// Republished to an exchange of the same tenant, with this routing key or
    /// the message's own routing key (RabbitMQ's `x-dead-letter-exchange`).
    Exchange {
        /// The exchange name ("" = default exchange).
        exchange: String,
        /// Replaces the routing key when set.
        routing_key: Option<String>,
    },
    /// Appended to a named queue of the same tenant.
    Queue(String),
    /// Every consumer group gets its own dead-letter queue, readable only through
    /// that group (the DMS model).
    PerGroup,
}

/// A queue's settings. `Default` gives the engine's defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSettings {
    /// Standard or FIFO.
    pub kind: QueueKind,
    /// How long a settled message stays readable for rewinds, in ms.
    /// 0 deletes a message as soon as every group has settled it (AMQP-classic).
    pub retention_ms: u64,
    /// How long a delivery may stay unacknowledged before it is handed out
    /// again, in ms. `None`: until the consumer goes away (AMQP's behaviour).
    pub ack_timeout_ms: Option<u64>,
    /// After this many unsuccessful deliveries a message is dead-lettered (or dropped).
    pub max_deliveries: Option<u32>,
    /// Where dead letters go; without a target they are dropped.
    pub dead_letter: Option<DeadLetterTarget>,
    /// Messages older than this (ms since publish) are expired.
    pub message_ttl_ms: Option<u64>,
    /// The queue is deleted after being unused this long (ms).
    pub expires_ms: Option<u64>,
    /// Most ready messages per group.
    pub max_length: Option<u64>,
    /// Most ready bytes (bodies) per group.
    pub max_bytes: Option<u64>,
    /// What happens past `max_length` / `max_bytes`.
    pub overflow: Overflow,
    /// When set, messages with a higher `priority` property are delivered first (1–255).
    pub max_priority: Option<u8>,
    /// Only one consumer of a group receives at a time; the next takes over when it leaves.
    pub single_active_consumer: bool,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            kind: QueueKind::Standard,
            retention_ms: 72 * HOUR_MS,
            ack_timeout_ms: Some(30_000),
            max_deliveries: None,
            dead_letter: None,
            message_ttl_ms: None,
            expires_ms: None,
            max_length: None,
            max_bytes: None,
            overflow: Overflow::DropHead,
            max_priority: None,
            single_active_consumer: false,
        }
    }
}

impl QueueSettings {
    /// Settings as an AMQP client expects of a classic queue: delete on ack, no
    /// ack timeout.
    pub fn classic() -> Self {
        QueueSettings {
            retention_ms: 0,
            ack_timeout_ms: None,
            ..QueueSettings::default()
        }
    }

    /// Refuses values outside what the engine supports.
    pub fn validate(&self) -> Result<()> {
        const TEN_YEARS_MS: u64 = 10 * 365 * 24 * HOUR_MS;
        if self.retention_ms > TEN_YEARS_MS {
            return Err(Error::invalid("retention", "longer than 10 years"));
        }
        if let Some(t) = self.ack_timeout_ms
            && (t == 0 || t > 7 * 24 * HOUR_MS)
        {
            return Err(Error::invalid("ack timeout", "must be 1 ms to 7 days"));
        }
        if self.max_deliveries == Some(0) {
            return Err(Error::invalid("max deliveries", "must be at least 1"));
        }
        // RabbitMQ bounds TTLs by 2^32-1 ms.
        if self.message_ttl_ms.is_some_and(|t| t > u64::from(u32::MAX)) {
            return Err(Error::invalid(
                "message ttl",
                "must be at most 4294967295 ms",
            ));
        }
        if let Some(e) = self.expires_ms
            && (e == 0 || e > u64::from(u32::MAX))
        {
            return Err(Error::invalid("queue expiry", "must be 1 to 4294967295 ms"));
        }
        if self.max_priority == Some(0) {
            return Err(Error::invalid("max priority", "must be 1 to 255"));
        }
        match &self.dead_letter {
            Some(DeadLetterTarget::Queue(q)) => check_name("dead-letter queue", q)?,
            Some(DeadLetterTarget::Exchange {
                routing_key: Some(k),
                ..
            }) => crate::names::check_key("dead-letter routing key", k)?,
            _ => {}
        }
        Ok(())
    }
}

/// Which tags a consumer group wants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagFilter {
    /// The tags to look for.
    pub tags: Vec<String>,
    /// `true`: the message must carry all of them; `false`: any one is enough.
    pub match_all: bool,
}

impl TagFilter {
    /// True when a message with these tags passes the filter.
    pub fn matches(&self, message_tags: &[String]) -> bool {
        let has = |t: &String| message_tags.iter().any(|m| m == t);
        if self.match_all {
            self.tags.iter().all(has)
        } else {
            self.tags.iter().any(has)
        }
    }

    /// Refuses empty filters and bad tag names.
    pub fn validate(&self) -> Result<()> {
        if self.tags.is_empty() {
            return Err(Error::invalid("tag filter", "names no tag"));
        }
        for t in &self.tags {
            check_name("tag", t)?;
        }
        Ok(())
    }
}

/// Where a new consumer group starts reading, or where a rewind moves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum StartPosition {
    /// The oldest message the queue still retains.
    #[default]
    Oldest,
    /// Only messages published from now on.
    Latest,
    /// The first message published at or after this time (ms since epoch).
    Time(u64),
    /// This sequence number (clamped to what is retained).
    Sequence(u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_refused() {
        assert!(QueueSettings::default().validate().is_ok());
        assert!(QueueSettings::classic().validate().is_ok());
        let bad = [
            QueueSettings {
                ack_timeout_ms: Some(0),
                ..Default::default()
            },
            QueueSettings {
                max_deliveries: Some(0),
                ..Default::default()
            },
            QueueSettings {
                message_ttl_ms: Some(u64::MAX),
                ..Default::default()
            },
            QueueSettings {
                retention_ms: u64::MAX,
                ..Default::default()
            },
            QueueSettings {
                expires_ms: Some(0),
                ..Default::default()
            },
            QueueSettings {
                max_priority: Some(0),
                ..Default::default()
            },
            QueueSettings {
                dead_letter: Some(DeadLetterTarget::Queue(String::new())),
                ..Default::default()
            },
        ];
        for s in bad {
            assert!(s.validate().is_err(), "{s:?}");
        }
    }

    #[test]
    fn tag_filters_any_and_all() {
        let tags = vec!["a".to_string(), "b".to_string()];
        let any = TagFilter {
            tags: vec!["b".into(), "z".into()],
            match_all: false,
        };
        let all = TagFilter {
            tags: vec!["b".into(), "z".into()],
            match_all: true,
        };
        assert!(any.matches(&tags));
        assert!(!all.matches(&tags));
        assert!(!any.matches(&[]));
        assert!(
            TagFilter {
                tags: vec![],
                match_all: false
            }
            .validate()
            .is_err()
        );
    }
}
