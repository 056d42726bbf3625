//! Randomized tests of the frame decoder: random bytes, and valid frames of
//! every method with bytes flipped, inserted and deleted, fed in random chunks.
//!
//! Properties checked:
//! - `decode` never panics;
//! - while it answers "need more bytes", the buffer never holds more than
//!   `frame_max + 8` bytes (one frame at most, header and frame end included);
//! - the outcome (frames, then the first error if any) does not depend on how
//!   the bytes were chunked, and a valid stream decodes to the frames encoded.

use amq_protocol::frame::AMQPContentHeader;
use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::protocol::{
    AMQPClass, access, basic, channel, confirm, connection, exchange, queue, tx,
};
use amq_protocol::types::{AMQPValue, ByteArray, DecimalValue, FieldTable, LongString};
use bytes::{Bytes, BytesMut};
use gw_amqp::codec::{CodecError, Frame, decode, decode_protocol_header, encode_frame};
use proptest::prelude::*;
use proptest::sample::Index;

fn table() -> FieldTable {
    let mut inner = FieldTable::default();
    inner.insert("ok".into(), AMQPValue::Boolean(true));
    let mut t = FieldTable::default();
    t.insert("i8".into(), AMQPValue::ShortShortInt(-3));
    t.insert("u8".into(), AMQPValue::ShortShortUInt(3));
    t.insert("i16".into(), AMQPValue::ShortInt(-300));
    t.insert("u16".into(), AMQPValue::ShortUInt(300));
    t.insert("i32".into(), AMQPValue::LongInt(-70_000));
    t.insert("u32".into(), AMQPValue::LongUInt(70_000));
    t.insert("i64".into(), AMQPValue::LongLongInt(-1 << 40));
    t.insert("f".into(), AMQPValue::Float(1.5));
    t.insert("d".into(), AMQPValue::Double(-2.25));
    t.insert(
        "dec".into(),
        AMQPValue::DecimalValue(DecimalValue {
            scale: 2,
            value: 12_345,
        }),
    );
    t.insert("s".into(), AMQPValue::LongString("text".into()));
    t.insert("ts".into(), AMQPValue::Timestamp(1_700_000_000));
    t.insert(
        "x".into(),
        AMQPValue::ByteArray(ByteArray::from(&b"\x00\xff"[..])),
    );
    t.insert("v".into(), AMQPValue::Void);
    t.insert(
        "a".into(),
        AMQPValue::FieldArray(
            vec![AMQPValue::LongInt(1), AMQPValue::FieldTable(inner.clone())].into(),
        ),
    );
    t.insert("t".into(), AMQPValue::FieldTable(inner));
    t
}

