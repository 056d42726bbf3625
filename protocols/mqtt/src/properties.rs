//! PUBLISH ↔ the engine's [`Message`]: topic, payload, QoS and the MQTT 5
//! properties, mapped the way RabbitMQ's MQTT plugin maps them onto AMQP 0-9-1
//! (`mc_mqtt.erl`) wherever DESIGN.md does not decide otherwise.
//!
//! | MQTT 5                         | Message                                               |
//! |--------------------------------|-------------------------------------------------------|
//! | topic                          | `exchange = "amq.topic"`, `routing_key` (`/` → `.`)   |
//! | QoS 0 / QoS ≥ 1                | `delivery_mode` 1 / 2 (persistent)                    |
//! | User Property (in order, dups) | `headers`, values as `LongString`                     |
//! | Response Topic                 | `reply_to`, as an `amq.topic` routing key (`/` → `.`) |
//! | Correlation Data               | `correlation_id` (binary)                             |
//! | Content Type                   | `content_type`                                        |
//! | Message Expiry Interval (s)    | `expiration` (ms, decimal string)                     |
//! | Payload Format Indicator       | header [`PAYLOAD_FORMAT_HEADER`] (`U8`)               |
//! | User Property `x-delay` (ms)   | also `deliver_at = now + delay`                       |
//! | User Property `x-tags` (a,b)   | also `tags`                                           |
//!
//! Reply-to: DESIGN.md maps Response Topic to the `reply_to` property. RabbitMQ
//! keeps it in an `x-reply-to-topic` header instead, but converts it the same
//! way (`mqtt_to_amqp`), so `reply_to` holds a routing key: an AMQP responder
//! publishes its answer to `amq.topic` with `reply_to` as routing key and the
//! MQTT requester, subscribed to its response topic, receives it. In the other
//! direction an AMQP `reply_to` is read as such a key (`amq.gen-x` becomes the
//! topic `amq/gen-x`); one that is no valid topic name is left out.
//!
//! Headers going out as User Properties follow RabbitMQ's
//! `amqpl_header_to_user_property`: strings as they are, integers and
//! timestamps (seconds) in decimal, floats in Rust's shortest round-trip form,
//! decimals as `123.45`, booleans as `true`/`false`, void as the empty string;
//! binary values, arrays, tables and anything with U+0000 or over 65535 bytes
//! are left out, as MQTT strings cannot carry them.
//!
//! What only MQTT subscribers need travels in headers set by
//! [`mark_mqtt_headers`] and never sent out as User Properties: the QoS when it
//! is 2, the RETAIN flag (for Retain As Published) and, while the publisher's
//! session has a No Local subscription, the publishing client id.

use bytes::Bytes;
use gw_core::{HeaderValue, Headers, Message, UnixMillis};
use rumqttc::mqttbytes::{self as mqtt4, v4};
use rumqttc::v5::mqttbytes::{self as mqtt5, v5};
use thiserror::Error;

use crate::codec::reason;
use crate::topic::{
    AMQP_TOPIC_EXCHANGE, MAX_STRING_LEN, routing_key_to_topic, topic_to_routing_key,
};

/// Header keeping an MQTT 5 Payload Format Indicator (0 bytes, 1 UTF-8) so that
/// it survives MQTT → engine → MQTT. Never sent out as a User Property.
pub const PAYLOAD_FORMAT_HEADER: &str = "x-mqtt-payload-format-indicator";
/// User Property / header asking for delivery after this many milliseconds.
pub const DELAY_HEADER: &str = gw_core::X_DELAY;
/// User Property / header with comma-separated tags.
pub const TAGS_HEADER: &str = gw_core::X_TAGS;
/// Header with the QoS a message was published with, set only for QoS 2
/// (QoS 0 and 1 are told apart by the delivery mode). The name is RabbitMQ's.
pub const QOS_HEADER: &str = "x-mqtt-publish-qos";
/// Header set (to `true`) on messages published with the RETAIN flag, for
/// subscribers asking for Retain As Published.
pub const RETAIN_HEADER: &str = "x-mqtt-retain";
/// Header naming the publishing client, set only while the publisher's own
/// session has a No Local subscription (the only session that checks it).
pub const PUBLISHER_HEADER: &str = "x-mqtt-publisher";

/// Headers the adapter keeps for itself: never sent out as User Properties.
const INTERNAL_HEADERS: [&str; 4] = [
    PAYLOAD_FORMAT_HEADER,
    QOS_HEADER,
    RETAIN_HEADER,
    PUBLISHER_HEADER,
];

/// A PUBLISH that cannot become a message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PropertiesError {
    /// Payload Format Indicator 1 with a payload that is not UTF-8 (MQTT 5.0 § 3.3.2.3.2).
    #[error("payload is not UTF-8 although its payload format indicator says it is")]
    PayloadFormatInvalid,
    /// The topic is not UTF-8 (the codec refuses such packets; an alias-resolved
    /// topic given by the connection could still be wrong).
    #[error("topic name is not UTF-8")]
    TopicNameInvalid,
}

