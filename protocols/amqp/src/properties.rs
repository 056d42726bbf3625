//! Basic properties and header tables ↔ the engine's [`Message`].
//!
//! The engine's model mirrors AMQP 0-9-1's (§ 4.2.6, class `basic`): the 13
//! properties besides `headers`, and one [`HeaderValue`] per field-value type,
//! so a message published over AMQP is delivered over AMQP exactly as sent.
//! Where the two differ:
//!
//! - A `FieldTable` is a sorted map; [`Headers`] is an ordered list that
//!   allows duplicates (MQTT user properties do). AMQP → engine lists headers
//!   in key order; engine → AMQP keeps the first of duplicate names.
//! - A present but empty headers table and an absent one are the same message.
//! - AMQP short strings hold at most 255 bytes; engine strings come from other
//!   doors without that bound. Engine → AMQP then follows RabbitMQ's
//!   conversions: an over-long `message_id` / `correlation_id` travels as a
//!   long-string header `x-message-id` / `x-correlation-id`, any other
//!   over-long property and any header with an over-long name is dropped, and
//!   an over-long short-string header value becomes a long string.
//! - The correlation id is bytes in the engine (MQTT 5 correlation data may be
//!   binary) and a short string in AMQP: valid UTF-8 converts losslessly,
//!   anything else through `String::from_utf8_lossy` (U+FFFD for bad bytes).
//!
//! At publish the gateway's extras (`x-delay`, `x-tags`, `x-group-id`) are
//! read from the headers by the engine's one reader
//! ([`Message::apply_extension_headers`]), and the headers are left in place
//! (RabbitMQ's delayed-message plugin keeps `x-delay` too).

use amq_protocol::protocol::basic::{self, AMQPProperties};
use amq_protocol::types::{
    AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable, LongString, ShortString,
};
use bytes::Bytes;
use gw_core::{HeaderValue, Headers, Message, Properties, UnixMillis, now_millis};

pub use gw_core::{X_DELAY, X_GROUP_ID, X_TAGS};
/// Header carrying a correlation id too long for the property (RabbitMQ's name).
pub const X_CORRELATION_ID: &str = "x-correlation-id";
/// Header carrying a message id too long for the property (RabbitMQ's name).
pub const X_MESSAGE_ID: &str = "x-message-id";

/// The message a `basic.publish` with these properties and body makes, as of now.
pub fn message_from_publish(
    publish: &basic::Publish,
    props: &AMQPProperties,
    body: Bytes,
) -> Message {
    message_from_publish_at(publish, props, body, now_millis())
}

/// [`message_from_publish`] with the clock given, so `x-delay` is testable.
pub fn message_from_publish_at(
    publish: &basic::Publish,
    props: &AMQPProperties,
    body: Bytes,
    now: UnixMillis,
) -> Message {
    let string = |s: &Option<ShortString>| s.as_ref().map(|s| s.as_str().to_owned());
    let properties = Properties {
        content_type: string(props.content_type()),
        content_encoding: string(props.content_encoding()),
        delivery_mode: *props.delivery_mode(),
        priority: *props.priority(),
        correlation_id: props
            .correlation_id()
            .as_ref()
            .map(|s| Bytes::copy_from_slice(s.as_str().as_bytes())),
        reply_to: string(props.reply_to()),
        expiration: string(props.expiration()),
        message_id: string(props.message_id()),
        timestamp: *props.timestamp(),
        kind: string(props.kind()),
        user_id: string(props.user_id()),
        app_id: string(props.app_id()),
        cluster_id: string(props.cluster_id()),
    };
    let headers = props
        .headers()
        .as_ref()
        .map(headers_from_table)
        .unwrap_or_default();
    let mut message = Message {
        exchange: publish.exchange.as_str().to_owned(),
        routing_key: publish.routing_key.as_str().to_owned(),
        properties,
        headers,
        body,
        ..Message::default()
    };
    message.apply_extension_headers(now);
    message
}

