//! One descriptor held in reserve for the moment the process has none left.
//!
//! When `accept` fails with `EMFILE` (or `ENFILE`), the connection it could
//! not take stays in the kernel's backlog, its client waiting for an answer
//! that pausing and retrying never gives: the descriptor that would free it
//! is the one that is missing. With a spare descriptor (`/dev/null`, opened
//! while there are plenty), the accept loop closes the spare, accepts the
//! waiting connection into the freed slot, closes that at once (the client
//! sees the connection end, not a hang) and opens the spare again. libuv
//! and libev do the same. One spare serves the whole process: a mutex hands
//! it to one listener at a time.

use std::fs::File;
use std::sync::Mutex;

static SPARE: Mutex<Option<File>> = Mutex::new(None);

/// Opens the spare if it is not held (the accept loop calls this as it starts).
pub(crate) fn reserve() {
    let mut spare = SPARE.lock().unwrap_or_else(|e| e.into_inner());
    if spare.is_none() {
        *spare = open();
    }
}

/// Runs `f` with the spare closed (one descriptor free for it), then opens
/// the spare again. `None`, without running `f`, when there is no spare to
/// give (it could not be opened again last time: descriptors are still out).
pub(crate) fn released<T>(f: impl FnOnce() -> T) -> Option<T> {
    let mut spare = SPARE.lock().unwrap_or_else(|e| e.into_inner());
    if spare.is_none() {
        *spare = open();
    }
    drop(spare.take()?);
    let out = f();
    *spare = open();
    Some(out)
}

fn open() -> Option<File> {
    #[cfg(unix)]
    {
        File::open("/dev/null").ok()
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn the_spare_is_given_and_taken_back() {
        reserve();
        assert_eq!(released(|| 7), Some(7));
        assert!(SPARE.lock().unwrap().is_some());
    }
}
