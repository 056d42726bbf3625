//! What survives a crash of crashfs, in each mode: the harness's own
//! contract, which the gateway's power-loss tests rely on.
#![allow(clippy::unwrap_used)]

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crashfs::{Mode, Mounted};

struct Setup {
    _dir: tempfile::TempDir,
    backing: PathBuf,
    mnt: PathBuf,
}

/// Directories for one test, or `None` (printed) where FUSE cannot be used.
fn setup() -> Option<Setup> {
    if let Some(why) = crashfs::unavailable() {
        eprintln!("SKIPPED: {why}");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("backing");
    let mnt = dir.path().join("mnt");
    fs::create_dir(&backing).unwrap();
    fs::create_dir(&mnt).unwrap();
    Some(Setup {
        _dir: dir,
        backing,
        mnt,
    })
}

fn fsync(path: &Path) {
    File::open(path).unwrap().sync_all().unwrap();
}

fn write(path: &Path, bytes: &[u8], sync: bool) {
    let mut f = File::create(path).unwrap();
    f.write_all(bytes).unwrap();
    if sync {
        f.sync_all().unwrap();
    }
}

fn read(path: &Path) -> Option<Vec<u8>> {
    fs::read(path).ok()
}

#[test]
fn file_data_survives_only_once_the_file_is_fsynced() {
    for mode in [Mode::Lenient, Mode::Strict] {
        let Some(s) = setup() else { return };
        fs::create_dir(s.backing.join("d")).unwrap();
        fs::write(s.backing.join("d/old"), b"old").unwrap();
        fs::write(s.backing.join("d/cut"), b"12345").unwrap();
        let fs_ = Mounted::mount(&s.backing, &s.mnt, mode).unwrap();
        let d = s.mnt.join("d");
        write(&d.join("synced"), b"synced", true);
        write(&d.join("unsynced"), b"unsynced", false);
        write(&d.join("old"), b"new", false);
        File::options()
            .write(true)
            .open(d.join("cut"))
            .unwrap()
            .set_len(2)
            .unwrap();
        // Written then fdatasynced through another descriptor: still durable.
        fs::OpenOptions::new()
            .append(true)
            .open(d.join("synced"))
            .unwrap()
            .write_all(b"+more")
            .unwrap();
        File::open(d.join("synced")).unwrap().sync_data().unwrap();
        fsync(&d);
        assert_eq!(
            read(&d.join("old")).unwrap(),
            b"new",
            "readers see the cache"
        );
        let dropped = fs_.crash().unwrap();
        assert!(dropped.files >= 3 && dropped.bytes > 0, "{dropped:?}");

        let b = s.backing.join("d");
        assert_eq!(read(&b.join("synced")).unwrap(), b"synced+more", "{mode:?}");
        assert_eq!(
            read(&b.join("unsynced")).unwrap(),
            b"",
            "{mode:?}: the entry, no data"
        );
        assert_eq!(read(&b.join("old")).unwrap(), b"old", "{mode:?}");
        assert_eq!(read(&b.join("cut")).unwrap(), b"12345", "{mode:?}");

        // The reboot: a fresh mount over what survived.
        let again = Mounted::mount(&s.backing, &s.mnt, mode).unwrap();
        assert_eq!(read(&d.join("synced")).unwrap(), b"synced+more");
        assert_eq!(read(&d.join("cut")).unwrap(), b"12345");
        again.unmount().unwrap();
    }
}

#[test]
fn a_new_entry_needs_its_directory_fsynced_in_strict_mode() {
    for mode in [Mode::Lenient, Mode::Strict] {
        let Some(s) = setup() else { return };
        let fs_ = Mounted::mount(&s.backing, &s.mnt, mode).unwrap();
        write(&s.mnt.join("f"), b"data", true);
        fs::create_dir(s.mnt.join("sub")).unwrap();
        write(&s.mnt.join("sub/g"), b"g", true);
        fsync(&s.mnt.join("sub"));
        assert_eq!(
            fs_.unsynced().entries,
            if mode == Mode::Strict { 2 } else { 0 }
        );
        fs_.crash().unwrap();
        let survived = read(&s.backing.join("f"));
        match mode {
            Mode::Lenient => {
                assert_eq!(survived.unwrap(), b"data");
                assert_eq!(read(&s.backing.join("sub/g")).unwrap(), b"g");
            }
            Mode::Strict => {
                assert_eq!(survived, None, "fsynced file, directory not fsynced");
                assert!(
                    !s.backing.join("sub").exists(),
                    "g's entry was durable in sub, but sub's entry was not"
                );
            }
        }
    }
}

#[test]
fn renames_and_unlinks_are_durable_after_the_directory_fsync_in_strict_mode() {
    for (mode, sync_dir) in [
        (Mode::Lenient, false),
        (Mode::Strict, false),
        (Mode::Strict, true),
    ] {
        let Some(s) = setup() else { return };
        for name in ["x", "y", "z"] {
            fs::write(s.backing.join(name), name).unwrap();
        }
        let fs_ = Mounted::mount(&s.backing, &s.mnt, mode).unwrap();
        fs::rename(s.mnt.join("x"), s.mnt.join("y")).unwrap();
        fs::remove_file(s.mnt.join("z")).unwrap();
        // The atomic-replace idiom: write a temporary, fsync it, rename it.
        write(&s.mnt.join("current.tmp"), b"v2", true);
        fs::rename(s.mnt.join("current.tmp"), s.mnt.join("current")).unwrap();
        if sync_dir {
            fsync(&s.mnt);
        }
        fs_.crash().unwrap();
        let now = |n: &str| read(&s.backing.join(n));
        if mode == Mode::Strict && !sync_dir {
            assert_eq!(now("x").unwrap(), b"x", "rename undone");
            assert_eq!(now("y").unwrap(), b"y", "the replaced file is back");
            assert_eq!(now("z").unwrap(), b"z", "unlink undone");
            assert_eq!(now("current"), None);
            assert_eq!(now("current.tmp"), None);
        } else {
            assert_eq!(now("x"), None, "{mode:?}");
            assert_eq!(now("y").unwrap(), b"x", "{mode:?}");
            assert_eq!(now("z"), None, "{mode:?}");
            assert_eq!(now("current").unwrap(), b"v2", "{mode:?}");
        }
    }
}

#[test]
fn a_nested_directory_is_durable_only_once_every_parent_is_fsynced() {
    for sync_root in [false, true] {
        let Some(s) = setup() else { return };
        let fs_ = Mounted::mount(&s.backing, &s.mnt, Mode::Strict).unwrap();
        fs::create_dir_all(s.mnt.join("a/b")).unwrap();
        write(&s.mnt.join("a/b/f"), b"f", true);
        fsync(&s.mnt.join("a/b"));
        fsync(&s.mnt.join("a"));
        if sync_root {
            fsync(&s.mnt);
        }
        fs_.crash().unwrap();
        let f = read(&s.backing.join("a/b/f"));
        if sync_root {
            assert_eq!(f.unwrap(), b"f");
        } else {
            assert!(
                !s.backing.join("a").exists(),
                "a's own entry was never durable"
            );
        }
    }
}

#[test]
fn after_the_freeze_every_call_fails_and_a_clean_unmount_keeps_everything() {
    let Some(s) = setup() else { return };
    let fs_ = Mounted::mount(&s.backing, &s.mnt, Mode::Strict).unwrap();
    let mut open = File::create(s.mnt.join("open")).unwrap();
    fs_.freeze();
    assert!(open.write_all(b"x").and_then(|()| open.sync_all()).is_err());
    assert!(fs::metadata(s.mnt.join("other")).is_err());
    assert!(fs::create_dir(s.mnt.join("dir")).is_err());
    drop(open);
    fs_.crash().unwrap();
    assert!(!s.backing.join("open").exists());

    let fs_ = Mounted::mount(&s.backing, &s.mnt, Mode::Strict).unwrap();
    fs::create_dir(s.mnt.join("kept")).unwrap();
    write(&s.mnt.join("kept/f"), b"never fsynced", false);
    fs_.unmount().unwrap();
    assert_eq!(read(&s.backing.join("kept/f")).unwrap(), b"never fsynced");
}
