//! How a DMS message (JSON) becomes an engine [`Message`] and back. This is
//! the HTTP column of the gateway's mapping table (README):
//!
//! | DMS JSON                         | engine `Message` (AMQP / MQTT 5 see it as)             |
//! |----------------------------------|--------------------------------------------------------|
//! | `body` a JSON string             | the string's UTF-8 bytes, `content_type` `text/plain; charset=utf-8` |
//! | `body` any other JSON value      | its JSON text as sent, `content_type` `application/json` |
//! | `attributes` {name: value}       | headers (AMQP table / MQTT 5 user properties), in order |
//! | `properties.content_type` …      | the AMQP basic property of the same name (overrides the above content type) |
//! | `properties.correlation_id`      | correlation id (MQTT 5 correlation data)               |
//! | `properties.reply_to`            | reply-to (MQTT 5 response topic)                       |
//! | `properties.expiration` (ms)     | expiration (MQTT 5 message expiry interval)            |
//! | `tags` (≤ 3)                     | tags (AMQP header `x-tags`)                            |
//! | `delayTime` (ms)                 | `deliver_at` = now + delay (AMQP header `x-delay`)     |
//! | `message_group_id`               | FIFO group key                                         |
//!
//! On the way out the content type decides: a JSON content type
//! (`application/json`, `…+json`) with a body that parses as JSON gives that
//! JSON value; any other UTF-8 body gives a JSON string (so an MQTT 3.1.1
//! device's JSON payload, which has no content type, arrives as a string);
//! other bytes give a base64 string and `"body_encoding": "base64"`. So a
//! string sent over HTTP arrives over HTTP as the same string, and an object
//! as the same object; AMQP and MQTT consumers get the string's bytes or the
//! JSON text. Attribute values are typed: strings, numbers, booleans, null,
//! arrays and objects map to the AMQP field types (long string, long/double,
//! boolean, void, array, table) and back; AMQP-only types come out as their
//! nearest JSON (decimals and timestamps as numbers, byte arrays as base64).

use std::borrow::Cow;

use base64::Engine as _;
use bytes::Bytes;
use gw_core::{HeaderValue, Headers, Message, Properties};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};

/// Content type of a message sent with a JSON string body.
pub const TEXT: &str = "text/plain; charset=utf-8";
/// Content type of a message sent with any other JSON body.
pub const JSON: &str = "application/json";

/// The AMQP basic properties a DMS message may carry (our extension).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageProperties {
    /// MIME type of the body (overrides the type chosen from the JSON body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// MIME content encoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    /// Correlation id (MQTT 5 correlation data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Out only: a correlation id that is not UTF-8 (MQTT 5 binary correlation data), base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id_base64: Option<String>,
    /// Where replies go (MQTT 5 response topic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// Time to live in milliseconds (MQTT 5 message expiry interval). Taken
    /// as a number or, as RabbitMQ's API sends it, a string of digits.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "millis_number_or_string"
    )]
    #[schema(value_type = Option<u64>)]
    pub expiration: Option<u64>,
    /// The application's message id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Message type name.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Creating application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// Creating user; when given it must be the authenticated user (as RabbitMQ checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// 0–255; honoured by queues declared with a maximum priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    /// Seconds since the epoch, as the publisher set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
}

/// A millisecond count given as a JSON number or a string of digits.
fn millis_number_or_string<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<u64>, D::Error> {
    let millis = match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(t)) => t.trim().parse().ok(),
        Some(_) => None,
    };
    millis.map(Some).ok_or_else(|| {
        serde::de::Error::custom(
            "expiration must be milliseconds: a non-negative integer or a string of digits",
        )
    })
}

