//! Push consumers: attaching one to a group (exclusivity, tag filters),
//! handing it what its prefetch window allows (single active consumer,
//! consumer priorities), and detaching it.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::{Consumer, ConsumerSpec, Queue, QueueState, TagFilter};
use crate::error::{Error, Result};
use crate::group::{ConsumerSlot, Delivery, Effects, Group, Taker, Turn};

impl Queue {
    /// Attaches a push consumer to a group.
    pub fn consume(&self, group: &str, spec: ConsumerSpec) -> Result<Consumer> {
        let mut st = self.state.lock();
        if st.deleted {
            return Err(Error::not_found("queue", &self.name));
        }
        let i = st.group_index(group)?;
        Self::check_filter(&mut st.groups[i], spec.filter.as_ref())?;
        if st
            .groups
            .iter()
            .any(|g| g.consumers.iter().any(|c| c.exclusive && !c.stopped))
        {
            return Err(Error::AccessRefused(format!(
                "queue '{}' in exclusive use",
                self.name
            )));
        }
        if spec.exclusive && st.consumer_count() > 0 {
            return Err(Error::AccessRefused(format!(
                "queue '{}' in exclusive use",
                self.name
            )));
        }
        let id = st.next_consumer_id;
        st.next_consumer_id = st.next_consumer_id.wrapping_add(1).max(1);
        st.had_consumers = true;
        st.last_used = Instant::now();
        let notify = Arc::new(Notify::new());
        let cancelled = Arc::new(AtomicBool::new(false));
        let mut slot = ConsumerSlot::new(
            id,
            spec.tag.clone(),
            Arc::clone(&notify),
            Arc::clone(&cancelled),
        );
        slot.prefetch_count = spec.prefetch_count;
        slot.prefetch_bytes = spec.prefetch_bytes;
        slot.no_ack = spec.no_ack;
        slot.lease = spec.lease_timeout;
        slot.priority = spec.priority;
        slot.exclusive = spec.exclusive;
        let g = &mut st.groups[i];
        g.consumers.reserve_exact(1);
        g.consumers.push(slot);
        let group_id = g.id;
        drop(st);
        // Let the new consumer look at once: messages may be waiting.
        notify.notify_one();
        Ok(Consumer::new(
            self.me.upgrade().ok_or(Error::ShuttingDown)?,
            group_id,
            id,
            notify,
            cancelled,
        ))
    }

    pub(super) fn check_filter(g: &mut Group, wanted: Option<&TagFilter>) -> Result<bool> {
        match (wanted, g.filter.as_deref()) {
            (None, _) => Ok(false),
            (Some(w), Some(have)) if w == have => Ok(false),
            (Some(w), Some(have)) => Err(Error::PreconditionFailed(format!(
                "group '{}' filters on tags {:?} ({}); it cannot switch to {:?}",
                g.name,
                have.tags,
                if have.match_all { "all" } else { "any" },
                w.tags
            ))),
            (Some(w), None) => {
                w.validate()?;
                g.filter = Some(Box::new(w.clone()));
                Ok(true)
            }
        }
    }

