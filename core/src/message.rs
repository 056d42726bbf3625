//! A message as the engine stores and routes it, whatever door it came through.
//!
//! The shape is AMQP 0-9-1's (the richest of the three protocols): the 14 basic
//! properties, typed headers, a body. The gateway's extras sit beside them:
//! tags, a delivery time, a FIFO group key. Adapters translate their wire
//! form into this and back; the engine never looks at protocol details.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Engine-assigned identity of a published message, unique in one data directory.
///
/// A message routed to several queues keeps one id in all of them.
pub type MessageId = u64;

/// Milliseconds since the Unix epoch; the unit of every wall-clock time the engine stores.
pub type UnixMillis = u64;

/// The current wall-clock time in [`UnixMillis`].
pub fn now_millis() -> UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A message: properties, headers, extras and a body that is shared, never copied.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Assigned by the engine when the message is published (0 before).
    pub id: MessageId,
    /// The exchange it was published to ("" is the default exchange).
    pub exchange: String,
    /// The routing key it was published with (an MQTT topic with `/` turned into `.`).
    pub routing_key: String,
    /// The basic properties.
    pub properties: Properties,
    /// Application headers, in the order the publisher gave them (duplicates allowed,
    /// as MQTT user properties allow them).
    pub headers: Headers,
    /// Tags a consumer group may filter on.
    pub tags: Vec<String>,
    /// When set, the message stays invisible until this time.
    pub deliver_at: Option<UnixMillis>,
    /// FIFO queues keep order per key; messages without one share the queue's order.
    pub group_key: Option<String>,
    /// When the engine accepted the message (set on publish).
    pub published_at: UnixMillis,
    /// The payload.
    pub body: Bytes,
}

impl Message {
    /// A message with this body and everything else empty.
    pub fn new(body: impl Into<Bytes>) -> Self {
        Message {
            body: body.into(),
            ..Message::default()
        }
    }

    /// True when the publisher asked for the message to survive a restart
    /// (AMQP delivery mode 2; MQTT QoS ≥ 1; HTTP always).
    pub fn is_persistent(&self) -> bool {
        self.properties.delivery_mode == Some(2)
    }

    /// Size the engine accounts for this message: body plus a rough size of the rest.
    pub fn accounted_size(&self) -> u64 {
        (self.body.len() + self.routing_key.len() + self.exchange.len() + 64) as u64
    }

    /// The per-message time to live in milliseconds, from the `expiration` property.
    ///
    /// AMQP carries it as a decimal string; anything else is not a TTL.
    pub fn ttl_millis(&self) -> Option<u64> {
        self.properties
            .expiration
            .as_deref()
            .and_then(|s| s.trim().parse().ok())
    }

    /// The first header with this name.
    pub fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.headers.get(name)
    }
}

/// The 14 basic properties of AMQP 0-9-1 (§ 4.2.6 of the spec, class `basic`),
/// less `headers`, which is [`Message::headers`].
///
/// Each is kept exactly as the publisher sent it, so that it round-trips.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Properties {
    /// MIME content type (MQTT 5: Content Type).
    pub content_type: Option<String>,
    /// MIME content encoding.
    pub content_encoding: Option<String>,
    /// 1 = transient, 2 = persistent.
    pub delivery_mode: Option<u8>,
    /// 0–9 (AMQP); honoured by queues declared with a maximum priority.
    pub priority: Option<u8>,
    /// Correlation id (MQTT 5: Correlation Data, which may be binary).
    pub correlation_id: Option<Bytes>,
    /// Where replies go (MQTT 5: Response Topic).
    pub reply_to: Option<String>,
    /// Time to live in milliseconds, as a decimal string (MQTT 5: Message Expiry Interval).
    pub expiration: Option<String>,
    /// Application's message id (not the engine's [`MessageId`]).
    pub message_id: Option<String>,
    /// Seconds since the epoch, as the publisher set it.
    pub timestamp: Option<u64>,
    /// Message type name.
    pub kind: Option<String>,
    /// Creating user id.
    pub user_id: Option<String>,
    /// Creating application id.
    pub app_id: Option<String>,
    /// Deprecated in AMQP 0-9-1 but part of the property list; kept for round-trip.
    pub cluster_id: Option<String>,
}

