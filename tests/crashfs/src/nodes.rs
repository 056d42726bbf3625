//! The inode table: which (parent, name) each inode number the kernel holds
//! stands for, so that a path in the backing directory can be found for it,
//! even after its parent directories were renamed.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};

/// The root directory's inode number (FUSE's convention).
pub(crate) const ROOT: u64 = 1;
/// The parent of an inode that no longer has a name (unlinked, still open).
const DETACHED: u64 = 0;

struct Node {
    parent: u64,
    name: OsString,
}

pub(crate) struct Nodes {
    root: PathBuf,
    by_ino: HashMap<u64, Node>,
    by_entry: HashMap<(u64, OsString), u64>,
    next: u64,
}

impl Nodes {
    pub fn new(root: PathBuf) -> Nodes {
        Nodes {
            root,
            by_ino: HashMap::new(),
            by_entry: HashMap::new(),
            next: ROOT + 1,
        }
    }

    /// The backing path of an inode; ENOENT once it has no name.
    pub fn path(&self, ino: u64) -> io::Result<PathBuf> {
        let mut names = Vec::new();
        let mut at = ino;
        while at != ROOT {
            let node = self.by_ino.get(&at).ok_or_else(gone)?;
            if node.parent == DETACHED {
                return Err(gone());
            }
            names.push(node.name.as_os_str());
            at = node.parent;
        }
        let mut path = self.root.clone();
        path.extend(names.iter().rev());
        Ok(path)
    }

    /// The backing path of `name` in directory `parent`.
    pub fn child_path(&self, parent: u64, name: &OsStr) -> io::Result<PathBuf> {
        Ok(self.path(parent)?.join(name))
    }

    /// The inode of an entry that exists in the backing directory (a new
    /// number the first time it is seen).
    pub fn bind(&mut self, parent: u64, name: &OsStr) -> u64 {
        match self.by_entry.get(&(parent, name.to_os_string())) {
            Some(&ino) => ino,
            None => self.bind_new(parent, name),
        }
    }

    /// A new inode for a new entry (create, mkdir), replacing any old one.
    pub fn bind_new(&mut self, parent: u64, name: &OsStr) -> u64 {
        let ino = self.next;
        self.next += 1;
        self.rebind(ino, parent, name);
        ino
    }

    /// Gives `ino` the name `name` in `parent` (rename, or an undone unlink);
    /// whatever had that name loses it.
    pub fn rebind(&mut self, ino: u64, parent: u64, name: &OsStr) {
        if let Some(old) = self.by_ino.get(&ino) {
            self.by_entry.remove(&(old.parent, old.name.clone()));
        }
        let key = (parent, name.to_os_string());
        if let Some(displaced) = self.by_entry.insert(key, ino)
            && displaced != ino
            && let Some(node) = self.by_ino.get_mut(&displaced)
        {
            node.parent = DETACHED;
        }
        self.by_ino.insert(
            ino,
            Node {
                parent,
                name: name.to_os_string(),
            },
        );
    }

    /// The entry is gone (unlink, rmdir); its inode stays for open handles.
    pub fn unbind(&mut self, parent: u64, name: &OsStr) -> Option<u64> {
        let ino = self.by_entry.remove(&(parent, name.to_os_string()))?;
        if let Some(node) = self.by_ino.get_mut(&ino) {
            node.parent = DETACHED;
        }
        Some(ino)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

fn gone() -> io::Error {
    io::Error::from(io::ErrorKind::NotFound)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn paths_follow_renamed_parents_and_unlinks_detach() {
        let mut n = Nodes::new(PathBuf::from("/b"));
        let a = n.bind(ROOT, OsStr::new("a"));
        let f = n.bind_new(a, OsStr::new("f"));
        assert_eq!(n.path(f).unwrap(), PathBuf::from("/b/a/f"));
        n.rebind(a, ROOT, OsStr::new("z"));
        assert_eq!(n.path(f).unwrap(), PathBuf::from("/b/z/f"));
        assert_eq!(n.bind(a, OsStr::new("f")), f);
        assert_eq!(n.unbind(a, OsStr::new("f")), Some(f));
        assert!(n.path(f).is_err());
        let g = n.bind_new(ROOT, OsStr::new("g"));
        n.rebind(f, ROOT, OsStr::new("g"));
        assert!(n.path(g).is_err(), "a rename over g detaches g");
        assert_eq!(n.path(f).unwrap(), PathBuf::from("/b/g"));
    }
}