/// The basic properties (headers included) to deliver this message with.
pub fn properties_from_message(m: &Message) -> AMQPProperties {
    let p = &m.properties;
    let short = |s: &Option<String>| {
        s.as_ref()
            .and_then(|s| ShortString::try_new(s.as_str()).ok())
    };
    let mut props = AMQPProperties::default();
    let mut headers = table_from_headers(&m.headers);
    if let Some(v) = short(&p.content_type) {
        props = props.with_content_type(v);
    }
    if let Some(v) = short(&p.content_encoding) {
        props = props.with_content_encoding(v);
    }
    if let Some(v) = p.delivery_mode {
        props = props.with_delivery_mode(v);
    }
    if let Some(v) = p.priority {
        props = props.with_priority(v);
    }
    if let Some(id) = &p.correlation_id {
        match ShortString::try_new(String::from_utf8_lossy(id)) {
            Ok(v) => props = props.with_correlation_id(v),
            Err(_) => insert_new(
                &mut headers,
                X_CORRELATION_ID,
                AMQPValue::LongString(id.to_vec().into()),
            ),
        }
    }
    if let Some(v) = short(&p.reply_to) {
        props = props.with_reply_to(v);
    }
    if let Some(v) = short(&p.expiration) {
        props = props.with_expiration(v);
    }
    if let Some(id) = &p.message_id {
        match ShortString::try_new(id.as_str()) {
            Ok(v) => props = props.with_message_id(v),
            Err(_) => insert_new(
                &mut headers,
                X_MESSAGE_ID,
                AMQPValue::LongString(id.as_str().into()),
            ),
        }
    }
    if let Some(v) = p.timestamp {
        props = props.with_timestamp(v);
    }
    if let Some(v) = short(&p.kind) {
        props = props.with_type(v);
    }
    if let Some(v) = short(&p.user_id) {
        props = props.with_user_id(v);
    }
    if let Some(v) = short(&p.app_id) {
        props = props.with_app_id(v);
    }
    if let Some(v) = short(&p.cluster_id) {
        props = props.with_cluster_id(v);
    }
    if !m.tags.is_empty() {
        // Tags given through MQTT or HTTP reach AMQP consumers as the header
        // an AMQP publisher would have set.
        let tags = m
            .tags
            .iter()
            .map(|t| AMQPValue::LongString(t.as_str().into()));
        insert_new(
            &mut headers,
            X_TAGS,
            AMQPValue::FieldArray(tags.collect::<Vec<_>>().into()),
        );
    }
    if !headers.inner().is_empty() {
        props = props.with_headers(headers);
    }
    props
}

/// Inserts unless the name is taken (the first value of a name wins).
fn insert_new(table: &mut FieldTable, name: &str, value: AMQPValue) {
    if !table.contains_key(name)
        && let Ok(key) = ShortString::try_new(name)
    {
        table.insert(key, value);
    }
}

/// A field table as engine headers, in key order.
pub fn headers_from_table(table: &FieldTable) -> Headers {
    Headers(
        table
            .into_iter()
            .map(|(k, v)| (k.as_str().to_owned(), header_value(v)))
            .collect(),
    )
}

/// Engine headers as a field table: names over 255 bytes are dropped, and
/// of repeated names the first wins.
pub fn table_from_headers(headers: &Headers) -> FieldTable {
    let mut table = FieldTable::default();
    for (name, value) in headers.iter() {
        if !table.contains_key(name)
            && let Ok(key) = ShortString::try_new(name)
        {
            table.insert(key, amqp_value(value));
        }
    }
    table
}

