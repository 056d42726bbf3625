//! The FUSE side: each kernel request, applied to the backing directory
//! through the write-back cache (file data) and the undo log (strict mode's
//! directory operations). One lock serialises requests; once frozen, every
//! request fails with EIO, as a disk that lost power answers nothing.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use parking_lot::{Mutex, MutexGuard};

use crate::Mode;
use crate::cache::FileCache;
use crate::nodes::{Nodes, ROOT};
use crate::undo::{Undo, UndoLog};

/// How long the kernel may cache names and attributes: only this process
/// changes the backing directory while it is mounted.
const TTL: Duration = Duration::from_secs(1);

pub(crate) struct State {
    pub mode: Mode,
    pub frozen: bool,
    pub nodes: Nodes,
    /// Files with open handles or unsynced data, by inode.
    pub caches: HashMap<u64, FileCache>,
    /// Open file handles → inode.
    handles: HashMap<u64, u64>,
    next_handle: u64,
    pub undo: UndoLog,
}

impl State {
    pub fn new(mode: Mode, nodes: Nodes, undo: UndoLog) -> State {
        State {
            mode,
            frozen: false,
            nodes,
            caches: HashMap::new(),
            handles: HashMap::new(),
            next_handle: 1,
            undo,
        }
    }

    fn cache(&mut self, ino: u64) -> Result<&mut FileCache, Errno> {
        if !self.caches.contains_key(&ino) {
            let path = self.nodes.path(ino)?;
            let file = File::options().read(true).write(true).open(path)?;
            self.caches.insert(ino, FileCache::new(file)?);
        }
        Ok(self.caches.get_mut(&ino).expect("inserted above"))
    }

    /// Drops a cache nothing uses any more and that holds nothing unsynced.
    fn maybe_forget(&mut self, ino: u64) {
        if self
            .caches
            .get(&ino)
            .is_some_and(|c| c.handles == 0 && !c.is_dirty())
        {
            self.caches.remove(&ino);
        }
    }

    fn attr(&self, ino: u64) -> Result<FileAttr, Errno> {
        let meta = match self.caches.get(&ino) {
            Some(c) => c.file.metadata()?,
            None => std::fs::symlink_metadata(self.nodes.path(ino)?)?,
        };
        Ok(attr(ino, &meta, self.caches.get(&ino).map(|c| c.size)))
    }

    fn open_handle(&mut self, ino: u64) -> Result<u64, Errno> {
        self.cache(ino)?.handles += 1;
        let fh = self.next_handle;
        self.next_handle += 1;
        self.handles.insert(fh, ino);
        Ok(fh)
    }

    fn strict(&self) -> bool {
        self.mode == Mode::Strict
    }
}

fn attr(ino: u64, meta: &Metadata, size: Option<u64>) -> FileAttr {
    let kind = match meta.file_type() {
        t if t.is_dir() => FileType::Directory,
        t if t.is_symlink() => FileType::Symlink,
        _ => FileType::RegularFile,
    };
    let time = |secs: i64, nanos: i64| {
        SystemTime::UNIX_EPOCH + Duration::new(secs.max(0) as u64, nanos.max(0) as u32)
    };
    FileAttr {
        ino: INodeNo(ino),
        size: size.unwrap_or(meta.len()),
        blocks: meta.blocks(),
        atime: time(meta.atime(), meta.atime_nsec()),
        mtime: time(meta.mtime(), meta.mtime_nsec()),
        ctime: time(meta.ctime(), meta.ctime_nsec()),
        crtime: SystemTime::UNIX_EPOCH,
        kind,
        perm: (meta.mode() & 0o7777) as u16,
        nlink: meta.nlink() as u32,
        uid: meta.uid(),
        gid: meta.gid(),
        rdev: meta.rdev() as u32,
        blksize: 4096,
        flags: 0,
    }
}

pub(crate) struct CrashFs {
    pub state: Arc<Mutex<State>>,
}

impl CrashFs {
    /// The state, unless the filesystem is frozen.
    fn live(&self) -> Result<MutexGuard<'_, State>, Errno> {
        let st = self.state.lock();
        if st.frozen { Err(Errno::EIO) } else { Ok(st) }
    }
}

/// Answers a request with the result of `op` on the live state.
macro_rules! answer {
    ($self:ident, $reply:ident, |$st:ident| $op:expr, |$v:ident| $ok:expr) => {
        match $self.live().and_then(|guard| {
            #[allow(unused_mut)]
            let mut $st = guard;
            $op
        }) {
            Ok($v) => $ok,
            Err(e) => $reply.error(e),
        }
    };
}

