//! How other parties reach a connection's task: the registry (takeover), an
//! operator (the engine's connection closer) and the task itself when done.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use tokio::sync::Notify;

/// Why the server closes a connection from outside its task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum CloseReason {
    /// Another connection with the same client id (MQTT 5: 0x8E).
    TakenOver = 1,
    /// The gateway is stopping (0x8B).
    Shutdown = 2,
    /// An operator closed it (0x98).
    Administrative = 3,
}

impl CloseReason {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(CloseReason::TakenOver),
            2 => Some(CloseReason::Shutdown),
            3 => Some(CloseReason::Administrative),
            _ => None,
        }
    }
}

/// How other parties reach a connection's task: ask it to close, and learn
/// when it has finished (its session is then parked or gone).
#[derive(Debug, Default)]
pub struct ConnSignal {
    reason: AtomicU8,
    close: Notify,
    finished: AtomicBool,
    done: Notify,
}

impl ConnSignal {
    /// Asks the connection to close; the first reason wins.
    pub fn close(&self, reason: CloseReason) {
        if self
            .reason
            .compare_exchange(0, reason as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            // A stored permit wakes the task even if it is not waiting right now.
            self.close.notify_one();
        }
    }

    /// Why the connection was asked to close, if it was.
    pub fn reason(&self) -> Option<CloseReason> {
        CloseReason::from_u8(self.reason.load(Ordering::Acquire))
    }

    /// Resolves after [`ConnSignal::close`].
    pub async fn closed(&self) {
        if self.reason().is_none() {
            self.close.notified().await;
        }
    }

    /// Called by the connection's task as its very last step.
    pub fn finish(&self) {
        self.finished.store(true, Ordering::Release);
        self.done.notify_waiters();
    }

    /// Resolves once [`ConnSignal::finish`] ran.
    pub async fn wait_finished(&self) {
        loop {
            let notified = self.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.finished.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}
