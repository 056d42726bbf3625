//! A channel's delivery tags: the numbers the client acknowledges with, mapped
//! to the engine deliveries they stand for (AMQP 0-9-1 § 1.8.3.13: tags are
//! per channel, start at 1 and increase).
//!
//! Consumer tasks assign tags and record unacknowledged deliveries; the reader
//! settles them on `basic.ack` / `nack` / `reject` / `recover`, and drops them
//! all when the channel closes. What an entry holds keeps its engine consumer
//! alive (`Arc`), so a consumer the client cancelled still settles its
//! outstanding deliveries afterwards, as RabbitMQ allows; the consumer goes
//! away in the engine when its last unacknowledged delivery is settled.
//!
//! The engine may refuse a settlement (the lease timed out and the message
//! went to someone else, the queue was deleted): the channel owns the tag
//! space, so that is logged at debug level and never becomes a channel error.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use gw_core::{Consumer, DeliveryTag, Queue};
use parking_lot::Mutex;
use tokio::sync::Notify;

/// An engine consumer shared by its task and its unacknowledged deliveries.
#[derive(Debug)]
pub struct ConsumerRef {
    /// The engine's handle; dropping the last reference cancels it there.
    pub consumer: Consumer,
    /// Set once the client (or the channel) cancelled it: it takes nothing more.
    pub stopped: AtomicBool,
}

/// Where an unacknowledged delivery came from.
#[derive(Clone)]
pub enum Source {
    /// A `basic.consume` consumer.
    Consumer(Arc<ConsumerRef>),
    /// A `basic.get` on a queue's group.
    Pull {
        /// The queue.
        queue: Arc<Queue>,
        /// The group pulled from.
        group: Arc<str>,
    },
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Consumer(c) => write!(f, "consumer {:?}", c.consumer),
            Source::Pull { queue, group } => write!(f, "pull {}/{group}", queue.name()),
        }
    }
}

impl Source {
    fn same(&self, other: &Source) -> bool {
        match (self, other) {
            (Source::Consumer(a), Source::Consumer(b)) => Arc::ptr_eq(a, b),
            (Source::Pull { queue: a, group: g }, Source::Pull { queue: b, group: h }) => {
                Arc::ptr_eq(a, b) && g == h
            }
            _ => false,
        }
    }
}

/// One unacknowledged delivery.
#[derive(Clone, Debug)]
pub struct Unacked {
    /// Who settles it.
    pub source: Source,
    /// The engine's tag.
    pub tag: DeliveryTag,
}

/// How to settle deliveries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settle {
    /// Done with.
    Ack,
    /// Returned: requeued, or dead-lettered when `requeue` is false.
    Nack {
        /// Hand it out again.
        requeue: bool,
    },
}

/// The tag counter and the unacknowledged deliveries of one channel.
#[derive(Debug, Default)]
pub struct TagSpace {
    last: u64,
    unacked: BTreeMap<u64, Unacked>,
    /// Window slots promised to consumer tasks that are taking (global prefetch).
    reserved: usize,
}

impl TagSpace {
    /// The next delivery tag.
    pub fn next_tag(&mut self) -> u64 {
        self.last += 1;
        self.last
    }

    /// Records a delivery awaiting acknowledgement.
    pub fn insert(&mut self, tag: u64, entry: Unacked) {
        self.unacked.insert(tag, entry);
    }

    /// Unacknowledged deliveries.
    pub fn len(&self) -> usize {
        self.unacked.len()
    }

    /// Removes what an ack/nack/reject names: the tag itself, or with
    /// `multiple` every tag up to it (tag 0 with `multiple`: all of them).
    /// `Err(tag)` when the tag is not outstanding (RabbitMQ: "unknown
    /// delivery tag"); nothing is removed then.
    pub fn remove(&mut self, tag: u64, multiple: bool) -> Result<Vec<(u64, Unacked)>, u64> {
        if multiple && tag == 0 {
            return Ok(self.remove_all());
        }
        if !self.unacked.contains_key(&tag) {
            return Err(tag);
        }
        if !multiple {
            return Ok(self
                .unacked
                .remove(&tag)
                .map(|e| vec![(tag, e)])
                .unwrap_or_default());
        }
        let rest = self.unacked.split_off(&(tag + 1));
        let upto = std::mem::replace(&mut self.unacked, rest);
        Ok(upto.into_iter().collect())
    }