impl Filesystem for CrashFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        answer!(
            self,
            reply,
            |st| {
                std::fs::symlink_metadata(st.nodes.child_path(parent.0, name)?)?;
                let ino = st.nodes.bind(parent.0, name);
                st.attr(ino)
            },
            |a| reply.entry(&TTL, &a, Generation(0))
        )
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        answer!(self, reply, |st| st.attr(ino.0), |a| reply.attr(&TTL, &a))
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        answer!(
            self,
            reply,
            |st| {
                let ino = ino.0;
                if let Some(mode) = mode {
                    std::fs::set_permissions(st.nodes.path(ino)?, PermissionsExt::from_mode(mode))?;
                }
                if uid.is_some() || gid.is_some() {
                    std::os::unix::fs::lchown(st.nodes.path(ino)?, uid, gid)?;
                }
                if let Some(size) = size {
                    // A size change is file metadata: durable at the file's fsync.
                    st.cache(ino)?.set_size(size);
                }
                if atime.is_some() || mtime.is_some() {
                    let at = |t: TimeOrNow| match t {
                        TimeOrNow::SpecificTime(t) => t,
                        TimeOrNow::Now => SystemTime::now(),
                    };
                    let mut times = std::fs::FileTimes::new();
                    if let Some(t) = atime {
                        times = times.set_accessed(at(t));
                    }
                    if let Some(t) = mtime {
                        times = times.set_modified(at(t));
                    }
                    File::open(st.nodes.path(ino)?)?.set_times(times)?;
                }
                let a = st.attr(ino);
                st.maybe_forget(ino);
                a
            },
            |a| reply.attr(&TTL, &a)
        )
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        answer!(
            self,
            reply,
            |st| {
                let path = st.nodes.child_path(parent.0, name)?;
                std::fs::DirBuilder::new()
                    .mode(mode & !umask)
                    .create(&path)?;
                let ino = st.nodes.bind_new(parent.0, name);
                if st.strict() {
                    st.undo.record(Undo::Created {
                        at: (parent.0, name.into()),
                    });
                }
                st.attr(ino)
            },
            |a| reply.entry(&TTL, &a, Generation(0))
        )
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        answer!(
            self,
            reply,
            |st| {
                let path = st.nodes.child_path(parent.0, name)?;
                let ino = if std::fs::symlink_metadata(&path).is_ok() {
                    if flags & nix::libc::O_EXCL != 0 {
                        return Err(Errno::EEXIST);
                    }
                    st.nodes.bind(parent.0, name)
                } else {
                    let file = File::options()
                        .read(true)
                        .write(true)
                        .create_new(true)
                        .mode(mode & !umask)
                        .open(&path)?;
                    let ino = st.nodes.bind_new(parent.0, name);
                    st.caches.insert(ino, FileCache::new(file)?);
                    if st.strict() {
                        st.undo.record(Undo::Created {
                            at: (parent.0, name.into()),
                        });
                    }
                    ino
                };
                let fh = st.open_handle(ino)?;
                Ok((st.attr(ino)?, fh))
            },
            |v| reply.created(
                &TTL,
                &v.0,
                Generation(0),
                FileHandle(v.1),
                FopenFlags::empty()
            )
        )
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        answer!(
            self,
            reply,
            |st| {
                let path = st.nodes.child_path(parent.0, name)?;
                if std::fs::symlink_metadata(&path)?.is_dir() {
                    return Err(Errno::EISDIR);
                }
                let ino = st.nodes.bind(parent.0, name);
                if st.strict() {
                    let stash = st.undo.stash_path();
                    std::fs::rename(&path, &stash)?;
                    st.undo.record(Undo::Unlinked {
                        at: (parent.0, name.into()),
                        ino,
                        stash,
                    });
                } else {
                    std::fs::remove_file(&path)?;
                }
                st.nodes.unbind(parent.0, name);
                // Unsynced data of a file nobody has open can never be synced now.
                if st.caches.get(&ino).is_some_and(|c| c.handles == 0) {
                    st.caches.remove(&ino);
                }
                Ok(())
            },
            |_v| reply.ok()
        )
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        answer!(
            self,
            reply,
            |st| {
                std::fs::remove_dir(st.nodes.child_path(parent.0, name)?)?;
                let ino = st.nodes.bind(parent.0, name);
                st.nodes.unbind(parent.0, name);
                if st.strict() {
                    st.undo.record(Undo::Removed {
                        at: (parent.0, name.into()),
                        ino,
                    });
                }
                Ok(())
            },
            |_v| reply.ok()
        )
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        answer!(
            self,
            reply,
            |st| {
                if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
                    return Err(Errno::EINVAL);
                }
                let from = st.nodes.child_path(parent.0, name)?;
                let to = st.nodes.child_path(newparent.0, newname)?;
                let moving = std::fs::symlink_metadata(&from)?;
                let target = std::fs::symlink_metadata(&to).ok();
                if let Some(t) = &target {
                    if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                        return Err(Errno::EEXIST);
                    }
                    match (moving.is_dir(), t.is_dir()) {
                        (false, true) => return Err(Errno::EISDIR),
                        (true, false) => return Err(Errno::ENOTDIR),
                        (true, true) if std::fs::read_dir(&to)?.next().is_some() => {
                            return Err(Errno::from_i32(nix::libc::ENOTEMPTY));
                        }
                        _ => {}
                    }
                }
                let ino = st.nodes.bind(parent.0, name);
                if st.strict() {
                    let replaced = match target {
                        Some(_) => {
                            let old = st.nodes.bind(newparent.0, newname);
                            let stash = st.undo.stash_path();
                            std::fs::rename(&to, &stash)?;
                            Some((old, stash))
                        }
                        None => None,
                    };
                    if let Err(e) = std::fs::rename(&from, &to) {
                        if let Some((_, stash)) = &replaced {
                            std::fs::rename(stash, &to)?;
                        }
                        return Err(e.into());
                    }
                    st.undo.record(Undo::Renamed {
                        from: (parent.0, name.into()),
                        to: (newparent.0, newname.into()),
                        ino,
                        replaced,
                    });
                } else {
                    std::fs::rename(&from, &to)?;
                }
                st.nodes.rebind(ino, newparent.0, newname);
                Ok(())
            },
            |_v| reply.ok()
        )
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        answer!(self, reply, |st| st.open_handle(ino.0), |fh| reply
            .opened(FileHandle(fh), FopenFlags::empty()))
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        answer!(
            self,
            reply,
            |st| Ok(st.cache(ino.0)?.read(offset, size as usize)?),
            |data| reply.data(&data)
        )
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        answer!(
            self,
            reply,
            |st| Ok(st.cache(ino.0)?.write(offset, data)?),
            |_v| reply.written(data.len() as u32)
        )
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close() writes nothing out: only fsync makes data durable.
        answer!(self, reply, |_st| Ok(()), |_v| reply.ok())
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let mut st = self.state.lock();
        if st.handles.remove(&fh.0).is_some()
            && let Some(c) = st.caches.get_mut(&ino.0)
        {
            c.handles = c.handles.saturating_sub(1);
        }
        st.maybe_forget(ino.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        answer!(
            self,
            reply,
            |st| {
                if let Some(c) = st.caches.get_mut(&ino.0) {
                    c.sync()?;
                }
                st.maybe_forget(ino.0);
                Ok(())
            },
            |_v| reply.ok()
        )
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let listing = self.live().and_then(|mut st| {
            let mut names: Vec<_> = std::fs::read_dir(st.nodes.path(ino.0)?)?
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .map(|e| {
                    let dir = e.file_type().is_ok_and(|t| t.is_dir());
                    (e.file_name(), dir)
                })
                .collect();
            names.sort();
            let mut out = vec![(ino.0, ".".into(), true), (ROOT, "..".into(), true)];
            for (name, dir) in names {
                out.push((st.nodes.bind(ino.0, &name), name, dir));
            }
            Ok(out)
        });
        match listing {
            Ok(entries) => {
                for (i, (child, name, dir)) in entries.into_iter().enumerate().skip(offset as usize)
                {
                    let kind = if dir {
                        FileType::Directory
                    } else {
                        FileType::RegularFile
                    };
                    if reply.add(INodeNo(child), i as u64 + 1, kind, &name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        answer!(self, reply, |st| Ok(st.undo.dir_synced(ino.0)?), |_v| reply
            .ok())
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        answer!(
            self,
            reply,
            |st| nix::sys::statvfs::statvfs(st.nodes.root()).map_err(|e| Errno::from_i32(e as i32)),
            |s| reply.statfs(
                s.blocks(),
                s.blocks_free(),
                s.blocks_available(),
                s.files(),
                s.files_free(),
                s.block_size() as u32,
                s.name_max() as u32,
                s.fragment_size() as u32,
            )
        )
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        answer!(self, reply, |_st| Ok(()), |_v| reply.ok())
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        answer!(
            self,
            reply,
            |st| {
                if mode != 0 {
                    return Err(Errno::from_i32(nix::libc::EOPNOTSUPP));
                }
                let c = st.cache(ino.0)?;
                if offset + length > c.size {
                    c.set_size(offset + length);
                }
                Ok(())
            },
            |_v| reply.ok()
        )
    }
}
