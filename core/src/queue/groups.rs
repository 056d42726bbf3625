//! A queue's consumer groups: creating and deleting them, where a new one
//! starts, and rewinding one (to the oldest message, now, a time or a
//! sequence number).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Log, Queue, QueueState, StartPosition, TagFilter};
use crate::error::{Error, Result};
use crate::group::{Effects, Group};
use crate::message::UnixMillis;
use crate::store::Write;

impl Queue {
    /// Names of the queue's consumer groups.
    pub fn group_names(&self) -> Vec<String> {
        self.state
            .lock()
            .groups
            .iter()
            .map(|g| g.name.clone())
            .collect()
    }

    /// Creates a consumer group; false when it existed already (unchanged).
    pub fn create_group(
        &self,
        name: &str,
        start: StartPosition,
        filter: Option<TagFilter>,
    ) -> Result<bool> {
        crate::names::check_name("group", name)?;
        if let Some(f) = &filter {
            f.validate()?;
        }
        let mut st = self.state.lock();
        if st.deleted {
            return Err(Error::not_found("queue", &self.name));
        }
        if st.groups.iter().any(|g| g.name == name) {
            return Ok(false);
        }
        let seq = self.resolve_start(&st.log, start);
        let id = st.next_group_id;
        st.next_group_id += 1;
        let mut g = Group::new(id, name.to_owned(), filter, seq, &self.settings, &st.log);
        g.arrived(1);
        st.groups.push(g);
        drop(st);
        self.touch();
        Ok(true)
    }

    /// Deletes a group and everything it had in flight.
    pub fn delete_group(&self, name: &str) -> Result<()> {
        let mut fx = Effects::default();
        let mut st = self.state.lock();
        let i = st.group_index(name)?;
        let mut g = st.groups.remove(i);
        for c in &g.consumers {
            c.cancelled.store(true, Ordering::Release);
        }
        g.wake_all(&mut fx);
        self.trim(&mut st);
        drop(st);
        if self.durable {
            self.store().submit(
                Write::ForgetGroup {
                    queue: self.id,
                    group: name.to_owned(),
                },
                false,
            );
        }
        self.finish(fx);
        Ok(())
    }

    /// Moves a group back (or forward) to a position; returns the sequence number it now reads from.
    pub fn rewind(&self, group: &str, to: StartPosition) -> Result<u64> {
        let mut fx = Effects::default();
        let mut st = self.state.lock();
        let i = st.group_index(group)?;
        let seq = self.resolve_start(&st.log, to);
        let QueueState { log, groups, .. } = &mut *st;
        groups[i].rewind(seq, log);
        groups[i].wake(&mut fx);
        for c in &groups[i].consumers {
            fx.wake.push(Arc::clone(&c.notify));
        }
        drop(st);
        self.touch();
        self.finish(fx);
        Ok(seq)
    }

    /// The tag filter a group keeps (DMS: fixed by its first filtered pull).
    pub fn group_filter(&self, group: &str) -> Result<Option<TagFilter>> {
        let st = self.state.lock();
        let i = st.group_index(group)?;
        Ok(st.groups[i].filter.as_deref().cloned())
    }

    pub(super) fn resolve_start(&self, log: &Log, start: StartPosition) -> u64 {
        match start {
            StartPosition::Oldest => log.head,
            StartPosition::Latest => log.next_seq,
            StartPosition::Sequence(s) => s.clamp(log.head, log.next_seq),
            StartPosition::Time(t) => self.seq_at_time(log, t),
        }
    }

    /// First retained sequence number published at or after `t` (binary search
    /// over the log; entries are in publish order).
    pub(super) fn seq_at_time(&self, log: &Log, t: UnixMillis) -> u64 {
        let (mut lo, mut hi) = (log.head, log.next_seq);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let published = match log.in_memory(mid) {
                Some(e) => Some(e.msg.published_at),
                None => self
                    .store()
                    .backend()
                    .read_log(self.id, mid, 1, u64::MAX)
                    .ok()
                    .and_then(|r| r.into_iter().next())
                    .and_then(|(_, m)| m)
                    .map(|m| m.published_at),
            };
            match published {
                Some(p) if p < t => lo = mid + 1,
                Some(_) => hi = mid,
                // A hole (memory-only message lost in a restart): move past it.
                None => lo = mid + 1,
            }
        }
        lo
    }
}
