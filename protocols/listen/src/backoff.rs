//! What a failed `accept` costs: nothing for a peer that gave up before we
//! took its connection, an exponentially growing pause for everything else
//! (out of file descriptors, out of memory: retrying at once would spin on
//! the same error while freeing nothing), and one warning line per
//! [`WARN_EVERY`] however many failures there are.

use std::io;
use std::time::Duration;

use tokio::time::Instant;

/// The first pause after a resource error.
pub(crate) const FIRST_PAUSE: Duration = Duration::from_millis(5);
/// The longest pause: a freed descriptor is taken up within a second.
pub(crate) const MAX_PAUSE: Duration = Duration::from_secs(1);
/// At most one warning per listener this often.
pub(crate) const WARN_EVERY: Duration = Duration::from_secs(10);

/// What to do after one failure.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    /// Wait this long before accepting again.
    pub pause: Duration,
    /// Log a warning now, counting this many failures since the last one.
    pub warn: Option<u64>,
}

/// One listener's accept-failure state.
#[derive(Debug)]
pub(crate) struct Backoff {
    pause: Duration,
    last_warning: Option<Instant>,
    unreported: u64,
}

impl Backoff {
    pub fn new() -> Self {
        Backoff {
            pause: FIRST_PAUSE,
            last_warning: None,
            unreported: 0,
        }
    }

    /// A connection was accepted: the next failure starts small again.
    pub fn accepted(&mut self) {
        self.pause = FIRST_PAUSE;
    }

    /// `accept` failed with `error` at `now`.
    pub fn failed(&mut self, error: &io::Error, now: Instant) -> Failure {
        if peer_gone(error) {
            return Failure {
                pause: Duration::ZERO,
                warn: None,
            };
        }
        let pause = self.pause;
        self.pause = (self.pause * 2).min(MAX_PAUSE);
        self.unreported += 1;
        let due = self
            .last_warning
            .is_none_or(|at| now.duration_since(at) >= WARN_EVERY);
        let warn = due.then(|| {
            self.last_warning = Some(now);
            std::mem::take(&mut self.unreported)
        });
        Failure { pause, warn }
    }
}

/// Errors that concern one connection, not the listener: the peer reset or
/// aborted it while it waited in the backlog, or a signal interrupted the call.
fn peer_gone(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emfile() -> io::Error {
        io::Error::from_raw_os_error(24)
    }

    #[test]
    fn pauses_double_up_to_a_second_and_reset_on_success() {
        let mut b = Backoff::new();
        let now = Instant::now();
        let pauses: Vec<u64> = (0..10)
            .map(|_| b.failed(&emfile(), now).pause.as_millis() as u64)
            .collect();
        assert_eq!(pauses, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.accepted();
        assert_eq!(b.failed(&emfile(), now).pause, FIRST_PAUSE);
    }

    #[test]
    fn one_warning_per_interval_counting_the_rest() {
        let mut b = Backoff::new();
        let start = Instant::now();
        assert_eq!(b.failed(&emfile(), start).warn, Some(1));
        for i in 1..50 {
            let at = start + Duration::from_millis(i * 100);
            assert_eq!(b.failed(&emfile(), at).warn, None, "failure {i}");
        }
        // 49 more since the first warning, plus this one.
        assert_eq!(b.failed(&emfile(), start + WARN_EVERY).warn, Some(50));
        assert_eq!(b.failed(&emfile(), start + WARN_EVERY).warn, None);
    }

    #[test]
    fn a_peer_that_gave_up_costs_nothing() {
        let mut b = Backoff::new();
        let now = Instant::now();
        for kind in [
            io::ErrorKind::ConnectionAborted,
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::Interrupted,
        ] {
            assert_eq!(
                b.failed(&kind.into(), now),
                Failure {
                    pause: Duration::ZERO,
                    warn: None
                }
            );
        }
        // And it does not grow the pause of the next real failure.
        assert_eq!(b.failed(&emfile(), now).pause, FIRST_PAUSE);
    }
}
