//! Retained messages, kept by the engine per tenant and topic
//! (`Tenant::set_retained` / `Tenant::retained`), so they survive restarts.
//!
//! Topics are stored in their normalised form: a `.` inside a level is a level
//! separator for the gateway (it becomes one in the routing key, see
//! [`crate::topic`]), so `a.b` and `a/b` are one topic here too, and a
//! subscriber to `a/+` gets the retained message of either.

use std::borrow::Cow;
use std::sync::Arc;

use gw_core::{Message, Tenant, Ticket, now_millis};

use crate::topic;

/// The gateway's form of a topic name or filter: `.` becomes `/`.
pub fn normalize(topic: &str) -> Cow<'_, str> {
    if topic.contains('.') {
        Cow::Owned(topic.replace('.', "/"))
    } else {
        Cow::Borrowed(topic)
    }
}

/// Sets the retained message of `topic` from a PUBLISH with RETAIN set; an
/// empty payload clears it [MQTT-3.3.1-6]. The engine stores it durably when
/// the message is persistent (QoS ≥ 1); the ticket tells when.
pub fn store(tenant: &Tenant, topic: &str, message: &Message) -> Option<Ticket> {
    let topic = normalize(topic);
    if message.body.is_empty() {
        tenant.set_retained(&topic, None)
    } else {
        tenant.set_retained(&topic, Some(message.clone()))
    }
}

/// Retained messages whose topic matches `binding` (the binding key of a
/// plain subscription, not `$share`), skipping those whose message expiry has
/// passed. Matched as live messages are ([`topic::binding_matches`]), so a
/// subscriber gets a retained message exactly when it would get it live.
pub fn matching(tenant: &Tenant, binding: &str) -> Vec<(String, Arc<Message>)> {
    let now = now_millis();
    let mut found =
        tenant.retained(|t| topic::binding_matches(binding, &topic::topic_to_routing_key(t)));
    found.retain(|(_, m)| !expired(m, now));
    // Deterministic order (the store is a hash map): by topic.
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// Whether a message's expiry interval has passed at `now`.
pub fn expired(message: &Message, now: u64) -> bool {
    message
        .ttl_millis()
        .is_some_and(|ttl| message.published_at.saturating_add(ttl) <= now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_dots() {
        assert_eq!(normalize("a/b"), "a/b");
        assert_eq!(normalize("a.b/c"), "a/b/c");
    }

    #[test]
    fn expiry() {
        let mut m = Message::new("x");
        m.published_at = 1_000;
        assert!(!expired(&m, 5_000));
        m.properties.expiration = Some("2000".into());
        assert!(!expired(&m, 2_999));
        assert!(expired(&m, 3_000));
    }
}