/// An ordered list of named, typed header values.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Headers(pub Vec<(String, HeaderValue)>);

impl Headers {
    /// An empty header list.
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    /// The first value with this name.
    pub fn get(&self, name: &str) -> Option<&HeaderValue> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Replaces every value with this name by one value (appended at the end when new).
    pub fn set(&mut self, name: impl Into<String>, value: HeaderValue) {
        let name = name.into();
        if let Some(pos) = self.0.iter().position(|(k, _)| *k == name) {
            self.0[pos].1 = value;
            let mut i = pos + 1;
            while i < self.0.len() {
                if self.0[i].0 == name {
                    self.0.remove(i);
                } else {
                    i += 1;
                }
            }
        } else {
            self.0.push((name, value));
        }
    }

    /// Appends a value, keeping earlier ones with the same name.
    pub fn push(&mut self, name: impl Into<String>, value: HeaderValue) {
        self.0.push((name.into(), value));
    }

    /// Removes every value with this name; returns the first removed.
    pub fn remove(&mut self, name: &str) -> Option<HeaderValue> {
        let mut first = None;
        self.0.retain_mut(|(k, v)| {
            if k == name {
                if first.is_none() {
                    first = Some(std::mem::replace(v, HeaderValue::Void));
                }
                false
            } else {
                true
            }
        });
        first
    }

    /// True when there are no headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterates over (name, value) pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &HeaderValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// A typed header value: AMQP 0-9-1's field value types as RabbitMQ reads them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum HeaderValue {
    /// `t`
    Bool(bool),
    /// `b`
    I8(i8),
    /// `B`
    U8(u8),
    /// `s`
    I16(i16),
    /// `u`
    U16(u16),
    /// `I`
    I32(i32),
    /// `i`
    U32(u32),
    /// `l`
    I64(i64),
    /// `f`
    F32(f32),
    /// `d`
    F64(f64),
    /// `D`: value × 10^-scale
    Decimal {
        /// Number of decimal digits after the point.
        scale: u8,
        /// Unscaled value.
        value: u32,
    },
    /// Short string (deprecated in tables but still sent by some clients).
    ShortString(String),
    /// `S`: long string; bytes, not necessarily UTF-8.
    LongString(Bytes),
    /// `A`
    Array(Vec<HeaderValue>),
    /// `T`: seconds since the epoch.
    Timestamp(u64),
    /// `F`: a nested table.
    Table(Headers),
    /// `x`: byte array (RabbitMQ extension).
    Bytes(Bytes),
    /// `V`
    Void,
}

impl HeaderValue {
    /// A long string from text.
    pub fn string(s: impl Into<String>) -> Self {
        HeaderValue::LongString(Bytes::from(s.into()))
    }

    /// The value as text, when it is a string of valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            HeaderValue::ShortString(s) => Some(s),
            HeaderValue::LongString(b) | HeaderValue::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The value as a signed integer, when it is any integer type that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            HeaderValue::I8(v) => Some(v.into()),
            HeaderValue::U8(v) => Some(v.into()),
            HeaderValue::I16(v) => Some(v.into()),
            HeaderValue::U16(v) => Some(v.into()),
            HeaderValue::I32(v) => Some(v.into()),
            HeaderValue::U32(v) => Some(v.into()),
            HeaderValue::I64(v) => Some(v),
            HeaderValue::Timestamp(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_set_replaces_all_duplicates() {
        let mut h = Headers::new();
        h.push("a", HeaderValue::I32(1));
        h.push("b", HeaderValue::I32(2));
        h.push("a", HeaderValue::I32(3));
        h.set("a", HeaderValue::I32(9));
        assert_eq!(
            h.0,
            vec![
                ("a".into(), HeaderValue::I32(9)),
                ("b".into(), HeaderValue::I32(2))
            ]
        );
        assert_eq!(h.remove("a"), Some(HeaderValue::I32(9)));
        assert!(h.get("a").is_none());
    }

    #[test]
    fn ttl_parses_amqp_expiration() {
        let mut m = Message::new("x");
        assert_eq!(m.ttl_millis(), None);
        m.properties.expiration = Some("1500".into());
        assert_eq!(m.ttl_millis(), Some(1500));
        m.properties.expiration = Some("soon".into());
        assert_eq!(m.ttl_millis(), None);
    }
}
