//! `x-max-length` / `x-max-length-bytes`: how full a queue is, and what
//! overflow does (drop or dead-letter the head; `reject-publish` and
//! `reject-publish-dlx` are decided at append).

use std::sync::Arc;

use super::{DEFAULT_GROUP, DeadLetterTarget, Log, Overflow, Queue, QueueState};
use crate::group::{DeadLetter, DeathReason, Effects, Group};
use crate::message::Message;

impl Queue {
    /// A publish refused by `reject-publish-dlx` goes to the dead-letter
    /// target once; a per-group target gets it in every group's dead letters
    /// (each group would have seen it).
    pub(super) fn dead_letter_refused(
        &self,
        st: &QueueState,
        msg: &Arc<Message>,
        fx: &mut Effects,
    ) {
        let dead = |group: &str| DeadLetter {
            message: Arc::clone(msg),
            reason: DeathReason::MaxLen,
            group: group.to_owned(),
        };
        match (&self.settings.dead_letter, st.groups.first()) {
            (None, _) => {}
            (Some(DeadLetterTarget::PerGroup), Some(_)) => {
                fx.dead.extend(st.groups.iter().map(|g| dead(&g.name)));
            }
            (_, first) => fx
                .dead
                .push(dead(first.map_or(DEFAULT_GROUP, |g| g.name.as_str()))),
        }
    }

    pub(super) fn is_full(&self, st: &QueueState, extra_bytes: u64) -> bool {
        let (len, bytes) = self.backlog(st);
        self.settings.max_length.is_some_and(|m| len >= m)
            || self
                .settings
                .max_bytes
                .is_some_and(|m| bytes + extra_bytes > m)
    }

    /// The largest backlog over the groups (the whole log when there are none).
    pub(super) fn backlog(&self, st: &QueueState) -> (u64, u64) {
        if st.groups.is_empty() {
            return (st.log.len(), st.log.retained_bytes);
        }
        st.groups.iter().fold((0, 0), |(l, b), g| {
            (l.max(g.ready_count(&st.log)), b.max(g.ready_bytes(&st.log)))
        })
    }

    pub(super) fn enforce_limits(&self, st: &mut QueueState, fx: &mut Effects) {
        let over = |log: &Log, g: &Group| {
            self.settings
                .max_length
                .is_some_and(|m| g.ready_count(log) > m)
                || self
                    .settings
                    .max_bytes
                    .is_some_and(|m| g.ready_bytes(log) > m)
        };
        let dead_letter = self.settings.overflow == Overflow::DeadLetterHead;
        if st.groups.is_empty() {
            while self.settings.max_length.is_some_and(|m| st.log.len() > m)
                || self
                    .settings
                    .max_bytes
                    .is_some_and(|m| st.log.retained_bytes > m && st.log.len() > 1)
            {
                let head = st.log.head + 1;
                self.trim_to(st, head);
            }
            return;
        }
        let QueueState { log, groups, .. } = st;
        let src = self.source(log);
        for g in groups.iter_mut() {
            let mut guard = 0;
            while over(log, g) && guard < 100_000 {
                if !g.drop_oldest(&src, dead_letter, fx) {
                    break;
                }
                guard += 1;
            }
        }
    }
}
