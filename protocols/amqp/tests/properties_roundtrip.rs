//! Property tests: basic properties and arbitrarily nested header tables survive
//! AMQP → engine → AMQP and engine → AMQP → engine exactly, and engine → wire →
//! engine up to the one wire rule (short-string values travel as long strings).
//!
//! Values are compared through `Debug`, which tells `-0.0` from `0.0` and
//! treats every NaN alike, where `==` would call a NaN unequal to itself.

use std::collections::BTreeMap;

use amq_protocol::protocol::basic::{self, AMQPProperties};
use amq_protocol::types::{AMQPValue, ByteArray, DecimalValue, FieldTable, ShortString};
use bytes::{Bytes, BytesMut};
use gw_amqp::codec::{Frame, decode, encode_content};
use gw_amqp::properties::{
    X_DELAY, X_GROUP_ID, X_TAGS, message_from_publish_at, properties_from_message,
};
use gw_core::{HeaderValue, Headers, Message, Properties};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

/// Up to 60 characters: at most 240 bytes, always a valid short string.
fn short() -> impl Strategy<Value = String> {
    prop::string::string_regex(".{0,60}").expect("regex")
}

fn key() -> impl Strategy<Value = String> {
    prop::string::string_regex(".{0,12}")
        .expect("regex")
        .prop_filter("extras are derived, not round-tripped", |k| {
            ![X_DELAY, X_TAGS, X_GROUP_ID].contains(&k.as_str())
        })
}

fn amqp_value() -> impl Strategy<Value = AMQPValue> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(AMQPValue::Boolean),
        any::<i8>().prop_map(AMQPValue::ShortShortInt),
        any::<u8>().prop_map(AMQPValue::ShortShortUInt),
        any::<i16>().prop_map(AMQPValue::ShortInt),
        any::<u16>().prop_map(AMQPValue::ShortUInt),
        any::<i32>().prop_map(AMQPValue::LongInt),
        any::<u32>().prop_map(AMQPValue::LongUInt),
        any::<i64>().prop_map(AMQPValue::LongLongInt),
        any::<f32>().prop_map(AMQPValue::Float),
        any::<f64>().prop_map(AMQPValue::Double),
        (any::<u8>(), any::<u32>())
            .prop_map(|(scale, value)| AMQPValue::DecimalValue(DecimalValue { scale, value })),
        short().prop_map(|s| AMQPValue::ShortString(s.into())),
        vec(any::<u8>(), 0..40).prop_map(|b| AMQPValue::LongString(b.into())),
        any::<u64>().prop_map(AMQPValue::Timestamp),
        vec(any::<u8>(), 0..40).prop_map(|b| AMQPValue::ByteArray(ByteArray::from(b))),
        Just(AMQPValue::Void),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(|v| AMQPValue::FieldArray(v.into())),
            btree_map(key(), inner, 0..6).prop_map(|m| AMQPValue::FieldTable(table(m))),
        ]
    })
}

fn table(m: BTreeMap<String, AMQPValue>) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in m {
        t.insert(ShortString::from(k), v);
    }
    t
}

fn header_value() -> impl Strategy<Value = HeaderValue> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(HeaderValue::Bool),
        any::<i8>().prop_map(HeaderValue::I8),
        any::<u8>().prop_map(HeaderValue::U8),
        any::<i16>().prop_map(HeaderValue::I16),
        any::<u16>().prop_map(HeaderValue::U16),
        any::<i32>().prop_map(HeaderValue::I32),
        any::<u32>().prop_map(HeaderValue::U32),
        any::<i64>().prop_map(HeaderValue::I64),
        any::<f32>().prop_map(HeaderValue::F32),
        any::<f64>().prop_map(HeaderValue::F64),
        (any::<u8>(), any::<u32>())
            .prop_map(|(scale, value)| HeaderValue::Decimal { scale, value }),
        short().prop_map(HeaderValue::ShortString),
        vec(any::<u8>(), 0..40).prop_map(|b| HeaderValue::LongString(b.into())),
        any::<u64>().prop_map(HeaderValue::Timestamp),
        vec(any::<u8>(), 0..40).prop_map(|b| HeaderValue::Bytes(b.into())),
        Just(HeaderValue::Void),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(HeaderValue::Array),
            headers_of(inner).prop_map(HeaderValue::Table),
        ]
    })
}

/// Headers in key order without repeats: the shape a field table can hold.
fn headers_of(value: impl Strategy<Value = HeaderValue>) -> impl Strategy<Value = Headers> {
    btree_map(key(), value, 0..6).prop_map(|m| Headers(m.into_iter().collect()))
}

fn opt<T: std::fmt::Debug>(s: impl Strategy<Value = T>) -> impl Strategy<Value = Option<T>> {
    prop::option::of(s)
}

