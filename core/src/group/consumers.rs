//! The consumers of a group, their prefetch credit, and the waiters woken
//! when messages become available (consumers, and long-polling pulls).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::{Effects, Group};
use crate::queue::log::Log;

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
    /// When it was woken, until it is back to take (see [`Group::turn`]).
    woken_at: Option<Instant>,
    /// Took its share while peers were coming: it yields until one of them
    /// has taken (or none is coming any more).
    yielding: bool,
}

/// How long a woken consumer counts as coming (see [`Group::turn`]).
const YIELD_WAIT: Duration = Duration::from_millis(20);

/// What a consumer may do at a take (see [`Group::turn`]).
pub(crate) enum Turn {
    /// Take up to this many.
    Take(usize),
    /// It took its share; the peers coming for the rest go first.
    Yield,
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
            woken_at: None,
            yielding: false,
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
                c.woken_at = Some(Instant::now());
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
                    Some(c) => {
                        c.registered = false;
                        c.woken_at = Some(Instant::now());
                    }
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
        let now = Instant::now();
        for c in &mut self.consumers {
            c.registered = false;
            c.woken_at = Some(now);
            fx.wake.push(Arc::clone(&c.notify));
        }
    }

    /// Shares what is ready among competing consumers of one priority.
    ///
    /// A batch made visible at once (publishes released together when their
    /// write is stored) would otherwise all go to whichever consumer woke
    /// first, and the doors ask again whenever they like (after a write, an
    /// ack), so the quickest would take everything. When peers are coming
    /// for messages (waiting, or woken in the last [`YIELD_WAIT`] and not back
    /// yet), a consumer takes its share of what it can see; after that it
    /// yields (waits, and the waiting peers are woken) until one of them has
    /// taken. A peer that does not come within [`YIELD_WAIT`] no longer
    /// counts, so a slow one holds nothing up for longer. FIFO groups are left
    /// alone (their key locks decide who may take what).
    pub fn turn(
        &mut self,
        consumer: u32,
        max: usize,
        (log, decided): (&Log, u64),
        fx: &mut Effects,
    ) -> Turn {
        // One consumer (an MQTT session's queue always) has nobody to share with.
        if self.fifo.is_some() || self.consumers.len() < 2 {
            return Turn::Take(max);
        }
        let Some(me) = self.consumer_mut(consumer) else {
            return Turn::Take(max);
        };
        me.woken_at = None;
        let (priority, yielding, notify) = (me.priority, me.yielding, Arc::clone(&me.notify));
        let now = Instant::now();
        let coming = |o: &ConsumerSlot| {
            o.id != consumer
                && o.priority == priority
                && o.credit().0 > 0
                && (o.registered
                    || o.woken_at
                        .is_some_and(|at| now.duration_since(at) < YIELD_WAIT))
        };
        let peers = self.consumers.iter().filter(|o| coming(o)).count();
        if peers == 0 {
            return Turn::Take(max);
        }
        if yielding {
            for o in self.consumers.iter_mut() {
                if o.registered && coming(o) {
                    o.woken_at = Some(now);
                    fx.wake.push(Arc::clone(&o.notify));
                }
            }
            self.register_waiter(consumer, &notify);
            forget_wakeup(&notify);
            return Turn::Yield;
        }
        // What it can see now: entries waiting for their write are not ready.
        let visible = self
            .ready_count(log)
            .saturating_sub(log.undecided_tail(decided));
        let ready = usize::try_from(visible).unwrap_or(usize::MAX);
        Turn::Take(max.min(ready.div_ceil(peers + 1).max(1)))
    }

    /// After a take of `taken` by `consumer`, capped by its share or not:
    /// the others' turn to yield is over once it took something.
    pub fn took(&mut self, consumer: u32, taken: usize, capped: bool) {
        if taken == 0 {
            return;
        }
        for c in &mut self.consumers {
            c.yielding = c.id == consumer && capped;
        }
    }
}

/// Drops a wake-up stored for a consumer that is about to wait on purpose
/// (it was woken while it was taking): else it would be back at once and
/// take what it just yielded.
fn forget_wakeup(notify: &Notify) {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let stored = std::pin::pin!(notify.notified());
    // Ready: the stored wake-up is used up; pending: there was none (the
    // future is dropped, so nothing stays registered).
    let _ = std::future::Future::poll(stored, &mut cx);
}