/// One AMQP field value as an engine header value (lossless).
pub fn header_value(value: &AMQPValue) -> HeaderValue {
    match value {
        AMQPValue::Boolean(v) => HeaderValue::Bool(*v),
        AMQPValue::ShortShortInt(v) => HeaderValue::I8(*v),
        AMQPValue::ShortShortUInt(v) => HeaderValue::U8(*v),
        AMQPValue::ShortInt(v) => HeaderValue::I16(*v),
        AMQPValue::ShortUInt(v) => HeaderValue::U16(*v),
        AMQPValue::LongInt(v) => HeaderValue::I32(*v),
        AMQPValue::LongUInt(v) => HeaderValue::U32(*v),
        AMQPValue::LongLongInt(v) => HeaderValue::I64(*v),
        AMQPValue::Float(v) => HeaderValue::F32(*v),
        AMQPValue::Double(v) => HeaderValue::F64(*v),
        AMQPValue::DecimalValue(d) => HeaderValue::Decimal {
            scale: d.scale,
            value: d.value,
        },
        AMQPValue::ShortString(s) => HeaderValue::ShortString(s.as_str().to_owned()),
        AMQPValue::LongString(s) => HeaderValue::LongString(Bytes::copy_from_slice(s.as_bytes())),
        AMQPValue::FieldArray(a) => {
            HeaderValue::Array(a.as_slice().iter().map(header_value).collect())
        }
        AMQPValue::Timestamp(t) => HeaderValue::Timestamp(*t),
        AMQPValue::FieldTable(t) => HeaderValue::Table(headers_from_table(t)),
        AMQPValue::ByteArray(b) => HeaderValue::Bytes(Bytes::copy_from_slice(b.as_slice())),
        AMQPValue::Void => HeaderValue::Void,
    }
}

