//! What only the disk backend can get wrong at open: a data directory held by
//! another gateway, or one that is not ours. (Restart behaviour itself is in
//! the shared suite, `backends/restarts.rs`, run on every backend.)
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

mod common;

use common::*;

#[test]
fn a_locked_or_foreign_data_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    let second = gw_core::Engine::open(gw_core::EngineConfig::new(dir.path()));
    assert!(
        matches!(
            second,
            Err(gw_core::Error::Storage(gw_core::StoreError::Locked(_)))
        ),
        "{second:?}"
    );
    e.close();
    drop(e);
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("version"), b"garbage").unwrap();
    let r = gw_core::Engine::open(gw_core::EngineConfig::new(other.path()));
    assert!(r.is_err(), "a corrupt directory is refused");
}
