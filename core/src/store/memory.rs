//! A backend that keeps everything in memory: the engine's tests run on it as
//! well as on disk, and the delivery state machine is testable without a
//! disk. A [`MemoryStore`] outlives the engines opened on it, so opening a
//! second engine on the same store is a restart: it recovers what the first
//! one wrote, exactly as a data directory would after `kill -9` (everything
//! applied survives; memory-only messages spilled by the earlier run do not).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;

use super::backend::{
    AdapterRecords, Backend, Catalog, DelayedSchedule, LogRead, StoredQueue, holes_between,
};
use super::records::{
    BindingRecord, DelayedRecord, ExchangeRecord, GroupRecord, QueueRecord, QueueStateRecord,
    RetainedRecord, TenantRecord, TopicPermissionRecord,
};
use super::writes::{Counter, Write};
use crate::auth::UserRecord;
use crate::error::StoreError;
use crate::message::Message;

/// Storage in memory that survives the engines opened on it (see the module
/// doc). Cloning gives another handle on the same storage.
#[derive(Clone, Default)]
pub struct MemoryStore {
    data: Arc<Mutex<Data>>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// Empty storage.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// Makes writes fail (as a full disk would) until called with `false`;
    /// for tests of how the engine survives a failing store.
    pub fn set_failing(&self, failing: bool) {
        self.data.lock().failing = failing;
    }

    /// Makes writes wait (as a disk that does not keep up) until called with
    /// `false`; for tests of flow control.
    pub fn set_stalled(&self, stalled: bool) {
        self.data.lock().stalled = stalled;
    }

    /// A backend over this storage for one engine run (a new epoch).
    pub(crate) fn open(&self) -> Arc<MemoryBackend> {
        let epoch = {
            let mut d = self.data.lock();
            d.epoch += 1;
            d.registered.clear();
            d.epoch
        };
        Arc::new(MemoryBackend {
            data: Arc::clone(&self.data),
            epoch,
        })
    }
}

enum Entry {
    Inline {
        message: Arc<Message>,
        /// The run that spilled a memory-only message.
        transient_epoch: Option<u64>,
    },
    Shared(u64),
}

struct Delayed {
    tenant: Arc<str>,
    queues: Vec<u64>,
    message: Arc<Message>,
}

#[derive(Default)]
struct Data {
    epoch: u64,
    counters: HashMap<&'static str, u64>,
    tenants: BTreeMap<String, TenantRecord>,
    users: BTreeMap<String, UserRecord>,
    /// Keyed by (user, tenant, exchange).
    topic_permissions: BTreeMap<(String, String, String), TopicPermissionRecord>,
    exchanges: BTreeMap<(String, String), ExchangeRecord>,
    /// Keyed by tenant and the encoded spec (a binding has no shorter identity).
    bindings: BTreeMap<(String, Vec<u8>), BindingRecord>,
    queues: BTreeMap<u64, QueueRecord>,
    queue_states: HashMap<u64, QueueStateRecord>,
    groups: BTreeMap<(u64, String), GroupRecord>,
    logs: HashMap<u64, BTreeMap<u64, Entry>>,
    bodies: HashMap<u64, Arc<Message>>,
    shared_refs: BTreeMap<u64, Vec<(u64, u64)>>,
    delayed: BTreeMap<(u64, u64), Delayed>,
    retained: BTreeMap<(Arc<str>, String), Arc<Message>>,
    adapter: BTreeMap<(String, Vec<u8>), Vec<u8>>,
    /// Queues registered since the last start (see `catalog_loaded`).
    registered: HashMap<u64, ()>,
    /// Writes and recovery fail while set (see `MemoryStore::set_failing`).
    failing: bool,
    /// Writes wait while set (see `MemoryStore::set_stalled`).
    stalled: bool,
}

fn no_space() -> StoreError {
    StoreError::Io {
        context: "writing to memory (made to fail)".into(),
        source: std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left"),
    }
}

