//! When the store fails a write (a full disk, no file descriptors) and when
//! it recovers: what the engine does so that memory and storage never tell
//! different stories.
//!
//! - A failed batch: its messages are marked lost in their queues before any
//!   publisher learns the failure, so no consumer ever sees a message whose
//!   publisher was told it was not stored; its delayed messages leave the
//!   schedule.
//! - Recovery: the backend may hold any part of what failed, and writes made
//!   while it could not write (declarations, acks, deletions) are missing.
//!   The engine rewrites what memory holds — users, tenants, exchanges,
//!   bindings, queues with their groups and counters, shared bodies,
//!   retained messages, id counters — forgets what memory no longer has, and
//!   removes the lost log entries. The committer writes this after whatever
//!   was pending, so the backend ends up matching memory.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use super::EngineInner;
use crate::store::records::{BindingRecord, ExchangeRecord, TenantRecord};
use crate::store::{Catalog, Counter, Snapshot, StoreHook, Write};

impl StoreHook for EngineInner {
    fn writes_lost(&self, lost: &[Write]) {
        let mut entries: HashMap<u64, Vec<u64>> = HashMap::new();
        for w in lost {
            match w {
                Write::Append { queue, seq, .. } | Write::AppendShared { queue, seq, .. } => {
                    entries.entry(*queue).or_default().push(*seq);
                }
                Write::Delayed { due, id, .. } => {
                    if let Some(item) = self.delays.remove(*due, *id) {
                        for q in item.queues.iter().filter_map(std::sync::Weak::upgrade) {
                            q.delayed_changed(-1);
                        }
                    }
                }
                _ => {}
            }
        }
        let mut forget = self.lost_entries.lock();
        for (queue, seqs) in entries {
            if let Some(q) = self.queue_by_id(queue) {
                q.mark_lost(&seqs);
            }
            forget.extend(seqs.into_iter().map(|seq| (queue, seq)));
        }
    }

    fn reconcile(&self, out: &mut Vec<Write>) {
        let backend = self.store().backend();
        let disk = match backend.load_catalog() {
            Ok(c) => c,
            Err(e) => {
                // Rewrite what memory holds anyway; stale records stay.
                tracing::error!(cause = %e, "cannot read the catalog back after recovery");
                Catalog::default()
            }
        };
        self.rewrite_catalog(&disk, out);
        self.rewrite_queues(&disk, out);
        self.rewrite_side_records(&disk, out);
        for (queue, seq) in std::mem::take(&mut *self.lost_entries.lock()) {
            out.push(Write::ForgetEntry { queue, seq });
        }
    }
}

impl EngineInner {
    /// Users, tenants, exchanges and bindings: memory's, and forgetting the rest.
    fn rewrite_catalog(&self, disk: &Catalog, out: &mut Vec<Write>) {
        let users = self.users.records();
        let names: HashSet<&str> = users.iter().map(|u| u.name.as_str()).collect();
        for u in disk
            .users
            .iter()
            .filter(|u| !names.contains(u.name.as_str()))
        {
            out.push(Write::ForgetUser(u.name.clone()));
        }
        out.extend(users.iter().map(|u| Write::User((**u).clone())));

        let tenants: Vec<_> = self.tenants.read().values().cloned().collect();
        let names: HashSet<&str> = tenants.iter().map(|t| &*t.name).collect();
        for t in disk
            .tenants
            .iter()
            .filter(|t| !names.contains(t.name.as_str()))
        {
            out.push(Write::ForgetTenant(t.name.clone()));
        }
        let mut exchanges = HashSet::new();
        let mut bindings = Vec::new();
        for t in &tenants {
            out.push(Write::Tenant(TenantRecord {
                name: t.name.to_string(),
                created_at: t.created_at,
            }));
            for x in t.exchanges.read().values() {
                if x.spec.durable && !crate::names::is_reserved(&x.name) {
                    exchanges.insert((t.name.to_string(), x.name.clone()));
                    out.push(Write::Exchange(ExchangeRecord {
                        tenant: t.name.to_string(),
                        name: x.name.clone(),
                        spec: x.spec.clone(),
                    }));
                }
                if !x.spec.durable {
                    continue;
                }
                for spec in x.bindings() {
                    if t.target(&spec.destination).is_ok_and(|d| d.is_durable()) {
                        bindings.push(BindingRecord {
                            tenant: t.name.to_string(),
                            spec,
                        });
                    }
                }
            }
        }
        for x in &disk.exchanges {
            if !exchanges.contains(&(x.tenant.clone(), x.name.clone())) {
                out.push(Write::ForgetExchange {
                    tenant: x.tenant.clone(),
                    name: x.name.clone(),
                });
            }
        }
        for b in &disk.bindings {
            if !bindings
                .iter()
                .any(|m| m.tenant == b.tenant && m.spec == b.spec)
            {
                out.push(Write::ForgetBinding(b.clone()));
            }
        }
        out.extend(bindings.into_iter().map(Write::Binding));
    }

