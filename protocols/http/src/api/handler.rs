//! The `handler` a consume answers with and an ack hands back. It names the
//! delivery completely, so the server keeps no per-consumer state: which
//! queue (its engine id, so a handler of a deleted and re-created queue is
//! refused), which group, whether it came from the group's dead letters, and
//! the engine's delivery tag (sequence number and attempt, so an ack of a
//! delivery whose `ack_wait` passed and that went to someone else is refused).
//!
//! Format: `h1` followed by base64url (no padding) of
//! `flags u8 · queue id u64 · seq u64 · attempt u32 · group (UTF-8)`, big-endian.

use base64::Engine as _;
use gw_core::DeliveryTag;

/// Longest group name a handler carries (the engine's name limit).
const MAX_GROUP: usize = gw_core::MAX_NAME_LEN;
const PREFIX: &str = "h1";
const FIXED: usize = 1 + 8 + 8 + 4;
const FLAG_DEAD_LETTER: u8 = 1;

/// A decoded handler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handler {
    /// The DMS queue's engine id.
    pub queue: u64,
    /// The consumer group (of the DMS queue, also for dead letters).
    pub group: String,
    /// From the group's dead letters.
    pub dead_letter: bool,
    /// The delivery.
    pub tag: DeliveryTag,
}

impl Handler {
    /// The handler string.
    pub fn encode(&self) -> String {
        let mut raw = Vec::with_capacity(FIXED + self.group.len());
        raw.push(if self.dead_letter {
            FLAG_DEAD_LETTER
        } else {
            0
        });
        raw.extend_from_slice(&self.queue.to_be_bytes());
        raw.extend_from_slice(&self.tag.seq.to_be_bytes());
        raw.extend_from_slice(&self.tag.attempt.to_be_bytes());
        raw.extend_from_slice(self.group.as_bytes());
        let mut s = String::with_capacity(2 + raw.len() * 4 / 3 + 4);
        s.push_str(PREFIX);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(&raw, &mut s);
        s
    }

    /// Reads a handler string; `None` when it is not one of ours.
    pub fn decode(s: &str) -> Option<Handler> {
        let body = s.strip_prefix(PREFIX)?;
        if body.len() > (FIXED + MAX_GROUP) * 4 / 3 + 4 {
            return None;
        }
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .ok()?;
        if raw.len() < FIXED + 1 || raw.len() > FIXED + MAX_GROUP {
            return None;
        }
        let flags = *raw.first()?;
        if flags & !FLAG_DEAD_LETTER != 0 {
            return None;
        }
        let u64_at = |i: usize| -> Option<u64> {
            Some(u64::from_be_bytes(raw.get(i..i + 8)?.try_into().ok()?))
        };
        let queue = u64_at(1)?;
        let seq = u64_at(9)?;
        let attempt = u32::from_be_bytes(raw.get(17..21)?.try_into().ok()?);
        let group = std::str::from_utf8(raw.get(FIXED..)?).ok()?.to_owned();
        Some(Handler {
            queue,
            group,
            dead_letter: flags & FLAG_DEAD_LETTER != 0,
            tag: DeliveryTag { seq, attempt },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn refuses_foreign_strings() {
        for s in [
            "",
            "h1",
            "h1!!!!",
            "xyz",
            "h2AAAA",
            "h1AAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert_eq!(Handler::decode(s), None, "{s}");
        }
    }

    proptest! {
        #[test]
        fn round_trips(queue: u64, seq: u64, attempt: u32, dead_letter: bool, group in "[A-Za-z0-9_.\u{e9}-]{1,40}") {
            let h = Handler { queue, group, dead_letter, tag: DeliveryTag { seq, attempt } };
            let s = h.encode();
            prop_assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            prop_assert_eq!(Handler::decode(&s), Some(h));
        }

        #[test]
        fn never_panics(s in ".{0,120}") {
            let _ = Handler::decode(&s);
        }

        #[test]
        fn tampering_changes_or_breaks_it(queue: u64, seq: u64, attempt: u32, cut in 1usize..10) {
            let h = Handler { queue, group: "g".into(), dead_letter: false, tag: DeliveryTag { seq, attempt } };
            let s = h.encode();
            let shorter = &s[..s.len().saturating_sub(cut)];
            prop_assert_ne!(Handler::decode(shorter), Some(h));
        }
    }
}
