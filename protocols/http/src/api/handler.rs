//! The `handler` a consume answers with and an ack hands back. It names the
//! delivery completely, so the server keeps no per-consumer state: which
//! queue (its engine id, so a handler of a deleted and re-created queue is
//! refused), which group, whether it came from the group's dead letters, and
//! the engine's delivery tag (sequence number and attempt, so an ack of a
//! delivery whose `ack_wait` passed and that went to someone else is refused).
//!
//! A handler is signed with the node's key ([`gw_core::Engine::sign`]), so
//! another consumer of the group cannot make one up or alter one (acking a
//! message it was never given, or dead-lettering someone else's): a handler
//! whose signature does not match is refused before anything is acked.
//!
//! Format: `h2` followed by base64url (no padding) of
//! `flags u8 · queue id u64 · seq u64 · attempt u32 · group (UTF-8) · signature [16]`,
//! big-endian; the signature covers every byte before it.

use base64::Engine as _;
use gw_core::{DeliveryTag, Engine, SIGNATURE_LEN};

/// Longest group name a handler carries (the engine's name limit).
const MAX_GROUP: usize = gw_core::MAX_NAME_LEN;
const PREFIX: &str = "h2";
/// What the signature is for: nothing else the node signs can pass for a handler.
const PURPOSE: &str = "dms consumption handler";
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
    /// The signed handler string.
    pub fn encode(&self, engine: &Engine) -> String {
        let mut raw = Vec::with_capacity(FIXED + self.group.len() + SIGNATURE_LEN);
        raw.push(if self.dead_letter {
            FLAG_DEAD_LETTER
        } else {
            0
        });
        raw.extend_from_slice(&self.queue.to_be_bytes());
        raw.extend_from_slice(&self.tag.seq.to_be_bytes());
        raw.extend_from_slice(&self.tag.attempt.to_be_bytes());
        raw.extend_from_slice(self.group.as_bytes());
        let signature = engine.sign(PURPOSE, &raw);
        raw.extend_from_slice(&signature);
        let mut s = String::with_capacity(2 + raw.len() * 4 / 3 + 4);
        s.push_str(PREFIX);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(&raw, &mut s);
        s
    }

    /// Reads a handler string; `None` when it is not one this node signed.
    pub fn decode(s: &str, engine: &Engine) -> Option<Handler> {
        let body = s.strip_prefix(PREFIX)?;
        if body.len() > (FIXED + MAX_GROUP + SIGNATURE_LEN) * 4 / 3 + 4 {
            return None;
        }
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .ok()?;
        if raw.len() < FIXED + 1 + SIGNATURE_LEN || raw.len() > FIXED + MAX_GROUP + SIGNATURE_LEN {
            return None;
        }
        let (raw, signature) = raw.split_at(raw.len() - SIGNATURE_LEN);
        if !engine.signature_matches(PURPOSE, raw, signature) {
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
    use gw_core::{EngineConfig, MemoryStore};
    use proptest::prelude::*;
    use std::sync::OnceLock;

    /// One in-memory engine for every case: opening one per case would
    /// dominate the property tests' time.
    fn engine() -> &'static Engine {
        static ENGINE: OnceLock<Engine> = OnceLock::new();
        ENGINE.get_or_init(|| {
            Engine::open(EngineConfig::in_memory(&MemoryStore::new())).expect("memory engine")
        })
    }

    #[test]
    fn refuses_foreign_strings() {
        for s in [
            "",
            "h2",
            "h2!!!!",
            "xyz",
            "h1AAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "h2AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert_eq!(Handler::decode(s, engine()), None, "{s}");
        }
    }

    #[test]
    fn another_nodes_handler_is_refused() {
        let h = Handler {
            queue: 7,
            group: "g".into(),
            dead_letter: false,
            tag: DeliveryTag { seq: 1, attempt: 1 },
        };
        let other =
            Engine::open(EngineConfig::in_memory(&MemoryStore::new())).expect("memory engine");
        assert_eq!(Handler::decode(&h.encode(&other), engine()), None);
        assert_eq!(Handler::decode(&h.encode(engine()), engine()), Some(h));
    }

    proptest! {
        #[test]
        fn round_trips(queue: u64, seq: u64, attempt: u32, dead_letter: bool, group in "[A-Za-z0-9_.\u{e9}-]{1,40}") {
            let h = Handler { queue, group, dead_letter, tag: DeliveryTag { seq, attempt } };
            let s = h.encode(engine());
            prop_assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            prop_assert_eq!(Handler::decode(&s, engine()), Some(h));
        }

        #[test]
        fn never_panics(s in ".{0,160}") {
            let _ = Handler::decode(&s, engine());
        }

        /// Any change to the bytes a handler carries (another sequence
        /// number, another group, a flipped flag) is refused.
        #[test]
        fn altered_handlers_are_refused(queue: u64, seq: u64, attempt: u32, byte in 0usize..40, bit in 0u8..8) {
            let h = Handler { queue, group: "group-1".into(), dead_letter: false, tag: DeliveryTag { seq, attempt } };
            let s = h.encode(engine());
            let mut raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&s[2..]).unwrap();
            let i = byte % raw.len();
            raw[i] ^= 1 << bit;
            let forged = format!("h2{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw));
            prop_assert_eq!(Handler::decode(&forged, engine()), None);
        }

        #[test]
        fn cut_handlers_are_refused(queue: u64, seq: u64, attempt: u32, cut in 1usize..10) {
            let h = Handler { queue, group: "g".into(), dead_letter: false, tag: DeliveryTag { seq, attempt } };
            let s = h.encode(engine());
            let shorter = &s[..s.len().saturating_sub(cut)];
            prop_assert_eq!(Handler::decode(shorter, engine()), None);
        }
    }
}
