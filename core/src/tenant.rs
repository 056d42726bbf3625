//! A tenant's state (an AMQP vhost): its own exchanges, queues, bindings and
//! retained messages, and routing through them. Names never leak across
//! tenants: every lookup goes through one tenant's maps. The public handle,
//! [`crate::Tenant`], is the engine's (`engine/tenant.rs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::error::{Error, Result};
use crate::message::Message;
use crate::queue::Queue;
use crate::routing::{Destination, Exchange, ExchangeKind, ExchangeSpec, Target};

/// Exchanges every tenant has, as in RabbitMQ.
pub const PREDECLARED: [(&str, ExchangeKind); 5] = [
    ("amq.direct", ExchangeKind::Direct),
    ("amq.fanout", ExchangeKind::Fanout),
    ("amq.topic", ExchangeKind::Topic),
    ("amq.headers", ExchangeKind::Headers),
    ("amq.match", ExchangeKind::Headers),
];

pub(crate) struct TenantState {
    pub name: Arc<str>,
    pub created_at: u64,
    pub exchanges: RwLock<HashMap<String, Arc<Exchange>>>,
    pub queues: RwLock<HashMap<String, Arc<Queue>>>,
    pub retained: RwLock<BTreeMap<String, Arc<Message>>>,
}

impl TenantState {
    pub fn new(name: &str, created_at: u64) -> Self {
        let exchanges = PREDECLARED
            .iter()
            .map(|&(n, k)| {
                (
                    n.to_owned(),
                    Arc::new(Exchange::new(n.to_owned(), ExchangeSpec::new(k))),
                )
            })
            .collect();
        TenantState {
            name: name.into(),
            created_at,
            exchanges: RwLock::new(exchanges),
            queues: RwLock::new(HashMap::new()),
            retained: RwLock::new(BTreeMap::new()),
        }
    }

    /// Resolves a binding's destination.
    pub fn target(&self, dest: &Destination) -> Result<Target> {
        match dest {
            Destination::Queue(n) => self
                .queues
                .read()
                .get(n)
                .cloned()
                .map(Target::Queue)
                .ok_or_else(|| Error::not_found("queue", n)),
            Destination::Exchange(n) => self
                .exchanges
                .read()
                .get(n)
                .cloned()
                .map(Target::Exchange)
                .ok_or_else(|| Error::not_found("exchange", n)),
        }
    }

    /// Every queue a message published to `exchange` reaches (deduplicated),
    /// following exchange-to-exchange bindings and alternate exchanges.
    pub fn route(&self, msg: &Message) -> Result<Vec<Arc<Queue>>> {
        let mut out: Vec<Arc<Queue>> = Vec::new();
        if msg.exchange.is_empty() {
            if let Some(q) = self.queues.read().get(&msg.routing_key) {
                out.push(Arc::clone(q));
            }
            return Ok(out);
        }
        let first = self
            .exchanges
            .read()
            .get(&msg.exchange)
            .cloned()
            .ok_or_else(|| Error::not_found("exchange", &msg.exchange))?;
        let mut visited: Vec<*const Exchange> = Vec::new();
        let mut next = Some(first);
        while let Some(x) = next.take() {
            let mut stack = vec![Arc::clone(&x)];
            let mut targets = Vec::new();
            while let Some(ex) = stack.pop() {
                if visited.contains(&Arc::as_ptr(&ex)) {
                    continue;
                }
                visited.push(Arc::as_ptr(&ex));
                targets.clear();
                ex.targets(msg, &mut targets);
                for t in targets.drain(..) {
                    match t {
                        Target::Queue(q) => {
                            if !out.iter().any(|o| Arc::ptr_eq(o, &q)) {
                                out.push(q);
                            }
                        }
                        Target::Exchange(e) => stack.push(e),
                    }
                }
            }
            if out.is_empty()
                && let Some(ae) = &x.spec.alternate_exchange
            {
                next = self.exchanges.read().get(ae).cloned();
            }
        }
        Ok(out)
    }
}
