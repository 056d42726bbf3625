//! Gives memory freed after a drain back to the system.
//!
//! glibc's allocator keeps what a burst freed in its arenas for reuse: after
//! a flood of 10,000 persistent 64 KiB messages was drained, the gateway
//! still held 187 MiB resident (peak 149 MiB during the flood), although
//! nothing was queued. `malloc_trim` returns the free pages. It walks every
//! arena under its lock, so it runs on the watermark sampler's thread, at
//! most every [`EVERY`] and only when resident memory grew by [`GROWN`]
//! since the last trim.

use std::time::{Duration, Instant};

/// Least time between two trims.
const EVERY: Duration = Duration::from_secs(5);
/// Growth of resident memory since the last trim that makes another worth it.
const GROWN: u64 = 32 << 20;

/// When the process last gave memory back, and what it held after.
#[derive(Debug)]
pub(crate) struct Trimmer {
    last: Option<Instant>,
    floor: u64,
}

impl Trimmer {
    pub fn new() -> Trimmer {
        Trimmer {
            last: None,
            floor: 0,
        }
    }

    /// Called with each reading of resident memory; `reread` reads it again
    /// after a trim (what stays is in use: the next trim waits for growth).
    pub fn after_sample(&mut self, rss: u64, reread: impl FnOnce() -> Option<u64>) {
        if self.last.is_some_and(|at| at.elapsed() < EVERY) || rss < self.floor + GROWN {
            return;
        }
        self.last = Some(Instant::now());
        release();
        self.floor = reread().unwrap_or(rss);
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // measured: see the module doc
fn release() {
    // SAFETY: malloc_trim takes no pointers of ours; it only walks glibc's
    // own heaps, locking each arena, and may be called from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_grown_and_not_again_until_it_grows_more() {
        let mut t = Trimmer::new();
        let mut rereads = 0;
        t.after_sample(100 << 20, || {
            rereads += 1;
            Some(60 << 20)
        });
        assert_eq!(rereads, 1);
        assert_eq!(t.floor, 60 << 20);
        t.last = Some(Instant::now() - EVERY);
        t.after_sample(80 << 20, || panic!("not grown by 32 MiB"));
        t.after_sample(93 << 20, || Some(90 << 20));
        assert_eq!(t.floor, 90 << 20);
        t.after_sample(200 << 20, || panic!("too soon"));
    }
}