pub(crate) struct MemoryBackend {
    data: Arc<Mutex<Data>>,
    epoch: u64,
}

fn binding_id(rec: &BindingRecord) -> (String, Vec<u8>) {
    (
        rec.tenant.clone(),
        postcard::to_stdvec(&rec.spec).unwrap_or_default(),
    )
}

impl MemoryBackend {
    fn message_of(&self, d: &Data, entry: &Entry) -> Option<Arc<Message>> {
        match entry {
            Entry::Inline {
                transient_epoch: Some(e),
                ..
            } if *e != self.epoch => None,
            Entry::Inline { message, .. } => Some(Arc::clone(message)),
            Entry::Shared(id) => d.bodies.get(id).cloned(),
        }
    }
}

impl Data {
    fn apply(&mut self, w: &Write, epoch: u64) {
        match w {
            Write::Tenant(r) => {
                self.tenants.insert(r.name.clone(), r.clone());
            }
            Write::ForgetTenant(n) => {
                self.tenants.remove(n);
            }
            Write::User(r) => {
                self.users.insert(r.name.clone(), r.clone());
            }
            Write::TopicPermission(r) => {
                let p = &r.permission;
                let key = (r.user.clone(), p.tenant.clone(), p.exchange.clone());
                self.topic_permissions.insert(key, r.clone());
            }
            Write::ForgetTopicPermission {
                user,
                tenant,
                exchange,
            } => {
                self.topic_permissions
                    .remove(&(user.clone(), tenant.clone(), exchange.clone()));
            }
            Write::ForgetUser(n) => {
                self.users.remove(n);
            }
            Write::Exchange(r) => {
                self.exchanges
                    .insert((r.tenant.clone(), r.name.clone()), r.clone());
            }
            Write::ForgetExchange { tenant, name } => {
                self.exchanges.remove(&(tenant.clone(), name.clone()));
            }
            Write::Binding(r) => {
                self.bindings.insert(binding_id(r), r.clone());
            }
            Write::ForgetBinding(r) => {
                self.bindings.remove(&binding_id(r));
            }
            Write::Queue(r) => {
                self.queues.insert(r.id, r.clone());
            }
            Write::ForgetQueue { id, groups } => {
                self.queues.remove(id);
                self.queue_states.remove(id);
                for g in groups {
                    self.groups.remove(&(*id, g.clone()));
                }
            }
            Write::QueueState(id, r) => {
                self.queue_states.insert(*id, r.clone());
            }
            Write::Group(q, r) => {
                self.groups.insert((*q, r.name.clone()), r.clone());
            }
            Write::ForgetGroup { queue, group } => {
                self.groups.remove(&(*queue, group.clone()));
            }
            Write::Append {
                queue,
                seq,
                message,
                transient,
            } => {
                let entry = Entry::Inline {
                    message: Arc::clone(message),
                    transient_epoch: transient.then_some(epoch),
                };
                self.logs.entry(*queue).or_default().insert(*seq, entry);
            }
            Write::ForgetEntry { queue, seq } => {
                if let Some(log) = self.logs.get_mut(queue) {
                    log.remove(seq);
                }
            }
            Write::AppendShared { queue, seq, body } => {
                self.logs
                    .entry(*queue)
                    .or_default()
                    .insert(*seq, Entry::Shared(*body));
            }
            Write::Body { id, message } => {
                self.bodies.insert(*id, Arc::clone(message));
            }
            Write::ForgetBody(id) => {
                self.bodies.remove(id);
            }
            Write::SharedRefs { body, holders } => {
                self.shared_refs.insert(*body, holders.clone());
            }
            Write::ForgetSharedRefs(body) => {
                self.shared_refs.remove(body);
            }
            Write::Delayed {
                due,
                id,
                tenant,
                queues,
                message,
            } => {
                let d = Delayed {
                    tenant: Arc::clone(tenant),
                    queues: queues.clone(),
                    message: Arc::clone(message),
                };
                self.delayed.insert((*due, *id), d);
            }
            Write::ForgetDelayed { due, id } => {
                self.delayed.remove(&(*due, *id));
            }
            Write::Retained {
                tenant,
                topic,
                message,
            } => {
                self.retained
                    .insert((Arc::clone(tenant), topic.clone()), Arc::clone(message));
            }
            Write::ForgetRetained { tenant, topic } => {
                self.retained.remove(&(Arc::clone(tenant), topic.clone()));
            }
            Write::AdapterState {
                namespace,
                key,
                value,
            } => {
                self.adapter
                    .insert((namespace.clone(), key.clone()), value.clone());
            }
            Write::ForgetAdapterState { namespace, key } => {
                self.adapter.remove(&(namespace.clone(), key.clone()));
            }
            Write::Counter(c, v) => {
                self.counters.insert(c.name(), *v);
            }
            Write::Barrier => {}
        }
    }
}

