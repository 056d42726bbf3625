//! Per-connection flow control: a bound on the bytes one connection has
//! published that the store has not written yet.
//!
//! The engine's pressure signal bounds what all publishers together leave
//! waiting for the disk; this bounds what one leaves, so a single fast
//! publisher (confirms or not) cannot take the whole allowance, and the
//! process cannot grow faster than the disk drains between two samples of
//! the memory watermark. The reader counts the bytes of each stored publish;
//! once the count reaches [`WINDOW_BYTES`] it stops reading until the newest
//! of them is written (usually already done: then it only starts counting
//! again). It is RabbitMQ's credit flow in one number.

use gw_core::Ticket;

/// Unwritten bytes a connection may have published before it is paused.
pub const WINDOW_BYTES: usize = 16 << 20;

/// Bytes published since the window last emptied, and the newest ticket
/// among them.
#[derive(Debug, Default)]
pub struct Window {
    bytes: usize,
    newest: Ticket,
}

impl Window {
    /// A publish of `bytes` that is stored once `ticket` is.
    pub fn published(&mut self, bytes: usize, ticket: Ticket) {
        self.bytes = self.bytes.saturating_add(bytes);
        self.newest = self.newest.max(ticket);
    }

    /// The ticket to wait for before reading on, when the window is full
    /// and `is_decided` says its newest publish is not written yet.
    pub fn wait_for(&mut self, is_decided: impl FnOnce(Ticket) -> bool) -> Option<Ticket> {
        if self.bytes < WINDOW_BYTES {
            return None;
        }
        if is_decided(self.newest) {
            self.bytes = 0;
            return None;
        }
        Some(self.newest)
    }

    /// The store has decided everything counted (written or failed: a failed
    /// publish is nacked, and either way it no longer waits in memory).
    pub fn emptied(&mut self) {
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_pauses_only_when_full_and_not_yet_written() {
        let mut w = Window::default();
        w.published(WINDOW_BYTES - 1, 5);
        assert_eq!(w.wait_for(|_| false), None, "not full yet");
        w.published(1, 7);
        assert_eq!(w.wait_for(|_| false), Some(7));
        assert_eq!(
            w.wait_for(|t| t <= 7),
            None,
            "written meanwhile: counting restarts"
        );
        assert_eq!(w.wait_for(|_| false), None, "emptied");
        w.published(WINDOW_BYTES, 9);
        assert_eq!(w.wait_for(|_| false), Some(9));
        w.emptied();
        assert_eq!(w.wait_for(|_| false), None);
    }
}
