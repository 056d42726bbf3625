//! [`Tenant`], the handle adapters use for one tenant (an AMQP vhost):
//! declaring and deleting exchanges, queues and bindings with RabbitMQ's
//! equivalence rules, publishing, retained messages. The tenant's state and
//! routing are in `crate::tenant`; the work that spans the engine (storage,
//! queue creation, publishing) is in this module's siblings.

use std::sync::Arc;

use super::EngineInner;
use crate::error::{Error, Result};
use crate::message::{Headers, Message, MessageId, now_millis};
use crate::names::{check_key, check_name, is_reserved};
use crate::queue::{Queue, QueueSettings};
use crate::routing::{
    BindingSpec, Destination, Exchange, ExchangeKind, ExchangeSpec, Target, check_binding,
};
use crate::store::Ticket;
use crate::tenant::TenantState;

/// A handle on one tenant. Cheap to clone.
#[derive(Clone)]
pub struct Tenant {
    pub(crate) engine: Arc<EngineInner>,
    pub(crate) inner: Arc<TenantState>,
}

/// What a queue is declared with.
#[derive(Clone, Debug, Default)]
pub struct QueueSpec {
    /// Survives restarts.
    pub durable: bool,
    /// Owned by one connection and deleted with it.
    pub exclusive_owner: Option<u64>,
    /// Deleted when its last consumer leaves.
    pub auto_delete: bool,
    /// Kind, limits, dead-lettering.
    pub settings: QueueSettings,
    /// Declaration arguments as given (kept for equivalence checks and display).
    pub arguments: Headers,
    /// Create the [`crate::DEFAULT_GROUP`] group (AMQP and MQTT queues need it).
    pub default_group: bool,
}

/// An exchange as seen from outside.
#[derive(Clone, Debug, PartialEq)]
pub struct ExchangeInfo {
    /// Name ("" for the default exchange).
    pub name: String,
    /// Declaration.
    pub spec: ExchangeSpec,
    /// Bindings with this exchange as source.
    pub bindings: usize,
}

/// What publishing one message did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublishReceipt {
    /// The engine's id of the message.
    pub message_id: MessageId,
    /// Queues that took it (or will take it when it is due).
    pub routed: usize,
    /// Queues that refused it (`reject-publish` overflow).
    pub rejected: usize,
    /// Wait for this ticket (see [`crate::Engine::wait_durable`]) before
    /// confirming: then the message is on disk under the sync policy.
    pub ticket: Option<Ticket>,
    /// Held back until its delivery time.
    pub delayed: bool,
}

impl Tenant {
    /// The tenant's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// When the tenant was created.
    pub fn created_at(&self) -> u64 {
        self.inner.created_at
    }

    // ---- exchanges ----

    /// Declares an exchange; true when created, false when an equivalent one existed.
    pub fn declare_exchange(&self, name: &str, spec: ExchangeSpec) -> Result<bool> {
        check_name("exchange", name)?;
        if let Some(ae) = &spec.alternate_exchange {
            check_name("alternate exchange", ae)?;
        }
        let mut xs = self.inner.exchanges.write();
        if let Some(x) = xs.get(name) {
            return if x.spec == spec || (is_reserved(name) && x.spec.kind == spec.kind) {
                Ok(false)
            } else {
                Err(Error::PreconditionFailed(inequivalent(
                    "exchange",
                    name,
                    &self.inner.name,
                    &x.spec,
                    &spec,
                )))
            };
        }
        if is_reserved(name) {
            return Err(Error::AccessRefused(format!(
                "exchange name '{name}' contains reserved prefix 'amq.'"
            )));
        }
        let x = Arc::new(Exchange::new(name.to_owned(), spec.clone()));
        xs.insert(name.to_owned(), x);
        drop(xs);
        if spec.durable {
            self.engine.persist_exchange(&self.inner.name, name, &spec);
        }
        Ok(true)
    }

    /// An exchange's declaration (AMQP passive declare).
    pub fn exchange(&self, name: &str) -> Result<ExchangeInfo> {
        if name.is_empty() {
            return Ok(ExchangeInfo {
                name: String::new(),
                spec: ExchangeSpec::new(ExchangeKind::Direct),
                bindings: 0,
            });
        }
        let xs = self.inner.exchanges.read();
        let x = xs
            .get(name)
            .ok_or_else(|| Error::not_found("exchange", name))?;
        Ok(ExchangeInfo {
            name: name.to_owned(),
            spec: x.spec.clone(),
            bindings: x.binding_count(),
        })
    }

