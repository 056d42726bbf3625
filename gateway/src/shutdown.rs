//! Signals: the first SIGTERM or Ctrl-C starts a graceful shutdown, a second
//! one exits at once.

/// SIGTERM and SIGINT, caught from the moment this is made: installed before
/// the doors open, so a signal sent as soon as an address is logged still
/// gets the graceful shutdown instead of the default (instant) death.
pub struct Signals {
    #[cfg(unix)]
    handlers: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    /// Installs the handlers (needs a running Tokio runtime).
    pub fn install() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let handlers = match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(term), Ok(int)) => Some((term, int)),
                // Without handlers the process can still be stopped by SIGKILL.
                _ => None,
            };
            Signals { handlers }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// Resolves when the next SIGTERM or SIGINT arrives.
    pub async fn next(&mut self) -> Caught {
        #[cfg(unix)]
        {
            let Some((term, int)) = &mut self.handlers else {
                return std::future::pending().await;
            };
            tokio::select! {
                _ = term.recv() => Caught { name: "SIGTERM", number: 15 },
                _ = int.recv() => Caught { name: "SIGINT", number: 2 },
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Caught {
                name: "Ctrl-C",
                number: 2,
            }
        }
    }
}

/// A signal that arrived.
#[derive(Clone, Copy, Debug)]
pub struct Caught {
    /// `SIGTERM`, `SIGINT`.
    pub name: &'static str,
    /// Its number (15, 2).
    pub number: i32,
}

impl Caught {
    /// The status of a process that exits because of this signal, as
    /// shells report one killed by it: 128 + the signal number.
    pub fn exit_status(self) -> i32 {
        128 + self.number
    }
}

impl std::fmt::Display for Caught {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}