/// One engine header value as an AMQP field value; lossless but for the
/// short-string bound and the table rules of [`table_from_headers`].
pub fn amqp_value(value: &HeaderValue) -> AMQPValue {
    match value {
        HeaderValue::Bool(v) => AMQPValue::Boolean(*v),
        HeaderValue::I8(v) => AMQPValue::ShortShortInt(*v),
        HeaderValue::U8(v) => AMQPValue::ShortShortUInt(*v),
        HeaderValue::I16(v) => AMQPValue::ShortInt(*v),
        HeaderValue::U16(v) => AMQPValue::ShortUInt(*v),
        HeaderValue::I32(v) => AMQPValue::LongInt(*v),
        HeaderValue::U32(v) => AMQPValue::LongUInt(*v),
        HeaderValue::I64(v) => AMQPValue::LongLongInt(*v),
        HeaderValue::F32(v) => AMQPValue::Float(*v),
        HeaderValue::F64(v) => AMQPValue::Double(*v),
        HeaderValue::Decimal { scale, value } => AMQPValue::DecimalValue(DecimalValue {
            scale: *scale,
            value: *value,
        }),
        HeaderValue::ShortString(s) => match ShortString::try_new(s.as_str()) {
            Ok(s) => AMQPValue::ShortString(s),
            Err(_) => AMQPValue::LongString(LongString::from(s.as_str())),
        },
        HeaderValue::LongString(b) => AMQPValue::LongString(LongString::from(b.to_vec())),
        HeaderValue::Array(items) => AMQPValue::FieldArray(FieldArray::from(
            items.iter().map(amqp_value).collect::<Vec<_>>(),
        )),
        HeaderValue::Timestamp(t) => AMQPValue::Timestamp(*t),
        HeaderValue::Table(h) => AMQPValue::FieldTable(table_from_headers(h)),
        HeaderValue::Bytes(b) => AMQPValue::ByteArray(ByteArray::from(b.as_ref())),
        HeaderValue::Void => AMQPValue::Void,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish() -> basic::Publish {
        basic::Publish {
            exchange: "amq.topic".into(),
            routing_key: "a.b".into(),
            ..Default::default()
        }
    }

    fn with_header(name: &str, value: AMQPValue) -> AMQPProperties {
        let mut t = FieldTable::default();
        t.insert(name.into(), value);
        AMQPProperties::default().with_headers(t)
    }

    fn at(props: &AMQPProperties) -> Message {
        message_from_publish_at(&publish(), props, Bytes::from_static(b"body"), 1_000)
    }

    #[test]
    fn every_property_is_carried() {
        let props = AMQPProperties::default()
            .with_content_type("application/json".into())
            .with_content_encoding("gzip".into())
            .with_delivery_mode(2)
            .with_priority(5)
            .with_correlation_id("corr".into())
            .with_reply_to("amq.rabbitmq.reply-to".into())
            .with_expiration("60000".into())
            .with_message_id("m-1".into())
            .with_timestamp(1_700_000_000)
            .with_type("order.created".into())
            .with_user_id("guest".into())
            .with_app_id("shop".into())
            .with_cluster_id("c".into());
        let m = at(&props);
        assert_eq!(
            (m.exchange.as_str(), m.routing_key.as_str()),
            ("amq.topic", "a.b")
        );
        assert_eq!(m.properties.correlation_id.as_deref(), Some(&b"corr"[..]));
        assert_eq!(m.properties.kind.as_deref(), Some("order.created"));
        assert!(m.is_persistent());
        assert_eq!(m.ttl_millis(), Some(60_000));
        assert_eq!(&m.body[..], b"body");
        assert_eq!(properties_from_message(&m), props);
    }

    #[test]
    fn x_delay_accepts_integers_and_numeric_strings() {
        let delay = |v| at(&with_header(X_DELAY, v)).deliver_at;
        assert_eq!(delay(AMQPValue::LongInt(500)), Some(1_500));
        assert_eq!(delay(AMQPValue::ShortShortUInt(5)), Some(1_005));
        assert_eq!(delay(AMQPValue::LongLongInt(-5)), None);
        assert_eq!(delay(AMQPValue::LongString(" 250 ".into())), Some(1_250));
        assert_eq!(delay(AMQPValue::LongString("soon".into())), None);
        assert_eq!(delay(AMQPValue::Double(5.0)), None);
        let far = with_header(X_DELAY, AMQPValue::LongLongInt(i64::MAX));
        let m = message_from_publish_at(&publish(), &far, Bytes::new(), u64::MAX - 1);
        assert_eq!(m.deliver_at, Some(u64::MAX), "saturates");
        // The header stays for consumers to see.
        assert!(
            at(&with_header(X_DELAY, AMQPValue::LongInt(1)))
                .header(X_DELAY)
                .is_some()
        );
    }

    #[test]
    fn x_tags_from_string_or_array() {
        let tags = |v| at(&with_header(X_TAGS, v)).tags;
        assert_eq!(
            tags(AMQPValue::LongString("red, blue,,red ".into())),
            ["red", "blue"]
        );
        let array = vec![
            AMQPValue::LongString("a".into()),
            AMQPValue::LongInt(3),
            AMQPValue::ShortString("b".into()),
        ];
        assert_eq!(tags(AMQPValue::FieldArray(array.into())), ["a", "b"]);
        assert!(tags(AMQPValue::Boolean(true)).is_empty());
    }

    #[test]
    fn x_group_id_sets_the_fifo_key() {
        let key = |v| at(&with_header(X_GROUP_ID, v)).group_key;
        assert_eq!(
            key(AMQPValue::LongString("g1".into())),
            Some("g1".to_owned())
        );
        assert_eq!(key(AMQPValue::LongString("".into())), None);
        assert_eq!(key(AMQPValue::LongInt(1)), None);
    }

    #[test]
    fn binary_correlation_id_is_converted_lossily() {
        let mut m = Message::new("x");
        m.properties.correlation_id = Some(Bytes::from_static(b"id-\xff"));
        let props = properties_from_message(&m);
        assert_eq!(
            props.correlation_id().as_ref().map(|s| s.as_str()),
            Some("id-\u{fffd}")
        );
    }

    #[test]
    fn over_long_strings_follow_rabbitmq() {
        let long = "x".repeat(300);
        let mut m = Message::new("x");
        m.properties.correlation_id = Some(Bytes::from(long.clone()));
        m.properties.message_id = Some(long.clone());
        m.properties.reply_to = Some(long.clone());
        m.headers.push(long.clone(), HeaderValue::I32(1));
        m.headers.push("s", HeaderValue::ShortString(long.clone()));
        m.headers.push("s", HeaderValue::I32(2));
        let props = properties_from_message(&m);
        assert_eq!(*props.correlation_id(), None);
        assert_eq!(*props.message_id(), None);
        assert_eq!(*props.reply_to(), None);
        let h = props.headers().clone().unwrap_or_default();
        let long_string = AMQPValue::LongString(long.as_str().into());
        assert_eq!(h.inner().get(X_CORRELATION_ID), Some(&long_string));
        assert_eq!(h.inner().get(X_MESSAGE_ID), Some(&long_string));
        assert_eq!(
            h.inner().get("s"),
            Some(&long_string),
            "first of duplicates, widened"
        );
        assert_eq!(h.inner().len(), 3, "the over-long name is dropped");
    }
}