/// One valid method of every kind AMQP 0-9-1 defines.
fn methods() -> Vec<AMQPClass> {
    use AMQPClass as C;
    vec![
        C::Connection(connection::AMQPMethod::Start(connection::Start {
            version_major: 0,
            version_minor: 9,
            server_properties: table(),
            mechanisms: LongString::from("PLAIN AMQPLAIN"),
            locales: LongString::from("en_US"),
        })),
        C::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
            client_properties: table(),
            mechanism: "PLAIN".into(),
            response: LongString::from("\0guest\0guest"),
            locale: "en_US".into(),
        })),
        C::Connection(connection::AMQPMethod::Secure(Default::default())),
        C::Connection(connection::AMQPMethod::SecureOk(Default::default())),
        C::Connection(connection::AMQPMethod::Tune(connection::Tune {
            channel_max: 2047,
            frame_max: 131_072,
            heartbeat: 60,
        })),
        C::Connection(connection::AMQPMethod::TuneOk(Default::default())),
        C::Connection(connection::AMQPMethod::Open(connection::Open {
            virtual_host: "/".into(),
        })),
        C::Connection(connection::AMQPMethod::OpenOk(Default::default())),
        C::Connection(connection::AMQPMethod::Close(connection::Close {
            reply_code: 320,
            reply_text: "CONNECTION_FORCED".into(),
            class_id: 0,
            method_id: 0,
        })),
        C::Connection(connection::AMQPMethod::CloseOk(Default::default())),
        C::Connection(connection::AMQPMethod::Blocked(connection::Blocked {
            reason: "low memory".into(),
        })),
        C::Connection(connection::AMQPMethod::Unblocked(Default::default())),
        C::Connection(connection::AMQPMethod::UpdateSecret(Default::default())),
        C::Connection(connection::AMQPMethod::UpdateSecretOk(Default::default())),
        C::Channel(channel::AMQPMethod::Open(Default::default())),
        C::Channel(channel::AMQPMethod::OpenOk(Default::default())),
        C::Channel(channel::AMQPMethod::Flow(channel::Flow { active: true })),
        C::Channel(channel::AMQPMethod::FlowOk(Default::default())),
        C::Channel(channel::AMQPMethod::Close(Default::default())),
        C::Channel(channel::AMQPMethod::CloseOk(Default::default())),
        C::Access(access::AMQPMethod::Request(Default::default())),
        C::Access(access::AMQPMethod::RequestOk(Default::default())),
        C::Exchange(exchange::AMQPMethod::Declare(exchange::Declare {
            exchange: "logs".into(),
            kind: "topic".into(),
            durable: true,
            arguments: table(),
            ..Default::default()
        })),
        C::Exchange(exchange::AMQPMethod::DeclareOk(Default::default())),
        C::Exchange(exchange::AMQPMethod::Delete(Default::default())),
        C::Exchange(exchange::AMQPMethod::DeleteOk(Default::default())),
        C::Exchange(exchange::AMQPMethod::Bind(exchange::Bind {
            arguments: table(),
            ..Default::default()
        })),
        C::Exchange(exchange::AMQPMethod::BindOk(Default::default())),
        C::Exchange(exchange::AMQPMethod::Unbind(Default::default())),
        C::Exchange(exchange::AMQPMethod::UnbindOk(Default::default())),
        C::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: "q".into(),
            arguments: table(),
            ..Default::default()
        })),
        C::Queue(queue::AMQPMethod::DeclareOk(queue::DeclareOk {
            queue: "q".into(),
            message_count: 5,
            consumer_count: 1,
        })),
        C::Queue(queue::AMQPMethod::Bind(queue::Bind {
            routing_key: "a.*".into(),
            ..Default::default()
        })),
        C::Queue(queue::AMQPMethod::BindOk(Default::default())),
        C::Queue(queue::AMQPMethod::Purge(Default::default())),
        C::Queue(queue::AMQPMethod::PurgeOk(Default::default())),
        C::Queue(queue::AMQPMethod::Delete(Default::default())),
        C::Queue(queue::AMQPMethod::DeleteOk(Default::default())),
        C::Queue(queue::AMQPMethod::Unbind(queue::Unbind {
            arguments: table(),
            ..Default::default()
        })),
        C::Queue(queue::AMQPMethod::UnbindOk(Default::default())),
        C::Basic(basic::AMQPMethod::Qos(basic::Qos {
            prefetch_count: 10,
            global: false,
        })),
        C::Basic(basic::AMQPMethod::QosOk(Default::default())),
        C::Basic(basic::AMQPMethod::Consume(basic::Consume {
            queue: "q".into(),
            no_ack: true,
            arguments: table(),
            ..Default::default()
        })),
        C::Basic(basic::AMQPMethod::ConsumeOk(Default::default())),
        C::Basic(basic::AMQPMethod::Cancel(Default::default())),
        C::Basic(basic::AMQPMethod::CancelOk(Default::default())),
        C::Basic(basic::AMQPMethod::Publish(basic::Publish {
            routing_key: "q".into(),
            mandatory: true,
            ..Default::default()
        })),
        C::Basic(basic::AMQPMethod::Return(Default::default())),
        C::Basic(basic::AMQPMethod::Deliver(basic::Deliver {
            delivery_tag: 9,
            redelivered: true,
            ..Default::default()
        })),
        C::Basic(basic::AMQPMethod::Get(Default::default())),
        C::Basic(basic::AMQPMethod::GetOk(Default::default())),
        C::Basic(basic::AMQPMethod::GetEmpty(Default::default())),
        C::Basic(basic::AMQPMethod::Ack(basic::Ack {
            delivery_tag: 1 << 40,
            multiple: true,
        })),
        C::Basic(basic::AMQPMethod::Reject(Default::default())),
        C::Basic(basic::AMQPMethod::RecoverAsync(Default::default())),
        C::Basic(basic::AMQPMethod::Recover(Default::default())),
        C::Basic(basic::AMQPMethod::RecoverOk(Default::default())),
        C::Basic(basic::AMQPMethod::Nack(basic::Nack {
            delivery_tag: 3,
            multiple: false,
            requeue: true,
        })),
        C::Confirm(confirm::AMQPMethod::Select(Default::default())),
        C::Confirm(confirm::AMQPMethod::SelectOk(Default::default())),
        C::Tx(tx::AMQPMethod::Select(Default::default())),
        C::Tx(tx::AMQPMethod::SelectOk(Default::default())),
        C::Tx(tx::AMQPMethod::Commit(Default::default())),
        C::Tx(tx::AMQPMethod::CommitOk(Default::default())),
        C::Tx(tx::AMQPMethod::Rollback(Default::default())),
        C::Tx(tx::AMQPMethod::RollbackOk(Default::default())),
    ]
}

