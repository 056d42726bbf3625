//! How other parties reach a connection's task: the registry (takeover), an
//! operator (the engine's connection closer) and the task itself when done.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;
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
///
/// The task registers its waker here when it waits ([`ConnSignal::poll_closed`])
/// instead of holding a `Notified` future: one waker slot per connection costs
/// less than a future in every idle connection's state, and the task is the
/// only one that ever waits for a close.
#[derive(Debug, Default)]
pub struct ConnSignal {
    reason: AtomicU8,
    waiter: Mutex<Option<Waker>>,
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
            && let Some(w) = self.waiter.lock().take()
        {
            w.wake();
        }
    }

    /// Why the connection was asked to close, if it was.
    pub fn reason(&self) -> Option<CloseReason> {
        CloseReason::from_u8(self.reason.load(Ordering::Acquire))
    }

    /// Ready once [`ConnSignal::close`] was called; otherwise the task's
    /// waker is kept to be woken by it.
    pub fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<CloseReason> {
        if let Some(r) = self.reason() {
            return Poll::Ready(r);
        }
        {
            let mut w = self.waiter.lock();
            if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *w = Some(cx.waker().clone());
            }
        }
        // A close between the first look and the registration found no waker.
        match self.reason() {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }

    /// Resolves after [`ConnSignal::close`].
    pub async fn closed(&self) -> CloseReason {
        std::future::poll_fn(|cx| self.poll_closed(cx)).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_close_wakes_the_waiting_task_once_and_the_first_reason_wins() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let s = std::sync::Arc::new(ConnSignal::default());
            let waiting = {
                let s = std::sync::Arc::clone(&s);
                tokio::spawn(async move { s.closed().await })
            };
            tokio::task::yield_now().await;
            s.close(CloseReason::TakenOver);
            s.close(CloseReason::Shutdown);
            assert_eq!(waiting.await.unwrap(), CloseReason::TakenOver);
            assert_eq!(s.closed().await, CloseReason::TakenOver);
        });
    }
}
