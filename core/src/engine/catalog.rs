//! Writing the catalog: tenants, exchanges and bindings as they are
//! declared and deleted, and the id counters (reserved in blocks, so a
//! restart never reuses an id).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{EngineInner, ID_BLOCK};
use crate::error::Result;
use crate::message::now_millis;
use crate::names::check_name;
use crate::routing::{BindingSpec, ExchangeSpec};
use crate::store::records::{BindingRecord, ExchangeRecord, TenantRecord};
use crate::store::{Counter, Write};
use crate::tenant::TenantState;

impl EngineInner {
    pub(super) fn next_id(&self) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if id >= self.id_limit.load(Ordering::Acquire) {
            let _g = self.id_lock.lock();
            if id >= self.id_limit.load(Ordering::Acquire) {
                let limit = (id / ID_BLOCK + 2) * ID_BLOCK;
                self.store()
                    .submit(Write::Counter(Counter::MessageIds, limit), false);
                self.id_limit.store(limit, Ordering::Release);
            }
        }
        id
    }

    pub(super) fn next_queue_id(&self) -> u64 {
        let mut n = self.next_queue_id.lock();
        let id = *n;
        *n += 1;
        self.store()
            .submit(Write::Counter(Counter::QueueIds, *n), false);
        id
    }

    pub(super) fn create_tenant(&self, name: &str) -> Result<bool> {
        check_name("tenant", name)?;
        let mut ts = self.tenants.write();
        if ts.contains_key(name) {
            return Ok(false);
        }
        let created_at = now_millis();
        ts.insert(
            name.to_owned(),
            Arc::new(TenantState::new(name, created_at)),
        );
        drop(ts);
        let rec = TenantRecord {
            name: name.to_owned(),
            created_at,
        };
        self.store().submit(Write::Tenant(rec), true);
        self.assign_project(name);
        Ok(true)
    }

    pub(crate) fn persist_exchange(&self, tenant: &str, name: &str, spec: &ExchangeSpec) {
        let rec = ExchangeRecord {
            tenant: tenant.to_owned(),
            name: name.to_owned(),
            spec: spec.clone(),
        };
        self.store().submit(Write::Exchange(rec), true);
    }

    pub(crate) fn forget_exchange(
        &self,
        tenant: &str,
        name: &str,
        durable: bool,
        bindings: &[BindingSpec],
    ) {
        if durable {
            let write = Write::ForgetExchange {
                tenant: tenant.to_owned(),
                name: name.to_owned(),
            };
            self.store().submit(write, true);
        }
        for b in bindings {
            self.forget_binding(tenant, b);
        }
    }

    pub(crate) fn persist_binding(&self, tenant: &str, spec: &BindingSpec) {
        let rec = BindingRecord {
            tenant: tenant.to_owned(),
            spec: spec.clone(),
        };
        self.store().submit(Write::Binding(rec), true);
    }

    pub(crate) fn forget_binding(&self, tenant: &str, spec: &BindingSpec) {
        let rec = BindingRecord {
            tenant: tenant.to_owned(),
            spec: spec.clone(),
        };
        self.store().submit(Write::ForgetBinding(rec), false);
    }
}
