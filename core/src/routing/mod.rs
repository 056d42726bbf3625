//! Exchanges and bindings: where a published message goes.
//!
//! An exchange routes by its kind — direct (exact key), fanout (everyone),
//! topic (`*`/`#` patterns, `topic.rs`), headers (`headers.rs`) — to queues
//! and, for exchange-to-exchange bindings, to other exchanges. The default
//! exchange (`""`) is not stored: it routes to the queue named by the key.

mod headers;
pub(crate) mod spec;
mod topic;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::error::{Error, Result};
use crate::message::{Headers, Message};
use crate::queue::Queue;
use headers::HeaderMatch;
pub use spec::{BindingSpec, Destination, ExchangeKind, ExchangeSpec};
use topic::TopicTrie;
pub use topic::topic_matches;

/// A resolved destination.
#[derive(Clone)]
pub(crate) enum Target {
    Queue(Arc<Queue>),
    Exchange(Arc<Exchange>),
}

impl Target {
    /// Survives restarts (so a binding to it is stored).
    pub fn is_durable(&self) -> bool {
        match self {
            Target::Queue(q) => q.is_durable(),
            Target::Exchange(x) => x.spec.durable,
        }
    }
}

impl PartialEq for Target {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Target::Queue(a), Target::Queue(b)) => Arc::ptr_eq(a, b),
            (Target::Exchange(a), Target::Exchange(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Queue(q) => write!(f, "queue {}", q.name()),
            Target::Exchange(x) => write!(f, "exchange {}", x.name),
        }
    }
}

/// An exchange with its bindings.
pub(crate) struct Exchange {
    pub name: String,
    pub spec: ExchangeSpec,
    table: RwLock<BindingTable>,
}

/// Bindings of one exchange. `by_destination` is the list of record (what
/// `bindings()` shows and what unbinding looks up); the other fields are the
/// routing structure of the exchange's kind. Every change touches only the
/// bindings of one destination, so thousands of MQTT sessions binding and
/// leaving cost O(their own bindings), not O(all bindings).
#[derive(Default)]
struct BindingTable {
    by_destination: HashMap<Destination, Vec<(Box<str>, Headers)>>,
    count: usize,
    direct: HashMap<Box<str>, Vec<Target>>,
    fanout: Vec<Target>,
    topic: Option<TopicTrie<Target>>,
    headers: Vec<(HeaderMatch, Target)>,
}

impl BindingTable {
    fn route_add(
        &mut self,
        kind: ExchangeKind,
        key: &str,
        args: &Headers,
        target: Target,
    ) -> Result<()> {
        match kind {
            ExchangeKind::Direct => {
                let v = self.direct.entry(key.into()).or_default();
                v.reserve_exact(1);
                v.push(target);
            }
            ExchangeKind::Fanout => self.fanout.push(target),
            ExchangeKind::Topic => {
                self.topic
                    .get_or_insert_with(TopicTrie::new)
                    .insert(key, target);
            }
            ExchangeKind::Headers => {
                let m = HeaderMatch::from_arguments(args)
                    .map_err(|r| Error::invalid("binding arguments", r))?;
                self.headers.push((m, target));
            }
        }
        Ok(())
    }

    fn route_remove(&mut self, kind: ExchangeKind, key: &str, args: &Headers, target: &Target) {
        match kind {
            ExchangeKind::Direct => {
                if let Some(v) = self.direct.get_mut(key) {
                    if let Some(i) = v.iter().position(|x| x == target) {
                        v.swap_remove(i);
                    }
                    if v.is_empty() {
                        self.direct.remove(key);
                    }
                }
            }
            ExchangeKind::Fanout => {
                if let Some(i) = self.fanout.iter().position(|x| x == target) {
                    self.fanout.swap_remove(i);
                }
            }
            ExchangeKind::Topic => {
                if let Some(trie) = &mut self.topic {
                    trie.remove(key, target);
                }
            }
            ExchangeKind::Headers => {
                if let Ok(m) = HeaderMatch::from_arguments(args)
                    && let Some(i) = self
                        .headers
                        .iter()
                        .position(|(hm, x)| *hm == m && x == target)
                {
                    self.headers.swap_remove(i);
                }
            }
        }
    }
}

