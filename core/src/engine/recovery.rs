//! Start-up: the catalog is loaded first (users, tenants, exchanges), then
//! each queue with its counters, groups and log bounds, then what refers to
//! queues (shared bodies, the delayed schedule, bindings), and retained
//! messages. Only then may the backend drop the logs of deleted queues.

use std::sync::Arc;

use super::{EngineInner, MAX_COUNTED_HOLES};
use crate::auth::{self, ADMINISTRATOR, Permission, UserRecord};
use crate::delay::DelayedItem;
use crate::error::Result;
use crate::queue::{Log, Queue, QueueInit};
use crate::store::records::DelayedRecord;
use crate::store::{Catalog, StoredQueue, Write};
use crate::tenant::TenantState;

impl EngineInner {
    pub(super) fn recover(&self, catalog: Catalog) -> Result<()> {
        let store = Arc::clone(self.store());
        let backend = store.backend();
        let fresh = catalog.tenants.is_empty() && catalog.users.is_empty();
        self.users.load(catalog.users);
        self.users.load_topic(
            catalog
                .topic_permissions
                .into_iter()
                .map(|r| (r.user, r.permission)),
        );
        for t in catalog.tenants {
            self.tenants.write().insert(
                t.name.clone(),
                Arc::new(TenantState::new(&t.name, t.created_at)),
            );
        }
        if fresh {
            self.create_tenant("/")?;
            if let Some((user, password)) = self.config.default_user.clone() {
                self.save_user(UserRecord {
                    name: user,
                    password_hash: auth::hash_password(&password)?,
                    tags: vec![ADMINISTRATOR.into()],
                    loopback_only: true,
                    permissions: vec![Permission::full("/")],
                });
            }
        }
        for x in catalog.exchanges {
            if let Some(t) = self.tenants.read().get(&x.tenant) {
                t.exchanges.write().insert(
                    x.name.clone(),
                    Arc::new(crate::routing::Exchange::new(x.name, x.spec)),
                );
            }
        }
        for rec in catalog.queues {
            let Some(tenant) = self.tenants.read().get(&rec.tenant).cloned() else {
                continue;
            };
            let StoredQueue {
                state,
                groups,
                last_seq,
            } = backend.load_queue(rec.id)?;
            let next_seq = groups
                .iter()
                .map(|g| g.floor.max(g.delivered_hw))
                .chain([state.next_seq, last_seq.map_or(0, |l| l + 1)])
                .max()
                .unwrap_or(0);
            let mut log = Log::new(rec.id, state.head.min(next_seq), next_seq);
            log.retained_bytes = state.retained_bytes;
            log.appended_bytes = state.retained_bytes;
            let unread_from = groups
                .iter()
                .map(|g| g.floor)
                .min()
                .unwrap_or(log.head)
                .max(log.head);
            if let Some(holes) =
                backend.log_holes(rec.id, unread_from, next_seq, MAX_COUNTED_HOLES)?
            {
                log.holes.extend(holes);
            }
            let init = QueueInit {
                id: rec.id,
                tenant: Arc::clone(&tenant.name),
                name: rec.name.clone(),
                settings: rec.settings,
                durable: true,
                auto_delete: rec.auto_delete,
                exclusive_owner: None,
                arguments: rec.arguments,
                created_at: rec.created_at,
                dead_letters_of: rec.dead_letters_of,
            };
            let q = Queue::new(init, Arc::clone(&self.services), log, groups);
            q.restore_published(state.published);
            self.queues_by_id.write().insert(rec.id, Arc::downgrade(&q));
            tenant.queues.write().insert(rec.name, Arc::clone(&q));
            q.start_timers();
        }
        for (body, holders) in catalog.shared_bodies {
            for &(queue, seq) in &holders {
                if let Some(q) = self.queue_by_id(queue) {
                    q.restore_shared(seq, body);
                }
            }
            self.shared.lock().insert(body, holders);
        }
        for ((due, id), rec) in backend.load_delayed()? {
            self.restore_delayed(due, id, rec);
        }
        for r in catalog.retained {
            if let Some(t) = self.tenants.read().get(&r.tenant) {
                t.retained.write().insert(r.topic, Arc::new(r.message));
            }
        }
        for b in catalog.bindings {
            let Some(t) = self.tenants.read().get(&b.tenant).cloned() else {
                continue;
            };
            let source = t.exchanges.read().get(&b.spec.source).cloned();
            match (source, t.target(&b.spec.destination)) {
                (Some(x), Ok(target)) => {
                    let _ = x.bind(b.spec.clone(), target);
                }
                // Its exchange or queue is gone (deleted while this binding's
                // delete was still in flight): drop it.
                _ => {
                    store.submit(Write::ForgetBinding(b), false);
                }
            }
        }
        // Every queue is registered: the backend may now drop the logs of
        // queues that no longer exist.
        backend.catalog_loaded(*self.next_queue_id.lock());
        Ok(())
    }

    fn restore_delayed(&self, due: u64, id: u64, rec: DelayedRecord) {
        let queues: Vec<Arc<Queue>> = rec
            .queues
            .iter()
            .filter_map(|&q| self.queue_by_id(q))
            .collect();
        for q in &queues {
            q.delayed_changed(1);
        }
        let size = rec.message.accounted_size();
        self.delays.insert(
            due,
            id,
            DelayedItem {
                queues: queues.iter().map(Arc::downgrade).collect(),
                message: Some(Arc::new(rec.message)),
                stored: true,
                size,
            },
        );
    }
}