impl MessageProperties {
    /// Copies the set properties into the engine's.
    pub fn apply(&self, p: &mut Properties) {
        if let Some(v) = &self.content_type {
            p.content_type = Some(v.clone());
        }
        p.content_encoding.clone_from(&self.content_encoding);
        p.correlation_id = self.correlation_id.clone().map(Bytes::from);
        p.reply_to.clone_from(&self.reply_to);
        p.expiration = self.expiration.map(|e| e.to_string());
        p.message_id.clone_from(&self.message_id);
        p.kind.clone_from(&self.kind);
        p.app_id.clone_from(&self.app_id);
        p.user_id.clone_from(&self.user_id);
        p.priority = self.priority;
        p.timestamp = self.timestamp;
    }

    /// The properties of a stored message (`None` when it has none worth showing;
    /// delivery mode is always persistent for DMS and left out).
    pub fn of(p: &Properties) -> Option<MessageProperties> {
        let (correlation_id, correlation_id_base64) = match &p.correlation_id {
            None => (None, None),
            Some(b) => match std::str::from_utf8(b) {
                Ok(s) => (Some(s.to_owned()), None),
                Err(_) => (
                    None,
                    Some(base64::engine::general_purpose::STANDARD.encode(b)),
                ),
            },
        };
        let out = MessageProperties {
            content_type: p.content_type.clone(),
            content_encoding: p.content_encoding.clone(),
            correlation_id,
            correlation_id_base64,
            reply_to: p.reply_to.clone(),
            expiration: p.expiration.as_deref().and_then(|e| e.trim().parse().ok()),
            message_id: p.message_id.clone(),
            kind: p.kind.clone(),
            app_id: p.app_id.clone(),
            user_id: p.user_id.clone(),
            priority: p.priority,
            timestamp: p.timestamp,
        };
        (out != MessageProperties::default()).then_some(out)
    }
}

/// The body bytes and content type of a DMS `body` value.
pub fn body_in(raw: &RawValue) -> ApiResult<(Bytes, &'static str)> {
    let text = raw.get();
    if text.starts_with('"') {
        let s: Cow<'_, str> =
            serde_json::from_str(text).map_err(|e| ApiError::invalid("body", e))?;
        Ok((Bytes::from(s.into_owned()), TEXT))
    } else {
        Ok((Bytes::copy_from_slice(text.as_bytes()), JSON))
    }
}

/// Bytes the body will take once stored (what the size limits count).
pub fn body_len(raw: &RawValue) -> usize {
    // A string's escapes shrink when decoded; counting the JSON text is an
    // upper bound that never lets a message past the limit.
    raw.get().len()
}

/// A message body as DMS JSON.
#[derive(Debug)]
pub enum BodyOut<'a> {
    /// JSON content, emitted as is.
    Json(&'a RawValue),
    /// UTF-8 text, emitted as a JSON string.
    Text(&'a str),
    /// Other bytes, emitted as a base64 string.
    Base64(String),
}

impl BodyOut<'_> {
    /// Chooses how to show `m`'s body (see the module doc).
    pub fn of(m: &Message) -> BodyOut<'_> {
        if m.properties
            .content_type
            .as_deref()
            .is_some_and(is_json_type)
            && let Ok(raw) = serde_json::from_slice::<&RawValue>(&m.body)
        {
            return BodyOut::Json(raw);
        }
        match std::str::from_utf8(&m.body) {
            Ok(s) => BodyOut::Text(s),
            Err(_) => BodyOut::Base64(base64::engine::general_purpose::STANDARD.encode(&m.body)),
        }
    }

    /// `Some("base64")` when the body had to be encoded.
    pub fn encoding(&self) -> Option<&'static str> {
        matches!(self, BodyOut::Base64(_)).then_some("base64")
    }
}

impl Serialize for BodyOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            BodyOut::Json(raw) => raw.serialize(s),
            BodyOut::Text(t) => s.serialize_str(t),
            BodyOut::Base64(b) => s.serialize_str(b),
        }
    }
}

fn is_json_type(ct: &str) -> bool {
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json")
}

/// DMS attributes as message headers.
pub fn attributes_in(attrs: &Map<String, Value>) -> Headers {
    Headers(
        attrs
            .iter()
            .map(|(k, v)| (k.clone(), value_in(v)))
            .collect(),
    )
}