/// Every method, plus content headers, body frames and a heartbeat.
fn sample_frames() -> Vec<Frame> {
    let mut frames: Vec<Frame> = methods()
        .into_iter()
        .enumerate()
        .map(|(i, m)| Frame::Method(i as u16, m))
        .collect();
    let props = AMQPProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_headers(table())
        .with_correlation_id("c-1".into())
        .with_timestamp(1_700_000_000);
    frames.push(Frame::Header(
        1,
        AMQPContentHeader {
            class_id: 60,
            body_size: 300,
            properties: props,
        },
    ));
    frames.push(Frame::Header(
        2,
        AMQPContentHeader {
            class_id: 60,
            body_size: 0,
            properties: AMQPProperties::default(),
        },
    ));
    frames.push(Frame::Body(1, Bytes::from(vec![0xCE; 300])));
    frames.push(Frame::Body(3, Bytes::new()));
    frames.push(Frame::Heartbeat);
    frames
}

fn encode_all(frames: &[Frame]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for f in frames {
        encode_frame(&mut out, f).expect("sample frames encode");
    }
    out.to_vec()
}

/// Feeds `stream` cut at `cuts` (sorted, deduplicated positions); returns the
/// frames decoded and the first error. Panics if the buffer outgrows one frame.
fn feed(stream: &[u8], cuts: &[usize], frame_max: u32) -> (Vec<Frame>, Option<CodecError>) {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut start = 0;
    let ends = cuts
        .iter()
        .copied()
        .filter(|&c| c > 0 && c < stream.len())
        .chain([stream.len()]);
    for end in ends {
        buf.extend_from_slice(&stream[start..end]);
        start = end;
        loop {
            match decode(&mut buf, frame_max) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => {
                    // frame_max 0 means "no limit" (the spec's meaning), so no bound then.
                    let bound = if frame_max == 0 {
                        usize::MAX
                    } else {
                        frame_max as usize + 8
                    };
                    assert!(
                        buf.len() <= bound,
                        "holding {} bytes, frame_max {frame_max}",
                        buf.len()
                    );
                    break;
                }
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    (frames, None)
}

fn cuts(len: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..=len, 0..24).prop_map(|mut v| {
        v.sort_unstable();
        v.dedup();
        v
    })
}

#[derive(Clone, Debug)]
enum Mutation {
    Flip(Index, u8),
    Insert(Index, u8),
    Delete(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 1..=255u8).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Delete),
    ]
}

