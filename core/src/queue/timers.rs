//! Time-driven work of a queue (ack deadlines, TTL, queue expiry,
//! retention), run by the engine's timer thread.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Queue, QueueState, instant_at};
use crate::group::Effects;
use crate::timers::Timed;

impl Queue {
    /// Timer work: ack deadlines, TTL, queue expiry, retention; re-arms itself.
    fn on_timer(&self) {
        *self.timer_at.lock() = None;
        if self.retry_reads.swap(false, Ordering::AcqRel) {
            self.wake_everyone();
        }
        let mut fx = Effects::default();
        let mut st = self.state.lock();
        if st.deleted {
            return;
        }
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        let mut earliest = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        let QueueState { log, groups, .. } = &mut *st;
        let src = self.source(log);
        let mut freed = Vec::new();
        for g in groups.iter_mut() {
            freed.clear();
            g.expire_leases(&src, &mut fx, &mut freed);
            for &(consumer, size) in &freed {
                if consumer != 0 {
                    g.credit_returned(consumer, size, &mut fx);
                }
            }
            if let Some(at) = g.expire_front(&src, &mut fx) {
                earliest(instant_at(at));
            }
            if let Some(d) = g.next_deadline() {
                earliest(d);
            }
            g.wake(&mut fx);
        }
        if self.settings.retention_ms > 0 && st.log.len() > 0 {
            self.sweep_retention(&mut st);
            earliest(now + Duration::from_secs(1));
        } else {
            self.trim(&mut st);
        }
        let mut expire_queue = false;
        if let Some(ms) = self.settings.expires_ms {
            let unused_since = st.last_used;
            if st.consumer_count() == 0 {
                let at = unused_since + Duration::from_millis(ms);
                if at <= now {
                    expire_queue = true;
                } else {
                    earliest(at);
                }
            }
        }
        drop(st);
        self.touch();
        self.finish(fx);
        if expire_queue {
            self.services
                .delete_unused(&self.tenant, &self.name, self.id);
        } else if let Some(n) = next {
            self.schedule(n);
        }
    }

    /// Arms the first timer after creation or recovery.
    pub(crate) fn start_timers(&self) {
        let now = Instant::now();
        if let Some(ms) = self.settings.expires_ms {
            self.schedule(now + Duration::from_millis(ms));
        }
        if self.settings.retention_ms > 0 || self.settings.message_ttl_ms.is_some() {
            self.schedule(now + Duration::from_millis(100));
        }
    }

    /// Notes a use (basic.get, declare) for queue expiry.
    pub fn touch_used(&self) {
        self.state.lock().last_used = Instant::now();
    }
}

impl Timed for Queue {
    fn fire(&self) -> Option<Instant> {
        // The queue arms its next deadline itself (see `schedule`).
        self.on_timer();
        None
    }
}
