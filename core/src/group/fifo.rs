//! Per-key order for FIFO queues: at most one message of a key is out (in
//! flight, or waiting to be redelivered) at a time; later messages of the key
//! wait in a pending list and are released one by one as each is settled.

use std::collections::{HashMap, VecDeque};

/// The most messages held back in pending lists before the group stops reading
/// ahead (keeps memory bounded when one key is stuck).
pub(crate) const MAX_PENDING: usize = 10_000;

#[derive(Default, Debug)]
pub(crate) struct FifoState {
    keys: HashMap<String, KeyState>,
    /// Which key each outstanding head belongs to.
    heads: HashMap<u64, String>,
    pending_total: usize,
}

#[derive(Debug)]
struct KeyState {
    pending: VecDeque<u64>,
}

impl FifoState {
    /// Claims the key for `seq` if nothing of that key is out; otherwise queues
    /// `seq` behind it and returns false.
    pub fn admit(&mut self, key: &str, seq: u64) -> bool {
        match self.keys.get_mut(key) {
            Some(k) => {
                k.pending.push_back(seq);
                self.pending_total += 1;
                false
            }
            None => {
                self.keys.insert(
                    key.to_owned(),
                    KeyState {
                        pending: VecDeque::new(),
                    },
                );
                self.heads.insert(seq, key.to_owned());
                true
            }
        }
    }

    /// `seq` was settled: returns the next message of its key, which becomes the head.
    pub fn release(&mut self, seq: u64) -> Option<u64> {
        let key = self.heads.remove(&seq)?;
        let state = self.keys.get_mut(&key)?;
        match state.pending.pop_front() {
            Some(next) => {
                self.pending_total -= 1;
                self.heads.insert(next, key);
                Some(next)
            }
            None => {
                self.keys.remove(&key);
                None
            }
        }
    }

    /// Removes a pending message (dropped by overflow or purge) without settling its head.
    pub fn forget_pending(&mut self, seq: u64) -> bool {
        for state in self.keys.values_mut() {
            if let Some(pos) = state.pending.iter().position(|&s| s == seq) {
                state.pending.remove(pos);
                self.pending_total -= 1;
                return true;
            }
        }
        false
    }

    pub fn pending_total(&self) -> usize {
        self.pending_total
    }

    pub fn is_full(&self) -> bool {
        self.pending_total >= MAX_PENDING
    }

    pub fn clear(&mut self) {
        *self = FifoState::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_out_per_key_in_order() {
        let mut f = FifoState::default();
        assert!(f.admit("a", 1));
        assert!(!f.admit("a", 2));
        assert!(f.admit("b", 3));
        assert!(!f.admit("a", 4));
        assert_eq!(f.pending_total(), 2);
        assert_eq!(f.release(1), Some(2));
        assert_eq!(f.release(3), None);
        assert!(f.admit("b", 5));
        assert_eq!(f.release(2), Some(4));
        assert_eq!(f.release(4), None);
        assert_eq!(f.pending_total(), 0);
        assert!(f.admit("a", 6));
    }
}