fn mutate(stream: &mut Vec<u8>, mutations: &[Mutation]) {
    for m in mutations {
        if stream.is_empty() {
            return;
        }
        match m {
            Mutation::Flip(i, x) => {
                let i = i.index(stream.len());
                stream[i] ^= x;
            }
            Mutation::Insert(i, b) => {
                let i = i.index(stream.len() + 1);
                stream.insert(i, *b);
            }
            Mutation::Delete(i) => {
                let i = i.index(stream.len());
                stream.remove(i);
            }
        }
    }
}

/// A stream of 1–12 sample frames, its frames, and random cuts.
fn valid_stream() -> impl Strategy<Value = (Vec<Frame>, Vec<u8>, Vec<usize>)> {
    let all = sample_frames();
    prop::collection::vec(prop::sample::select(all), 1..12).prop_flat_map(|frames| {
        let bytes = encode_all(&frames);
        let len = bytes.len();
        (Just(frames), Just(bytes), cuts(len))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn valid_streams_decode_alike_in_any_chunking((frames, bytes, cuts) in valid_stream()) {
        let (decoded, err) = feed(&bytes, &cuts, 131_072);
        prop_assert_eq!(err, None);
        prop_assert_eq!(decoded, frames);
    }

    #[test]
    fn mutated_streams_never_panic_and_ignore_chunking(
        (_, mut bytes, _) in valid_stream(),
        mutations in prop::collection::vec(mutation(), 1..6),
        seed_cuts in prop::collection::vec(any::<Index>(), 0..24),
        frame_max in prop::sample::select(vec![0u32, 64, 512, 4096, 131_072]),
    ) {
        mutate(&mut bytes, &mutations);
        let mut cuts: Vec<usize> = seed_cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let whole = feed(&bytes, &[], frame_max);
        let chunked = feed(&bytes, &cuts, frame_max);
        let bytewise: Vec<usize> = (1..bytes.len()).collect();
        prop_assert_eq!(&whole, &chunked);
        prop_assert_eq!(&whole, &feed(&bytes, &bytewise, frame_max));
        if let Some(e) = whole.1 {
            prop_assert!([501, 502, 505, 540].contains(&e.reply_code()), "{:?}", e);
        }
    }

    #[test]
    fn random_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..4096),
        seed_cuts in prop::collection::vec(any::<Index>(), 0..24),
        frame_max in prop::sample::select(vec![64u32, 4096, 131_072]),
    ) {
        let mut cuts: Vec<usize> = seed_cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.dedup();
        prop_assert_eq!(feed(&bytes, &[], frame_max), feed(&bytes, &cuts, frame_max));
        let _ = decode_protocol_header(&mut BytesMut::from(&bytes[..]));
    }

    /// Random bytes behind a plausible frame header reach the method, header
    /// and body parsers instead of failing on the frame type.
    #[test]
    fn random_payloads_never_panic(
        frame_type in prop::sample::select(vec![1u8, 2, 3, 8]),
        ids in (prop::sample::select(vec![10u16, 20, 30, 40, 50, 60, 85, 90]), 0..130u16),
        payload in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut p = Vec::new();
        if frame_type == 1 {
            p.extend_from_slice(&ids.0.to_be_bytes());
            p.extend_from_slice(&ids.1.to_be_bytes());
        } else if frame_type == 2 {
            p.extend_from_slice(&[0, 60, 0, 0]);
        }
        p.extend_from_slice(&payload);
        let mut frame = vec![frame_type, 0, 1];
        frame.extend_from_slice(&(p.len() as u32).to_be_bytes());
        frame.extend_from_slice(&p);
        frame.push(0xCE);
        let (frames, err) = feed(&frame, &[], 4096);
        prop_assert!(frames.len() + usize::from(err.is_some()) == 1);
    }
}
