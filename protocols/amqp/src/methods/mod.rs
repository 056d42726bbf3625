//! The methods of channels, one file per AMQP class: each parses nothing (the
//! codec did) and applies the method to the engine, answering on the channel.
//!
//! Checks come in RabbitMQ's order (permission, then existence, then exclusive
//! ownership, then the operation), so clients see the same error RabbitMQ
//! would give for the same mistake.

pub mod basic;
pub mod confirm;
pub mod exchange;
pub mod queue;
pub mod reply_to;
pub mod tx;

use amq_protocol::protocol::AMQPClass;
use gw_core::{Created, Queue};

use crate::error::{AmqpError, AmqpResult};

/// What a declaring method answers, once its change is durable (none for
/// `nowait`), and what it created, taken back if the change cannot be stored.
pub struct Answer {
    pub reply: Option<AMQPClass>,
    pub created: Option<Created>,
}

impl Answer {
    pub fn new(reply: Option<AMQPClass>) -> Answer {
        Answer {
            reply,
            created: None,
        }
    }

    pub fn creating(self, created: Option<Created>) -> Answer {
        Answer { created, ..self }
    }
}

/// A random name suffix, as RabbitMQ's `rabbit_guid:binary/2`: 16 random
/// bytes in URL-safe base64 (22 characters).
pub fn random_suffix() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut raw = [0u8; 16];
    rand::fill(&mut raw);
    let mut bits: u128 = u128::from_be_bytes(raw);
    let mut out = String::with_capacity(22);
    for _ in 0..22 {
        out.push(char::from(ALPHABET[(bits & 63) as usize]));
        bits >>= 6;
    }
    out
}

/// RabbitMQ's 405 for a queue another connection owns (`check_exclusive_access`).
pub fn locked(resource: &str) -> AmqpError {
    AmqpError::resource_locked(format!(
        "cannot obtain exclusive access to locked {resource}. It could be originally declared \
         on another connection or the exclusive property value does not match that of the \
         original declaration."
    ))
}

/// Passes unless the queue is exclusive to another connection.
pub fn check_exclusive(queue: &Queue, conn_id: u64, resource: &str) -> AmqpResult {
    match queue.exclusive_owner() {
        Some(owner) if owner != conn_id => Err(locked(resource)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_suffixes_differ_and_are_url_safe() {
        let a = super::random_suffix();
        let b = super::random_suffix();
        assert_eq!(a.len(), 22);
        assert_ne!(a, b);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }
}
