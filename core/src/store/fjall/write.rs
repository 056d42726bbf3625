//! One batch of typed writes → one fjall write batch (atomic in the journal).
//! Records that hold a message are encoded here, on the committer thread,
//! from borrowing twins, so publishers never pay for it.

use fjall::OwnedWriteBatch as WriteBatch;
use serde::Serialize;

use super::Open;
use super::codec::{
    DelayedRecordRef, LogBodyRef, LogRecordRef, RetainedRecordRef, SharedRefsRecord,
};
use super::keys;
use crate::store::writes::Write;

/// `epoch` marks memory-only messages spilled by this run.
pub(super) fn apply(store: &Open, epoch: u64, writes: &[Write]) -> Result<(), fjall::Error> {
    let mut batch = store.db.batch();
    let meta = &store.meta;
    let v = &store.values;
    for w in writes {
        match w {
            Write::Tenant(rec) => put_meta(&mut batch, store, keys::tenant(&rec.name), rec),
            Write::ForgetTenant(name) => batch.remove(meta, keys::tenant(name)),
            Write::User(rec) => put_meta(&mut batch, store, keys::user(&rec.name), rec),
            Write::ForgetUser(name) => batch.remove(meta, keys::user(name)),
            Write::TopicPermission(rec) => {
                let p = &rec.permission;
                let key = keys::topic_permission(&rec.user, &p.tenant, &p.exchange);
                put_meta(&mut batch, store, key, rec)
            }
            Write::ForgetTopicPermission {
                user,
                tenant,
                exchange,
            } => batch.remove(meta, keys::topic_permission(user, tenant, exchange)),
            Write::Exchange(rec) => put_meta(
                &mut batch,
                store,
                keys::exchange(&rec.tenant, &rec.name),
                rec,
            ),
            Write::ForgetExchange { tenant, name } => {
                batch.remove(meta, keys::exchange(tenant, name))
            }
            Write::Binding(rec) => put_meta(
                &mut batch,
                store,
                keys::binding(&rec.tenant, &rec.spec),
                rec,
            ),
            Write::ForgetBinding(rec) => batch.remove(meta, keys::binding(&rec.tenant, &rec.spec)),
            Write::Queue(rec) => put_meta(&mut batch, store, keys::queue(rec.id), rec),
            Write::ForgetQueue { id, groups } => {
                batch.remove(meta, keys::queue(*id));
                batch.remove(meta, keys::queue_state(*id));
                for g in groups {
                    batch.remove(meta, keys::group(*id, g));
                }
            }
            Write::QueueState(id, rec) => put_meta(&mut batch, store, keys::queue_state(*id), rec),
            Write::Group(queue, rec) => {
                put_meta(&mut batch, store, keys::group(*queue, &rec.name), rec)
            }
            Write::ForgetGroup { queue, group } => batch.remove(meta, keys::group(*queue, group)),
            Write::Append {
                queue,
                seq,
                message,
                transient,
            } => {
                let rec = LogRecordRef {
                    transient_epoch: transient.then_some(epoch),
                    body: LogBodyRef::Inline(message),
                };
                let key = keys::log_key(*queue, *seq);
                batch.insert(&store.log, key, v.encode("log", &key, &rec));
            }
            Write::ForgetEntry { queue, seq } => {
                batch.remove(&store.log, keys::log_key(*queue, *seq))
            }
            Write::AppendShared { queue, seq, body } => {
                let rec = LogRecordRef {
                    transient_epoch: None,
                    body: LogBodyRef::Shared(*body),
                };
                let key = keys::log_key(*queue, *seq);
                batch.insert(&store.log, key, v.encode("log", &key, &rec));
            }
            Write::Body { id, message } => {
                let key = id.to_be_bytes();
                batch.insert(&store.bodies, key, v.encode("bodies", &key, &**message))
            }
            Write::ForgetBody(id) => batch.remove(&store.bodies, id.to_be_bytes()),
            Write::SharedRefs { body, holders } => {
                let rec = SharedRefsRecord {
                    holders: holders.clone(),
                };
                put_meta(&mut batch, store, keys::shared_refs(*body), &rec);
            }
            Write::ForgetSharedRefs(body) => batch.remove(meta, keys::shared_refs(*body)),
            Write::Delayed {
                due,
                id,
                tenant,
                queues,
                message,
            } => {
                let rec = DelayedRecordRef {
                    tenant,
                    queues,
                    message,
                };
                let key = keys::delay_key(*due, *id);
                batch.insert(&store.delayed, key, v.encode("delayed", &key, &rec));
            }
            Write::ForgetDelayed { due, id } => {
                batch.remove(&store.delayed, keys::delay_key(*due, *id))
            }
            Write::Retained {
                tenant,
                topic,
                message,
            } => {
                let rec = RetainedRecordRef {
                    tenant,
                    topic,
                    message,
                };
                put_meta(&mut batch, store, keys::retained(tenant, topic), &rec);
            }
            Write::ForgetRetained { tenant, topic } => {
                batch.remove(meta, keys::retained(tenant, topic))
            }
            Write::AdapterState {
                namespace,
                key,
                value,
            } => {
                let key = keys::adapter(namespace, key);
                let value = v.encode_raw("meta", &key, value);
                batch.insert(meta, key, value)
            }
            Write::ForgetAdapterState { namespace, key } => {
                batch.remove(meta, keys::adapter(namespace, key))
            }
            Write::Counter(counter, value) => {
                batch.insert(meta, keys::counter(counter.name()), value.to_be_bytes())
            }
            Write::Barrier => {}
        }
    }
    batch.commit()
}

/// A record of `meta` under `key` (sealed when the store is encrypted).
fn put_meta<T: Serialize + ?Sized>(batch: &mut WriteBatch, store: &Open, key: Vec<u8>, rec: &T) {
    let value = store.values.encode("meta", &key, rec);
    batch.insert(&store.meta, key, value);
}
