//! One thread that runs time-driven work: ack deadlines, TTLs, queue expiry,
//! retention sweeps (per queue) and delayed messages coming due.
//!
//! Whatever needs waking at a time ([`Timed`]: a queue, the delayed-message
//! schedule) arms the timer for its next deadline; the thread sleeps until the
//! earliest one (a condvar wait, so due work runs within a fraction of a
//! millisecond) and calls back. Targets are held weakly: a deleted queue's
//! timers just lapse.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Weak;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

/// Something the timer thread calls back.
pub(crate) trait Timed: Send + Sync {
    /// Does the work that came due; returns when to be called again, if the
    /// target does not arm the timer itself.
    fn fire(&self) -> Option<Instant>;
}

struct Item {
    at: Instant,
    n: u64,
    target: Weak<dyn Timed>,
}

impl PartialEq for Item {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.n) == (other.at, other.n)
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Item {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.n).cmp(&(other.at, other.n))
    }
}

#[derive(Default)]
pub(crate) struct Timers {
    heap: Mutex<BinaryHeap<Reverse<Item>>>,
    wake: Condvar,
    stop: AtomicBool,
    counter: AtomicU64,
}

impl Timers {
    /// Calls `target` back at `at` (unless it is gone by then).
    pub fn add(&self, at: Instant, target: Weak<dyn Timed>) {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut h = self.heap.lock();
        let earliest = h.peek().is_none_or(|Reverse(i)| at < i.at);
        h.push(Reverse(Item { at, n, target }));
        drop(h);
        if earliest {
            self.wake.notify_one();
        }
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let _guard = self.heap.lock();
        self.wake.notify_all();
    }

    /// The thread's loop, until [`Timers::stop`].
    pub fn run(&self) {
        let mut due = Vec::new();
        loop {
            {
                let mut h = self.heap.lock();
                loop {
                    if self.stop.load(Ordering::Acquire) {
                        return;
                    }
                    let now = Instant::now();
                    while h.peek().is_some_and(|Reverse(i)| i.at <= now) {
                        if let Some(Reverse(i)) = h.pop() {
                            due.push(i.target);
                        }
                    }
                    if !due.is_empty() {
                        break;
                    }
                    match h.peek() {
                        Some(Reverse(i)) => {
                            let at = i.at;
                            self.wake.wait_until(&mut h, at);
                        }
                        None => self.wake.wait(&mut h),
                    }
                }
            }
            for weak in due.drain(..) {
                if let Some(target) = weak.upgrade()
                    && let Some(next) = target.fire()
                {
                    self.add(next, weak);
                }
            }
        }
    }
}