impl Exchange {
    pub fn new(name: String, spec: ExchangeSpec) -> Self {
        Exchange {
            name,
            spec,
            table: RwLock::new(BindingTable::default()),
        }
    }

    /// Adds a binding; false when it existed.
    pub fn bind(&self, spec: BindingSpec, target: Target) -> Result<bool> {
        let mut t = self.table.write();
        let known = t.by_destination.get(&spec.destination).is_some_and(|v| {
            v.iter()
                .any(|(k, a)| **k == *spec.routing_key && *a == spec.arguments)
        });
        if known {
            return Ok(false);
        }
        t.route_add(self.spec.kind, &spec.routing_key, &spec.arguments, target)?;
        let list = t.by_destination.entry(spec.destination).or_default();
        list.reserve_exact(1);
        list.push((spec.routing_key.into(), spec.arguments));
        t.count += 1;
        Ok(true)
    }

    /// Removes a binding; false when there was none.
    pub fn unbind(&self, spec: &BindingSpec, target: &Target) -> bool {
        let mut t = self.table.write();
        let Some(list) = t.by_destination.get_mut(&spec.destination) else {
            return false;
        };
        let Some(pos) = list
            .iter()
            .position(|(k, a)| **k == *spec.routing_key && *a == spec.arguments)
        else {
            return false;
        };
        list.swap_remove(pos);
        if list.is_empty() {
            t.by_destination.remove(&spec.destination);
        }
        t.count -= 1;
        t.route_remove(self.spec.kind, &spec.routing_key, &spec.arguments, target);
        true
    }

    /// Removes every binding to `dest`; returns the removed specs.
    pub fn unbind_destination(&self, dest: &Destination, target: &Target) -> Vec<BindingSpec> {
        let mut t = self.table.write();
        let Some(list) = t.by_destination.remove(dest) else {
            return Vec::new();
        };
        t.count -= list.len();
        let mut gone = Vec::with_capacity(list.len());
        for (key, args) in list {
            t.route_remove(self.spec.kind, &key, &args, target);
            gone.push(BindingSpec {
                source: self.name.clone(),
                destination: dest.clone(),
                routing_key: key.into(),
                arguments: args,
            });
        }
        gone
    }

    /// The bindings with this exchange as source.
    pub fn bindings(&self) -> Vec<BindingSpec> {
        let t = self.table.read();
        t.by_destination
            .iter()
            .flat_map(|(dest, list)| {
                list.iter().map(move |(key, args)| BindingSpec {
                    source: self.name.clone(),
                    destination: dest.clone(),
                    routing_key: key.to_string(),
                    arguments: args.clone(),
                })
            })
            .collect()
    }

    pub fn binding_count(&self) -> usize {
        self.table.read().count
    }

    /// Appends the destinations this exchange picks for a message.
    pub fn targets(&self, msg: &Message, out: &mut Vec<Target>) {
        let t = self.table.read();
        match self.spec.kind {
            ExchangeKind::Direct => {
                if let Some(v) = t.direct.get(msg.routing_key.as_str()) {
                    out.extend(v.iter().cloned());
                }
            }
            ExchangeKind::Fanout => out.extend(t.fanout.iter().cloned()),
            ExchangeKind::Topic => {
                if let Some(trie) = &t.topic {
                    trie.matches(&msg.routing_key, out);
                }
            }
            ExchangeKind::Headers => {
                out.extend(
                    t.headers
                        .iter()
                        .filter(|(m, _)| m.matches(&msg.headers))
                        .map(|(_, x)| x.clone()),
                );
            }
        }
    }
}

/// Checks a topic binding key or any other binding for obvious mistakes.
pub(crate) fn check_binding(spec: &BindingSpec, kind: ExchangeKind) -> Result<()> {
    crate::names::check_key("binding key", &spec.routing_key)?;
    if kind == ExchangeKind::Headers {
        HeaderMatch::from_arguments(&spec.arguments)
            .map_err(|r| Error::invalid("binding arguments", r))?;
    }
    Ok(())
}
