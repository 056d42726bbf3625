//! What an MQTT session is made of, and how it is kept.
//!
//! A session is an engine queue bound to `amq.topic`, one binding per
//! subscription filter (binding key from [`topic::filter_to_binding_key`]),
//! plus the MQTT state around it: subscription options, QoS 2 packet ids in
//! either direction and a will waiting for its delay. Persistent sessions
//! (clean session 0 / an expiry above 0) use a durable queue and keep that
//! state in a [`SessionRecord`] stored with `Engine::put_state` under
//! [`SESSION_NS`], so they survive reconnects and restarts; clean sessions use
//! an exclusive queue deleted when the connection ends and store nothing.
//!
//! Packet identifiers of deliveries from the session queue are not stored:
//! they are derived from the message's sequence number in the queue
//! ([`session_pid`]), so a message handed out again after a reconnect or a
//! restart gets its original packet id [MQTT-4.4.0-1] without a write per
//! delivery. Other deliveries (shared subscriptions, retained messages) take
//! ids from a separate range ([`LOCAL_PID_FIRST`]..).

use gw_core::{Message, QueueSettings, TagFilter, now_millis};
use serde::{Deserialize, Serialize};

use crate::topic;

/// `Engine::put_state` namespace of session records.
pub const SESSION_NS: &str = "mqtt-session";
/// Prefix of session queue names (followed by the client id).
pub const SESSION_QUEUE_PREFIX: &str = "mqtt-session-";
/// Prefix of shared-subscription queue names (followed by the filter).
pub const SHARED_QUEUE_PREFIX: &str = "mqtt-shared-";
/// Packet ids `1..LOCAL_PID_FIRST` are derived from queue sequence numbers.
pub const LOCAL_PID_FIRST: u16 = 32_769;
/// MQTT 5 "the session does not expire".
pub const NEVER_EXPIRES: u32 = u32::MAX;

/// The packet id of a session-queue delivery: the same for every delivery
/// of one message, across reconnects and restarts.
pub fn session_pid(seq: u64) -> u16 {
    (seq % u64::from(LOCAL_PID_FIRST - 1)) as u16 + 1
}

/// A client's identity within the gateway: tenant and client id (two clients
/// with one id in different tenants are different clients).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientKey(String);

impl ClientKey {
    /// Tenant names and client ids never contain U+0000, so it separates them.
    pub fn new(tenant: &str, client_id: &str) -> Self {
        ClientKey(format!("{tenant}\0{client_id}"))
    }

    /// The tenant.
    pub fn tenant(&self) -> &str {
        self.0.split('\0').next().unwrap_or_default()
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        self.0.split_once('\0').map_or("", |(_, c)| c)
    }

