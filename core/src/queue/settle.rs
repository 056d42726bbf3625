//! Settling deliveries (ack, nack) and purging: the group does the state
//! change; the queue returns consumer credit, wakes waiters and trims.

use super::{DEFAULT_GROUP, Queue, QueueState};
use crate::error::{Error, Result};
use crate::group::{DeliveryTag, Effects, Group, Source};

impl Queue {
    /// Acknowledges a delivery of a group.
    pub fn ack(&self, group: &str, tag: DeliveryTag) -> Result<()> {
        self.settle(GroupRef::Name(group), |g, _src, fx, credit| {
            credit.push(g.ack(tag, fx)?);
            Ok(())
        })
    }

    /// Acknowledges several deliveries of a group under one lock; stops at the
    /// first unknown one (those before it stay acknowledged).
    pub fn ack_many(&self, group: &str, tags: &[DeliveryTag]) -> Result<()> {
        self.settle(GroupRef::Name(group), |g, _src, fx, credit| {
            for &tag in tags {
                credit.push(g.ack(tag, fx)?);
            }
            Ok(())
        })
    }

    /// Returns a delivery: `requeue` hands it out again (until max deliveries),
    /// otherwise it is dead-lettered.
    pub fn nack(&self, group: &str, tag: DeliveryTag, requeue: bool) -> Result<()> {
        self.settle(GroupRef::Name(group), |g, src, fx, credit| {
            credit.push(g.nack(tag, requeue, src, fx)?);
            Ok(())
        })
    }

    pub(crate) fn settle_for(
        &self,
        group_id: u32,
        f: impl FnOnce(&mut Group, &Source, &mut Effects, &mut Vec<(u32, u32)>) -> Result<()>,
    ) -> Result<()> {
        self.settle(GroupRef::Id(group_id), f)
    }

    pub(super) fn settle(
        &self,
        group: GroupRef,
        f: impl FnOnce(&mut Group, &Source, &mut Effects, &mut Vec<(u32, u32)>) -> Result<()>,
    ) -> Result<()> {
        let mut fx = Effects::default();
        let mut credit = Vec::new();
        let mut st = self.state.lock();
        let QueueState { log, groups, .. } = &mut *st;
        let g = match group {
            GroupRef::Name(n) => groups
                .iter_mut()
                .find(|g| g.name == n)
                .ok_or_else(|| Error::not_found("group", n))?,
            GroupRef::Id(id) => groups.iter_mut().find(|g| g.id == id).ok_or_else(|| {
                Error::ConsumerCancelled(format!("group of queue '{}' deleted", self.name))
            })?,
        };
        let src = self.source(log);
        let result = f(g, &src, &mut fx, &mut credit);
        for &(consumer, size) in &credit {
            if consumer != 0 {
                g.credit_returned(consumer, size, &mut fx);
            }
        }
        g.wake(&mut fx);
        self.trim(&mut st);
        drop(st);
        if !credit.is_empty() {
            self.touch();
        }
        self.finish(fx);
        result
    }

    /// Drops every message not in flight, in every group; returns how many the
    /// default (or first) group dropped.
    pub fn purge(&self) -> Result<u64> {
        let mut fx = Effects::default();
        let mut st = self.state.lock();
        let QueueState { log, groups, .. } = &mut *st;
        let src = self.source(log);
        let mut first = None;
        let mut default = None;
        for g in groups.iter_mut() {
            let n = g.purge(&src, &mut fx);
            first.get_or_insert(n);
            if g.name == DEFAULT_GROUP {
                default = Some(n);
            }
        }
        let none = log.len();
        if st.groups.is_empty() {
            let to = st.log.next_seq;
            self.trim_to(&mut st, to);
        } else {
            self.trim(&mut st);
        }
        drop(st);
        self.touch();
        self.finish(fx);
        Ok(default.or(first).unwrap_or(none))
    }
}

pub(super) enum GroupRef<'a> {
    Name(&'a str),
    Id(u32),
}
