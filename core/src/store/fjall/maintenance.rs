//! A background thread that runs a full compaction of the queue logs when
//! queues have trimmed many entries since the last one. Ordinary compactions,
//! triggered by new writes, already drop dead entries (see `heads.rs`); this
//! reclaims the disk after a backlog drained and nothing else is written.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fjall::Keyspace;
use parking_lot::{Condvar, Mutex};

use super::heads::LogHeads;

/// Entries trimmed before a full compaction is worth its cost.
const TRIM_THRESHOLD: u64 = 200_000;
/// At most one full compaction this often.
const MIN_INTERVAL: Duration = Duration::from_secs(30);
/// How often the thread looks.
const CHECK_EVERY: Duration = Duration::from_secs(5);

#[derive(Default)]
pub(crate) struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Stop {
    pub fn stop(&self) {
        *self.stopped.lock() = true;
        self.wake.notify_all();
    }
}

pub(crate) fn run(log: Keyspace, heads: Arc<LogHeads>, stop: Arc<Stop>) {
    let mut last = Instant::now();
    loop {
        {
            let mut stopped = stop.stopped.lock();
            if !*stopped {
                stop.wake.wait_for(&mut stopped, CHECK_EVERY);
            }
            if *stopped {
                return;
            }
        }
        if last.elapsed() < MIN_INTERVAL || heads.trimmed.load(Ordering::Relaxed) < TRIM_THRESHOLD {
            continue;
        }
        heads.trimmed.store(0, Ordering::Relaxed);
        last = Instant::now();
        // Entries still in the memtable are only filtered once flushed.
        if let Err(e) = log
            .rotate_memtable_and_wait()
            .and_then(|()| log.major_compact())
            .and_then(|()| release_dropped_files(&log))
        {
            tracing::warn!(cause = %e, "compacting the queue logs failed");
        } else {
            tracing::debug!(
                took_ms = last.elapsed().as_millis() as u64,
                "compacted the queue logs"
            );
        }
    }
}

/// The compaction above drops dead entries, but the store keeps the version of
/// the tree from before it (and with it the dropped tables' blob files) until
/// two later version changes have moved the read watermark past it. After a
/// backlog drains nothing else may be written, so cause them: twice, a write
/// the filter keeps (too short to be a log key), its delete, a flush (which
/// raises the watermark) and a compaction that evicts both.
pub(crate) fn release_dropped_files(log: &Keyspace) -> fjall::Result<()> {
    const MARKER: &[u8] = b"~";
    for _ in 0..2 {
        log.insert(MARKER, [])?;
        log.remove(MARKER)?;
        log.rotate_memtable_and_wait()?;
        log.major_compact()?;
    }
    Ok(())
}
