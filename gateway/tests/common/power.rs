//! A gateway whose data directory lives on crashfs, and the power cut:
//! the filesystem freezes (nothing written after that instant counts), the
//! gateway is SIGKILLed, everything not durable is dropped, and a fresh
//! crashfs is mounted over what survived.

use std::path::PathBuf;

use crashfs::{Dropped, Mode, Mounted};

use super::Process;

pub struct Rig {
    _dir: tempfile::TempDir,
    backing: PathBuf,
    mnt: PathBuf,
    mode: Mode,
    fs: Option<Mounted>,
}

impl Rig {
    /// A mounted, empty crashfs, or `None` (with the reason printed) where
    /// FUSE cannot be used.
    pub fn new(mode: Mode) -> Option<Rig> {
        if let Some(why) = crashfs::unavailable() {
            eprintln!("SKIPPED: {why}");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let backing = dir.path().join("backing");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&backing).unwrap();
        std::fs::create_dir(&mnt).unwrap();
        let fs = Mounted::mount(&backing, &mnt, mode).unwrap();
        Some(Rig {
            _dir: dir,
            backing,
            mnt,
            mode,
            fs: Some(fs),
        })
    }

    /// The data directory: two levels below the mount, so that its first
    /// start creates its parents too.
    pub fn data_dir(&self) -> PathBuf {
        self.mnt.join("var/gateway")
    }

    /// The data directory's backing folder: what a power cut would leave,
    /// read behind crashfs's back.
    pub fn backing_data_dir(&self) -> PathBuf {
        self.backing.join("var/gateway")
    }

    /// A clean unmount, then a mount in `mode` (no gateway may be running).
    pub fn remount(&mut self, mode: Mode) {
        self.fs.take().expect("mounted").unmount().unwrap();
        self.mode = mode;
        self.fs = Some(Mounted::mount(&self.backing, &self.mnt, mode).unwrap());
    }

    /// Starts the gateway over the data directory with `--sync sync`.
    pub fn start(&self, sync: &str) -> Process {
        Process::start_with(&self.data_dir(), &["--sync", sync])
    }

    /// The power cut under a running gateway; returns what it dropped.
    pub fn power_cut(&mut self, gw: Process) -> Dropped {
        let fs = self.fs.take().expect("mounted");
        fs.freeze();
        gw.kill9();
        let dropped = fs.crash().unwrap();
        self.fs = Some(Mounted::mount(&self.backing, &self.mnt, self.mode).unwrap());
        dropped
    }

    /// Stops the gateway and unmounts.
    pub fn finish(mut self, gw: Process) {
        assert!(gw.terminate().success(), "the gateway stops cleanly");
        if let Some(fs) = self.fs.take() {
            fs.unmount().unwrap();
        }
    }
}
