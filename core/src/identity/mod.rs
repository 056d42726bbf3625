//! Identity the cloud way, beside users and passwords (`crate::auth`):
//!
//! - **projects** (`projects.rs`): every tenant has an id shaped like a cloud
//!   project id (32 lower-case hex), generated once and stored;
//! - **access keys** (`access_keys.rs`): up to [`MAX_ACCESS_KEYS`] per user, an
//!   AK (20 upper-case alphanumerics) and an SK (40 characters) that signs
//!   requests. An SK is an HMAC key, so the server must be able to recover it:
//!   it is stored sealed with the node key (`node_key.rs`), never in clear;
//! - **tokens** (`tokens.rs`): random bearer tokens scoped to one project
//!   and expiring; only their SHA-256 is stored.
//!
//! The registry here holds them in memory; the engine (`engine/identity.rs`)
//! writes every change to the store, as it does for users.

mod access_keys;
mod node_key;
mod projects;
mod tokens;

pub use access_keys::{AccessKeyInfo, MAX_ACCESS_KEYS};
pub(crate) use access_keys::{AccessKeyRecord, AccessKeys, new_pair};
pub(crate) use node_key::NodeKey;
pub use node_key::SIGNATURE_LEN;
pub use projects::is_project_id;
pub(crate) use projects::{ProjectRecord, Projects, new_project_id};
pub use tokens::{DEFAULT_TOKEN_TTL_MS, TokenInfo};
pub(crate) use tokens::{TokenRecord, Tokens, looks_like_token, new_token, token_digest};

use sha2::{Digest, Sha256};

/// A user's id, shaped like a cloud user id (32 lower-case hex). Derived
/// from the name, so it needs no record of its own and is the same on every
/// node; a user deleted and created again under its name gets the same id.
pub fn user_id(name: &str) -> String {
    let d = Sha256::digest(format!("gateway-user:{name}").as_bytes());
    hex32(&d[..16])
}

/// Lower-case hex of 16 bytes.
pub(crate) fn hex32(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_stable_and_shaped_like_project_ids() {
        assert_eq!(user_id("guest"), user_id("guest"));
        assert_ne!(user_id("guest"), user_id("guest2"));
        assert!(is_project_id(&user_id("guest")));
    }
}
