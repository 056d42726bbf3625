//! The consumers of a group, their prefetch credit, and the waiters woken
//! when messages become available (consumers, and long-polling pulls).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::{Effects, Group};

/// A consumer's place in its group.
pub(crate) struct ConsumerSlot {
    pub id: u32,
    pub tag: String,
    pub prefetch_count: u32,
    pub prefetch_bytes: u64,
    pub in_flight: u32,
    pub in_flight_bytes: u64,
    pub no_ack: bool,
    pub lease: Option<Duration>,
    pub notify: Arc<Notify>,
    pub cancelled: Arc<std::sync::atomic::AtomicBool>,
    pub priority: i32,
    pub exclusive: bool,
    /// Cancelled by its client but still holding deliveries (see `Queue::stop_consumer`).
    pub stopped: bool,
    /// In the group's waiter list.
    registered: bool,
    /// Stopped by its prefetch window; woken when an ack frees room.
    credit_blocked: bool,
}

impl ConsumerSlot {
    pub fn new(
        id: u32,
        tag: String,
        notify: Arc<Notify>,
        cancelled: Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        ConsumerSlot {
            id,
            tag,
            prefetch_count: 0,
            prefetch_bytes: 0,
            in_flight: 0,
            in_flight_bytes: 0,
            no_ack: false,
            lease: None,
            notify,
            cancelled,
            priority: 0,
            exclusive: false,
            stopped: false,
            registered: false,
            credit_blocked: false,
        }
    }

    /// How many messages and bytes it may take now.
    pub fn credit(&self) -> (usize, u64) {
        if self.stopped {
            return (0, 0);
        }
        if self.no_ack {
            return (usize::MAX, u64::MAX);
        }
        let count = if self.prefetch_count == 0 {
            usize::MAX
        } else {
            self.prefetch_count.saturating_sub(self.in_flight) as usize
        };
        let bytes = if self.prefetch_bytes == 0 {
            u64::MAX
        } else {
            self.prefetch_bytes.saturating_sub(self.in_flight_bytes)
        };
        (count, bytes)
    }
}

pub(super) struct Waiter {
    consumer: u32,
    notify: Arc<Notify>,
}

impl Waiter {
    /// A pull's waiter is alive while the pull holds its `Notify` too.
    pub(super) fn is_alive(&self) -> bool {
        self.consumer != 0 || Arc::strong_count(&self.notify) > 1
    }
}

impl Group {
    pub fn consumer_mut(&mut self, id: u32) -> Option<&mut ConsumerSlot> {
        self.consumers.iter_mut().find(|c| c.id == id)
    }

    /// Puts a consumer (or, with id 0, a pull) on the list of those woken when
    /// messages become available.
    pub fn register_waiter(&mut self, consumer: u32, notify: &Arc<Notify>) {
        if consumer != 0 {
            match self.consumer_mut(consumer) {
                Some(c) if c.registered => return,
                Some(c) => c.registered = true,
                None => return,
            }
        }
        // Pulls that gave up leave dead entries behind: sweep them now and
        // then (amortized O(1) per registration).
        if self.waiters.len() >= 64 && self.waiters.len().is_power_of_two() {
            self.waiters.retain(Waiter::is_alive);
        }
        if self.waiters.capacity() == 0 {
            // Most groups have one consumer waiting at a time (an MQTT
            // session's queue always): room for one, not the four of a
            // VecDeque's first growth.
            self.waiters.reserve_exact(1);
        }
        self.waiters.push_back(Waiter {
            consumer,
            notify: Arc::clone(notify),
        });
    }

    pub fn set_credit_blocked(&mut self, consumer: u32) {
        if let Some(c) = self.consumer_mut(consumer) {
            c.credit_blocked = true;
        }
    }

    /// Gives a consumer back the credit of settled deliveries.
    pub fn credit_returned(&mut self, consumer: u32, size: u32, fx: &mut Effects) {
        if let Some(c) = self.consumer_mut(consumer) {
            c.in_flight = c.in_flight.saturating_sub(1);
            c.in_flight_bytes = c.in_flight_bytes.saturating_sub(u64::from(size));
            if c.credit_blocked {
                c.credit_blocked = false;
                fx.wake.push(Arc::clone(&c.notify));
            }
        }
    }

    /// Notes that `n` messages arrived (the queue calls this on append).
    pub fn arrived(&mut self, n: usize) {
        self.newly_ready += n;
    }

    /// Wakes one waiter per message that became available since the last call.
    pub fn wake(&mut self, fx: &mut Effects) {
        let mut n = std::mem::take(&mut self.newly_ready);
        while n > 0 {
            let Some(w) = self.waiters.pop_front() else {
                break;
            };
            if !w.is_alive() {
                continue;
            }
            if w.consumer != 0 {
                match self.consumer_mut(w.consumer) {
                    Some(c) => c.registered = false,
                    None => continue,
                }
            }
            fx.wake.push(w.notify);
            n -= 1;
        }
    }

    /// Wakes every waiter (the queue is going away).
    pub fn wake_all(&mut self, fx: &mut Effects) {
        for w in self.waiters.drain(..) {
            fx.wake.push(w.notify);
        }
        for c in &mut self.consumers {
            c.registered = false;
            fx.wake.push(Arc::clone(&c.notify));
        }
    }
}
