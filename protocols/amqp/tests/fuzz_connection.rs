//! Randomized sessions: after a real handshake, a client sends sequences of
//! valid, mutated and garbage frames. Whatever arrives, the server answers
//! within its close timeout or keeps going, never panics, never hangs, and
//! keeps serving other connections and stored messages.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use amq_protocol::protocol::{AMQPClass, basic, channel, exchange, queue};
use amq_protocol::types::FieldTable;
use bytes::BytesMut;
use common::Gateway;
use common::raw::{Login, Raw};
use gw_amqp::codec::{encode_content, encode_method};
use proptest::prelude::*;
use tokio::io::AsyncReadExt;

/// One piece of a session.
#[derive(Clone, Debug)]
enum Piece {
    Method(u16, u8, u64),
    Publish(u16, Vec<u8>, bool),
    Garbage(Vec<u8>),
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        4 => (0u16..4, 0u8..12, 0u64..6).prop_map(|(c, m, n)| Piece::Method(c, m, n)),
        3 => (0u16..4, proptest::collection::vec(any::<u8>(), 0..300), any::<bool>())
            .prop_map(|(c, b, split)| Piece::Publish(c, b, split)),
        1 => proptest::collection::vec(any::<u8>(), 1..40).prop_map(Piece::Garbage),
    ]
}

fn method(kind: u8, n: u64) -> AMQPClass {
    let q = format!("fz{n}");
    match kind {
        0 => AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
        1 => AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
            reply_code: 200,
            reply_text: "x".into(),
            class_id: 0,
            method_id: 0,
        })),
        2 => AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: q.as_str().into(),
            exclusive: n.is_multiple_of(2),
            ..Default::default()
        })),
        3 => AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
            queue: q.as_str().into(),
            no_ack: !n.is_multiple_of(2),
            ..Default::default()
        })),
        4 => AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
            delivery_tag: n,
            multiple: n.is_multiple_of(2),
        })),
        5 => AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get {
            queue: q.as_str().into(),
            no_ack: false,
        })),
        6 => AMQPClass::Queue(queue::AMQPMethod::Delete(queue::Delete {
            queue: q.as_str().into(),
            ..Default::default()
        })),
        7 => AMQPClass::Exchange(exchange::AMQPMethod::Declare(exchange::Declare {
            exchange: format!("fx{n}").as_str().into(),
            kind: if n.is_multiple_of(3) {
                "nonsense"
            } else {
                "fanout"
            }
            .into(),
            arguments: FieldTable::default(),
            ..Default::default()
        })),
        8 => AMQPClass::Basic(basic::AMQPMethod::Nack(basic::Nack {
            delivery_tag: n,
            multiple: true,
            requeue: n.is_multiple_of(2),
        })),
        9 => AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
            prefetch_count: n as u16,
            global: n.is_multiple_of(2),
        })),
        10 => AMQPClass::Basic(basic::AMQPMethod::Recover(basic::Recover {
            requeue: n > 0,
        })),
        _ => AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel {
            consumer_tag: "nope".into(),
            nowait: false,
        })),
    }
}

fn bytes_of(pieces: &[Piece], flips: &[(usize, u8)]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for p in pieces {
        match p {
            Piece::Method(ch, kind, n) => encode_method(&mut out, *ch, &method(*kind, *n)).unwrap(),
            Piece::Publish(ch, body, split) => {
                let publish = basic::Publish {
                    exchange: "".into(),
                    routing_key: "fz1".into(),
                    mandatory: true,
                    immediate: false,
                };
                encode_method(
                    &mut out,
                    *ch,
                    &AMQPClass::Basic(basic::AMQPMethod::Publish(publish)),
                )
                .unwrap();
                let frame_max = if *split { 64 } else { 131_072 };
                encode_content(&mut out, *ch, 60, &Default::default(), body, frame_max).unwrap();
            }
            Piece::Garbage(g) => out.extend_from_slice(g),
        }
    }
    let mut v = out.to_vec();
    for &(at, x) in flips {
        if !v.is_empty() {
            let i = at % v.len();
            v[i] ^= x;
        }
    }
    v
}

#[test]
fn random_sessions_never_hurt_the_server() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let gw = rt.block_on(Gateway::start());
    let addr = gw.addr;
    // A stored message that must survive everything.
    let keeper = rt.block_on(async {
        let mut raw = Raw::open(addr, &Login::default()).await;
        raw.open_channel(1).await;
        let declare = queue::Declare {
            queue: "keep".into(),
            durable: true,
            ..Default::default()
        };
        raw.method(1, AMQPClass::Queue(queue::AMQPMethod::Declare(declare)))
            .await;
        raw.frame().await.unwrap();
        raw.send(&Raw::publish_bytes(1, "", "keep", b"precious", 131_072))
            .await;
        raw
    });
    let config = ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(
        pieces in proptest::collection::vec(piece(), 1..12),
        flips in proptest::collection::vec((any::<usize>(), 1u8..=255), 0..3),
    )| {
        let bytes = bytes_of(&pieces, &flips);
        rt.block_on(async {
            let mut raw = Raw::open(addr, &Login::default()).await;
            raw.send(&bytes).await;
            // Drain whatever comes back until the server closes or goes quiet.
            let mut sink = vec![0u8; 1 << 16];
            loop {
                match tokio::time::timeout(Duration::from_millis(300), raw.sock.read(&mut sink)).await {
                    Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                    Ok(Ok(_)) => {}
                }
            }
            // The server still opens connections promptly.
            let fresh = tokio::time::timeout(Duration::from_secs(5), Raw::open(addr, &Login::default())).await;
            prop_assert!(fresh.is_ok(), "server stopped answering after {pieces:?}");
            Ok(())
        })?;
    });
    rt.block_on(async {
        let q = gw.engine.tenant("/").unwrap().queue("keep").unwrap();
        assert_eq!(q.message_count(), 1, "the stored message is untouched");
        drop(keeper);
        gw.stop().await;
    });
}
