//! Bearer tokens, Keystone v3 style: 256 random bits (URL-safe text), scoped
//! to one project (tenant), expiring. Only the SHA-256 of a token is stored
//! and looked up, so a copy of the data directory yields no usable token.

use std::collections::HashMap;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How long a token lives unless configured otherwise: 24 hours (Keystone's default).
pub const DEFAULT_TOKEN_TTL_MS: u64 = 24 * 3_600_000;
/// Expired tokens are forgotten when more than this many are held.
const SWEEP_ABOVE: usize = 10_000;

/// A token as stored: its digest, never the token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct TokenRecord {
    /// SHA-256 of the token text.
    pub digest: [u8; 32],
    /// The user it authenticates.
    pub user: String,
    /// The tenant (project) it is scoped to.
    pub tenant: String,
    /// How the user proved who it is (`password`, `token`).
    pub method: String,
    /// ms since the epoch.
    pub issued_at: u64,
    /// ms since the epoch; the token is refused from then on.
    pub expires_at: u64,
}

/// What a valid token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    /// The user.
    pub user: String,
    /// The tenant it is scoped to.
    pub tenant: String,
    /// `password` or `token`.
    pub method: String,
    /// ms since the epoch.
    pub issued_at: u64,
    /// ms since the epoch.
    pub expires_at: u64,
}

impl From<&TokenRecord> for TokenInfo {
    fn from(r: &TokenRecord) -> Self {
        TokenInfo {
            user: r.user.clone(),
            tenant: r.tenant.clone(),
            method: r.method.clone(),
            issued_at: r.issued_at,
            expires_at: r.expires_at,
        }
    }
}

/// SHA-256 of a token's text, the key it is stored and found under. The
/// lookup is by this digest (a hash-map probe on 256 unpredictable bits),
/// so its timing tells nothing about valid tokens.
pub(crate) fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Whether a string has a token's shape (a password rarely has: it spares
/// a token look-up per password login).
pub(crate) fn looks_like_token(s: &str) -> bool {
    s.len() == 44
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A fresh token: 33 random bytes (264 bits), URL-safe base64 (44 characters).
pub(crate) fn new_token() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut b = [0u8; 33];
    rand::fill(&mut b);
    let mut s = String::with_capacity(44);
    for chunk in b.chunks(3) {
        let n = (u32::from(chunk[0]) << 16) | (u32::from(chunk[1]) << 8) | u32::from(chunk[2]);
        for shift in [18, 12, 6, 0] {
            s.push(ALPHABET[((n >> shift) & 63) as usize] as char);
        }
    }
    s
}

/// Tokens by digest.
#[derive(Default)]
pub(crate) struct Tokens {
    tokens: RwLock<HashMap<[u8; 32], TokenRecord>>,
}

impl Tokens {
    /// Adds a token; returns the digests of expired ones it dropped (to forget in the store).
    pub fn put(&self, rec: TokenRecord, now: u64) -> Vec<[u8; 32]> {
        let mut t = self.tokens.write();
        let mut expired = Vec::new();
        if t.len() >= SWEEP_ABOVE {
            t.retain(|d, r| {
                let keep = r.expires_at > now;
                if !keep {
                    expired.push(*d);
                }
                keep
            });
        }
        t.insert(rec.digest, rec);
        expired
    }

    pub fn get(&self, digest: &[u8; 32]) -> Option<TokenRecord> {
        self.tokens.read().get(digest).cloned()
    }

    pub fn remove(&self, digest: &[u8; 32]) -> Option<TokenRecord> {
        self.tokens.write().remove(digest)
    }

    /// Removes every token matching `pred`; returns their digests.
    pub fn remove_where(&self, pred: impl Fn(&TokenRecord) -> bool) -> Vec<[u8; 32]> {
        let mut gone = Vec::new();
        self.tokens.write().retain(|d, r| {
            let drop = pred(r);
            if drop {
                gone.push(*d);
            }
            !drop
        });
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_found_by_digest() {
        let a = new_token();
        assert_eq!(a.len(), 44);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(a, new_token());
        let t = Tokens::default();
        let rec = TokenRecord {
            digest: token_digest(&a),
            user: "u".into(),
            tenant: "/".into(),
            method: "password".into(),
            issued_at: 1,
            expires_at: 2,
        };
        t.put(rec, 0);
        assert!(t.get(&token_digest(&a)).is_some());
        assert!(t.get(&token_digest(&new_token())).is_none());
    }
}
