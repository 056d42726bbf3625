//! Retained messages (MQTT's RETAIN, kept per tenant and topic) and the
//! doors' own durable records (MQTT sessions and the like).

use std::sync::Arc;

use super::{Engine, EngineInner};
use crate::error::Result;
use crate::message::Message;
use crate::store::{Ticket, Write};
use crate::tenant::TenantState;

impl Engine {
    /// Stores an adapter's record under (namespace, key).
    pub fn put_state(&self, namespace: &str, key: &[u8], value: &[u8]) -> Ticket {
        let write = Write::AdapterState {
            namespace: namespace.to_owned(),
            key: key.to_vec(),
            value: value.to_vec(),
        };
        self.inner.services.store.submit(write, true)
    }

    /// Deletes an adapter's record.
    pub fn delete_state(&self, namespace: &str, key: &[u8]) -> Ticket {
        let write = Write::ForgetAdapterState {
            namespace: namespace.to_owned(),
            key: key.to_vec(),
        };
        self.inner.services.store.submit(write, true)
    }

    /// Every record of a namespace, as (key, value).
    pub fn scan_state(&self, namespace: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        Ok(self
            .inner
            .services
            .store
            .backend()
            .load_adapter_state(namespace)?)
    }
}

impl EngineInner {
    pub(crate) fn set_retained(
        &self,
        tenant: &Arc<TenantState>,
        topic: &str,
        msg: Option<Arc<Message>>,
    ) -> Option<Ticket> {
        match msg {
            Some(m) => {
                let persist = m.is_persistent();
                tenant
                    .retained
                    .write()
                    .insert(topic.to_owned(), Arc::clone(&m));
                persist.then(|| {
                    let write = Write::Retained {
                        tenant: Arc::clone(&tenant.name),
                        topic: topic.to_owned(),
                        message: m,
                    };
                    self.store().submit(write, true)
                })
            }
            None => {
                tenant.retained.write().remove(topic);
                let write = Write::ForgetRetained {
                    tenant: Arc::clone(&tenant.name),
                    topic: topic.to_owned(),
                };
                Some(self.store().submit(write, true))
            }
        }
    }
}
