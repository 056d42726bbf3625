//! How a queue's log shrinks: from the head, once every group has settled a
//! message and its retention has passed. Memory is freed at once; the
//! backend is told the new head and drops entries below it in its own time.

use super::{Queue, QueueState};
use crate::message::now_millis;

impl Queue {
    /// Deletes messages every group has settled and whose retention has passed.
    pub(super) fn trim(&self, st: &mut QueueState) {
        let floor = st.min_floor();
        if floor <= st.log.head {
            return;
        }
        if self.settings.retention_ms == 0 {
            self.trim_to(st, floor);
            return;
        }
        let cutoff = now_millis().saturating_sub(self.settings.retention_ms);
        let mut new_head = st.log.head;
        // Only in-memory entries are checked here; older ones by the timer's sweep.
        while new_head < floor {
            match st.log.in_memory(new_head) {
                Some(e) if e.msg.published_at <= cutoff => new_head += 1,
                _ => break,
            }
        }
        self.trim_to(st, new_head);
    }

    /// Moves the log's head; the backend drops entries below it in its own
    /// time (on disk: as compactions pass over them, not by per-key deletes).
    pub(super) fn trim_to(&self, st: &mut QueueState, new_head: u64) {
        let old_head = st.log.head;
        st.log.trim_head(new_head);
        if st.log.head > old_head {
            self.store().backend().set_log_head(self.id, st.log.head);
        }
        let shared: Vec<(u64, u64)> = st
            .log
            .shared
            .range(old_head..new_head)
            .map(|(s, b)| (*s, *b))
            .collect();
        for (seq, body) in shared {
            st.log.shared.remove(&seq);
            self.services.release_shared(body, self.id, seq);
        }
    }

    /// Retention sweep for messages behind the memory window: reads their publish
    /// times from disk, a chunk at a time.
    pub(super) fn sweep_retention(&self, st: &mut QueueState) {
        let floor = st.min_floor();
        let cutoff = now_millis().saturating_sub(self.settings.retention_ms);
        let mut new_head = st.log.head;
        while new_head < floor.min(st.log.window_start()) {
            let Ok(messages) = self
                .store()
                .backend()
                .read_log(self.id, new_head, 256, 1 << 20)
            else {
                break;
            };
            if messages.is_empty() {
                new_head = floor.min(st.log.window_start());
                break;
            }
            let mut stop = false;
            for (seq, m) in messages {
                if seq >= floor {
                    stop = true;
                    break;
                }
                // A message that is gone (see `Backend::read_log`) keeps nothing.
                if m.is_some_and(|m| m.published_at > cutoff) {
                    stop = true;
                    break;
                }
                new_head = seq + 1;
            }
            if stop {
                break;
            }
        }
        self.trim_to(st, new_head);
        self.trim(st);
    }
}
