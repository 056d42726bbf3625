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

    /// Resolves with the signal's name when the next SIGTERM or SIGINT arrives.
    pub async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            let Some((term, int)) = &mut self.handlers else {
                return std::future::pending().await;
            };
            tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}
