//! The fjall-only mechanisms: log trimming by compaction filter and giving
//! the disk back after a drain.

use std::sync::Arc;

use super::*;

fn put(store: &FjallBackend, queue: u64, seqs: std::ops::Range<u64>) {
    let batch: Vec<Write> = seqs
        .map(|seq| Write::Append {
            queue,
            seq,
            message: Arc::new(Message::new(vec![7u8; 100])),
            transient: false,
        })
        .collect();
    store.write(&batch).unwrap();
}

#[test]
fn compactions_drop_entries_below_heads_and_of_deleted_queues() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallBackend::open(dir.path(), 1 << 20, None).unwrap();
    store.set_log_head(1, 0);
    store.set_log_head(2, 0);
    store.set_log_head(3, 0);
    put(&store, 1, 0..1000);
    put(&store, 2, 0..10);
    put(&store, 3, 0..10);
    store.set_log_head(1, 600);
    store.drop_log(2);
    // Not armed yet: a compaction keeps everything (queues may not be loaded).
    store.db().unwrap().log.rotate_memtable_and_wait().unwrap();
    store.db().unwrap().log.major_compact().unwrap();
    assert_eq!(store.read_log(2, 0, 100, u64::MAX).unwrap().len(), 10);
    store.catalog_loaded(4);
    store.db().unwrap().log.major_compact().unwrap();
    let first = store.read_log(1, 0, 1, u64::MAX).unwrap();
    assert_eq!(first[0].0, 600, "entries below the head are gone");
    assert!(
        store.read_log(2, 0, 100, u64::MAX).unwrap().is_empty(),
        "a deleted queue's log is gone"
    );
    assert_eq!(
        store.read_log(3, 0, 100, u64::MAX).unwrap().len(),
        10,
        "others are kept"
    );
    // A queue created after arming (id 4) is kept even before compactions see it registered.
    store.set_log_head(4, 0);
    put(&store, 4, 0..5);
    store.db().unwrap().log.rotate_memtable_and_wait().unwrap();
    store.db().unwrap().log.major_compact().unwrap();
    assert_eq!(store.read_log(4, 0, 100, u64::MAX).unwrap().len(), 5);
    store.close().unwrap();
}

#[test]
fn a_drained_log_gives_its_disk_space_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallBackend::open(dir.path(), 1 << 20, None).unwrap();
    store.set_log_head(1, 0);
    store.catalog_loaded(2);
    let batch: Vec<Write> = (0..2_000u64)
        .map(|seq| {
            // Large enough to live in blob files, as real bodies do, and
            // not compressible (an LCG's bytes).
            let mut x = seq.wrapping_mul(6364136223846793005) | 1;
            let body: Vec<u8> = (0..8 << 10)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (x >> 56) as u8
                })
                .collect();
            Write::Append {
                queue: 1,
                seq,
                message: Arc::new(Message::new(body)),
                transient: false,
            }
        })
        .collect();
    store.write(&batch).unwrap();
    store.db().unwrap().log.rotate_memtable_and_wait().unwrap();
    // Tables and blob files; the journal is preallocated.
    fn bytes_under(p: &std::path::Path) -> u64 {
        std::fs::read_dir(p).map_or(0, |entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => bytes_under(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
    }
    let keyspaces = dir.path().join("keyspaces");
    let full = bytes_under(&keyspaces);
    store.set_log_head(1, 2_000);
    store.db().unwrap().log.major_compact().unwrap();
    maintenance::release_dropped_files(&store.db().unwrap().log).unwrap();
    let after = bytes_under(&keyspaces);
    assert!(
        after < full / 2,
        "{full} bytes with 16 MB of messages, {after} once they are all trimmed"
    );
    store.close().unwrap();
}

#[test]
fn transient_entries_of_an_earlier_run_are_not_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallBackend::open(dir.path(), 1 << 20, None).unwrap();
    let m = Arc::new(Message::new("x"));
    store
        .write(&[
            Write::Append {
                queue: 1,
                seq: 0,
                message: Arc::clone(&m),
                transient: true,
            },
            Write::Append {
                queue: 1,
                seq: 1,
                message: m,
                transient: false,
            },
        ])
        .unwrap();
    assert_eq!(store.read_log(1, 0, 10, u64::MAX).unwrap().len(), 2);
    store.close().unwrap();
    drop(store);
    let store = FjallBackend::open(dir.path(), 1 << 20, None).unwrap();
    let read: Vec<(u64, bool)> = store
        .read_log(1, 0, 10, u64::MAX)
        .unwrap()
        .into_iter()
        .map(|(s, m)| (s, m.is_some()))
        .collect();
    assert_eq!(
        read,
        [(0, false), (1, true)],
        "the transient entry is gone after a restart"
    );
    assert_eq!(
        store.log_holes(1, 0, 3, 10).unwrap(),
        Some(vec![2]),
        "holes are missing keys; a stale transient entry is not one"
    );
    store.close().unwrap();
}