impl PropertiesError {
    /// Reason code for the PUBACK / PUBREC (or DISCONNECT) that refuses the publish.
    pub fn v5_reason_code(&self) -> u8 {
        match self {
            PropertiesError::PayloadFormatInvalid => reason::PAYLOAD_FORMAT_INVALID,
            PropertiesError::TopicNameInvalid => reason::TOPIC_NAME_INVALID,
        }
    }
}

/// An MQTT 3.1.1 PUBLISH as a message: topic, payload and QoS only.
pub fn message_from_v4_publish(publish: &v4::Publish) -> Message {
    let mut message = Message::new(publish.payload.clone());
    message.exchange = AMQP_TOPIC_EXCHANGE.to_owned();
    message.routing_key = topic_to_routing_key(&publish.topic);
    message.properties.delivery_mode = Some(delivery_mode(publish.qos as u8));
    message
}

/// An MQTT 5 PUBLISH as a message, at wall-clock time `now` (for `x-delay`).
///
/// `publish.topic` must be the real topic: the connection replaces an empty
/// topic sent with a Topic Alias by the topic the alias stands for.
pub fn message_from_v5_publish(
    publish: &v5::Publish,
    now: UnixMillis,
) -> Result<Message, PropertiesError> {
    let topic =
        std::str::from_utf8(&publish.topic).map_err(|_| PropertiesError::TopicNameInvalid)?;
    let mut message = Message::new(publish.payload.clone());
    message.exchange = AMQP_TOPIC_EXCHANGE.to_owned();
    message.routing_key = topic_to_routing_key(topic);
    message.properties.delivery_mode = Some(delivery_mode(publish.qos as u8));
    let Some(props) = &publish.properties else {
        return Ok(message);
    };

    if let Some(indicator) = props.payload_format_indicator {
        // The receiver MAY check the payload; we do, so consumers can trust the flag.
        if indicator == 1 && std::str::from_utf8(&publish.payload).is_err() {
            return Err(PropertiesError::PayloadFormatInvalid);
        }
    }
    for (name, value) in &props.user_properties {
        message
            .headers
            .push(name.clone(), HeaderValue::string(value.clone()));
    }
    if let Some(indicator) = props.payload_format_indicator {
        message
            .headers
            .set(PAYLOAD_FORMAT_HEADER, HeaderValue::U8(indicator));
    }
    let p = &mut message.properties;
    p.content_type = props.content_type.clone();
    p.reply_to = props.response_topic.as_deref().map(topic_to_routing_key);
    p.correlation_id = props.correlation_data.clone();
    p.expiration = props
        .message_expiry_interval
        .map(|secs| (u64::from(secs) * 1000).to_string());

    message.apply_extension_headers(now);
    Ok(message)
}

/// Marks a message with what only MQTT subscribers need: the QoS when it is 2
/// ([`QOS_HEADER`]), the RETAIN flag ([`RETAIN_HEADER`]) and, for No Local,
/// the publishing client ([`PUBLISHER_HEADER`]). QoS 0 and 1 without retain
/// add nothing, so the common publish carries no extra header.
pub fn mark_mqtt_headers(message: &mut Message, qos: u8, retain: bool, publisher: Option<&str>) {
    if qos == 2 {
        message.headers.push(QOS_HEADER, HeaderValue::U8(2));
    }
    if retain {
        message.headers.push(RETAIN_HEADER, HeaderValue::Bool(true));
    }
    if let Some(client) = publisher {
        message
            .headers
            .push(PUBLISHER_HEADER, HeaderValue::string(client));
    }
}

/// The QoS a message was published with: [`QOS_HEADER`] when set, else 1 for
/// persistent messages and 0 for the others (RabbitMQ's rule for AMQP messages).
pub fn published_qos(message: &Message) -> u8 {
    match message.header(QOS_HEADER).and_then(HeaderValue::as_i64) {
        Some(q @ 0..=2) => q as u8,
        _ => u8::from(message.is_persistent()),
    }
}

/// Whether the message was published with RETAIN set.
pub fn published_retained(message: &Message) -> bool {
    matches!(message.header(RETAIN_HEADER), Some(HeaderValue::Bool(true)))
}

/// Whether `client` published the message (for No Local).
pub fn published_by(message: &Message, client: &str) -> bool {
    message
        .header(PUBLISHER_HEADER)
        .and_then(HeaderValue::as_str)
        == Some(client)
}

/// A message as an MQTT 3.1.1 PUBLISH (packet id 0: the connection assigns one).
pub fn v4_publish_from_message(
    message: &Message,
    topic: &str,
    qos: mqtt4::QoS,
    retain: bool,
) -> v4::Publish {
    let mut publish = v4::Publish::from_bytes(topic, qos, message.body.clone());
    publish.retain = retain;
    publish
}