impl Backend for MemoryBackend {
    fn write(&self, batch: &[Write]) -> Result<(), StoreError> {
        while self.data.lock().stalled {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let mut d = self.data.lock();
        if d.failing {
            // As a full disk does: part of the batch may have made it, after
            // a while (long enough for a test to look in between).
            for w in batch.iter().take(batch.len() / 2) {
                d.apply(w, self.epoch);
            }
            drop(d);
            std::thread::sleep(std::time::Duration::from_millis(20));
            return Err(no_space());
        }
        for w in batch {
            d.apply(w, self.epoch);
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn recover(&self) -> Result<(), StoreError> {
        if self.data.lock().failing {
            Err(no_space())
        } else {
            Ok(())
        }
    }

    fn read_log(
        &self,
        queue: u64,
        from: u64,
        max: usize,
        _max_bytes: u64,
    ) -> Result<LogRead, StoreError> {
        let d = self.data.lock();
        let Some(log) = d.logs.get(&queue) else {
            return Ok(Vec::new());
        };
        Ok(log
            .range(from..)
            .take(max)
            .map(|(seq, e)| (*seq, self.message_of(&d, e)))
            .collect())
    }

    fn get_log(&self, queue: u64, seq: u64) -> Result<Option<Arc<Message>>, StoreError> {
        let d = self.data.lock();
        Ok(d.logs
            .get(&queue)
            .and_then(|l| l.get(&seq))
            .and_then(|e| self.message_of(&d, e)))
    }

    fn log_holes(
        &self,
        queue: u64,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Option<Vec<u64>>, StoreError> {
        let d = self.data.lock();
        let present: Vec<u64> = d
            .logs
            .get(&queue)
            .map(|l| l.range(from..to).map(|(s, _)| *s).collect())
            .unwrap_or_default();
        Ok(holes_between(from, to, present, limit))
    }

    fn load_catalog(&self) -> Result<Catalog, StoreError> {
        let d = self.data.lock();
        let counter = |c: Counter| d.counters.get(c.name()).copied().unwrap_or(1);
        Ok(Catalog {
            next_message_id: counter(Counter::MessageIds),
            next_queue_id: counter(Counter::QueueIds),
            users: d.users.values().cloned().collect(),
            topic_permissions: d.topic_permissions.values().cloned().collect(),
            tenants: d.tenants.values().cloned().collect(),
            exchanges: d.exchanges.values().cloned().collect(),
            queues: d.queues.values().cloned().collect(),
            bindings: d.bindings.values().cloned().collect(),
            shared_bodies: d.shared_refs.iter().map(|(b, h)| (*b, h.clone())).collect(),
            retained: d
                .retained
                .iter()
                .map(|((tenant, topic), m)| RetainedRecord {
                    tenant: tenant.to_string(),
                    topic: topic.clone(),
                    message: (**m).clone(),
                })
                .collect(),
        })
    }

    fn load_queue(&self, id: u64) -> Result<StoredQueue, StoreError> {
        let d = self.data.lock();
        let mut groups: Vec<GroupRecord> = d
            .groups
            .range((id, String::new())..)
            .take_while(|((q, _), _)| *q == id)
            .map(|(_, g)| g.clone())
            .collect();
        groups.sort_by_key(|g| g.id);
        Ok(StoredQueue {
            state: d.queue_states.get(&id).cloned().unwrap_or_default(),
            groups,
            last_seq: d.logs.get(&id).and_then(|l| l.keys().next_back().copied()),
        })
    }

    fn load_delayed(&self) -> Result<DelayedSchedule, StoreError> {
        let d = self.data.lock();
        Ok(d.delayed.iter().map(|(k, v)| (*k, record_of(v))).collect())
    }

    fn delayed_keys(&self) -> Result<Vec<(u64, u64)>, StoreError> {
        Ok(self.data.lock().delayed.keys().copied().collect())
    }

    fn get_delayed(&self, due: u64, id: u64) -> Result<Option<DelayedRecord>, StoreError> {
        Ok(self.data.lock().delayed.get(&(due, id)).map(record_of))
    }

    fn load_adapter_state(&self, namespace: &str) -> Result<AdapterRecords, StoreError> {
        let d = self.data.lock();
        Ok(d.adapter
            .range((namespace.to_owned(), Vec::new())..)
            .take_while(|((ns, _), _)| ns == namespace)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }

    fn set_log_head(&self, queue: u64, head: u64) {
        let mut d = self.data.lock();
        d.registered.insert(queue, ());
        if let Some(log) = d.logs.get_mut(&queue) {
            let kept = log.split_off(&head);
            *log = kept;
        }
    }

    fn drop_log(&self, queue: u64) {
        let mut d = self.data.lock();
        d.registered.remove(&queue);
        d.logs.remove(&queue);
    }

    fn catalog_loaded(&self, next_queue_id: u64) {
        let mut d = self.data.lock();
        let Data {
            logs, registered, ..
        } = &mut *d;
        logs.retain(|q, _| registered.contains_key(q) || *q >= next_queue_id);
    }

    fn under_pressure(&self) -> bool {
        false
    }

    fn disk_bytes(&self) -> u64 {
        0
    }

    fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

fn record_of(d: &Delayed) -> DelayedRecord {
    DelayedRecord {
        tenant: d.tenant.to_string(),
        queues: d.queues.clone(),
        message: (*d.message).clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(seq: u64, transient: bool) -> Write {
        Write::Append {
            queue: 1,
            seq,
            message: Arc::new(Message::new(format!("m{seq}"))),
            transient,
        }
    }

    #[test]
    fn a_second_open_is_a_restart() {
        let store = MemoryStore::new();
        let first = store.open();
        first.set_log_head(1, 0);
        first
            .write(&[append(0, false), append(1, true), append(3, false)])
            .unwrap();
        assert_eq!(first.read_log(1, 0, 10, u64::MAX).unwrap().len(), 3);
        let second = store.open();
        let read: Vec<(u64, bool)> = second
            .read_log(1, 0, 10, u64::MAX)
            .unwrap()
            .into_iter()
            .map(|(s, m)| (s, m.is_some()))
            .collect();
        assert_eq!(
            read,
            [(0, true), (1, false), (3, true)],
            "the earlier run's transient entry is gone"
        );
        assert_eq!(second.log_holes(1, 0, 4, 10).unwrap(), Some(vec![2]));
        assert_eq!(second.load_queue(1).unwrap().last_seq, Some(3));
        second.set_log_head(1, 3);
        assert_eq!(second.read_log(1, 0, 10, u64::MAX).unwrap().len(), 1);
    }

    #[test]
    fn logs_of_unregistered_queues_go_once_the_catalog_is_loaded() {
        let store = MemoryStore::new();
        let b = store.open();
        b.write(&[append(0, false)]).unwrap();
        b.set_log_head(2, 0);
        b.catalog_loaded(2);
        assert!(b.read_log(1, 0, 10, u64::MAX).unwrap().is_empty());
    }
}