    /// Takes deliveries for a consumer; registers it for a wake-up when it gets none.
    pub(crate) fn take_for(
        &self,
        group_id: u32,
        consumer: u32,
        max: usize,
        out: &mut Vec<Delivery>,
    ) -> Result<(usize, bool)> {
        let mut fx = Effects::default();
        let mut st = self.state.lock();
        let QueueState { log, groups, .. } = &mut *st;
        let Some(g) = groups.iter_mut().find(|g| g.id == group_id) else {
            return Err(Error::ConsumerCancelled(format!(
                "group of queue '{}' deleted",
                self.name
            )));
        };
        let Some(c) = g.consumer_mut(consumer) else {
            return Err(Error::ConsumerCancelled(format!(
                "consumer of queue '{}' cancelled",
                self.name
            )));
        };
        let (credit, credit_bytes) = c.credit();
        let (no_ack, lease, priority, notify) =
            (c.no_ack, c.lease, c.priority, Arc::clone(&c.notify));
        if credit == 0 || credit_bytes == 0 {
            g.set_credit_blocked(consumer);
            return Ok((0, false));
        }
        // Single active consumer: only the longest-standing consumer receives.
        // Consumer priorities: a lower-priority consumer waits while a
        // higher-priority one has room and is waiting.
        let passive = (self.settings.single_active_consumer
            && g.consumers
                .iter()
                .find(|c| !c.stopped)
                .is_some_and(|f| f.id != consumer))
            || g.consumers
                .iter()
                .any(|o| o.id != consumer && o.priority > priority && o.credit().0 > 0);
        if passive {
            g.register_waiter(consumer, &notify);
            return Ok((0, false));
        }
        let max = max.min(credit);
        let decided = self.store().decided_ticket();
        // A single active consumer has no peers to share with (the others
        // wait, passive, and would never take what it yields).
        let turn = if self.settings.single_active_consumer {
            Turn::Take(max)
        } else {
            g.turn(consumer, max, (log, decided), &mut fx)
        };
        let share = match turn {
            Turn::Take(n) => n,
            Turn::Yield => {
                drop(st);
                self.finish(fx);
                return Ok((0, false));
            }
        };
        let src = self.source(log);
        let taker = Taker {
            consumer,
            no_ack,
            lease,
            max: share,
            max_bytes: credit_bytes,
        };
        let before = out.len();
        let taken = g.take(&src, &taker, out, &mut fx);
        if !no_ack && let Some(c) = g.consumer_mut(consumer) {
            c.in_flight += taken.count as u32;
            c.in_flight_bytes += taken.bytes;
        }
        g.took(consumer, taken.count, share < max);
        if taken.count == 0 && !taken.more {
            g.register_waiter(consumer, &notify);
        }
        let deadline = g.next_deadline();
        g.wake(&mut fx);
        if no_ack {
            self.trim(&mut st);
        }
        st.last_used = Instant::now();
        drop(st);
        if out.len() > before {
            self.touch();
        }
        if let Some(d) = deadline {
            self.schedule(d);
        }
        self.finish(fx);
        Ok((taken.count, taken.more))
    }

    /// Changes a consumer's prefetch window.
    pub(crate) fn set_prefetch(&self, group_id: u32, consumer: u32, count: u32, bytes: u64) {
        let mut st = self.state.lock();
        if let Some(g) = st.groups.iter_mut().find(|g| g.id == group_id)
            && let Some(c) = g.consumer_mut(consumer)
        {
            c.prefetch_count = count;
            c.prefetch_bytes = bytes;
            c.notify.notify_one();
        }
    }

    /// Stops a consumer from receiving while keeping what it holds in flight
    /// (AMQP basic.cancel: unacked deliveries stay acknowledgeable). It no
    /// longer counts as a consumer (exclusivity, single active consumer,
    /// auto-delete); dropping the handle later requeues what is left.
    pub(crate) fn stop_consumer(&self, group_id: u32, consumer: u32) {
        let mut fx = Effects::default();
        let mut st = self.state.lock();
        if let Some(g) = st.groups.iter_mut().find(|g| g.id == group_id)
            && let Some(c) = g.consumer_mut(consumer)
        {
            c.stopped = true;
            // Whoever waited behind it (single active consumer, priorities) may go.
            for c in &g.consumers {
                fx.wake.push(Arc::clone(&c.notify));
            }
        }
        let auto_delete =
            self.auto_delete && st.had_consumers && st.consumer_count() == 0 && !st.deleted;
        drop(st);
        self.finish(fx);
        if auto_delete {
            self.services
                .delete_unused(&self.tenant, &self.name, self.id);
        }
    }

    /// Detaches a consumer; what it held goes back to its group.
    pub(crate) fn remove_consumer(&self, group_id: u32, consumer: u32) {
        let mut fx = Effects::default();
        let mut st = self.state.lock();
        let QueueState { log, groups, .. } = &mut *st;
        if let Some(g) = groups.iter_mut().find(|g| g.id == group_id)
            && let Some(pos) = g.consumers.iter().position(|c| c.id == consumer)
        {
            let was_first = pos == 0;
            g.consumers.remove(pos);
            let src = self.source(log);
            g.release_consumer(consumer, &src, &mut fx);
            g.wake(&mut fx);
            if was_first
                && self.settings.single_active_consumer
                && let Some(next) = g.consumers.first()
            {
                fx.wake.push(Arc::clone(&next.notify));
            }
            // A higher-priority consumer left: lower ones may now receive.
            for c in &g.consumers {
                fx.wake.push(Arc::clone(&c.notify));
            }
        }
        st.last_used = Instant::now();
        let auto_delete =
            self.auto_delete && st.had_consumers && st.consumer_count() == 0 && !st.deleted;
        drop(st);
        self.touch();
        self.finish(fx);
        if auto_delete {
            self.services
                .delete_unused(&self.tenant, &self.name, self.id);
        }
        if let Some(expires) = self.settings.expires_ms {
            self.schedule(Instant::now() + Duration::from_millis(expires));
        }
    }
}
