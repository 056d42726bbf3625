//! Reading the catalog back at start: each record kind is one prefix scan of
//! the `meta` keyspace.

use fjall::Keyspace;
use serde::Deserialize;

use super::codec::SharedRefsRecord;
use super::keys::{self, kind};
use super::{Open, fjall_err};
use crate::error::StoreError;
use crate::store::backend::{AdapterRecords, Catalog, StoredQueue};
use crate::store::writes::Counter;

/// Every record under a key prefix, decoded, with its key.
fn scan<T: for<'de> Deserialize<'de>>(
    store: &Open,
    prefix: &[u8],
) -> Result<Vec<(Vec<u8>, T)>, StoreError> {
    let mut out = Vec::new();
    for guard in store.meta.prefix(prefix) {
        let (k, v) = guard.into_inner().map_err(fjall_err("reading meta"))?;
        let record = store.values.decode("meta", &k, &v)?;
        out.push((k.to_vec(), record));
    }
    Ok(out)
}

fn records<T: for<'de> Deserialize<'de>>(store: &Open, kind: u8) -> Result<Vec<T>, StoreError> {
    Ok(scan(store, &[kind])?.into_iter().map(|(_, r)| r).collect())
}

pub(super) fn read_u64(ks: &Keyspace, key: &[u8]) -> Result<Option<u64>, StoreError> {
    match ks.get(key).map_err(fjall_err("reading counter"))? {
        Some(v) => {
            let b: [u8; 8] = (*v).try_into().map_err(|_| StoreError::Corrupt {
                keyspace: "meta",
                reason: "counter is not 8 bytes".into(),
            })?;
            Ok(Some(u64::from_be_bytes(b)))
        }
        None => Ok(None),
    }
}

fn counter(meta: &Keyspace, c: Counter) -> Result<u64, StoreError> {
    Ok(read_u64(meta, &keys::counter(c.name()))?.unwrap_or(1))
}

pub(super) fn catalog(store: &Open) -> Result<Catalog, StoreError> {
    let meta = &store.meta;
    let shared_bodies = scan::<SharedRefsRecord>(store, &[kind::SHARED_REFS])?
        .into_iter()
        .filter_map(|(k, r)| Some((keys::parse_shared_refs(&k)?, r.holders)))
        .collect();
    Ok(Catalog {
        next_message_id: counter(meta, Counter::MessageIds)?,
        next_queue_id: counter(meta, Counter::QueueIds)?,
        users: records(store, kind::USER)?,
        topic_permissions: records(store, kind::TOPIC_PERMISSION)?,
        tenants: records(store, kind::TENANT)?,
        exchanges: records(store, kind::EXCHANGE)?,
        queues: records(store, kind::QUEUE)?,
        bindings: records(store, kind::BINDING)?,
        shared_bodies,
        retained: records(store, kind::RETAINED)?,
    })
}

/// A queue's counters and groups (the caller adds the log's last sequence).
pub(super) fn queue(store: &Open, id: u64) -> Result<StoredQueue, StoreError> {
    let key = keys::queue_state(id);
    let state = match store.meta.get(&key).map_err(fjall_err("reading meta"))? {
        Some(v) => store.values.decode("meta", &key, &v)?,
        None => Default::default(),
    };
    let mut groups: Vec<crate::store::records::GroupRecord> = scan(store, &keys::groups_of(id))?
        .into_iter()
        .map(|(_, g)| g)
        .collect();
    groups.sort_by_key(|g| g.id);
    Ok(StoredQueue {
        state,
        groups,
        last_seq: None,
    })
}

pub(super) fn adapter_state(store: &Open, namespace: &str) -> Result<AdapterRecords, StoreError> {
    let prefix = keys::adapter_namespace(namespace);
    let mut out = Vec::new();
    for guard in store.meta.prefix(&prefix) {
        let (k, v) = guard.into_inner().map_err(fjall_err("reading meta"))?;
        if let Some(key) = keys::parse_adapter(&prefix, &k) {
            out.push((key.to_vec(), store.values.decode_raw("meta", &k, &v)?));
        }
    }
    Ok(out)
}
