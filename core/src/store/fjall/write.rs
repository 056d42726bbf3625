//! One batch of typed writes → one fjall write batch (atomic in the journal).
//! Records that hold a message are encoded here, on the committer thread,
//! from borrowing twins, so publishers never pay for it.

use super::Open;
use super::codec::{
    DelayedRecordRef, LogBodyRef, LogRecordRef, RetainedRecordRef, SharedRefsRecord, encode,
};
use super::keys;
use crate::store::writes::Write;

/// `epoch` marks memory-only messages spilled by this run.
pub(super) fn apply(store: &Open, epoch: u64, writes: &[Write]) -> Result<(), fjall::Error> {
    let mut batch = store.db.batch();
    let meta = &store.meta;
    for w in writes {
        match w {
            Write::Tenant(rec) => batch.insert(meta, keys::tenant(&rec.name), encode(rec)),
            Write::ForgetTenant(name) => batch.remove(meta, keys::tenant(name)),
            Write::User(rec) => batch.insert(meta, keys::user(&rec.name), encode(rec)),
            Write::ForgetUser(name) => batch.remove(meta, keys::user(name)),
            Write::Project(rec) => batch.insert(meta, keys::project(&rec.tenant), encode(rec)),
            Write::ForgetProject(tenant) => batch.remove(meta, keys::project(tenant)),
            Write::AccessKey(rec) => batch.insert(meta, keys::access_key(&rec.access), encode(rec)),
            Write::ForgetAccessKey(access) => batch.remove(meta, keys::access_key(access)),
            Write::Token(rec) => batch.insert(meta, keys::token(&rec.digest), encode(rec)),
            Write::ForgetToken(digest) => batch.remove(meta, keys::token(digest)),
            Write::Exchange(rec) => {
                batch.insert(meta, keys::exchange(&rec.tenant, &rec.name), encode(rec))
            }
            Write::ForgetExchange { tenant, name } => {
                batch.remove(meta, keys::exchange(tenant, name))
            }
            Write::Binding(rec) => {
                batch.insert(meta, keys::binding(&rec.tenant, &rec.spec), encode(rec))
            }
            Write::ForgetBinding(rec) => batch.remove(meta, keys::binding(&rec.tenant, &rec.spec)),
            Write::Queue(rec) => batch.insert(meta, keys::queue(rec.id), encode(rec)),
            Write::ForgetQueue { id, groups } => {
                batch.remove(meta, keys::queue(*id));
                batch.remove(meta, keys::queue_state(*id));
                for g in groups {
                    batch.remove(meta, keys::group(*id, g));
                }
            }
            Write::QueueState(id, rec) => batch.insert(meta, keys::queue_state(*id), encode(rec)),
            Write::Group(queue, rec) => {
                batch.insert(meta, keys::group(*queue, &rec.name), encode(rec))
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
                batch.insert(&store.log, keys::log_key(*queue, *seq), encode(&rec));
            }
            Write::ForgetEntry { queue, seq } => {
                batch.remove(&store.log, keys::log_key(*queue, *seq))
            }
            Write::AppendShared { queue, seq, body } => {
                let rec = LogRecordRef {
                    transient_epoch: None,
                    body: LogBodyRef::Shared(*body),
                };
                batch.insert(&store.log, keys::log_key(*queue, *seq), encode(&rec));
            }
            Write::Body { id, message } => {
                batch.insert(&store.bodies, id.to_be_bytes(), encode(&**message))
            }
            Write::ForgetBody(id) => batch.remove(&store.bodies, id.to_be_bytes()),
            Write::SharedRefs { body, holders } => {
                let rec = SharedRefsRecord {
                    holders: holders.clone(),
                };
                batch.insert(meta, keys::shared_refs(*body), encode(&rec));
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
                batch.insert(&store.delayed, keys::delay_key(*due, *id), encode(&rec));
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
                batch.insert(meta, keys::retained(tenant, topic), encode(&rec));
            }
            Write::ForgetRetained { tenant, topic } => {
                batch.remove(meta, keys::retained(tenant, topic))
            }
            Write::AdapterState {
                namespace,
                key,
                value,
            } => batch.insert(meta, keys::adapter(namespace, key), value.as_slice()),
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
