//! Replies that must wait until the engine has written something to disk:
//! publisher confirms (`basic.ack` / `basic.nack` from the server) and
//! `tx.commit-ok`.
//!
//! The reader never waits for the disk. For each publish on a confirming
//! channel it queues a [`Deferred`] (already decided: ack, nack; or waiting
//! for a store ticket), in publish order, and hands a batch per read to this
//! connection's confirm task. The task waits once for the highest ticket of
//! what it has (tickets are ordered: when the last one is durable, all are),
//! then writes the outcomes in order, coalescing consecutive acks of a channel
//! into one `basic.ack` with `multiple` set. While it waits, the next batch
//! accumulates, so confirms ride the engine's group commit.

use std::sync::Arc;

use amq_protocol::protocol::{AMQPClass, basic};
use gw_core::{Engine, Ticket};
use tokio::sync::mpsc;

use crate::codec::encode_method;
use crate::outbox::Outbox;
use crate::tags::ChannelShared;

/// The fate of one confirmed publish, as known when it was routed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted (transient, or unroutable): ack.
    Ack,
    /// Refused (a full queue with reject-publish, a store failure): nack.
    Nack,
    /// Accepted once this ticket is durable; nack if the store fails.
    Durable(Ticket),
}

/// A reply the confirm task sends in order.
#[derive(Debug)]
pub enum Deferred {
    /// A publisher confirm.
    Confirm {
        /// The channel (nothing is sent once it closed).
        channel: Arc<ChannelShared>,
        /// The publish sequence number (1, 2, … per channel).
        seq: u64,
        /// What to answer.
        outcome: Outcome,
    },
    /// A method to send once everything before it is durable (tx.commit-ok).
    Reply {
        /// The channel.
        channel: Arc<ChannelShared>,
        /// The method.
        method: AMQPClass,
        /// Wait for this ticket first.
        after: Option<Ticket>,
    },
}

impl Deferred {
    fn ticket(&self) -> Option<Ticket> {
        match self {
            Deferred::Confirm {
                outcome: Outcome::Durable(t),
                ..
            } => Some(*t),
            Deferred::Reply { after, .. } => *after,
            Deferred::Confirm { .. } => None,
        }
    }
}

/// A run of consecutive confirms with the same answer on one channel.
struct Run {
    channel: Arc<ChannelShared>,
    first: u64,
    last: u64,
    ack: bool,
}

/// Sends deferred replies until the sender side is dropped.
pub async fn run(
    engine: Engine,
    outbox: Arc<Outbox>,
    mut rx: mpsc::UnboundedReceiver<Vec<Deferred>>,
) {
    let mut batch: Vec<Deferred> = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.extend(first);
        while let Ok(more) = rx.try_recv() {
            batch.extend(more);
        }
        // One wait for the newest ticket decides them all (tickets are
        // decided in order); each is then asked whether its own batch
        // failed, since a batch can fail and a later one succeed.
        let waited = match batch.iter().filter_map(Deferred::ticket).max() {
            Some(t) => match engine.wait_durable(t).await {
                Ok(()) => true,
                Err(gw_core::Error::ShuttingDown) => false,
                Err(e) => {
                    tracing::error!(error = %e, "messages could not be stored; nacking their confirms");
                    true
                }
            },
            None => true,
        };
        let stored = |t: Ticket| waited && !engine.ticket_failed(t);
        outbox.push(|buf| write_batch(buf, batch.drain(..), stored));
    }
}

/// Writes the replies in order; `stored` says whether a ticket's write made it.
fn write_batch(
    buf: &mut bytes::BytesMut,
    items: impl Iterator<Item = Deferred>,
    stored: impl Fn(Ticket) -> bool,
) {
    let mut run: Option<Run> = None;
    for item in items {
        match item {
            Deferred::Confirm {
                channel,
                seq,
                outcome,
            } => {
                let ack = match outcome {
                    Outcome::Ack => true,
                    Outcome::Nack => false,
                    Outcome::Durable(t) => stored(t),
                };
                if let Some(r) = &mut run
                    && Arc::ptr_eq(&r.channel, &channel)
                    && r.ack == ack
                    && seq == r.last + 1
                {
                    r.last = seq;
                    continue;
                }
                if let Some(r) = run.take() {
                    write_run(buf, r);
                }
                run = Some(Run {
                    channel,
                    first: seq,
                    last: seq,
                    ack,
                });
            }
            Deferred::Reply {
                channel, method, ..
            } => {
                if let Some(r) = run.take() {
                    write_run(buf, r);
                }
                if !channel.is_closed() {
                    encode(buf, channel.id, &method);
                }
            }
        }
    }
    if let Some(r) = run {
        write_run(buf, r);
    }
}

