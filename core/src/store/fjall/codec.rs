//! How the fjall backend encodes records: postcard, with borrowing twins of
//! the records that hold a message, so writing never clones one. The shapes
//! here are the on-disk format `gateway-store-1`; changing any of them (or a
//! record of `records.rs`) changes `STORE_FORMAT`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::message::Message;
use crate::store::seal::EncryptionKeys;

/// A message in a queue's log.
#[derive(Serialize, Deserialize)]
pub(crate) struct LogRecord {
    /// Set for a non-persistent message written only to free memory: it is
    /// ignored after a restart (a new epoch).
    pub transient_epoch: Option<u64>,
    pub body: LogBody,
}

#[derive(Serialize, Deserialize)]
pub(crate) enum LogBody {
    Inline(Box<Message>),
    /// Stored once in the `bodies` keyspace because several queues hold it.
    Shared(u64),
}

/// The same as [`LogRecord`] but borrowing the message, so writing does not clone it.
#[derive(Serialize)]
pub(crate) struct LogRecordRef<'a> {
    pub transient_epoch: Option<u64>,
    pub body: LogBodyRef<'a>,
}

#[derive(Serialize)]
pub(crate) enum LogBodyRef<'a> {
    Inline(&'a Message),
    Shared(u64),
}

/// The same as [`super::super::records::DelayedRecord`], borrowing.
#[derive(Serialize)]
pub(crate) struct DelayedRecordRef<'a> {
    pub tenant: &'a str,
    pub queues: &'a [u64],
    pub message: &'a Message,
}

/// The same as [`super::super::records::RetainedRecord`], borrowing.
#[derive(Serialize)]
pub(crate) struct RetainedRecordRef<'a> {
    pub tenant: &'a str,
    pub topic: &'a str,
    pub message: &'a Message,
}

/// Which (queue, seq) log entries still refer to a body stored once for several queues.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct SharedRefsRecord {
    pub holders: Vec<(u64, u64)>,
}

/// How values are written: postcard, sealed (`store/seal.rs`) when the data
/// directory is encrypted. Keys stay clear: they are the store's layout
/// (ids, and the names the catalog is looked up by).
#[derive(Clone, Default)]
pub(crate) struct Values {
    keys: Option<Arc<EncryptionKeys>>,
}

impl Values {
    pub fn new(keys: Option<Arc<EncryptionKeys>>) -> Self {
        Values { keys }
    }

    pub fn keys(&self) -> Option<&EncryptionKeys> {
        self.keys.as_deref()
    }

    /// A record as stored under `key` of `keyspace`.
    pub fn encode<T: Serialize + ?Sized>(
        &self,
        keyspace: &'static str,
        key: &[u8],
        value: &T,
    ) -> Vec<u8> {
        // postcard cannot fail on in-memory structures of these types (no maps
        // with non-string keys, no unsized sequences); an empty record would be
        // refused at decode time and reported as corruption.
        match &self.keys {
            None => postcard::to_stdvec(value).unwrap_or_default(),
            Some(keys) => keys
                .seal_with(&aad(keyspace, key), |buf| postcard::to_extend(value, buf))
                .unwrap_or_default(),
        }
    }

    /// Bytes a door gave (adapter state) as stored.
    pub fn encode_raw(&self, keyspace: &'static str, key: &[u8], value: &[u8]) -> Vec<u8> {
        match &self.keys {
            None => value.to_vec(),
            Some(keys) => keys.seal(&aad(keyspace, key), value),
        }
    }

    pub fn decode<T: for<'de> Deserialize<'de>>(
        &self,
        keyspace: &'static str,
        key: &[u8],
        bytes: &[u8],
    ) -> Result<T, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt { keyspace, reason };
        match &self.keys {
            None => postcard::from_bytes(bytes).map_err(|e| corrupt(e.to_string())),
            Some(_) => {
                let plain = self.decode_raw(keyspace, key, bytes)?;
                postcard::from_bytes(&plain).map_err(|e| corrupt(e.to_string()))
            }
        }
    }

    /// The bytes a door gave (adapter state) back.
    pub fn decode_raw(
        &self,
        keyspace: &'static str,
        key: &[u8],
        bytes: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        match &self.keys {
            None => Ok(bytes.to_vec()),
            Some(keys) => keys
                .open(&aad(keyspace, key), bytes)
                .map(|(plain, _)| plain)
                .map_err(|e| StoreError::Corrupt {
                    keyspace,
                    reason: e.to_string(),
                }),
        }
    }
}

/// Plain postcard, for the parts of keys that are records (a binding's spec).
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).unwrap_or_default()
}

/// What a sealed value is bound to: its keyspace and key.
pub(crate) fn aad(keyspace: &str, key: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(keyspace.len() + 1 + key.len());
    aad.extend_from_slice(keyspace.as_bytes());
    aad.push(0);
    aad.extend_from_slice(key);
    aad
}
