//! What a queue needs from outside itself, without knowing the engine: the
//! store, the timer thread, its memory budget, and a [`QueueHost`] for what
//! spans queues (dead letters go to other queues, shared bodies are counted
//! across queues, an unused queue is deleted from its tenant). The engine is
//! the host; queues hold it weakly, so a queue never keeps the engine alive.

use std::sync::{Arc, OnceLock, Weak};

use super::Queue;
use crate::group::DeadLetter;
use crate::store::Store;
use crate::timers::Timers;

/// What spans queues, done by whoever owns them (the engine).
pub(crate) trait QueueHost: Send + Sync {
    /// Routes a queue's dead letters to their target.
    fn dead_letter(&self, from: &Arc<Queue>, dead: Vec<DeadLetter>);
    /// A queue dropped its entry `(queue, seq)` of a body stored once for several.
    fn release_shared(&self, body: u64, queue: u64, seq: u64);
    /// An auto-delete queue lost its last consumer, or an expiring one went unused.
    fn delete_unused(&self, tenant: &str, name: &str, id: u64);
}

/// Shared by every queue of one engine.
pub(crate) struct Services {
    pub store: Arc<Store>,
    pub timers: Arc<Timers>,
    /// Most message bytes a queue keeps in memory.
    pub queue_memory_bytes: u64,
    host: OnceLock<Weak<dyn QueueHost>>,
}

impl Services {
    pub fn new(store: Arc<Store>, timers: Arc<Timers>, queue_memory_bytes: u64) -> Self {
        Services {
            store,
            timers,
            queue_memory_bytes,
            host: OnceLock::new(),
        }
    }

    /// Set once, when the engine exists.
    pub fn set_host(&self, host: Weak<dyn QueueHost>) {
        let _ = self.host.set(host);
    }

    fn host(&self) -> Option<Arc<dyn QueueHost>> {
        self.host.get().and_then(Weak::upgrade)
    }

    pub fn dead_letter(&self, from: &Arc<Queue>, dead: Vec<DeadLetter>) {
        if let Some(h) = self.host() {
            h.dead_letter(from, dead);
        }
    }

    pub fn release_shared(&self, body: u64, queue: u64, seq: u64) {
        if let Some(h) = self.host() {
            h.release_shared(body, queue, seq);
        }
    }

    pub fn delete_unused(&self, tenant: &str, name: &str, id: u64) {
        if let Some(h) = self.host() {
            h.delete_unused(tenant, name, id);
        }
    }
}
