//! Pulls: a group's messages fetched without a consumer (HTTP consume,
//! AMQP basic.get), with an optional long poll.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::{PullRequest, Queue, QueueState};
use crate::error::{Error, Result};
use crate::group::{Delivery, Effects, Taker};

impl Queue {
    /// Pulls up to `max` messages for a group without a consumer (HTTP, AMQP basic.get).
    pub fn pull(&self, group: &str, req: &PullRequest) -> Result<Vec<Delivery>> {
        let mut out = Vec::new();
        self.pull_into(group, req, &mut out, None)?;
        Ok(out)
    }

    /// Like [`Queue::pull`], but waits up to `wait` for the first message (long poll).
    pub async fn pull_wait(
        &self,
        group: &str,
        req: &PullRequest,
        wait: Duration,
    ) -> Result<Vec<Delivery>> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut out = Vec::new();
        loop {
            // A fresh waiter per round: one the group still holds after this
            // future is gone (client left, round over) is dead, and `wake`
            // skips it (it is only alive while this side holds its Arc too).
            let notify = Arc::new(Notify::new());
            let more = self.pull_into(group, req, &mut out, Some(&notify))?;
            if !out.is_empty() {
                return Ok(out);
            }
            if more {
                continue;
            }
            if tokio::time::timeout_at(deadline, notify.notified())
                .await
                .is_err()
            {
                // A wake-up may have raced the deadline: look once more.
                self.pull_into(group, req, &mut out, None)?;
                return Ok(out);
            }
        }
    }

    pub(super) fn pull_into(
        &self,
        group: &str,
        req: &PullRequest,
        out: &mut Vec<Delivery>,
        waiter: Option<&Arc<Notify>>,
    ) -> Result<bool> {
        let mut fx = Effects::default();
        let mut st = self.state.lock();
        if st.deleted {
            return Err(Error::not_found("queue", &self.name));
        }
        let i = st.group_index(group)?;
        let filter_changed = Self::check_filter(&mut st.groups[i], req.filter.as_ref())?;
        st.last_used = Instant::now();
        let QueueState { log, groups, .. } = &mut *st;
        let g = &mut groups[i];
        let src = self.source(log);
        let taker = Taker {
            consumer: 0,
            no_ack: req.no_ack,
            lease: req.lease_timeout,
            max: req.max,
            max_bytes: req.max_bytes,
        };
        let taken = g.take(&src, &taker, out, &mut fx);
        if taken.count == 0
            && !taken.more
            && let Some(n) = waiter
        {
            g.register_waiter(0, n);
        }
        let deadline = g.next_deadline();
        g.wake(&mut fx);
        if req.no_ack {
            self.trim(&mut st);
        }
        drop(st);
        if taken.count > 0 || filter_changed {
            self.touch();
        }
        if let Some(d) = deadline {
            self.schedule(d);
        }
        self.finish(fx);
        Ok(taken.more)
    }
}
