//! A FUSE pass-through filesystem for crash-consistency tests, after Jepsen's
//! LazyFS and the ALICE studies: it behaves as a disk behind a page cache
//! that loses power.
//!
//! - File data written, and file sizes set, are held in memory
//!   (`cache.rs`) until the file is fsynced (or fdatasynced); only then do
//!   they reach the backing directory.
//! - Directory operations (create, mkdir, unlink, rmdir, rename) are durable
//!   at once in [`Mode::Lenient`] (as ext4 or xfs mostly behave), and only once
//!   the directory that holds the entry is fsynced in [`Mode::Strict`] (the
//!   minimal POSIX guarantee; `undo.rs`).
//! - [`Mounted::crash`] is the power cut: every later request fails with EIO,
//!   everything unsynced is dropped, and the filesystem is unmounted. The
//!   backing directory then holds exactly what survived; mounting it again
//!   (a fresh instance: nothing carries over) is the reboot.
//!
//! Mounting needs `/dev/fuse` and root (no libfuse or fusermount: `fuser`
//! mounts by itself); [`unavailable`] says why a test has to skip.

mod cache;
mod fs;
mod nodes;
mod undo;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::fs::State;

/// When directory operations become durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// At once (ext4, xfs in practice).
    Lenient,
    /// Once the parent directory is fsynced (POSIX's promise, and no more).
    Strict,
}

/// What a crash dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Files that had unsynced data or size changes.
    pub files: usize,
    /// Bytes of unsynced data (whole pages).
    pub bytes: u64,
    /// Directory operations undone (strict mode).
    pub entries: usize,
}

/// Why this machine cannot mount the filesystem, if it cannot.
pub fn unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("crashfs needs root to mount FUSE without fusermount".into());
    }
    if let Err(e) = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        return Some(format!("crashfs needs /dev/fuse: {e}"));
    }
    None
}

/// A mounted crashfs.
pub struct Mounted {
    state: Arc<Mutex<State>>,
    mountpoint: PathBuf,
    session: Option<fuser::BackgroundSession>,
}

impl Mounted {
    /// Mounts `backing` at `mountpoint` (both existing directories). Files
    /// that unlinks and renames remove wait in a sibling of `backing` until
    /// they are durable.
    pub fn mount(backing: &Path, mountpoint: &Path, mode: Mode) -> io::Result<Mounted> {
        let backing = backing.canonicalize()?;
        let mut stash = backing.clone().into_os_string();
        stash.push(".crashfs-stash");
        let stash = PathBuf::from(stash);
        // A stash left by an earlier crash holds nothing that survived it.
        if stash.exists() {
            std::fs::remove_dir_all(&stash)?;
        }
        std::fs::create_dir(&stash)?;
        let state = Arc::new(Mutex::new(State::new(
            mode,
            nodes::Nodes::new(backing),
            undo::UndoLog::new(stash),
        )));
        let mut config = fuser::Config::default();
        config.mount_options = vec![fuser::MountOption::FSName("crashfs".into())];
        config.n_threads = Some(1);
        let fs = fs::CrashFs {
            state: Arc::clone(&state),
        };
        let session = fuser::spawn_mount(fs, mountpoint, &config)?;
        Ok(Mounted {
            state,
            mountpoint: mountpoint.to_path_buf(),
            session: Some(session),
        })
    }

    /// The moment of the power cut: every later request fails with EIO.
    /// Nothing is dropped yet (see [`Mounted::crash`]), but nothing can change.
    pub fn freeze(&self) {
        self.state.lock().frozen = true;
    }

    /// What a crash now would drop.
    pub fn unsynced(&self) -> Dropped {
        let st = self.state.lock();
        let dirty = st.caches.values().filter(|c| c.is_dirty());
        Dropped {
            files: dirty.clone().count(),
            bytes: dirty.map(|c| c.dirty_bytes()).sum(),
            entries: st.undo.len(),
        }
    }

    /// The power cut: freezes (if not yet), drops every unsynced byte and
    /// undoes every directory operation that was not durable, then unmounts.
    /// Processes using the mount should be gone (killed) first.
    pub fn crash(mut self) -> io::Result<Dropped> {
        self.freeze();
        let dropped = self.unsynced();
        {
            let mut st = self.state.lock();
            st.caches.clear();
            let State { undo, nodes, .. } = &mut *st;
            undo.revert(nodes)?;
        }
        self.unmount_now()?;
        Ok(dropped)
    }

    /// A clean unmount (as at shutdown): everything is written out first.
    pub fn unmount(mut self) -> io::Result<()> {
        {
            let mut st = self.state.lock();
            for c in st.caches.values_mut() {
                c.sync()?;
            }
            st.caches.clear();
            // Every directory operation becomes durable, as after sync(1).
            st.undo.all_synced()?;
            st.frozen = true;
        }
        self.unmount_now()
    }

    fn unmount_now(&mut self) -> io::Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        // Detached: the kernel lets go once the last user is gone, and the
        // session thread then ends.
        nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::MNT_DETACH)
            .map_err(io::Error::from)?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(session.join());
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(result) => result,
            Err(_) => Err(io::Error::other(
                "crashfs: the kernel still had requests 30 s after the unmount",
            )),
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.session.is_some() {
            self.freeze();
            let _ = nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}