fn value_in(v: &Value) -> HeaderValue {
    match v {
        Value::Null => HeaderValue::Void,
        Value::Bool(b) => HeaderValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => HeaderValue::I64(i),
            None => HeaderValue::F64(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => HeaderValue::string(s.clone()),
        Value::Array(a) => HeaderValue::Array(a.iter().map(value_in).collect()),
        Value::Object(o) => HeaderValue::Table(attributes_in(o)),
    }
}

/// Message headers as DMS attributes (a repeated name keeps its first value).
pub fn attributes_out(headers: &Headers) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in headers.iter() {
        if !out.contains_key(k) {
            out.insert(k.to_owned(), value_out(v));
        }
    }
    out
}

fn value_out(v: &HeaderValue) -> Value {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let float = |f: f64| Number::from_f64(f).map_or(Value::Null, Value::Number);
    match v {
        HeaderValue::Bool(b) => Value::Bool(*b),
        HeaderValue::I8(n) => Value::from(*n),
        HeaderValue::U8(n) => Value::from(*n),
        HeaderValue::I16(n) => Value::from(*n),
        HeaderValue::U16(n) => Value::from(*n),
        HeaderValue::I32(n) => Value::from(*n),
        HeaderValue::U32(n) => Value::from(*n),
        HeaderValue::I64(n) => Value::from(*n),
        HeaderValue::F32(f) => float(f64::from(*f)),
        HeaderValue::F64(f) => float(*f),
        HeaderValue::Decimal { scale, value } => {
            float(f64::from(*value) / 10f64.powi(i32::from(*scale)))
        }
        HeaderValue::ShortString(s) => Value::String(s.clone()),
        HeaderValue::LongString(b) | HeaderValue::Bytes(b) => match std::str::from_utf8(b) {
            Ok(s) => Value::String(s.to_owned()),
            Err(_) => Value::String(b64(b)),
        },
        HeaderValue::Array(a) => Value::Array(a.iter().map(value_out).collect()),
        HeaderValue::Timestamp(t) => Value::from(*t),
        HeaderValue::Table(t) => Value::Object(attributes_out(t)),
        HeaderValue::Void => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    fn out(m: &Message) -> String {
        serde_json::to_string(&BodyOut::of(m)).unwrap()
    }

    #[test]
    fn strings_and_json_round_trip() {
        let (b, ct) = body_in(&raw(r#""TEST11""#)).unwrap();
        assert_eq!((&b[..], ct), (&b"TEST11"[..], TEXT));
        let mut m = Message::new(b);
        m.properties.content_type = Some(ct.into());
        assert_eq!(out(&m), r#""TEST11""#);

        let (b, ct) = body_in(&raw(r#"{"foo": "test02"}"#)).unwrap();
        assert_eq!((&b[..], ct), (&br#"{"foo": "test02"}"#[..], JSON));
        let mut m = Message::new(b);
        m.properties.content_type = Some(ct.into());
        assert_eq!(out(&m), r#"{"foo": "test02"}"#);

        // A string that looks like JSON stays a string.
        let (b, ct) = body_in(&raw(r#""{\"a\":1}""#)).unwrap();
        assert_eq!(&b[..], br#"{"a":1}"#);
        let mut m = Message::new(b);
        m.properties.content_type = Some(ct.into());
        assert_eq!(out(&m), r#""{\"a\":1}""#);
    }

    #[test]
    fn foreign_bodies_by_content_type() {
        // No content type (MQTT 3.1.1): text even if it is JSON.
        assert_eq!(out(&Message::new(r#"{"a":1}"#)), r#""{\"a\":1}""#);
        let mut m = Message::new(r#"{"a":1}"#);
        m.properties.content_type = Some("application/vnd.x+json".into());
        assert_eq!(out(&m), r#"{"a":1}"#);
        // Declared JSON that is not JSON falls back to text.
        m.body = Bytes::from_static(b"{oops");
        assert_eq!(out(&m), r#""{oops""#);
        let m = Message::new(vec![0xff, 0x00]);
        assert!(matches!(BodyOut::of(&m), BodyOut::Base64(_)));
        assert_eq!(BodyOut::of(&m).encoding(), Some("base64"));
    }

    #[test]
    fn attributes_map_to_typed_headers() {
        let attrs: Map<String, Value> = serde_json::from_str(
            r#"{"s":"v","i":-3,"f":1.5,"b":true,"n":null,"a":[1,"x"],"o":{"k":2}}"#,
        )
        .unwrap();
        let h = attributes_in(&attrs);
        assert_eq!(h.get("s"), Some(&HeaderValue::string("v")));
        assert_eq!(h.get("i"), Some(&HeaderValue::I64(-3)));
        assert_eq!(h.get("f"), Some(&HeaderValue::F64(1.5)));
        assert_eq!(attributes_out(&h), attrs);
        let mut amqp = Headers::new();
        amqp.push(
            "d",
            HeaderValue::Decimal {
                scale: 2,
                value: 150,
            },
        );
        amqp.push("x", HeaderValue::Bytes(Bytes::from_static(&[0xff])));
        amqp.push("t", HeaderValue::Timestamp(5));
        let v = attributes_out(&amqp);
        assert_eq!(v["d"], serde_json::json!(1.5));
        assert_eq!(v["x"], serde_json::json!("/w=="));
        assert_eq!(v["t"], serde_json::json!(5));
    }

    #[test]
    fn properties_round_trip() {
        let p = MessageProperties {
            correlation_id: Some("c-1".into()),
            reply_to: Some("replies".into()),
            expiration: Some(60_000),
            priority: Some(4),
            ..MessageProperties::default()
        };
        let mut props = Properties::default();
        p.apply(&mut props);
        assert_eq!(props.expiration.as_deref(), Some("60000"));
        assert_eq!(MessageProperties::of(&props), Some(p));
        assert_eq!(MessageProperties::of(&Properties::default()), None);
        props.correlation_id = Some(Bytes::from_static(&[0xfe]));
        let back = MessageProperties::of(&props).unwrap();
        assert_eq!(back.correlation_id, None);
        assert_eq!(back.correlation_id_base64.as_deref(), Some("/g=="));
    }

    #[test]
    fn expiration_as_number_or_rabbitmq_string() {
        let parse = |j: &str| serde_json::from_str::<MessageProperties>(j).map(|p| p.expiration);
        assert_eq!(parse(r#"{"expiration":60000}"#).ok(), Some(Some(60_000)));
        assert_eq!(parse(r#"{"expiration":"60000"}"#).ok(), Some(Some(60_000)));
        assert_eq!(parse(r#"{"expiration":null}"#).ok(), Some(None));
        assert_eq!(parse(r#"{}"#).ok(), Some(None));
        let err = parse(r#"{"expiration":"soon"}"#).unwrap_err().to_string();
        assert!(err.contains("expiration"), "{err}");
        assert!(parse(r#"{"expiration":-1}"#).is_err());
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[a-z\\\\\"\u{e9}\u{1F600} ]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_json_body_round_trips(v in json_value()) {
            let text = serde_json::to_string(&v).unwrap();
            let (bytes, ct) = body_in(&raw(&text)).unwrap();
            let mut m = Message::new(bytes);
            m.properties.content_type = Some(ct.into());
            let back: Value = serde_json::from_str(&out(&m)).unwrap();
            prop_assert_eq!(back, v);
        }

        #[test]
        fn any_attributes_round_trip(v in prop::collection::btree_map("[a-z]{1,4}", json_value(), 0..5)) {
            let map: Map<String, Value> = v.into_iter().collect();
            prop_assert_eq!(attributes_out(&attributes_in(&map)), map);
        }

        #[test]
        fn any_bytes_give_valid_json(bytes in prop::collection::vec(any::<u8>(), 0..64), json in any::<bool>()) {
            let mut m = Message::new(bytes);
            if json { m.properties.content_type = Some(JSON.into()); }
            let s = out(&m);
            prop_assert!(serde_json::from_str::<Value>(&s).is_ok());
        }
    }
}
