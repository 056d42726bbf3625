//! Making directory entries durable.
//!
//! POSIX makes a new name in a directory (a created file or folder, a rename,
//! an unlink) durable only once that directory itself is fsynced; fsyncing the
//! file or the new folder is not enough. ext4 and xfs usually commit such
//! entries with the next journal transaction anyway, but nothing promises it:
//! a power cut can undo the entry, and with it everything below it, however
//! carefully the data inside was synced. A store whose data directory (or a
//! folder in it) vanishes loses every confirmed message.
//!
//! fjall (3.1) fsyncs most of the entries it creates, but not all (see
//! `docs/fjall-directory-fsync.md`): the keyspace folders (`keyspaces/<id>`,
//! whose parent it syncs before they exist), the `blobs` folder in each
//! key-value-separated keyspace, and every blob file it writes at a flush or
//! compaction. So the store fsyncs the whole tree once fjall has opened it
//! (before any door accepts a connection, so before any confirm), and a
//! watcher fsyncs the blob folders whenever a new file appears in them.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// How often [`NewEntryWatcher`] looks: a flush of a 16 MiB memtable takes
/// longer than this, so a new blob file is normally synced before the version
/// that refers to it is written.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// fsyncs a directory: the entries in it (names created, renamed or removed)
/// become durable.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// `create_dir_all`, durably: on return `path` exists, and its entry and
/// those of every parent it created survive a power cut. `path`'s own entry
/// is synced even when it already existed, since whoever made it (an operator,
/// a service manager) may not have.
pub fn create_dir_all_durably(path: &Path) -> io::Result<()> {
    let mut created = Vec::new();
    let mut at = Some(path);
    while let Some(dir) = at.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        created.push(dir);
        at = dir.parent();
    }
    std::fs::create_dir_all(path)?;
    if created.is_empty() {
        created.push(path);
    }
    // From the top down: each created folder's entry lives in its parent.
    for dir in created.iter().rev() {
        sync_dir(parent(dir))?;
    }
    Ok(())
}

/// fsyncs `root` and every directory below it (symbolic links are not
/// followed); returns how many it synced.
pub(crate) fn sync_tree(root: &Path) -> io::Result<usize> {
    let mut synced = 0;
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                pending.push(entry.path());
            }
        }
        sync_dir(&dir)?;
        synced += 1;
    }
    Ok(synced)
}

/// The parent of a path, `.` for a bare relative name.
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Fsyncs directories in which fjall creates files without syncing the
/// directory, soon after each new name appears (fjall has no hook to tell us).
///
/// A blob file is created when a flush or compaction starts and is referenced
/// by the tree's version file once it is written; from then on, recovery fails
/// (`Unrecoverable`) if its entry is missing. Polling closes that window
/// except when a whole flush fits between two polls.
pub(crate) struct NewEntryWatcher {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NewEntryWatcher {
    /// Watches `dirs`, whose present entries must already be durable.
    pub fn spawn(dirs: Vec<PathBuf>) -> io::Result<NewEntryWatcher> {
        NewEntryWatcher::spawn_every(dirs, POLL_EVERY)
    }

    fn spawn_every(dirs: Vec<PathBuf>, every: Duration) -> io::Result<NewEntryWatcher> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("gw-dir-sync".into())
            .spawn(move || watch(&dirs, every, &stopped))?;
        Ok(NewEntryWatcher {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread (after a last look).
    pub fn stop(&mut self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for NewEntryWatcher {
    fn drop(&mut self) {
        self.stop();
    }
}

fn watch(dirs: &[PathBuf], every: Duration, stop: &(Mutex<bool>, Condvar)) {
    let mut known: Vec<HashSet<OsString>> = dirs.iter().map(|d| names(d)).collect();
    loop {
        let stopping = {
            let mut stopped = stop.0.lock();
            if !*stopped {
                stop.1.wait_for(&mut stopped, every);
            }
            *stopped
        };
        for (dir, known) in dirs.iter().zip(&mut known) {
            let now = names(dir);
            if now.iter().any(|n| !known.contains(n)) {
                if let Err(e) = sync_dir(dir) {
                    tracing::error!(dir = %dir.display(), cause = %e, "fsync of a store directory failed");
                    continue;
                }
                tracing::trace!(dir = %dir.display(), "synced new entries");
            }
            // Taken before the sync: a name that came later is synced next time.
            *known = now;
        }
        if stopping {
            return;
        }
    }
}

/// The names in a directory (none if it cannot be read).
fn names(dir: &Path) -> HashSet<OsString> {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn creates_missing_parents_and_accepts_existing_and_relative_paths() {
        let root = tempfile::tempdir().unwrap();
        let deep = root.path().join("a/b/c");
        create_dir_all_durably(&deep).unwrap();
        assert!(deep.is_dir());
        create_dir_all_durably(&deep).unwrap();
        assert_eq!(parent(Path::new("data")), Path::new("."));
        std::fs::write(root.path().join("a/file"), b"").unwrap();
        assert!(create_dir_all_durably(&root.path().join("a/file/x")).is_err());
        assert_eq!(sync_tree(root.path()).unwrap(), 4, "root, a, b, c");
    }

    #[test]
    fn the_watcher_stops_promptly() {
        let root = tempfile::tempdir().unwrap();
        let mut w =
            NewEntryWatcher::spawn_every(vec![root.path().to_path_buf()], Duration::from_secs(60))
                .unwrap();
        std::fs::write(root.path().join("new"), b"").unwrap();
        let started = std::time::Instant::now();
        w.stop();
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
