//! The storage boundary. The engine talks to storage through two things only:
//!
//! - [`Store`] (`commit.rs`): submit typed [`Write`]s (`writes.rs`), get a
//!   [`Ticket`], wait until it is durable. One committer thread batches
//!   writes for every backend alike (group commit).
//! - [`Backend`] (`backend.rs`): the trait a storage engine implements —
//!   apply a batch, sync, read a queue's log, load the catalog at start.
//!
//! Backends: `fjall/` (the embedded default, one data directory; nothing
//! outside that folder names it) and `memory.rs` (tests). Record shapes every
//! backend stores are in `records.rs`; how a backend lays them out is its own
//! business. [`open`] picks one.

mod backend;
mod commit;
pub(crate) mod fjall;
mod memory;
pub(crate) mod records;
pub(crate) mod seal;
mod writes;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Result;

pub(crate) use backend::{Backend, Catalog, StoredQueue};
pub use commit::StoreHealth;
pub(crate) use commit::{AwaitsTicket, Store, StoreHook};
pub use fjall::STORE_FORMAT;
pub use fjall::dir_sync::create_dir_all_durably;
pub use memory::MemoryStore;
pub use seal::{EncryptionKeys, KeyFileError, generate_key_file};
pub(crate) use writes::{Counter, Write};

/// Where the engine keeps what must survive a restart.
#[derive(Clone, Debug, Default)]
pub enum Storage {
    /// The embedded store in the data directory (the default).
    #[default]
    Disk,
    /// In memory, for tests: an engine opened again on the same
    /// [`MemoryStore`] recovers what the previous one wrote.
    Memory(MemoryStore),
}

/// Opens the backend `storage` names (`data_dir` and `cache_bytes` are the
/// disk backend's).
pub(crate) fn open(
    storage: &Storage,
    data_dir: &Path,
    cache_bytes: u64,
    encryption: Option<Arc<EncryptionKeys>>,
) -> Result<Arc<dyn Backend>> {
    Ok(match storage {
        Storage::Disk => fjall::FjallBackend::open(data_dir, cache_bytes, encryption)?,
        Storage::Memory(m) => m.open(),
    })
}

/// A position in the stream of submitted writes; durable once the committer reports it.
pub type Ticket = u64;

/// How hard the engine works to make confirmed writes survive a power loss.
///
/// Every policy survives the gateway process being killed: a confirmed write
/// has reached the operating system. Only `Always` also survives the machine
/// losing power without losing anything confirmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum SyncPolicy {
    /// fsync before confirming (many writes share one fsync).
    #[default]
    Always,
    /// fsync at most once per interval; confirms wait for it.
    Batch(Duration),
    /// Never fsync; confirm once the write reached the operating system.
    Never,
}

/// A snapshot of the committer's counters (for metrics and benchmarks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Batches written.
    pub batches: u64,
    /// Writes in them.
    pub ops: u64,
    /// Syncs done.
    pub syncs: u64,
    /// Time spent in syncs, in µs.
    pub sync_micros: u64,
    /// Time spent applying batches (before the sync), in µs.
    pub apply_micros: u64,
    /// Bytes waiting for the committer now.
    pub backlog_bytes: u64,
}

/// Something (a queue) whose in-memory state is written out at the next commit.
pub(crate) trait Snapshot: Send + Sync {
    /// Appends the writes that record the current state.
    fn snapshot(&self, out: &mut Vec<Write>);
}
