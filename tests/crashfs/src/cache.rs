//! One file's unsynced state: the bytes written and the size set since its
//! last fsync, held in memory (as a page cache would hold them) while the
//! backing file keeps only what was synced. A crash drops this state; an
//! fsync writes it to the backing file and syncs that.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Granularity of the cache; any size works, a page is the natural one.
const PAGE: u64 = 4096;

/// What a file holds beyond its backing file.
pub(crate) struct FileCache {
    /// The backing file, open for reading and writing.
    pub file: File,
    /// The size the file has now, as its users see it.
    pub size: u64,
    /// The backing file's size (what a crash would leave).
    durable_size: u64,
    /// Bytes of the backing file at or past this offset read as zeros: the
    /// file was truncated below them since the last sync.
    zero_from: u64,
    /// Pages written since the last sync, by index; each holds the page's
    /// whole content as the file's users see it.
    dirty: BTreeMap<u64, Box<[u8]>>,
    /// Open handles using this file.
    pub handles: usize,
}

impl FileCache {
    /// The cache of a backing file that holds only synced data.
    pub fn new(file: File) -> io::Result<FileCache> {
        let size = file.metadata()?.len();
        Ok(FileCache {
            file,
            size,
            durable_size: size,
            zero_from: size,
            dirty: BTreeMap::new(),
            handles: 0,
        })
    }

    /// True while something would be lost at a crash.
    pub fn is_dirty(&self) -> bool {
        !self.dirty.is_empty() || self.size != self.durable_size || self.zero_from != self.size
    }

    /// Bytes held in memory.
    pub fn dirty_bytes(&self) -> u64 {
        self.dirty.len() as u64 * PAGE
    }

    /// Reads what the file's users see at `offset`.
    pub fn read(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let end = self.size.min(offset.saturating_add(len as u64));
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut out = vec![0u8; (end - offset) as usize];
        let mut pos = offset;
        while pos < end {
            let page = pos / PAGE;
            let in_page = pos % PAGE;
            let n = (PAGE - in_page).min(end - pos) as usize;
            let dst = &mut out[(pos - offset) as usize..][..n];
            match self.dirty.get(&page) {
                Some(bytes) => dst.copy_from_slice(&bytes[in_page as usize..][..n]),
                None => self.read_backing(pos, dst)?,
            }
            pos += n as u64;
        }
        Ok(out)
    }

    /// Writes into memory only.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut pos = offset;
        let end = offset + data.len() as u64;
        while pos < end {
            let page = pos / PAGE;
            let in_page = pos % PAGE;
            let n = (PAGE - in_page).min(end - pos) as usize;
            let src = &data[(pos - offset) as usize..][..n];
            self.page_mut(page)?[in_page as usize..][..n].copy_from_slice(src);
            pos += n as u64;
        }
        self.size = self.size.max(end);
        Ok(())
    }

    /// Changes the size in memory only (truncate or extend with zeros).
    pub fn set_size(&mut self, size: u64) {
        if size < self.size {
            // Bytes past the new end read as zeros if the file grows again.
            self.dirty.retain(|&page, _| page * PAGE < size);
            if let Some(bytes) = self.dirty.get_mut(&(size / PAGE)) {
                bytes[(size % PAGE) as usize..].fill(0);
            }
            self.zero_from = self.zero_from.min(size);
        }
        self.size = size;
    }

    /// fsync: the backing file gets the file's content and size. (The backing
    /// filesystem is not the one that loses power: its own fsync would only
    /// add the host disk's latency.)
    pub fn sync(&mut self) -> io::Result<()> {
        if self.zero_from < self.durable_size {
            self.file.set_len(self.zero_from)?;
        }
        self.file.set_len(self.size)?;
        for (&page, bytes) in &self.dirty {
            let start = page * PAGE;
            let n = (self.size - start).min(PAGE) as usize;
            self.file.write_all_at(&bytes[..n], start)?;
        }
        self.dirty.clear();
        self.durable_size = self.size;
        self.zero_from = self.size;
        Ok(())
    }

    fn page_mut(&mut self, page: u64) -> io::Result<&mut Box<[u8]>> {
        if !self.dirty.contains_key(&page) {
            let mut bytes = vec![0u8; PAGE as usize].into_boxed_slice();
            let start = page * PAGE;
            let valid = self.size.saturating_sub(start).min(PAGE) as usize;
            self.read_backing(start, &mut bytes[..valid])?;
            self.dirty.insert(page, bytes);
        }
        Ok(self.dirty.get_mut(&page).expect("inserted above"))
    }

    /// Fills `dst` from the backing file at `pos`, with zeros where the
    /// backing file ends or was truncated since the last sync.
    fn read_backing(&self, pos: u64, dst: &mut [u8]) -> io::Result<()> {
        dst.fill(0);
        let limit = self.zero_from.min(self.durable_size);
        if pos >= limit {
            return Ok(());
        }
        let n = ((limit - pos) as usize).min(dst.len());
        self.file.read_exact_at(&mut dst[..n], pos)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cache_over(content: &[u8]) -> (tempfile::NamedTempFile, FileCache) {
        let backing = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(backing.path(), content).unwrap();
        let file = File::options()
            .read(true)
            .write(true)
            .open(backing.path())
            .unwrap();
        (backing, FileCache::new(file).unwrap())
    }

    #[test]
    fn writes_stay_in_memory_until_sync() {
        let (backing, mut c) = cache_over(b"hello world");
        c.write(6, b"there, friend").unwrap();
        assert_eq!(c.read(0, 100).unwrap(), b"hello there, friend");
        assert_eq!(std::fs::read(backing.path()).unwrap(), b"hello world");
        assert!(c.is_dirty());
        c.sync().unwrap();
        assert!(!c.is_dirty());
        assert_eq!(
            std::fs::read(backing.path()).unwrap(),
            b"hello there, friend"
        );
    }

    #[test]
    fn a_truncate_then_regrow_reads_zeros_not_old_bytes() {
        let (backing, mut c) = cache_over(&[7u8; 10_000]);
        c.set_size(100);
        c.write(5_000, b"x").unwrap();
        let all = c.read(0, 20_000).unwrap();
        assert_eq!(all.len(), 5_001);
        assert!(all[..100].iter().all(|&b| b == 7));
        assert!(all[100..5_000].iter().all(|&b| b == 0));
        assert_eq!(std::fs::metadata(backing.path()).unwrap().len(), 10_000);
        c.sync().unwrap();
        assert_eq!(std::fs::read(backing.path()).unwrap(), all);
    }

    #[test]
    fn an_extension_reads_zeros_and_spans_pages() {
        let (_backing, mut c) = cache_over(b"");
        c.set_size(3 * PAGE);
        c.write(PAGE - 2, b"abcd").unwrap();
        let all = c.read(0, usize::MAX).unwrap();
        assert_eq!(all.len(), 3 * PAGE as usize);
        assert_eq!(&all[PAGE as usize - 2..][..4], b"abcd");
        assert_eq!(all.iter().filter(|&&b| b != 0).count(), 4);
    }
}
