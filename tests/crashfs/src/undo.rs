//! Strict mode's directory operations that are not durable yet.
//!
//! Every create, mkdir, unlink, rmdir and rename is applied to the backing
//! directory at once (so reads need no overlay) and recorded here with how to
//! undo it. It becomes durable, and is forgotten, once each directory it
//! changed has been fsynced; a crash undoes what is left, newest first. Files
//! that an unlink or a rename removed wait in the stash (a sibling of the
//! backing directory, on the same filesystem) until then.

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;

use crate::nodes::Nodes;

/// An entry: a directory's inode and a name in it.
pub(crate) type Entry = (u64, OsString);

pub(crate) enum Undo {
    /// A new file or directory: remove it (with everything in it).
    Created { at: Entry },
    /// An unlinked file, moved to the stash: put it back.
    Unlinked { at: Entry, ino: u64, stash: PathBuf },
    /// A removed empty directory: make it again.
    Removed { at: Entry, ino: u64 },
    /// A rename: move it back, and put back what it replaced.
    Renamed {
        from: Entry,
        to: Entry,
        ino: u64,
        replaced: Option<(u64, PathBuf)>,
    },
}

struct Pending {
    undo: Undo,
    /// Directories whose fsync this operation still waits for.
    unsynced: Vec<u64>,
}

pub(crate) struct UndoLog {
    pending: Vec<Pending>,
    stash: PathBuf,
    next_stash: u64,
}

impl UndoLog {
    pub fn new(stash: PathBuf) -> UndoLog {
        UndoLog {
            pending: Vec::new(),
            stash,
            next_stash: 0,
        }
    }

    /// A fresh place in the stash for a file or directory to wait in.
    pub fn stash_path(&mut self) -> PathBuf {
        self.next_stash += 1;
        self.stash.join(self.next_stash.to_string())
    }

    pub fn record(&mut self, undo: Undo) {
        let mut unsynced = match &undo {
            Undo::Created { at } | Undo::Unlinked { at, .. } | Undo::Removed { at, .. } => {
                vec![at.0]
            }
            Undo::Renamed { from, to, .. } => vec![from.0, to.0],
        };
        unsynced.dedup();
        self.pending.push(Pending { undo, unsynced });
    }

    /// Operations not durable yet.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// `dir` was fsynced: what it waited for is durable.
    pub fn dir_synced(&mut self, dir: u64) -> io::Result<()> {
        for p in &mut self.pending {
            p.unsynced.retain(|&d| d != dir);
        }
        self.forget_durable()
    }

    /// Everything is durable (a clean unmount).
    pub fn all_synced(&mut self) -> io::Result<()> {
        for p in &mut self.pending {
            p.unsynced.clear();
        }
        self.forget_durable()
    }

    fn forget_durable(&mut self) -> io::Result<()> {
        let durable: Vec<Pending> = self
            .pending
            .extract_if(.., |p| p.unsynced.is_empty())
            .collect();
        for p in durable {
            match p.undo {
                Undo::Unlinked { stash, .. }
                | Undo::Renamed {
                    replaced: Some((_, stash)),
                    ..
                } => remove_any(&stash)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// The crash: undoes every operation not durable, newest first.
    pub fn revert(&mut self, nodes: &mut Nodes) -> io::Result<()> {
        while let Some(p) = self.pending.pop() {
            match p.undo {
                Undo::Created { at } => {
                    remove_any(&nodes.child_path(at.0, &at.1)?)?;
                    nodes.unbind(at.0, &at.1);
                }
                Undo::Unlinked { at, ino, stash } => {
                    std::fs::rename(stash, nodes.child_path(at.0, &at.1)?)?;
                    nodes.rebind(ino, at.0, &at.1);
                }
                Undo::Removed { at, ino } => {
                    std::fs::create_dir(nodes.child_path(at.0, &at.1)?)?;
                    nodes.rebind(ino, at.0, &at.1);
                }
                Undo::Renamed {
                    from,
                    to,
                    ino,
                    replaced,
                } => {
                    let here = nodes.child_path(to.0, &to.1)?;
                    std::fs::rename(&here, nodes.child_path(from.0, &from.1)?)?;
                    nodes.rebind(ino, from.0, &from.1);
                    if let Some((old, stash)) = replaced {
                        std::fs::rename(stash, here)?;
                        nodes.rebind(old, to.0, &to.1);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Removes a file or a directory tree; already gone is fine.
fn remove_any(path: &std::path::Path) -> io::Result<()> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
