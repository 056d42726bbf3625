//! Creating and deleting queues (with their per-group dead-letter queues),
//! and what queues ask of the engine ([`QueueHost`]).

use std::sync::{Arc, Weak};

use super::EngineInner;
use super::tenant::QueueSpec;
use crate::error::Result;
use crate::group::DeadLetter;
use crate::message::now_millis;
use crate::queue::{DEFAULT_GROUP, Log, Queue, QueueHost, QueueInit};
use crate::routing::{Destination, Target};
use crate::store::Write;
use crate::store::records::GroupRecord;
use crate::tenant::TenantState;

impl EngineInner {
    pub(super) fn queue_by_id(&self, id: u64) -> Option<Arc<Queue>> {
        self.queues_by_id.read().get(&id).and_then(Weak::upgrade)
    }

    pub(crate) fn create_queue(
        &self,
        tenant: &Arc<TenantState>,
        name: &str,
        spec: QueueSpec,
        dead_letters_of: Option<(u64, String)>,
    ) -> Result<(Arc<Queue>, bool)> {
        let mut qs = tenant.queues.write();
        if let Some(q) = qs.get(name) {
            return Ok((Arc::clone(q), false));
        }
        // Exclusive queues die with their connection, so they are never stored.
        let durable = spec.durable && spec.exclusive_owner.is_none();
        let id = self.next_queue_id();
        let init = QueueInit {
            id,
            tenant: Arc::clone(&tenant.name),
            name: name.to_owned(),
            settings: spec.settings,
            durable,
            auto_delete: spec.auto_delete,
            exclusive_owner: spec.exclusive_owner,
            arguments: spec.arguments,
            created_at: now_millis(),
            dead_letters_of,
        };
        let groups = if spec.default_group {
            vec![GroupRecord {
                id: 1,
                name: DEFAULT_GROUP.into(),
                created_at: now_millis(),
                ..GroupRecord::default()
            }]
        } else {
            Vec::new()
        };
        let q = Queue::new(init, Arc::clone(&self.services), Log::new(id, 0, 0), groups);
        qs.insert(name.to_owned(), Arc::clone(&q));
        drop(qs);
        self.queues_by_id.write().insert(id, Arc::downgrade(&q));
        if durable {
            self.store().submit(Write::Queue(q.record()), true);
            if spec.default_group {
                let g = GroupRecord {
                    id: 1,
                    name: DEFAULT_GROUP.into(),
                    created_at: now_millis(),
                    ..GroupRecord::default()
                };
                self.store().submit(Write::Group(id, g), true);
            }
        }
        q.start_timers();
        Ok((q, true))
    }

    pub(crate) fn delete_queue(&self, tenant: &Arc<TenantState>, q: &Arc<Queue>) {
        {
            let mut qs = tenant.queues.write();
            match qs.get(q.name()) {
                Some(cur) if Arc::ptr_eq(cur, q) => {
                    qs.remove(q.name());
                }
                _ => return,
            }
        }
        self.queues_by_id.write().remove(&q.id);
        let dest = Destination::Queue(q.name().to_owned());
        let target = Target::Queue(Arc::clone(q));
        let exchanges: Vec<_> = tenant.exchanges.read().values().cloned().collect();
        for x in exchanges {
            let gone = x.unbind_destination(&dest, &target);
            for b in &gone {
                self.forget_binding(&tenant.name, b);
            }
            if !gone.is_empty() && x.spec.auto_delete && x.binding_count() == 0 {
                tenant.exchanges.write().remove(&x.name);
                self.forget_exchange(&tenant.name, &x.name, x.spec.durable, &[]);
            }
        }
        let shared = q.mark_deleted();
        let store = self.store();
        if q.is_durable() {
            let write = Write::ForgetQueue {
                id: q.id,
                groups: q.group_names(),
            };
            store.submit(write, true);
        }
        store.backend().drop_log(q.id);
        for (seq, body) in shared {
            self.release_shared(body, q.id, seq);
        }
        // Per-group dead-letter queues go with their queue.
        let dlqs: Vec<Arc<Queue>> = tenant
            .queues
            .read()
            .values()
            .filter(|d| d.dead_letters_of().is_some_and(|(src, _)| src == q.id))
            .cloned()
            .collect();
        for d in dlqs {
            self.delete_queue(tenant, &d);
        }
    }
}

/// What queues ask of the engine.
impl QueueHost for EngineInner {
    fn dead_letter(&self, from: &Arc<Queue>, dead: Vec<DeadLetter>) {
        EngineInner::dead_letter(self, from, dead);
    }

    fn release_shared(&self, body: u64, queue: u64, seq: u64) {
        EngineInner::release_shared(self, body, queue, seq);
    }

    fn delete_unused(&self, tenant: &str, name: &str, id: u64) {
        let t = self.tenants.read().get(tenant).cloned();
        if let Some(t) = t {
            let q = t.queues.read().get(name).cloned();
            if let Some(q) = q.filter(|q| q.id == id) {
                tracing::debug!(tenant, queue = name, "deleting unused queue");
                self.delete_queue(&t, &q);
            }
        }
    }
}
