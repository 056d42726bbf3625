//! Declarations that could not be stored are taken back.
//!
//! A declaration (queue, exchange, binding, group, tenant) changes memory at
//! once and is written at the next commit; its answer waits for that write
//! (see [`Engine::barrier`]). When the write fails, the client is told so,
//! and memory must not keep what the client was told does not exist: after a
//! restart it would be gone, and until then it would route and hold messages.
//! [`Engine::durable_or_undo`] is that wait and that taking back, in one place
//! for every door.
//!
//! What is taken back is only what this declaration added and nobody has
//! started to use since: a queue that meanwhile holds messages or consumers,
//! an exchange with bindings, a group with consumers, stays (and the store's
//! recovery writes it, so memory and disk agree either way).

use std::sync::Arc;

use super::{Engine, Tenant};
use crate::error::Result;
use crate::queue::Queue;
use crate::routing::BindingSpec;

/// Something a declaration created, to take back if it cannot be stored.
pub enum Created {
    /// A queue (with its default group, if it was made with one).
    Queue { tenant: Tenant, queue: Arc<Queue> },
    /// An exchange.
    Exchange { tenant: Tenant, name: String },
    /// A binding.
    Binding { tenant: Tenant, spec: BindingSpec },
    /// A consumer group of a queue.
    Group { queue: Arc<Queue>, name: String },
    /// A tenant.
    Tenant(String),
}

impl Engine {
    /// Waits until everything submitted so far is durable, as
    /// `wait_durable(barrier())` does. If that fails, each of `created` is
    /// taken back from memory (last first) before the error is returned, so
    /// an answer of "failed" leaves nothing behind.
    pub async fn durable_or_undo(&self, created: Vec<Created>) -> Result<()> {
        let result = self.wait_durable(self.barrier()).await;
        if result.is_err() {
            for c in created.into_iter().rev() {
                self.take_back(c);
            }
        }
        result
    }

    fn take_back(&self, created: Created) {
        match created {
            Created::Queue { tenant, queue } => {
                let same = tenant
                    .queue(queue.name())
                    .is_ok_and(|q| Arc::ptr_eq(&q, &queue));
                if same && queue.consumer_count() == 0 && queue.message_count() == 0 {
                    tracing::info!(
                        tenant = tenant.name(),
                        queue = queue.name(),
                        "queue could not be stored; taken back"
                    );
                    let _ = tenant.delete_queue(queue.name(), true, true);
                }
            }
            Created::Exchange { tenant, name } => {
                if tenant.exchange(&name).is_ok_and(|x| x.bindings == 0) {
                    tracing::info!(tenant = tenant.name(), exchange = %name, "exchange could not be stored; taken back");
                    let _ = tenant.delete_exchange(&name, true);
                }
            }
            Created::Binding { tenant, spec } => {
                tracing::info!(tenant = tenant.name(), source = %spec.source, key = %spec.routing_key, "binding could not be stored; taken back");
                let _ = tenant.unbind(&spec);
            }
            Created::Group { queue, name } => {
                let unused = queue
                    .stats()
                    .groups
                    .iter()
                    .any(|g| g.name == name && g.consumers == 0);
                if unused {
                    tracing::info!(queue = queue.name(), group = %name, "group could not be stored; taken back");
                    let _ = queue.delete_group(&name);
                }
            }
            Created::Tenant(name) => {
                let empty = self.tenant(&name).is_ok_and(|t| {
                    t.queues().is_empty() && t.exchanges().iter().all(|x| x.bindings == 0)
                });
                if empty {
                    tracing::info!(tenant = %name, "tenant could not be stored; taken back");
                    let _ = self.delete_tenant(&name);
                }
            }
        }
    }
}
