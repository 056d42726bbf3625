//! One task per `basic.consume`: it pulls deliveries from its engine consumer
//! as far as the windows allow and encodes them into the connection's outbox.
//!
//! Three windows bound what a task takes, so nothing runs unboundedly ahead:
//! - the socket: the task waits while the outbox holds [`HIGH_WATER`] bytes
//!   or more (this is what paces a no-ack consumer);
//! - the consumer's prefetch (`basic.qos` per consumer), kept by the engine;
//! - the channel's global prefetch and `channel.flow`, kept by [`ChannelShared`].
//!
//! Under load a take returns up to [`MAX_BATCH`] deliveries, which are encoded
//! in one go under the outbox lock together with their delivery tags, so tags
//! reach the client in increasing order whatever the number of consumers.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use amq_protocol::types::{AMQPValue, ShortString};
use bytes::BytesMut;
use gw_core::{Delivery, Error};
use tokio_util::sync::CancellationToken;

use crate::codec::{encode_content, encode_deliver};
use crate::outbox::HIGH_WATER;
use crate::properties::properties_from_message;
use crate::session::{Event, Session};
use crate::tags::{ChannelShared, ConsumerRef, Source, Unacked};

/// Most deliveries taken and encoded at once.
pub const MAX_BATCH: usize = 256;

/// Header carrying the number of earlier delivery attempts (RabbitMQ quorum queues).
pub const X_DELIVERY_COUNT: &str = "x-delivery-count";

/// Everything a consumer task needs.
pub struct ConsumerTask {
    /// The connection.
    pub session: Arc<Session>,
    /// The channel.
    pub channel: Arc<ChannelShared>,
    /// The engine consumer.
    pub consumer: Arc<ConsumerRef>,
    /// The consumer tag.
    pub tag: ShortString,
    /// Deliveries are settled as they are sent.
    pub no_ack: bool,
    /// Cancelled to stop the task (basic.cancel, channel or connection close).
    pub stop: CancellationToken,
    /// Distinguishes this consumer from a later one with the same tag.
    pub id: u64,
}

impl ConsumerTask {
    /// Runs until stopped, or until the engine cancels the consumer.
    pub async fn run(self) {
        let mut batch: Vec<Delivery> = Vec::with_capacity(MAX_BATCH);
        // Average encoded size of recent deliveries, so one batch of large
        // messages does not blow far past the outbox's high-water mark.
        let mut avg = 512usize;
        loop {
            tokio::select! {
                biased;
                () = self.stop.cancelled() => return,
                () = self.session.outbox.wait_room() => {}
            }
            if self.session.outbox.is_closed() {
                return;
            }
            let want = (HIGH_WATER / avg.max(1)).clamp(1, MAX_BATCH);
            let counts = !self.no_ack;
            let allowed = tokio::select! {
                biased;
                () = self.stop.cancelled() => return,
                n = self.channel.reserve(want, counts) => n,
            };
            if allowed == 0 {
                return;
            }
            let taken = tokio::select! {
                biased;
                () = self.stop.cancelled() => Err(None),
                r = self.consumer.consumer.take(allowed, &mut batch) => r.map_err(Some),
            };
            match taken {
                Ok(_) => {
                    let bytes = self.deliver(&mut batch, if counts { allowed } else { 0 });
                    avg = (avg + bytes) / 2;
                }
                Err(e) => {
                    if counts {
                        ChannelShared::unreserve(&mut self.channel.tags.lock(), allowed);
                        self.channel.wake();
                    }
                    match e {
                        None => return,
                        Some(Error::ConsumerCancelled(why)) => {
                            self.cancelled_by_engine(&why);
                            return;
                        }
                        Some(other) => {
                            tracing::warn!(error = %other, "AMQP consumer stopped");
                            self.cancelled_by_engine(&other.to_string());
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Encodes a batch with fresh tags; returns the average bytes per delivery.
    fn deliver(&self, batch: &mut Vec<Delivery>, reserved: usize) -> usize {
        let n = batch.len().max(1);
        let frame_max = self.session.frame_max;
        let bytes = self.session.outbox.push(|buf| {
            let start = buf.len();
            let mut tags = self.channel.tags.lock();
            ChannelShared::unreserve(&mut tags, reserved);
            for d in batch.drain(..) {
                let tag = tags.next_tag();
                encode_delivery(buf, self.channel.id, &self.tag, tag, &d, frame_max);
                if !self.no_ack {
                    tags.insert(
                        tag,
                        Unacked {
                            source: Source::Consumer(Arc::clone(&self.consumer)),
                            tag: d.tag,
                        },
                    );
                }
            }
            buf.len() - start
        });
        if reserved > n {
            self.channel.wake();
        }
        bytes / n
    }

    /// The queue (or group) was deleted: tell the client if it can hear it,
    /// and the reader so it forgets the consumer.
    fn cancelled_by_engine(&self, why: &str) {
        tracing::debug!(tag = %self.tag, why, "consumer cancelled by the engine");
        self.consumer.stopped.store(true, Ordering::Release);
        if self.session.caps.consumer_cancel_notify && !self.channel.is_closed() {
            let cancel = amq_protocol::protocol::basic::Cancel {
                consumer_tag: self.tag.clone(),
                nowait: true,
            };
            self.session.send(
                self.channel.id,
                &amq_protocol::protocol::AMQPClass::Basic(
                    amq_protocol::protocol::basic::AMQPMethod::Cancel(cancel),
                ),
            );
        }
        let _ = self.session.events.send(Event::ConsumerGone {
            channel: self.channel.id,
            tag: self.tag.as_str().to_owned(),
            id: self.id,
        });
    }
}

/// Encodes `basic.deliver` + content for one delivery.
pub fn encode_delivery(
    buf: &mut BytesMut,
    channel: u16,
    consumer_tag: &ShortString,
    delivery_tag: u64,
    d: &Delivery,
    frame_max: u32,
) {
    let m = &d.message;
    let at = buf.len();
    encode_deliver(
        buf,
        channel,
        consumer_tag.as_str(),
        delivery_tag,
        d.redelivered,
        &m.exchange,
        &m.routing_key,
    );
    if let Err(e) = encode_body(buf, channel, d, frame_max) {
        // Cannot happen for properties from our own conversion; never leave
        // a method without its content on the wire.
        buf.truncate(at);
        tracing::error!(error = %e, "cannot encode a delivery");
    }
}

/// Encodes the content header and body frames of a delivery, with the
/// `x-delivery-count` header when it was delivered before.
pub fn encode_body(
    buf: &mut BytesMut,
    channel: u16,
    d: &Delivery,
    frame_max: u32,
) -> Result<(), crate::codec::CodecError> {
    let mut props = properties_from_message(&d.message);
    let earlier = d.delivery_count().saturating_sub(1);
    if earlier > 0 {
        let mut headers = props.headers().clone().unwrap_or_default();
        headers.insert(
            X_DELIVERY_COUNT.into(),
            AMQPValue::LongLongInt(i64::from(earlier)),
        );
        props = props.with_headers(headers);
    }
    encode_content(buf, channel, 60, &props, &d.message.body, frame_max)
}
