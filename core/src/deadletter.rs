//! What a message looks like after being dead-lettered: RabbitMQ's `x-death`
//! history and `x-first-death-*` / `x-last-death-*` headers, so that tools
//! written for RabbitMQ read our dead letters unchanged.
//!
//! `x-death` is an array of tables, newest first, one per (queue, reason)
//! with a `count`; dead-lettering again for the same pair moves that entry to
//! the front and increments its count. An expired message loses its
//! `expiration` property, kept as `original-expiration` in its entry.

use crate::group::DeathReason;
use crate::message::{HeaderValue, Headers, Message};

/// The message as it leaves `queue` for its dead-letter target.
pub(crate) fn dead_lettered(
    original: &Message,
    queue: &str,
    reason: DeathReason,
    now: u64,
) -> Message {
    let mut m = original.clone();
    let reason_s = reason.as_str();
    let mut deaths = match m.headers.remove("x-death") {
        Some(HeaderValue::Array(a)) => a,
        _ => Vec::new(),
    };
    let same = |t: &HeaderValue| match t {
        HeaderValue::Table(h) => {
            h.get("queue").and_then(HeaderValue::as_str) == Some(queue)
                && h.get("reason").and_then(HeaderValue::as_str) == Some(reason_s)
        }
        _ => false,
    };
    let mut entry = match deaths.iter().position(same) {
        Some(i) => match deaths.remove(i) {
            HeaderValue::Table(h) => h,
            _ => Headers::new(),
        },
        None => Headers::new(),
    };
    let count = entry
        .get("count")
        .and_then(HeaderValue::as_i64)
        .unwrap_or(0)
        + 1;
    entry.set("count", HeaderValue::I64(count));
    entry.set("reason", HeaderValue::string(reason_s));
    entry.set("queue", HeaderValue::string(queue));
    entry.set("time", HeaderValue::Timestamp(now / 1000));
    entry.set("exchange", HeaderValue::string(original.exchange.clone()));
    entry.set(
        "routing-keys",
        HeaderValue::Array(vec![HeaderValue::string(original.routing_key.clone())]),
    );
    if reason == DeathReason::Expired
        && let Some(exp) = m.properties.expiration.take()
    {
        entry.set("original-expiration", HeaderValue::string(exp));
    }
    deaths.insert(0, HeaderValue::Table(entry));
    m.headers.set("x-death", HeaderValue::Array(deaths));
    if m.headers.get("x-first-death-reason").is_none() {
        m.headers
            .set("x-first-death-reason", HeaderValue::string(reason_s));
        m.headers
            .set("x-first-death-queue", HeaderValue::string(queue));
        m.headers.set(
            "x-first-death-exchange",
            HeaderValue::string(original.exchange.clone()),
        );
    }
    m.headers
        .set("x-last-death-reason", HeaderValue::string(reason_s));
    m.headers
        .set("x-last-death-queue", HeaderValue::string(queue));
    m.headers.set(
        "x-last-death-exchange",
        HeaderValue::string(original.exchange.clone()),
    );
    m.published_at = now;
    m
}

/// True when dead-lettering `m` into `queue` would go round a cycle with no
/// rejection in it (RabbitMQ drops such messages rather than loop forever).
pub(crate) fn is_cycle(m: &Message, queue: &str) -> bool {
    let Some(HeaderValue::Array(deaths)) = m.headers.get("x-death") else {
        return false;
    };
    let mut seen = false;
    for d in deaths {
        if let HeaderValue::Table(h) = d {
            if h.get("reason").and_then(HeaderValue::as_str) == Some("rejected") {
                return false;
            }
            if h.get("queue").and_then(HeaderValue::as_str) == Some(queue) {
                seen = true;
            }
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x_death_counts_per_queue_and_reason() {
        let mut m = Message::new("b");
        m.exchange = "ex".into();
        m.routing_key = "rk".into();
        m.properties.expiration = Some("100".into());
        let once = dead_lettered(&m, "q1", DeathReason::Expired, 5_000);
        assert_eq!(once.properties.expiration, None);
        let twice = dead_lettered(&once, "q1", DeathReason::Expired, 6_000);
        let other = dead_lettered(&twice, "q2", DeathReason::Rejected, 7_000);
        let Some(HeaderValue::Array(d)) = other.headers.get("x-death") else {
            panic!("no x-death")
        };
        assert_eq!(d.len(), 2);
        let HeaderValue::Table(first) = &d[0] else {
            panic!()
        };
        assert_eq!(first.get("queue").and_then(HeaderValue::as_str), Some("q2"));
        let HeaderValue::Table(second) = &d[1] else {
            panic!()
        };
        assert_eq!(second.get("count"), Some(&HeaderValue::I64(2)));
        assert_eq!(
            second
                .get("original-expiration")
                .and_then(HeaderValue::as_str),
            Some("100")
        );
        assert_eq!(
            other
                .headers
                .get("x-first-death-queue")
                .and_then(HeaderValue::as_str),
            Some("q1")
        );
        assert_eq!(
            other
                .headers
                .get("x-last-death-reason")
                .and_then(HeaderValue::as_str),
            Some("rejected")
        );
        assert!(is_cycle(&twice, "q1"));
        assert!(!is_cycle(&other, "q1"));
    }
}