    /// Removes every outstanding delivery, in tag order.
    pub fn remove_all(&mut self) -> Vec<(u64, Unacked)> {
        std::mem::take(&mut self.unacked).into_iter().collect()
    }

    /// Puts back deliveries removed by an ack that a transaction rolled back.
    pub fn restore(&mut self, entries: Vec<(u64, Unacked)>) {
        self.unacked.extend(entries);
    }
}

/// What a channel shares with its consumer tasks.
#[derive(Debug)]
pub struct ChannelShared {
    /// The channel number.
    pub id: u16,
    /// Tags and unacknowledged deliveries. Lock order: the outbox first, then this.
    pub tags: Mutex<TagSpace>,
    /// Woken when consumer tasks may take again (acks freed the global
    /// window, flow resumed, the channel closed).
    credit: Notify,
    flow: AtomicBool,
    closed: AtomicBool,
    /// `basic.qos` with `global`: the most unacknowledged deliveries over the
    /// whole channel (0 = no limit), as RabbitMQ 3.x reads the flag.
    global_prefetch: AtomicU32,
}

impl ChannelShared {
    /// A fresh channel: flow on, no global limit.
    pub fn new(id: u16) -> Self {
        ChannelShared {
            id,
            tags: Mutex::new(TagSpace::default()),
            credit: Notify::new(),
            flow: AtomicBool::new(true),
            closed: AtomicBool::new(false),
            global_prefetch: AtomicU32::new(0),
        }
    }

    /// True once the channel is closing: nothing more may be sent on it.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Marks the channel closing and wakes its consumer tasks.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.credit.notify_waiters();
    }

    /// `channel.flow`: pauses or resumes deliveries.
    pub fn set_flow(&self, active: bool) {
        self.flow.store(active, Ordering::Release);
        self.credit.notify_waiters();
    }

    /// Sets the channel-wide window (`basic.qos` global).
    pub fn set_global_prefetch(&self, count: u32) {
        self.global_prefetch.store(count, Ordering::Release);
        self.credit.notify_waiters();
    }

    /// Called after deliveries were settled: consumer tasks waiting for the
    /// global window may go on.
    pub fn freed(&self) {
        if self.global_prefetch.load(Ordering::Acquire) != 0 {
            self.credit.notify_waiters();
        }
    }

    /// How many deliveries a consumer task may take now, at most `want`;
    /// waits while flow is off or the global window is full. `counts`: the
    /// deliveries will await acknowledgement (no-ack ones do not count).
    /// Returns 0 only when the channel closed.
    pub async fn reserve(&self, want: usize, counts: bool) -> usize {
        loop {
            let notified = self.credit.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_closed() {
                return 0;
            }
            if self.flow.load(Ordering::Acquire) {
                let limit = self.global_prefetch.load(Ordering::Acquire) as usize;
                if !counts || limit == 0 {
                    return want;
                }
                let mut tags = self.tags.lock();
                let used = tags.len() + tags.reserved;
                if used < limit {
                    let n = want.min(limit - used);
                    tags.reserved += n;
                    return n;
                }
            }
            notified.await;
        }
    }

    /// Gives back window slots [`ChannelShared::reserve`] promised (call with
    /// the tags lock held, when recording what was actually taken).
    pub fn unreserve(tags: &mut TagSpace, n: usize) {
        tags.reserved = tags.reserved.saturating_sub(n);
    }

    /// Wakes waiting consumer tasks after [`ChannelShared::unreserve`] left slots free.
    pub fn wake(&self) {
        self.credit.notify_waiters();
    }
}

/// Settles removed deliveries with the engine, grouped per source so that a
/// `multiple` ack of a thousand deliveries is one engine call.
pub fn settle(entries: Vec<(u64, Unacked)>, how: Settle) {
    let mut runs: Vec<(Source, Vec<DeliveryTag>)> = Vec::new();
    for (_, e) in entries {
        match runs.iter_mut().find(|(s, _)| s.same(&e.source)) {
            Some((_, tags)) => tags.push(e.tag),
            None => runs.push((e.source, vec![e.tag])),
        }
    }
    for (source, tags) in runs {
        settle_run(&source, &tags, how);
    }
}

