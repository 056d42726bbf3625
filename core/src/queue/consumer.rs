//! The handle an adapter holds for one push consumer, and the options of pulls.
//!
//! Delivery is pull-driven inside the process: the adapter's task asks for
//! what its prefetch window allows and sleeps on the consumer's `Notify` when
//! there is nothing; publishers wake it. So a slow socket slows its own
//! consumer and nobody else, and batches form by themselves under load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use super::{Queue, TagFilter};
use crate::error::{Error, Result};
use crate::group::{Delivery, DeliveryTag};

/// How a consumer wants its messages.
#[derive(Clone, Debug, Default)]
pub struct ConsumerSpec {
    /// The adapter's name for it (AMQP consumer tag, MQTT client id).
    pub tag: String,
    /// Most unacknowledged deliveries at once (0 = no limit).
    pub prefetch_count: u32,
    /// Most unacknowledged bytes at once (0 = no limit).
    pub prefetch_bytes: u64,
    /// Deliveries are settled as they are handed out.
    pub no_ack: bool,
    /// The only consumer of the queue.
    pub exclusive: bool,
    /// Unacknowledged deliveries are handed out again after this long.
    pub lease_timeout: Option<Duration>,
    /// Higher-priority consumers receive first while they have room.
    pub priority: i32,
    /// Only messages with these tags (fixes the group's filter if it has none).
    pub filter: Option<TagFilter>,
}

/// How a pull asks for messages.
#[derive(Clone, Debug)]
pub struct PullRequest {
    /// Most messages returned.
    pub max: usize,
    /// Stop adding messages after this many bytes (at least one is returned).
    pub max_bytes: u64,
    /// Unacknowledged deliveries are handed out again after this long.
    pub lease_timeout: Option<Duration>,
    /// Settle at once (AMQP basic.get with no-ack).
    pub no_ack: bool,
    /// Only messages with these tags.
    pub filter: Option<TagFilter>,
}

impl Default for PullRequest {
    fn default() -> Self {
        PullRequest {
            max: 1,
            max_bytes: u64::MAX,
            lease_timeout: None,
            no_ack: false,
            filter: None,
        }
    }
}

/// A push consumer. Dropping it cancels it; what it held is redelivered.
pub struct Consumer {
    queue: Arc<Queue>,
    group: u32,
    id: u32,
    notify: Arc<Notify>,
    cancelled: Arc<AtomicBool>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("queue", &self.queue.name())
            .field("id", &self.id)
            .finish()
    }
}

impl Consumer {
    pub(super) fn new(
        queue: Arc<Queue>,
        group: u32,
        id: u32,
        notify: Arc<Notify>,
        cancelled: Arc<AtomicBool>,
    ) -> Self {
        Consumer {
            queue,
            group,
            id,
            notify,
            cancelled,
        }
    }

    /// The queue consumed from.
    pub fn queue(&self) -> &Arc<Queue> {
        &self.queue
    }

    /// Id of the consumer within its queue.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// True once the engine cancelled the consumer (queue or group deleted).
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::ConsumerCancelled(format!(
                "queue '{}' was deleted",
                self.queue.name()
            )))
        } else {
            Ok(())
        }
    }

    /// Appends up to `max` deliveries to `out` without waiting; 0 when none is
    /// available or the prefetch window is full.
    pub fn try_take(&self, max: usize, out: &mut Vec<Delivery>) -> Result<usize> {
        self.check()?;
        Ok(self.queue.take_for(self.group, self.id, max, out)?.0)
    }

    /// Appends up to `max` deliveries to `out`, waiting for at least one.
    ///
    /// Returns `Err(ConsumerCancelled)` when the engine cancelled the consumer.
    pub async fn take(&self, max: usize, out: &mut Vec<Delivery>) -> Result<usize> {
        loop {
            self.check()?;
            let (n, more) = self.queue.take_for(self.group, self.id, max, out)?;
            if n > 0 {
                return Ok(n);
            }
            if !more {
                self.notify.notified().await;
            }
        }
    }

    /// Waits until a call to `try_take` may find something (or the consumer is cancelled).
    ///
    /// The wait itself, not an `async fn` around it: doors keep this future in
    /// every idle connection's state, and the wrapper would add a quarter to it.
    pub fn ready(&self) -> impl std::future::Future<Output = ()> + Send + '_ {
        self.notify.notified()
    }

    /// Acknowledges one delivery.
    pub fn ack(&self, tag: DeliveryTag) -> Result<()> {
        self.ack_many(&[tag])
    }

    /// Acknowledges several deliveries under one lock; stops at the first
    /// unknown one (those before it stay acknowledged).
    pub fn ack_many(&self, tags: &[DeliveryTag]) -> Result<()> {
        self.queue.settle_for(self.group, |g, _src, fx, credit| {
            for &tag in tags {
                credit.push(g.ack(tag, fx)?);
            }
            Ok(())
        })
    }

    /// Returns deliveries (see [`Queue::nack`]); stops at the first unknown one.
    pub fn nack_many(&self, tags: &[DeliveryTag], requeue: bool) -> Result<()> {
        self.queue.settle_for(self.group, |g, src, fx, credit| {
            for &tag in tags {
                credit.push(g.nack(tag, requeue, src, fx)?);
            }
            Ok(())
        })
    }

    /// Returns one delivery (see [`Queue::nack`]).
    pub fn nack(&self, tag: DeliveryTag, requeue: bool) -> Result<()> {
        self.nack_many(&[tag], requeue)
    }

    /// Stops receiving but keeps what is in flight acknowledgeable (AMQP
    /// basic.cancel); the consumer no longer counts for exclusivity, single
    /// active consumer or auto-delete. Drop it to give back what it holds.
    pub fn stop(&self) {
        self.queue.stop_consumer(self.group, self.id);
    }

    /// Changes the prefetch window (AMQP basic.qos on a running consumer).
    pub fn set_prefetch(&self, count: u32, bytes: u64) {
        self.queue.set_prefetch(self.group, self.id, count, bytes);
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.queue.remove_consumer(self.group, self.id);
    }
}