fn write_run(buf: &mut bytes::BytesMut, r: Run) {
    if r.channel.is_closed() {
        return;
    }
    let multiple = r.last > r.first;
    let method = if r.ack {
        basic::AMQPMethod::Ack(basic::Ack {
            delivery_tag: r.last,
            multiple,
        })
    } else {
        basic::AMQPMethod::Nack(basic::Nack {
            delivery_tag: r.last,
            multiple,
            requeue: false,
        })
    };
    encode(buf, r.channel.id, &AMQPClass::Basic(method));
}

fn encode(buf: &mut bytes::BytesMut, channel: u16, method: &AMQPClass) {
    if let Err(e) = encode_method(buf, channel, method) {
        tracing::error!(error = %e, "cannot encode a confirm");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Frame, decode};

    fn confirm(ch: &Arc<ChannelShared>, seq: u64, outcome: Outcome) -> Deferred {
        Deferred::Confirm {
            channel: Arc::clone(ch),
            seq,
            outcome,
        }
    }

    fn methods(mut buf: bytes::BytesMut) -> Vec<(u16, basic::AMQPMethod)> {
        let mut out = Vec::new();
        while let Some(Frame::Method(ch, AMQPClass::Basic(m))) = decode(&mut buf, 0).unwrap() {
            out.push((ch, m));
        }
        out
    }

    #[test]
    fn consecutive_acks_coalesce_and_nacks_split_runs() {
        let a = Arc::new(ChannelShared::new(1));
        let b = Arc::new(ChannelShared::new(2));
        let items = vec![
            confirm(&a, 1, Outcome::Ack),
            confirm(&a, 2, Outcome::Durable(5)),
            confirm(&b, 1, Outcome::Ack),
            confirm(&a, 3, Outcome::Ack),
            confirm(&a, 4, Outcome::Nack),
            confirm(&a, 5, Outcome::Durable(6)),
        ];
        let mut buf = bytes::BytesMut::new();
        write_batch(&mut buf, items.into_iter(), |_| true);
        let got = methods(buf);
        let expect = [
            (
                1,
                basic::AMQPMethod::Ack(basic::Ack {
                    delivery_tag: 2,
                    multiple: true,
                }),
            ),
            (
                2,
                basic::AMQPMethod::Ack(basic::Ack {
                    delivery_tag: 1,
                    multiple: false,
                }),
            ),
            (
                1,
                basic::AMQPMethod::Ack(basic::Ack {
                    delivery_tag: 3,
                    multiple: false,
                }),
            ),
            (
                1,
                basic::AMQPMethod::Nack(basic::Nack {
                    delivery_tag: 4,
                    multiple: false,
                    requeue: false,
                }),
            ),
            (
                1,
                basic::AMQPMethod::Ack(basic::Ack {
                    delivery_tag: 5,
                    multiple: false,
                }),
            ),
        ];
        assert_eq!(got, expect);
    }

    #[test]
    fn a_failed_batch_before_a_stored_one_is_nacked_alone() {
        let a = Arc::new(ChannelShared::new(1));
        let items = (1..=3).map(|t| confirm(&a, t, Outcome::Durable(t)));
        let mut buf = bytes::BytesMut::new();
        write_batch(&mut buf, items, |t| t != 2);
        let tags: Vec<(u64, bool)> = methods(buf)
            .into_iter()
            .map(|(_, m)| match m {
                basic::AMQPMethod::Ack(a) => (a.delivery_tag, true),
                basic::AMQPMethod::Nack(n) => (n.delivery_tag, false),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(tags, [(1, true), (2, false), (3, true)]);
    }

    #[test]
    fn a_failed_store_nacks_what_waited_for_it_and_closed_channels_get_nothing() {
        let a = Arc::new(ChannelShared::new(1));
        let gone = Arc::new(ChannelShared::new(2));
        gone.close();
        let items = vec![
            confirm(&a, 1, Outcome::Durable(1)),
            confirm(&a, 2, Outcome::Durable(2)),
            confirm(&gone, 7, Outcome::Ack),
        ];
        let mut buf = bytes::BytesMut::new();
        write_batch(&mut buf, items.into_iter(), |_| false);
        let got = methods(buf);
        assert_eq!(
            got,
            [(
                1,
                basic::AMQPMethod::Nack(basic::Nack {
                    delivery_tag: 2,
                    multiple: true,
                    requeue: false
                })
            )]
        );
    }
}