    /// The key of the session's record.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// The session queue's name for a client id. Client ids are limited so that
/// it fits an engine name ([`max_client_id_len`]).
pub fn session_queue_name(client_id: &str) -> String {
    format!("{SESSION_QUEUE_PREFIX}{client_id}")
}

/// Longest client id the gateway accepts (3.1.1 servers may refuse long ids;
/// MQTT 5 answers 0x85 Client Identifier not valid).
pub fn max_client_id_len() -> usize {
    gw_core::MAX_NAME_LEN - SESSION_QUEUE_PREFIX.len()
}

/// The shared queue of a filter. Filters too long for an engine name are
/// named by a 64-bit FNV-1a hash plus their start; deliveries are matched
/// against the filter again, so even a hash collision delivers nothing wrong.
pub fn shared_queue_name(filter: &str) -> String {
    let name = format!("{SHARED_QUEUE_PREFIX}{filter}");
    if name.len() <= gw_core::MAX_NAME_LEN {
        return name;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in filter.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut start = 180;
    while !filter.is_char_boundary(start) {
        start -= 1;
    }
    format!(
        "{SHARED_QUEUE_PREFIX}{hash:016x}-{}",
        filter.get(..start).unwrap_or_default()
    )
}

/// Queue settings of session and shared queues: AMQP-classic (deleted once
/// acknowledged, no ack timeout: MQTT never re-sends to a connected client).
pub fn queue_settings(max_len: Option<u64>) -> QueueSettings {
    QueueSettings {
        max_length: max_len,
        ..QueueSettings::classic()
    }
}

/// A persistent session queue's engine expiry: a backstop only. The
/// registry ends sessions at their own expiry (which a later CONNECT or a
/// DISCONNECT may change, and which may be "never"); the engine deletes the
/// queue only if it stays unused a minute longer than any session may last,
/// e.g. when its record was lost. `None` beyond what the engine supports.
pub fn backstop_expiry_ms(max_session_expiry_secs: u32) -> Option<u64> {
    let ms = u64::from(max_session_expiry_secs) * 1000 + 60_000;
    (max_session_expiry_secs != NEVER_EXPIRES && ms <= u64::from(u32::MAX)).then_some(ms)
}

/// One subscription with its options (MQTT 5 § 3.8.3.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// The filter as subscribed (without the `$share/{name}/` prefix).
    /// (Strings as `Box<str>`: a session keeps its subscriptions for life.)
    pub filter: Box<str>,
    /// The ShareName of a `$share/{name}/{filter}` subscription.
    pub share: Option<Box<str>>,
    /// Maximum QoS.
    pub qos: u8,
    /// No Local: not the session's own publishes.
    pub no_local: bool,
    /// Retain As Published.
    pub retain_as_published: bool,
    /// Retain Handling (0, 1, 2).
    pub retain_handling: u8,
    /// MQTT 5 Subscription Identifier.
    pub id: Option<u32>,
    /// The AMQP binding key of the filter.
    pub binding: Box<str>,
    /// `x-tags` / `x-tag-match` of the SUBSCRIBE ([`crate::tags`]); boxed, as
    /// most subscriptions have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Box<TagFilter>>,
}

impl Subscription {
    /// Does a message with this routing key match (MQTT's `$` rule included)?
    pub fn matches(&self, routing_key: &str) -> bool {
        topic::binding_matches(&self.binding, routing_key)
    }

    /// Does this message reach the subscription: its topic matches and its
    /// tags pass the subscription's tag filter, if any.
    pub fn admits(&self, message: &Message) -> bool {
        self.matches(&message.routing_key) && self.tags_admit(message)
    }

    /// Whether the message's tags pass the subscription's tag filter.
    pub fn tags_admit(&self, message: &Message) -> bool {
        self.tags.as_ref().is_none_or(|f| f.matches(&message.tags))
    }
}

/// A will waiting for its connection to end (or, with `due_at`, for its delay).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WillRecord {
    /// The will topic, normalised ([`crate::retain::normalize`]), for the retained store.
    pub topic: String,
    /// Will Retain.
    pub retain: bool,
    /// The message, ready to publish to `amq.topic`.
    pub message: Message,
    /// Will Delay Interval, already capped by the session expiry.
    pub delay_secs: u32,
    /// When a disconnected session's will is due (ms since the epoch).
    pub due_at: Option<u64>,
}

/// A persistent session as stored between connections.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Tenant of the client.
    pub tenant: String,
    /// Client id.
    pub client_id: String,
    /// Session Expiry Interval in seconds ([`NEVER_EXPIRES`]: never).
    pub expiry_secs: u32,
    /// The session queue, once the first subscription created it.
    pub queue: Option<String>,
    /// Subscriptions, shared ones included.
    pub subscriptions: Vec<Subscription>,
    /// QoS 2 publishes received and PUBREC'd, waiting for PUBREL.
    pub incoming_qos2: Vec<u16>,
    /// QoS 2 deliveries PUBREC'd by the client, waiting for PUBCOMP.
    pub outgoing_pubrel: Vec<u16>,
    /// The will of the last connection, until it is published or cancelled.
    pub will: Option<WillRecord>,
    /// When the last connection ended (ms); `None` while connected.
    pub disconnected_at: Option<u64>,
}

impl SessionRecord {
    /// A new, empty session.
    pub fn new(tenant: &str, client_id: &str, expiry_secs: u32) -> Self {
        SessionRecord {
            tenant: tenant.to_owned(),
            client_id: client_id.to_owned(),
            expiry_secs,
            queue: None,
            subscriptions: Vec::new(),
            incoming_qos2: Vec::new(),
            outgoing_pubrel: Vec::new(),
            will: None,
            disconnected_at: None,
        }
    }

