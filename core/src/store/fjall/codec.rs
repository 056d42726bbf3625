//! How the fjall backend encodes records: postcard, with borrowing twins of
//! the records that hold a message, so writing never clones one. The shapes
//! here are the on-disk format `gateway-store-1`; changing any of them (or a
//! record of `records.rs`) changes `STORE_FORMAT`.

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::message::Message;

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

pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // postcard cannot fail on in-memory structures of these types (no maps with
    // non-string keys, no unsized sequences); an empty record would be refused at
    // decode time and reported as corruption.
    postcard::to_stdvec(value).unwrap_or_default()
}

pub(crate) fn decode<T: for<'de> Deserialize<'de>>(
    keyspace: &'static str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
        keyspace,
        reason: e.to_string(),
    })
}
