//! Reading the catalog back at start: each record kind is one prefix scan of
//! the `meta` keyspace.

use fjall::Keyspace;
use serde::Deserialize;

use super::codec::{SharedRefsRecord, decode};
use super::fjall_err;
use super::keys::{self, kind};
use crate::error::StoreError;
use crate::store::backend::{AdapterRecords, Catalog, StoredQueue};
use crate::store::writes::Counter;

/// Every record under a key prefix, decoded, with its key.
fn scan<T: for<'de> Deserialize<'de>>(
    meta: &Keyspace,
    prefix: &[u8],
) -> Result<Vec<(Vec<u8>, T)>, StoreError> {
    let mut out = Vec::new();
    for guard in meta.prefix(prefix) {
        let (k, v) = guard.into_inner().map_err(fjall_err("reading meta"))?;
        out.push((k.to_vec(), decode("meta", &v)?));
    }
    Ok(out)
}

fn records<T: for<'de> Deserialize<'de>>(meta: &Keyspace, kind: u8) -> Result<Vec<T>, StoreError> {
    Ok(scan(meta, &[kind])?.into_iter().map(|(_, r)| r).collect())
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

pub(super) fn catalog(meta: &Keyspace) -> Result<Catalog, StoreError> {
    let shared_bodies = scan::<SharedRefsRecord>(meta, &[kind::SHARED_REFS])?
        .into_iter()
        .filter_map(|(k, r)| Some((keys::parse_shared_refs(&k)?, r.holders)))
        .collect();
    Ok(Catalog {
        next_message_id: counter(meta, Counter::MessageIds)?,
        next_queue_id: counter(meta, Counter::QueueIds)?,
        users: records(meta, kind::USER)?,
        tenants: records(meta, kind::TENANT)?,
        projects: records(meta, kind::PROJECT)?,
        access_keys: records(meta, kind::ACCESS_KEY)?,
        tokens: records(meta, kind::TOKEN)?,
        exchanges: records(meta, kind::EXCHANGE)?,
        queues: records(meta, kind::QUEUE)?,
        bindings: records(meta, kind::BINDING)?,
        shared_bodies,
        retained: records(meta, kind::RETAINED)?,
    })
}

/// A queue's counters and groups (the caller adds the log's last sequence).
pub(super) fn queue(meta: &Keyspace, id: u64) -> Result<StoredQueue, StoreError> {
    let state = match meta
        .get(keys::queue_state(id))
        .map_err(fjall_err("reading meta"))?
    {
        Some(v) => decode("meta", &v)?,
        None => Default::default(),
    };
    let mut groups: Vec<crate::store::records::GroupRecord> = scan(meta, &keys::groups_of(id))?
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

pub(super) fn adapter_state(
    meta: &Keyspace,
    namespace: &str,
) -> Result<AdapterRecords, StoreError> {
    let prefix = keys::adapter_namespace(namespace);
    let mut out = Vec::new();
    for guard in meta.prefix(&prefix) {
        let (k, v) = guard.into_inner().map_err(fjall_err("reading meta"))?;
        if let Some(key) = keys::parse_adapter(&prefix, &k) {
            out.push((key.to_vec(), v.to_vec()));
        }
    }
    Ok(out)
}