    /// The registry key.
    pub fn key(&self) -> ClientKey {
        ClientKey::new(&self.tenant, &self.client_id)
    }

    /// When a disconnected session expires (ms); `None` while connected or never.
    pub fn expires_at(&self) -> Option<u64> {
        let at = self.disconnected_at?;
        (self.expiry_secs != NEVER_EXPIRES)
            .then(|| at.saturating_add(u64::from(self.expiry_secs) * 1000))
    }

    /// The earliest time something must happen to this session while it is
    /// disconnected: its will is due or it expires.
    pub fn next_deadline(&self) -> Option<u64> {
        let will = self.will.as_ref().and_then(|w| w.due_at);
        match (will, self.expires_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Marks the session disconnected now; a will not yet published becomes
    /// due after its delay. Used when a restart finds a session that was
    /// connected when the gateway stopped without closing it.
    pub fn mark_disconnected(&mut self, now: u64) {
        if self.disconnected_at.is_none() {
            self.disconnected_at = Some(now);
        }
        if let Some(w) = &mut self.will
            && w.due_at.is_none()
        {
            w.due_at = Some(now.saturating_add(u64::from(w.delay_secs) * 1000));
        }
    }

    /// Serialised for the store.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Read back from the store.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

/// Builds a subscription from a filter and its options; `Err` when the filter
/// cannot be expressed as a binding key.
pub fn subscription(
    filter: &str,
    share: Option<&str>,
    qos: u8,
    no_local: bool,
    retain_as_published: bool,
    retain_handling: u8,
    id: Option<u32>,
) -> Result<Subscription, topic::TopicError> {
    Ok(Subscription {
        binding: topic::filter_to_binding_key(filter)?.into(),
        filter: filter.into(),
        share: share.map(Into::into),
        qos,
        no_local,
        retain_as_published,
        retain_handling,
        id,
        tags: None,
    })
}

/// Current wall-clock time (ms), for records.
pub fn now() -> u64 {
    now_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_are_stable_and_in_range() {
        assert_eq!(session_pid(0), 1);
        assert_eq!(session_pid(32_767), 32_768);
        assert_eq!(session_pid(32_768), 1);
        for seq in [0, 1, 1000, u64::MAX] {
            let pid = session_pid(seq);
            assert!((1..LOCAL_PID_FIRST).contains(&pid));
            assert_eq!(pid, session_pid(seq));
        }
    }

    #[test]
    fn backstop_expiry() {
        assert_eq!(backstop_expiry_ms(86_400), Some(86_460_000));
        assert_eq!(backstop_expiry_ms(NEVER_EXPIRES), None);
        assert_eq!(backstop_expiry_ms(100 * 86_400), None);
    }

    #[test]
    fn client_keys() {
        let k = ClientKey::new("/", "c:1");
        assert_eq!(k.tenant(), "/");
        assert_eq!(k.client_id(), "c:1");
        assert_ne!(k, ClientKey::new("t", "c:1"));
    }

    #[test]
    fn shared_queue_names_fit() {
        assert_eq!(shared_queue_name("a/+"), "mqtt-shared-a/+");
        let long = "é".repeat(200);
        let name = shared_queue_name(&long);
        assert!(name.len() <= gw_core::MAX_NAME_LEN);
        assert_eq!(name, shared_queue_name(&long));
        assert_ne!(name, shared_queue_name(&format!("{long}x")));
    }

    #[test]
    fn records_round_trip_and_deadlines() {
        let mut r = SessionRecord::new("/", "c", 10);
        r.subscriptions
            .push(subscription("a/+", None, 1, true, false, 0, Some(7)).unwrap());
        r.will = Some(WillRecord {
            topic: "w".into(),
            retain: true,
            message: Message::new("bye"),
            delay_secs: 5,
            due_at: None,
        });
        assert_eq!(r.next_deadline(), None);
        r.mark_disconnected(1_000);
        assert_eq!(r.expires_at(), Some(11_000));
        assert_eq!(r.next_deadline(), Some(6_000));
        assert_eq!(SessionRecord::decode(&r.encode()), Some(r.clone()));
        r.expiry_secs = NEVER_EXPIRES;
        assert_eq!(r.expires_at(), None);
        assert!(SessionRecord::decode(b"junk").is_none());
    }
}
