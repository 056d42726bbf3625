//! Delayed delivery: a message with a future `deliver_at` is routed when
//! published (so its queues are fixed then, like RabbitMQ's delayed-message
//! exchange) but kept aside until it is due, when it is appended to those
//! queues. Persistent delayed messages are stored in the `delayed` keyspace so
//! the schedule survives a restart; in memory the schedule keeps keys and, up
//! to a budget, the messages themselves.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::message::{Message, UnixMillis};
use crate::queue::Queue;

/// Bytes of delayed messages kept in memory; beyond it they are read back from disk when due.
const MEMORY_BUDGET: u64 = 64 << 20;

pub(crate) struct DelayedItem {
    pub queues: Vec<Weak<Queue>>,
    /// `None`: read it from the store when due.
    pub message: Option<Arc<Message>>,
    pub stored: bool,
    pub size: u64,
}

#[derive(Default)]
pub(crate) struct Delays {
    inner: Mutex<DelayState>,
}

#[derive(Default)]
struct DelayState {
    items: BTreeMap<(UnixMillis, u64), DelayedItem>,
    bytes_in_memory: u64,
}

impl Delays {
    /// Adds an item; returns true when it is now the earliest (the timer must be re-armed).
    pub fn insert(&self, due: UnixMillis, id: u64, mut item: DelayedItem) -> bool {
        let mut s = self.inner.lock();
        if item.stored && s.bytes_in_memory + item.size > MEMORY_BUDGET {
            item.message = None;
        }
        if item.message.is_some() {
            s.bytes_in_memory += item.size;
        }
        let earliest = s.items.keys().next().is_none_or(|&k| (due, id) < k);
        s.items.insert((due, id), item);
        earliest
    }

    /// Removes and returns every item due at `now`.
    pub fn take_due(&self, now: UnixMillis) -> Vec<((UnixMillis, u64), DelayedItem)> {
        let mut s = self.inner.lock();
        let later = s.items.split_off(&(now + 1, 0));
        let due = std::mem::replace(&mut s.items, later);
        for item in due.values() {
            if item.message.is_some() {
                s.bytes_in_memory -= item.size;
            }
        }
        due.into_iter().collect()
    }

    /// When the next item is due.
    pub fn next_due(&self) -> Option<UnixMillis> {
        self.inner.lock().items.keys().next().map(|&(d, _)| d)
    }

    /// A scheduled message by id: its due time, the message if cached, and
    /// whether it targets `queue`.
    pub fn find(&self, id: u64, queue: &Queue) -> Option<(UnixMillis, Option<Arc<Message>>)> {
        let s = self.inner.lock();
        s.items
            .iter()
            .find(|((_, i), item)| {
                *i == id && item.queues.iter().any(|q| std::ptr::eq(q.as_ptr(), queue))
            })
            .map(|((due, _), item)| (*due, item.message.clone()))
    }

    pub fn len(&self) -> usize {
        self.inner.lock().items.len()
    }

    /// Takes one item out of the schedule (its write failed).
    pub fn remove(&self, due: UnixMillis, id: u64) -> Option<DelayedItem> {
        let mut s = self.inner.lock();
        let item = s.items.remove(&(due, id))?;
        if item.message.is_some() {
            s.bytes_in_memory -= item.size;
        }
        Some(item)
    }

    /// The keys of every item that is also stored.
    pub fn stored_keys(&self) -> std::collections::BTreeSet<(UnixMillis, u64)> {
        self.inner
            .lock()
            .items
            .iter()
            .filter(|(_, item)| item.stored)
            .map(|(k, _)| *k)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(stored: bool) -> DelayedItem {
        DelayedItem {
            queues: vec![],
            message: Some(Arc::new(Message::new("x"))),
            stored,
            size: 1,
        }
    }

    #[test]
    fn due_items_come_out_in_order() {
        let d = Delays::default();
        assert!(d.insert(200, 1, item(false)));
        assert!(d.insert(100, 2, item(true)));
        assert!(!d.insert(300, 3, item(false)));
        assert_eq!(d.next_due(), Some(100));
        let due = d.take_due(250);
        assert_eq!(
            due.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            vec![(100, 2), (200, 1)]
        );
        assert_eq!(d.next_due(), Some(300));
        assert_eq!(d.len(), 1);
    }
}