fn settle_run(source: &Source, tags: &[DeliveryTag], how: Settle) {
    let res = match (source, how) {
        (Source::Consumer(c), Settle::Ack) => c.consumer.ack_many(tags),
        (Source::Consumer(c), Settle::Nack { requeue }) => c.consumer.nack_many(tags, requeue),
        (Source::Pull { queue, group }, Settle::Ack) => queue.ack_many(group, tags),
        (Source::Pull { queue, group }, Settle::Nack { requeue }) => {
            tags.iter().try_for_each(|&t| queue.nack(group, t, requeue))
        }
    };
    if let Err(e) = res {
        // The engine stops at the first tag it refuses; settle the rest one
        // by one (those done already are refused again, harmlessly).
        tracing::debug!(error = %e, "engine refused a settlement; settling one by one");
        for &tag in tags {
            let one = match (source, how) {
                (Source::Consumer(c), Settle::Ack) => c.consumer.ack(tag),
                (Source::Consumer(c), Settle::Nack { requeue }) => c.consumer.nack(tag, requeue),
                (Source::Pull { queue, group }, Settle::Ack) => queue.ack(group, tag),
                (Source::Pull { queue, group }, Settle::Nack { requeue }) => {
                    queue.nack(group, tag, requeue)
                }
            };
            if let Err(e) = one {
                tracing::debug!(error = %e, seq = tag.seq, "delivery not settled");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gw_core::{Engine, EngineConfig, Message, QueueSpec};

    fn pull_entry(q: &Arc<Queue>, seq: u64) -> Unacked {
        Unacked {
            source: Source::Pull {
                queue: Arc::clone(q),
                group: gw_core::DEFAULT_GROUP.into(),
            },
            tag: DeliveryTag { seq, attempt: 1 },
        }
    }

    fn queue() -> (tempfile::TempDir, Engine, Arc<Queue>) {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(EngineConfig::new(dir.path())).unwrap();
        let (q, _) = engine
            .tenant("/")
            .unwrap()
            .declare_queue(
                "q",
                QueueSpec {
                    default_group: true,
                    ..Default::default()
                },
            )
            .unwrap();
        (dir, engine, q)
    }

    #[test]
    fn remove_single_multiple_and_all() {
        let (_d, engine, q) = queue();
        let mut t = TagSpace::default();
        for _ in 0..5 {
            let tag = t.next_tag();
            t.insert(tag, pull_entry(&q, tag));
        }
        assert_eq!(t.remove(9, false).unwrap_err(), 9);
        let one = t.remove(2, false).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(t.remove(2, true).unwrap_err(), 2, "already acked");
        let upto = t.remove(4, true).unwrap();
        assert_eq!(upto.iter().map(|e| e.0).collect::<Vec<_>>(), [1, 3, 4]);
        t.restore(upto);
        assert_eq!(t.len(), 4);
        assert_eq!(t.remove(0, true).unwrap().len(), 4);
        assert_eq!(t.len(), 0);
        assert_eq!(t.next_tag(), 6, "tags never repeat");
        engine.close();
    }

    #[test]
    fn settling_unknown_engine_tags_is_not_an_error() {
        let (_d, engine, q) = queue();
        let tenant = engine.tenant("/").unwrap();
        let mut m = Message::new("x");
        m.routing_key = "q".into();
        tenant.publish(m.clone()).unwrap();
        tenant.publish(m).unwrap();
        let got = q
            .pull(
                gw_core::DEFAULT_GROUP,
                &gw_core::PullRequest {
                    max: 2,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(got.len(), 2);
        let mut entries: Vec<(u64, Unacked)> = vec![(1, pull_entry(&q, 999))];
        for (i, d) in got.iter().enumerate() {
            let mut e = pull_entry(&q, 0);
            e.tag = d.tag;
            entries.push((i as u64 + 2, e));
        }
        settle(entries, Settle::Ack);
        assert_eq!(
            q.stats().groups[0].in_flight,
            0,
            "the known ones were acked"
        );
        engine.close();
    }
}