    /// Every exchange, the default one first, then by name.
    pub fn exchanges(&self) -> Vec<ExchangeInfo> {
        let mut v: Vec<ExchangeInfo> = self
            .inner
            .exchanges
            .read()
            .values()
            .map(|x| ExchangeInfo {
                name: x.name.clone(),
                spec: x.spec.clone(),
                bindings: x.binding_count(),
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v.insert(
            0,
            ExchangeInfo {
                name: String::new(),
                spec: ExchangeSpec::new(ExchangeKind::Direct),
                bindings: 0,
            },
        );
        v
    }

    /// Deletes an exchange and every binding from or to it.
    pub fn delete_exchange(&self, name: &str, if_unused: bool) -> Result<()> {
        if name.is_empty() || is_reserved(name) {
            return Err(Error::AccessRefused(format!(
                "exchange '{name}' cannot be deleted"
            )));
        }
        let x = self
            .inner
            .exchanges
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::not_found("exchange", name))?;
        if if_unused && x.binding_count() > 0 {
            return Err(Error::PreconditionFailed(format!(
                "exchange '{name}' in use"
            )));
        }
        self.inner.exchanges.write().remove(name);
        let mut gone = x.bindings();
        let dest = Destination::Exchange(name.to_owned());
        let target = Target::Exchange(Arc::clone(&x));
        for other in self.inner.exchanges.read().values() {
            gone.extend(other.unbind_destination(&dest, &target));
        }
        self.engine
            .forget_exchange(&self.inner.name, name, x.spec.durable, &gone);
        Ok(())
    }

    // ---- queues ----

    /// Declares a queue; returns it and whether it was created. Redeclaring with
    /// other properties fails as in RabbitMQ (`PreconditionFailed`); another
    /// connection's exclusive queue gives `ResourceLocked`.
    pub fn declare_queue(&self, name: &str, spec: QueueSpec) -> Result<(Arc<Queue>, bool)> {
        check_name("queue", name)?;
        spec.settings.validate()?;
        if let Some(q) = self.inner.queues.read().get(name) {
            q.check_owner(spec.exclusive_owner)?;
            check_equivalent(q, &spec, &self.inner.name)?;
            q.touch_used();
            return Ok((Arc::clone(q), false));
        }
        self.engine.create_queue(&self.inner, name, spec, None)
    }

    /// A queue by name.
    pub fn queue(&self, name: &str) -> Result<Arc<Queue>> {
        self.inner
            .queues
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::not_found("queue", name))
    }

    /// Every queue, by name.
    pub fn queues(&self) -> Vec<Arc<Queue>> {
        let mut v: Vec<Arc<Queue>> = self.inner.queues.read().values().cloned().collect();
        v.sort_by(|a, b| a.name().cmp(b.name()));
        v
    }

    /// Deletes a queue; returns how many ready messages it held.
    pub fn delete_queue(&self, name: &str, if_unused: bool, if_empty: bool) -> Result<u64> {
        let q = self.queue(name)?;
        if if_unused && q.consumer_count() > 0 {
            return Err(Error::PreconditionFailed(format!("queue '{name}' in use")));
        }
        let count = q.message_count();
        if if_empty && count > 0 {
            return Err(Error::PreconditionFailed(format!(
                "queue '{name}' not empty"
            )));
        }
        self.engine.delete_queue(&self.inner, &q);
        Ok(count)
    }

    /// Deletes the exclusive queues a closing connection owned.
    pub fn connection_closed(&self, connection: u64) {
        let owned: Vec<Arc<Queue>> = self
            .inner
            .queues
            .read()
            .values()
            .filter(|q| q.exclusive_owner() == Some(connection))
            .cloned()
            .collect();
        for q in owned {
            self.engine.delete_queue(&self.inner, &q);
        }
    }

    // ---- bindings ----

    /// Adds a binding; false when it existed.
    pub fn bind(&self, spec: BindingSpec) -> Result<bool> {
        let x = self.source_exchange(&spec.source)?;
        check_binding(&spec, x.spec.kind)?;
        let target = self.inner.target(&spec.destination)?;
        let durable = x.spec.durable && target.is_durable();
        if !x.bind(spec.clone(), target)? {
            return Ok(false);
        }
        if durable {
            self.engine.persist_binding(&self.inner.name, &spec);
        }
        Ok(true)
    }