/// A message as an MQTT 5 PUBLISH (packet id 0: the connection assigns one).
///
/// `elapsed_ms` is how long the message has waited in the server: the Message
/// Expiry Interval sent is what is left of it [MQTT-3.3.2-6], rounded up to
/// whole seconds (RabbitMQ rounds down, which announces an unexpired message
/// as expiring now). The caller drops messages that have already expired; one
/// that expires between that check and this call is sent with 1 s left.
pub fn v5_publish_from_message(
    message: &Message,
    topic: &str,
    qos: mqtt5::QoS,
    retain: bool,
    elapsed_ms: u64,
) -> v5::Publish {
    v5::Publish {
        dup: false,
        qos,
        retain,
        topic: Bytes::copy_from_slice(topic.as_bytes()),
        pkid: 0,
        payload: message.body.clone(),
        properties: v5_publish_properties(message, elapsed_ms),
    }
}

/// The MQTT 5 PUBLISH properties of a message (see [`v5_publish_from_message`]);
/// `None` when it has none.
pub fn v5_publish_properties(message: &Message, elapsed_ms: u64) -> Option<v5::PublishProperties> {
    let p = &message.properties;
    let props = v5::PublishProperties {
        payload_format_indicator: message
            .header(PAYLOAD_FORMAT_HEADER)
            .and_then(HeaderValue::as_i64)
            .and_then(|v| u8::try_from(v).ok())
            .filter(|v| *v <= 1),
        message_expiry_interval: message.ttl_millis().map(|ttl| {
            let secs = ttl.saturating_sub(elapsed_ms).div_ceil(1000).max(1);
            u32::try_from(secs).unwrap_or(u32::MAX)
        }),
        topic_alias: None,
        response_topic: p
            .reply_to
            .as_deref()
            .and_then(|key| routing_key_to_topic(key).ok()),
        correlation_data: p
            .correlation_id
            .clone()
            .filter(|c| c.len() <= MAX_STRING_LEN),
        user_properties: user_properties_of(message),
        subscription_identifiers: Vec::new(),
        content_type: p.content_type.clone().filter(|s| mqtt_string(s)),
    };
    (props != v5::PublishProperties::default()).then_some(props)
}

/// A message's headers as User Properties, plus its tags as `x-tags` when no
/// header carries them (tags given over HTTP or AMQP arrays reach MQTT 5
/// subscribers as a publisher there would have set them).
fn user_properties_of(message: &Message) -> Vec<(String, String)> {
    let mut props = user_properties(&message.headers);
    if !message.tags.is_empty() && message.header(TAGS_HEADER).is_none() {
        props.push((TAGS_HEADER.to_owned(), message.tags.join(",")));
    }
    props
}

/// Headers as User Properties, in order, rendered as the module doc describes.
pub fn user_properties(headers: &Headers) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| !INTERNAL_HEADERS.contains(name) && mqtt_string(name))
        .filter_map(|(name, value)| Some((name.to_owned(), header_text(value)?)))
        .collect()
}

/// A header value as User Property text; `None` for what a string cannot carry.
pub fn header_text(value: &HeaderValue) -> Option<String> {
    let text = match value {
        HeaderValue::Bool(b) => b.to_string(),
        HeaderValue::I8(v) => v.to_string(),
        HeaderValue::U8(v) => v.to_string(),
        HeaderValue::I16(v) => v.to_string(),
        HeaderValue::U16(v) => v.to_string(),
        HeaderValue::I32(v) => v.to_string(),
        HeaderValue::U32(v) => v.to_string(),
        HeaderValue::I64(v) => v.to_string(),
        HeaderValue::F32(v) => v.to_string(),
        HeaderValue::F64(v) => v.to_string(),
        HeaderValue::Decimal { scale, value } => decimal_text(*scale, *value),
        HeaderValue::ShortString(s) => s.clone(),
        HeaderValue::LongString(b) => std::str::from_utf8(b).ok()?.to_owned(),
        HeaderValue::Timestamp(secs) => secs.to_string(),
        HeaderValue::Void => String::new(),
        HeaderValue::Bytes(_) | HeaderValue::Array(_) | HeaderValue::Table(_) => return None,
    };
    mqtt_string(&text).then_some(text)
}

/// `value × 10^-scale` in plain decimal notation: (2, 12345) → "123.45", (3, 5) → "0.005".
fn decimal_text(scale: u8, value: u32) -> String {
    let scale = usize::from(scale);
    if scale == 0 {
        return value.to_string();
    }
    let digits = format!("{value:0>width$}", width = scale + 1);
    let (int, frac) = digits.split_at(digits.len() - scale);
    format!("{int}.{frac}")
}

/// MQTT strings are at most 65535 bytes and never contain U+0000 [MQTT-1.5.4-2].
fn mqtt_string(s: &str) -> bool {
    s.len() <= MAX_STRING_LEN && !s.contains('\0')
}

fn delivery_mode(qos: u8) -> u8 {
    if qos == 0 { 1 } else { 2 }
}

#[cfg(test)]
mod tests;
