//! A queue's durable state: the record that declares it, the snapshot of its
//! counters and groups written at each commit, and what recovery puts back.

use std::sync::atomic::Ordering;

use super::Queue;
use crate::store::records::{QueueRecord, QueueStateRecord};
use crate::store::{Snapshot, Write};

impl Queue {
    /// The record that declares this queue in the store.
    pub(crate) fn record(&self) -> QueueRecord {
        QueueRecord {
            id: self.id,
            tenant: self.tenant.to_string(),
            name: self.name.clone(),
            settings: self.settings.clone(),
            auto_delete: self.auto_delete,
            arguments: self.arguments.clone(),
            created_at: self.created_at,
            dead_letters_of: self.dead_letters_of.as_deref().cloned(),
        }
    }

    pub(crate) fn restore_published(&self, published: u64) {
        self.state.lock().published = published;
    }

    pub(crate) fn restore_shared(&self, seq: u64, body: u64) {
        self.state.lock().log.shared.insert(seq, body);
    }
}

impl Snapshot for Queue {
    fn snapshot(&self, out: &mut Vec<Write>) {
        self.dirty.store(false, Ordering::Release);
        let st = self.state.lock();
        if st.deleted {
            return;
        }
        let rec = QueueStateRecord {
            head: st.log.head,
            next_seq: st.log.next_seq,
            retained_bytes: st.log.retained_bytes,
            published: st.published,
        };
        out.push(Write::QueueState(self.id, rec));
        for g in &st.groups {
            out.push(Write::Group(self.id, g.to_record()));
        }
    }
}
