//! Helpers for the lapin-driven tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Consumer};

use super::within;

pub fn no_args() -> FieldTable {
    FieldTable::default()
}

pub fn args(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

pub async fn declare(ch: &Channel, name: &str) -> String {
    ch.queue_declare(name.into(), QueueDeclareOptions::default(), no_args())
        .await
        .unwrap()
        .name()
        .as_str()
        .to_owned()
}

pub async fn publish(ch: &Channel, exchange: &str, key: &str, body: &[u8]) {
    ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        body,
        BasicProperties::default(),
    )
    .await
    .unwrap();
}

pub async fn consume(ch: &Channel, queue: &str, no_ack: bool) -> Consumer {
    ch.basic_consume(
        queue.into(),
        "".into(),
        BasicConsumeOptions {
            no_ack,
            ..Default::default()
        },
        no_args(),
    )
    .await
    .unwrap()
}

pub async fn next(c: &mut Consumer) -> Delivery {
    within(5, c.next()).await.unwrap().unwrap()
}

/// Nothing arrives within `ms`.
pub async fn quiet(c: &mut Consumer, ms: u64) {
    let got = tokio::time::timeout(Duration::from_millis(ms), c.next()).await;
    assert!(got.is_err(), "unexpected delivery: {got:?}");
}

/// After an asynchronous error (ack, publish) lapin reports the server's
/// close on the next call either as the protocol error or as a closed channel;
/// the exact codes of these cases are checked byte for byte in `bad_input.rs`.
pub fn closed_with(e: &lapin::Error, code: u16) {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(p) => assert_eq!(p.get_id(), code, "{e}"),
        lapin::ErrorKind::InvalidChannelState(..) => {}
        other => panic!("expected channel close {code}, got {other:?}"),
    }
}

pub fn amqp_code(e: &lapin::Error) -> Option<u16> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(p) => Some(p.get_id()),
        _ => None,
    }
}
