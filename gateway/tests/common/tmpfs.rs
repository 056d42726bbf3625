//! A small tmpfs for a data directory, so a test can fill a real filesystem
//! and free it again. Needs root (CI runs as root); elsewhere the test says
//! "skipped" and returns.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted on a temporary directory; unmounted when dropped (drop
/// the gateway process first: a busy mount is detached lazily instead).
pub struct Tmpfs {
    mount_point: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `mib` MiB, or prints why not and returns `None`.
    pub fn mount(mib: u64, test: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let mount_point = dir.path().join("fs");
        std::fs::create_dir(&mount_point).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&mount_point)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs {
                mount_point,
                _dir: dir,
            }),
            Ok(o) => {
                eprintln!(
                    "skipped: {test}: cannot mount a tmpfs (needs root): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: {test}: cannot run mount: {e}");
                None
            }
        }
    }

    /// The mounted directory.
    pub fn path(&self) -> &Path {
        &self.mount_point
    }

    /// Bytes free for an unprivileged writer, as `df` reports them.
    pub fn free_bytes(&self) -> u64 {
        let out = Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(&self.mount_point)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        text.lines().nth(1).unwrap().trim().parse().unwrap()
    }

    /// Writes `bytes` of ballast into `name` on the tmpfs (synced).
    pub fn ballast(&self, name: &str, bytes: usize) -> PathBuf {
        let path = self.mount_point.join(name);
        std::fs::write(&path, vec![0xa5u8; bytes]).unwrap();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.mount_point)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.mount_point)
                .status();
        }
    }
}