    /// Removes a binding; false when there was none. An auto-delete exchange
    /// goes with its last binding.
    pub fn unbind(&self, spec: &BindingSpec) -> Result<bool> {
        let x = self.source_exchange(&spec.source)?;
        let target = self.inner.target(&spec.destination)?;
        if !x.unbind(spec, &target) {
            return Ok(false);
        }
        self.engine.forget_binding(&self.inner.name, spec);
        if x.spec.auto_delete && x.binding_count() == 0 {
            let _ = self.delete_exchange(&spec.source, false);
        }
        Ok(true)
    }

    fn source_exchange(&self, name: &str) -> Result<Arc<Exchange>> {
        if name.is_empty() {
            return Err(Error::AccessRefused(
                "operation not permitted on the default exchange".into(),
            ));
        }
        self.inner
            .exchanges
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::not_found("exchange", name))
    }

    /// Every binding of the tenant (the default exchange's implicit ones excluded).
    pub fn bindings(&self) -> Vec<BindingSpec> {
        let mut v: Vec<BindingSpec> = self
            .inner
            .exchanges
            .read()
            .values()
            .flat_map(|x| x.bindings())
            .collect();
        v.sort_by(|a, b| {
            (&a.source, a.destination.name(), &a.routing_key).cmp(&(
                &b.source,
                b.destination.name(),
                &b.routing_key,
            ))
        });
        v
    }

    // ---- publishing ----

    /// Routes and stores a message (`exchange` and `routing_key` are taken from
    /// it) for a publisher that does not wait for a confirm: consumers may
    /// see it at once, while it is still being written.
    pub fn publish(&self, msg: Message) -> Result<PublishReceipt> {
        check_key("routing key", &msg.routing_key)?;
        self.engine.publish(&self.inner, msg, false)
    }

    /// Routes and stores a message for a publisher that waits for the
    /// receipt's ticket before it is told "stored" (AMQP publisher confirms,
    /// MQTT QoS ≥ 1, HTTP): consumers see it only once it is stored, so a
    /// message whose publisher is told it failed is never delivered.
    pub fn publish_confirmed(&self, msg: Message) -> Result<PublishReceipt> {
        check_key("routing key", &msg.routing_key)?;
        self.engine.publish(&self.inner, msg, true)
    }

    // ---- retained messages (MQTT) ----

    /// Sets (or with `None` clears) the retained message of a topic.
    pub fn set_retained(&self, topic: &str, msg: Option<Message>) -> Option<Ticket> {
        let msg = msg.map(|mut m| {
            m.published_at = now_millis();
            Arc::new(m)
        });
        self.engine.set_retained(&self.inner, topic, msg)
    }

    /// Retained messages whose topic passes `matches`.
    pub fn retained(&self, mut matches: impl FnMut(&str) -> bool) -> Vec<(String, Arc<Message>)> {
        self.inner
            .retained
            .read()
            .iter()
            .filter(|(t, _)| matches(t))
            .map(|(t, m)| (t.clone(), Arc::clone(m)))
            .collect()
    }
}

fn inequivalent<T: std::fmt::Debug>(
    kind: &str,
    name: &str,
    tenant: &str,
    have: &T,
    want: &T,
) -> String {
    format!(
        "inequivalent arguments for {kind} '{name}' in tenant '{tenant}': received {want:?} but current is {have:?}"
    )
}

fn check_equivalent(q: &Queue, spec: &QueueSpec, tenant: &str) -> Result<()> {
    let mismatch = |what: &str, want: String, have: String| {
        Err(Error::PreconditionFailed(format!(
            "inequivalent arg '{what}' for queue '{}' in tenant '{tenant}': received '{want}' but current is '{have}'",
            q.name()
        )))
    };
    if q.is_durable() != spec.durable {
        return mismatch(
            "durable",
            spec.durable.to_string(),
            q.is_durable().to_string(),
        );
    }
    if q.exclusive_owner().is_some() != spec.exclusive_owner.is_some() {
        return mismatch(
            "exclusive",
            spec.exclusive_owner.is_some().to_string(),
            q.exclusive_owner().is_some().to_string(),
        );
    }
    if q.is_auto_delete() != spec.auto_delete {
        return mismatch(
            "auto_delete",
            spec.auto_delete.to_string(),
            q.is_auto_delete().to_string(),
        );
    }
    if *q.settings() != spec.settings {
        return Err(Error::PreconditionFailed(inequivalent(
            "queue",
            q.name(),
            tenant,
            q.settings(),
            &spec.settings,
        )));
    }
    Ok(())
}