    /// Durable queues with their counters and groups; queues and groups
    /// memory no longer has are forgotten.
    fn rewrite_queues(&self, disk: &Catalog, out: &mut Vec<Write>) {
        let backend = self.store().backend();
        let queues: Vec<_> = self
            .tenants
            .read()
            .values()
            .flat_map(|t| t.queues.read().values().cloned().collect::<Vec<_>>())
            .filter(|q| q.is_durable())
            .collect();
        let ids: HashSet<u64> = queues.iter().map(|q| q.id()).collect();
        for q in &queues {
            out.push(Write::Queue(q.record()));
            q.snapshot(out);
            let kept: HashSet<String> = q.group_names().into_iter().collect();
            if let Ok(stored) = backend.load_queue(q.id()) {
                for g in stored.groups.iter().filter(|g| !kept.contains(&g.name)) {
                    out.push(Write::ForgetGroup {
                        queue: q.id(),
                        group: g.name.clone(),
                    });
                }
            }
        }
        for rec in disk.queues.iter().filter(|r| !ids.contains(&r.id)) {
            let groups = backend
                .load_queue(rec.id)
                .map(|s| s.groups.into_iter().map(|g| g.name).collect())
                .unwrap_or_default();
            out.push(Write::ForgetQueue { id: rec.id, groups });
        }
    }

    /// Shared bodies, retained messages, the delayed schedule and id counters.
    fn rewrite_side_records(&self, disk: &Catalog, out: &mut Vec<Write>) {
        let shared = self.shared.lock().clone();
        for (body, _) in disk
            .shared_bodies
            .iter()
            .filter(|(b, _)| !shared.contains_key(b))
        {
            out.push(Write::ForgetSharedRefs(*body));
            out.push(Write::ForgetBody(*body));
        }
        out.extend(
            shared
                .into_iter()
                .map(|(body, holders)| Write::SharedRefs { body, holders }),
        );

        let mut retained = HashSet::new();
        for t in self.tenants.read().values() {
            for (topic, m) in t.retained.read().iter() {
                if m.is_persistent() {
                    retained.insert((t.name.to_string(), topic.clone()));
                    out.push(Write::Retained {
                        tenant: Arc::clone(&t.name),
                        topic: topic.clone(),
                        message: Arc::clone(m),
                    });
                }
            }
        }
        for r in &disk.retained {
            if !retained.contains(&(r.tenant.clone(), r.topic.clone())) {
                out.push(Write::ForgetRetained {
                    tenant: r.tenant.as_str().into(),
                    topic: r.topic.clone(),
                });
            }
        }

        let scheduled: BTreeSet<(u64, u64)> = self.delays.stored_keys();
        if let Ok(stored) = self.store().backend().delayed_keys() {
            for (due, id) in stored.into_iter().filter(|k| !scheduled.contains(k)) {
                out.push(Write::ForgetDelayed { due, id });
            }
        }

        out.push(Write::Counter(
            Counter::MessageIds,
            self.id_limit.load(std::sync::atomic::Ordering::Acquire),
        ));
        out.push(Write::Counter(
            Counter::QueueIds,
            *self.next_queue_id.lock(),
        ));
    }
}