fn amqp_properties() -> impl Strategy<Value = AMQPProperties> {
    let strings = (
        opt(short()),
        opt(short()),
        opt(short()),
        opt(short()),
        opt(short()),
        opt(short()),
    );
    let more = (opt(short()), opt(short()), opt(short()), opt(short()));
    let numbers = (opt(any::<u8>()), opt(any::<u8>()), opt(any::<u64>()));
    let headers = opt(btree_map(key(), amqp_value(), 1..8).prop_map(table));
    (strings, more, numbers, headers).prop_map(
        |((ct, ce, corr, reply, exp, id), (kind, user, app, cluster), (dm, prio, ts), h)| {
            let mut p = AMQPProperties::default();
            let s = |v: String| ShortString::from(v);
            if let Some(v) = ct {
                p = p.with_content_type(s(v))
            }
            if let Some(v) = ce {
                p = p.with_content_encoding(s(v))
            }
            if let Some(v) = h {
                p = p.with_headers(v)
            }
            if let Some(v) = dm {
                p = p.with_delivery_mode(v)
            }
            if let Some(v) = prio {
                p = p.with_priority(v)
            }
            if let Some(v) = corr {
                p = p.with_correlation_id(s(v))
            }
            if let Some(v) = reply {
                p = p.with_reply_to(s(v))
            }
            if let Some(v) = exp {
                p = p.with_expiration(s(v))
            }
            if let Some(v) = id {
                p = p.with_message_id(s(v))
            }
            if let Some(v) = ts {
                p = p.with_timestamp(v)
            }
            if let Some(v) = kind {
                p = p.with_type(s(v))
            }
            if let Some(v) = user {
                p = p.with_user_id(s(v))
            }
            if let Some(v) = app {
                p = p.with_app_id(s(v))
            }
            if let Some(v) = cluster {
                p = p.with_cluster_id(s(v))
            }
            p
        },
    )
}

fn message() -> impl Strategy<Value = Message> {
    let strings = (
        opt(short()),
        opt(short()),
        opt(short()),
        opt(short()),
        opt(short()),
        opt(short()),
    );
    let more = (opt(short()), opt(short()), opt(short()), opt(short()));
    let numbers = (opt(any::<u8>()), opt(any::<u8>()), opt(any::<u64>()));
    let envelope = (
        short(),
        short(),
        headers_of(header_value()),
        vec(any::<u8>(), 0..64),
    );
    (strings, more, numbers, envelope).prop_map(
        |(
            (ct, ce, corr, reply, exp, id),
            (kind, user, app, cluster),
            (dm, prio, ts),
            (exchange, rk, headers, body),
        )| Message {
            exchange,
            routing_key: rk,
            properties: Properties {
                content_type: ct,
                content_encoding: ce,
                delivery_mode: dm,
                priority: prio,
                correlation_id: corr.map(Bytes::from),
                reply_to: reply,
                expiration: exp,
                message_id: id,
                timestamp: ts,
                kind,
                user_id: user,
                app_id: app,
                cluster_id: cluster,
            },
            headers,
            body: body.into(),
            ..Message::default()
        },
    )
}

fn publish_of(m: &Message) -> basic::Publish {
    basic::Publish {
        exchange: m.exchange.as_str().into(),
        routing_key: m.routing_key.as_str().into(),
        ..Default::default()
    }
}

/// What a header value reads as after the wire: short strings arrive long.
fn widened(v: &HeaderValue) -> HeaderValue {
    match v {
        HeaderValue::ShortString(s) => HeaderValue::LongString(Bytes::from(s.clone())),
        HeaderValue::Array(a) => HeaderValue::Array(a.iter().map(widened).collect()),
        HeaderValue::Table(h) => HeaderValue::Table(Headers(
            h.0.iter().map(|(k, v)| (k.clone(), widened(v))).collect(),
        )),
        other => other.clone(),
    }
}

fn same<T: std::fmt::Debug>(a: &T, b: &T) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn amqp_to_engine_to_amqp_is_exact(props in amqp_properties(), body in vec(any::<u8>(), 0..32)) {
        let publish = basic::Publish { exchange: "ex".into(), routing_key: "rk".into(), ..Default::default() };
        let m = message_from_publish_at(&publish, &props, body.into(), 0);
        let back = properties_from_message(&m);
        prop_assert!(same(&back, &props), "{:?}\n!=\n{:?}", back, props);
    }

    #[test]
    fn engine_to_amqp_to_engine_is_exact(m in message()) {
        let props = properties_from_message(&m);
        let back = message_from_publish_at(&publish_of(&m), &props, m.body.clone(), 0);
        prop_assert!(same(&back, &m), "{:?}\n!=\n{:?}", back, m);
    }

    #[test]
    fn engine_to_wire_to_engine_keeps_everything(m in message(), frame_max in 9u32..200) {
        let mut wire = BytesMut::new();
        encode_content(&mut wire, 1, 60, &properties_from_message(&m), &m.body, 131_072).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let Ok(Some(Frame::Header(1, header))) = decode(&mut wire, 131_072) else {
            return Err(TestCaseError::fail("no content header"));
        };
        prop_assert_eq!(header.body_size, m.body.len() as u64);
        let back = message_from_publish_at(&publish_of(&m), &header.properties, m.body.clone(), 0);
        let mut want = m.clone();
        want.headers = Headers(m.headers.0.iter().map(|(k, v)| (k.clone(), widened(v))).collect());
        prop_assert!(same(&back, &want), "{:?}\n!=\n{:?}", back, want);

        // And the body is cut into frames of at most frame_max - 8 bytes.
        let mut wire = BytesMut::new();
        encode_content(&mut wire, 1, 60, &AMQPProperties::default(), &m.body, frame_max).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut body = Vec::new();
        while let Some(frame) = decode(&mut wire, 131_072).map_err(|e| TestCaseError::fail(e.to_string()))? {
            if let Frame::Body(_, piece) = frame {
                prop_assert!(!piece.is_empty() && piece.len() <= (frame_max - 8) as usize);
                body.extend_from_slice(&piece);
            }
        }
        prop_assert_eq!(&body[..], &m.body[..]);
    }
}
