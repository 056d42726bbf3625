//! Argon2 verifications run on two dedicated threads, never more at once.
//!
//! Each verification allocates Argon2's 19 MiB working memory. Done on
//! whichever thread asked (the HTTP door's blocking pool has hundreds), the
//! allocator keeps a 19 MiB arena per thread that ever verified: 20 wrong
//! passwords grew the process by 200 MB, 150 concurrent ones by 870 MB, and
//! it was never given back. Two threads bound it at two arenas and two
//! cores' worth of CPU; further checks wait their turn. Each thread also
//! keeps its Argon2 memory and reuses it (argon2's `_with_memory` call), so
//! the allocator is not asked for 19 MiB per check at all (it kept a fresh
//! 19 MiB on every failed login even with two threads).

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, LazyLock};

use argon2::password_hash::{Output, PasswordHash};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use parking_lot::Mutex;

/// Verifications at once.
const THREADS: usize = 2;
/// Checks waiting beyond these block their caller in `send` (back-pressure).
const QUEUED: usize = 1024;

struct Job {
    password: Vec<u8>,
    hash: String,
    answer: Answer,
}

/// Where a check's result goes: a blocked thread or an async task.
enum Answer {
    Blocking(SyncSender<bool>),
    Async(tokio::sync::oneshot::Sender<bool>),
}

static CHECKER: LazyLock<Option<SyncSender<Job>>> = LazyLock::new(|| {
    let (tx, rx) = sync_channel::<Job>(QUEUED);
    let rx = Arc::new(Mutex::new(rx));
    let mut started = 0;
    for i in 0..THREADS {
        let rx = Arc::clone(&rx);
        let spawned = std::thread::Builder::new()
            .name(format!("password-check-{i}"))
            .spawn(move || run(&rx));
        match spawned {
            Ok(_) => started += 1,
            Err(e) => tracing::error!(error = %e, "cannot start a password-check thread"),
        }
    }
    (started > 0).then_some(tx)
});

fn run(jobs: &Mutex<Receiver<Job>>) {
    let mut memory = Vec::new();
    loop {
        let job = match jobs.lock().recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        let ok = verify_with(&job.password, &job.hash, &mut memory);
        match job.answer {
            Answer::Blocking(tx) => drop(tx.send(ok)),
            Answer::Async(tx) => drop(tx.send(ok)),
        }
    }
}

fn verify_here(password: &[u8], hash: &str) -> bool {
    verify_with(password, hash, &mut Vec::new())
}

/// Argon2 verification of a PHC string into `memory` (grown once to the
/// hash's memory cost, then reused).
fn verify_with(password: &[u8], hash: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(phc) = PasswordHash::new(hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (Algorithm::try_from(phc.algorithm), Params::try_from(&phc))
    else {
        return false;
    };
    let version = match phc.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let (Some(salt), Some(expected)) = (phc.salt, phc.hash) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params);
    if argon
        .hash_password_into_with_memory(password, salt, &mut out, &mut memory[..blocks])
        .is_err()
    {
        return false;
    }
    // Output's equality is constant-time.
    Output::new(&out).is_ok_and(|o| o == expected)
}

/// True when `password` matches the PHC string `hash`. Blocks until one of
/// the checking threads has done it (run it where blocking is allowed).
pub(crate) fn verify(password: &[u8], hash: &str) -> bool {
    let Some(checker) = CHECKER.as_ref() else {
        return verify_here(password, hash);
    };
    let (answer, wait) = sync_channel(1);
    let job = Job {
        password: password.to_vec(),
        hash: hash.to_owned(),
        answer: Answer::Blocking(answer),
    };
    if checker.send(job).is_err() {
        return verify_here(password, hash);
    }
    wait.recv().unwrap_or(false)
}

/// [`verify`] for async callers: the task waits, no thread does. When
/// [`QUEUED`] checks already wait (a flood of logins), the login fails at
/// once rather than queueing without bound.
pub(crate) async fn verify_async(password: &[u8], hash: &str) -> bool {
    let Some(checker) = CHECKER.as_ref() else {
        return verify_here(password, hash);
    };
    let (answer, wait) = tokio::sync::oneshot::channel();
    let job = Job {
        password: password.to_vec(),
        hash: hash.to_owned(),
        answer: Answer::Async(answer),
    };
    match checker.try_send(job) {
        Ok(()) => wait.await.unwrap_or(false),
        Err(TrySendError::Full(_)) => {
            tracing::warn!("{QUEUED} password checks are waiting; refusing a login");
            false
        }
        Err(TrySendError::Disconnected(_)) => verify_here(password, hash),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn right_and_wrong_passwords() {
        let hash = crate::auth::hash_password("s3cret").unwrap();
        assert!(super::verify(b"s3cret", &hash));
        assert!(!super::verify(b"wrong", &hash));
        assert!(!super::verify(b"s3cret", "not a phc string"));
        // A hash with other parameters (and algorithm) is checked by its own.
        use argon2::password_hash::{PasswordHasher, SaltString};
        let params = argon2::Params::new(4096, 2, 1, None).unwrap();
        let argon = argon2::Argon2::new(argon2::Algorithm::Argon2i, argon2::Version::V0x13, params);
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let other = argon.hash_password(b"pw", &salt).unwrap().to_string();
        assert!(
            other.starts_with("$argon2i$v=19$m=4096,t=2,p=1$"),
            "{other}"
        );
        assert!(super::verify(b"pw", &other));
        assert!(!super::verify(b"pW", &other));
    }
}
