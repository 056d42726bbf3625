//! A message enters a queue: it is given the next sequence number, written
//! (when it must survive a restart), counted against the limits, and groups
//! are told; the memory window then gives up its oldest entries to disk.

use std::sync::Arc;

use super::{Appended, Entry, Overflow, Persist, Queue, QueueState, instant_at};
use crate::group::Effects;
use crate::message::Message;
use crate::store::Write;

impl Queue {
    /// Appends a message. Called by routing, with the message's id and publish time set.
    /// `confirmed`: the publisher waits for the write, so consumers may see
    /// the message only once it is decided (and never if it failed).
    pub(crate) fn append(
        &self,
        msg: &Arc<Message>,
        persist: Persist,
        sync: bool,
        confirmed: bool,
    ) -> Appended {
        let mut fx = Effects::default();
        let mut st = self.state.lock();
        if st.deleted {
            return Appended::Gone;
        }
        let mut entry = Entry::new(Arc::clone(msg), &self.settings);
        let refuses = matches!(
            self.settings.overflow,
            Overflow::RejectPublish | Overflow::RejectPublishDlx
        );
        if refuses && self.is_full(&st, u64::from(entry.size)) {
            if self.settings.overflow == Overflow::RejectPublishDlx {
                self.dead_letter_refused(&st, msg, &mut fx);
                drop(st);
                self.finish(fx);
            }
            return Appended::Rejected;
        }
        let expires_at = entry.expires_at;
        let seq = st.log.next_seq;
        let ticket = match persist {
            Persist::No => None,
            Persist::Inline => Some(self.store().submit(
                Write::Append {
                    queue: self.id,
                    seq,
                    message: Arc::clone(msg),
                    transient: false,
                },
                sync,
            )),
            Persist::Shared(body) => {
                st.log.shared.insert(seq, body);
                Some(self.store().submit(
                    Write::AppendShared {
                        queue: self.id,
                        seq,
                        body,
                    },
                    sync,
                ))
            }
        };
        entry.ticket = ticket.unwrap_or(0);
        entry.gated = confirmed && ticket.is_some();
        st.log.push(entry);
        st.published += 1;
        if self.settings.max_length.is_some() || self.settings.max_bytes.is_some() {
            self.enforce_limits(&mut st, &mut fx);
        }
        for g in &mut st.groups {
            g.arrived(1);
            g.wake(&mut fx);
        }
        self.evict(&mut st);
        if st.groups.is_empty() || self.settings.retention_ms > 0 {
            // Nobody settles these; only retention removes them.
            self.trim(&mut st);
        }
        drop(st);
        self.touch();
        if expires_at != u64::MAX {
            self.schedule(instant_at(expires_at));
        }
        self.finish(fx);
        Appended::Stored { seq, ticket }
    }

    /// Moves the oldest in-memory messages to disk while the window is over
    /// budget. An entry leaves memory only once its write has been applied to
    /// the store, so a reader never finds it in neither place.
    pub(super) fn evict(&self, st: &mut QueueState) {
        let budget = self.services.queue_memory_bytes;
        let mut excess = st.log.window_bytes().saturating_sub(budget);
        if excess == 0 {
            return;
        }
        let store = self.store();
        for (seq, e) in st.log.window_mut() {
            if excess == 0 {
                break;
            }
            excess = excess.saturating_sub(u64::from(e.size));
            if e.ticket == 0 {
                // Memory-only messages are written to free memory, marked
                // so that a restart does not bring them back.
                let write = Write::Append {
                    queue: self.id,
                    seq,
                    message: Arc::clone(&e.msg),
                    transient: true,
                };
                e.ticket = store.submit(write, false);
            }
        }
        let applied = store.applied_ticket();
        while st.log.window_bytes() > budget
            && st
                .log
                .front()
                .is_some_and(|e| e.lost || (e.ticket != 0 && e.ticket <= applied))
        {
            st.log.evict_front();
        }
    }
}
