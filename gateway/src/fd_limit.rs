//! File descriptors: the process's limit is raised to what it may have, and
//! every door's connection cap is derived from it, so the gateway refuses a
//! connection in its protocol's terms before the kernel refuses the gateway
//! a descriptor (an `accept` that fails with `EMFILE` leaves the client
//! waiting in the backlog; a store that cannot open a file fails its writes).
//!
//! The formula (one place; README and docs/DESIGN.md describe it):
//! - `reserve = max(256, limit / 10)` descriptors are kept for the store's
//!   files, the listeners, the runtime and the logs;
//! - the rest is shared equally by the doors that listen (a door whose
//!   listen setting is "off" takes no share);
//! - of a door's share, one sixteenth (at least 1, at most
//!   `gw_listen::MAX_REFUSING`) is for connections being refused, the rest
//!   is its `max_connections`. A configured `max_connections` above that is
//!   lowered, with one log line saying so.

/// Descriptors kept for everything that is not a connection, at least.
pub const MIN_RESERVE: u64 = 256;

/// The process's descriptor limit before and after [`raise`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdLimit {
    /// The soft limit the process was started with.
    pub before: u64,
    /// The soft limit now (the one in force).
    pub soft: u64,
    /// The hard limit (the most the soft one may be raised to).
    pub hard: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard one (as nginx's
/// `worker_rlimit_nofile` or systemd's defaults for services do): a limit of
/// 1,024 is a shell's default, not a decision about this process. When the
/// raise is refused (some systems cap it below the hard limit) the limit is
/// left as it was. `None` where the limit cannot be read.
pub fn raise() -> Option<FdLimit> {
    #[cfg(unix)]
    {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
        let mut now = soft;
        if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
            now = hard;
        }
        Some(FdLimit {
            before: soft,
            soft: now,
            hard,
        })
    }
    #[cfg(not(unix))]
    None
}

/// The soft descriptor limit in force, `None` where there is none to read.
pub fn current() -> Option<u64> {
    #[cfg(unix)]
    {
        use nix::sys::resource::{Resource, getrlimit};
        getrlimit(Resource::RLIMIT_NOFILE)
            .ok()
            .map(|(soft, _)| soft)
    }
    #[cfg(not(unix))]
    None
}

/// What the descriptor limit leaves each listening door.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// The limit it was derived from.
    pub limit: u64,
    /// Kept for the store, the listeners and everything else.
    pub reserve: u64,
    /// Connections a door may serve at once.
    pub max_connections: usize,
    /// Connections a door may be refusing at once (each holds a descriptor
    /// while its refusal is written).
    pub max_refusing: usize,
}

impl Budget {
    /// The share of each of `doors` listening doors under `limit` descriptors.
    pub fn new(limit: u64, doors: usize) -> Budget {
        let reserve = MIN_RESERVE.max(limit / 10);
        let left = limit.saturating_sub(reserve);
        let share = usize::try_from(left / doors.max(1) as u64).unwrap_or(usize::MAX);
        let max_refusing = (share / 16).clamp(1, gw_listen::MAX_REFUSING);
        // A door serves at least two connections (HTTP's long polls need one
        // below its cap), however low the limit: the log line says the limit
        // is too low, the gateway still works.
        let max_connections = share.saturating_sub(max_refusing).max(2);
        Budget {
            limit,
            reserve,
            max_connections,
            max_refusing,
        }
    }

    /// True when the limit leaves the doors next to nothing (a warning).
    pub fn is_starved(&self) -> bool {
        self.max_connections < 16
    }
}

/// A door's `max_connections` under `budget`: the configured value when it
/// fits, else the share, with one warning when the operator's own value
/// (`configured`: the key is in the door's table) was lowered.
pub fn cap(door: &str, value: usize, configured: bool, budget: &Budget) -> usize {
    if value <= budget.max_connections {
        return value;
    }
    if configured {
        tracing::warn!(
            door,
            configured = value,
            max_connections = budget.max_connections,
            fd_limit = budget.limit,
            "[{door}] max_connections {value} lowered to {}: the file descriptor limit ({}) leaves each door that much after a reserve of {}",
            budget.max_connections,
            budget.limit,
            budget.reserve
        );
    }
    budget.max_connections
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_256_or_a_tenth() {
        assert_eq!(Budget::new(1024, 3).reserve, 256);
        assert_eq!(Budget::new(20_000, 3).reserve, 2_000);
        assert_eq!(Budget::new(1 << 20, 3).reserve, 104_857);
    }

    #[test]
    fn doors_share_what_is_left() {
        // 20,000 − 2,000 = 18,000, 6,000 a door: a sixteenth (375) capped
        // at 256 refusing, the rest served.
        let b = Budget::new(20_000, 3);
        assert_eq!((b.max_connections, b.max_refusing), (5_744, 256));
        // One door alone gets all of it.
        let one = Budget::new(20_000, 1);
        assert_eq!(one.max_connections + one.max_refusing, 18_000);
        // No door's connections and refusals exceed its share.
        for limit in [320, 512, 1024, 4096, 65_536, 1 << 20] {
            for doors in 1..=3 {
                let b = Budget::new(limit, doors);
                let used = (b.max_connections + b.max_refusing) as u64 * doors as u64;
                assert!(used + b.reserve <= limit, "{limit} {doors}: {b:?}");
            }
        }
    }

    #[test]
    fn a_tiny_limit_still_serves_two_and_says_so() {
        let b = Budget::new(64, 3);
        assert_eq!((b.max_connections, b.max_refusing), (2, 1));
        assert!(b.is_starved());
        assert!(!Budget::new(4096, 3).is_starved());
    }

    #[test]
    fn only_values_over_the_share_are_lowered() {
        let b = Budget::new(1024, 3);
        assert_eq!(b.max_connections, 240);
        assert_eq!(cap("amqp", 100, true, &b), 100);
        assert_eq!(cap("amqp", 65_536, false, &b), 240);
        assert_eq!(cap("amqp", 65_536, true, &b), 240);
    }

    #[test]
    fn raising_reaches_the_hard_limit() {
        let Some(l) = raise() else { return };
        assert!(l.soft >= l.before);
        assert_eq!(current(), Some(l.soft));
        // Raising needs no privilege: only a failed call leaves it lower.
        assert_eq!(l.soft, l.hard);
    }
}
