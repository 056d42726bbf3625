//! The node key: 32 random bytes in `node.key` in the data directory (mode
//! 0600, created at first start), which seals what must be stored secret but
//! recoverable (access keys' SKs). Sealing is ChaCha20-Poly1305 with a random
//! 96-bit nonce per record and the record's owner as associated data, so a
//! sealed SK cannot be moved to another access key. Anyone who can read the
//! data directory *and* `node.key` can recover the SKs: keep the key file
//! with the data (a backup needs both) and away from other users.
//!
//! The same key also signs what the gateway hands out and must recognise
//! unchanged later (DMS consumption handlers): an HMAC-SHA256 under a key
//! derived from it for that one use, so the AEAD key and the MAC key differ.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use crate::error::StoreError;

/// The key file's name in the data directory.
pub(crate) const FILE: &str = "node.key";
const NONCE_LEN: usize = 12;
/// Bytes of a signature: 128 bits, beyond guessing, short enough for a handler.
pub const SIGNATURE_LEN: usize = 16;
/// Separates the MAC key from every other use of the node key.
const MAC_KEY_LABEL: &[u8] = b"gateway node mac key v1";

/// The key that seals secrets at rest.
#[derive(Clone)]
pub(crate) struct NodeKey {
    key: Key,
    /// HMAC keyed once with the derived MAC key; each signature clones it.
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeKey(..)")
    }
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> StoreError {
    move |source| StoreError::Io { context, source }
}

impl NodeKey {
    /// A random key (memory storage keeps one for its lifetime).
    pub fn random() -> Self {
        let mut b = [0u8; 32];
        rand::fill(&mut b);
        Self::from_bytes(b)
    }

    /// Reads `dir/node.key`, creating it (mode 0600) on first start. A key
    /// file readable by others is narrowed to 0600.
    pub fn load_or_create(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let key: [u8; 32] =
                    bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| StoreError::Corrupt {
                            keyspace: "node.key",
                            reason: format!("{} is {} bytes, not 32", path.display(), bytes.len()),
                        })?;
                let mode = std::fs::metadata(&path)
                    .map_err(io(format!("reading {}", path.display())))?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), "node key was readable by others; set to 0600");
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                        .map_err(io(format!("narrowing {}", path.display())))?;
                }
                Ok(Self::from_bytes(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::random();
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(io(format!("creating {}", path.display())))?;
                f.write_all(key.key.as_slice())
                    .and_then(|()| f.sync_all())
                    .map_err(io(format!("writing {}", path.display())))?;
                crate::store::fjall::dir_sync::sync_dir(dir)
                    .map_err(io(format!("syncing {}", dir.display())))?;
                Ok(key)
            }
            Err(e) => Err(io(format!("reading {}", path.display()))(e)),
        }
    }

    /// A signature of `data` for `purpose` (a short fixed label: a handler
    /// signature cannot pass for anything else's). Truncated HMAC-SHA256.
    pub fn sign(&self, purpose: &str, data: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut mac = self.mac.clone();
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(data);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; SIGNATURE_LEN];
        out.copy_from_slice(&full[..SIGNATURE_LEN]);
        out
    }

    /// Whether `signature` is [`NodeKey::sign`]'s for `data`, compared in
    /// constant time.
    pub fn signature_matches(&self, purpose: &str, data: &[u8], signature: &[u8]) -> bool {
        signature.len() == SIGNATURE_LEN && bool::from(self.sign(purpose, data).ct_eq(signature))
    }

    fn from_bytes(bytes: [u8; 32]) -> Self {
        // HMAC accepts keys of any length, so neither call can fail.
        let mut derive = <Hmac<Sha256> as Mac>::new_from_slice(&bytes)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        derive.update(MAC_KEY_LABEL);
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(&derive.finalize().into_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        NodeKey {
            key: bytes.into(),
            mac,
        }
    }

    /// `nonce ‖ ciphertext ‖ tag` of `plain`, bound to `owner`.
    pub fn seal(&self, plain: &[u8], owner: &str) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let cipher = ChaCha20Poly1305::new(&self.key);
        let payload = Payload {
            msg: plain,
            aad: owner.as_bytes(),
        };
        // Encryption fails only for inputs of gigabytes; a secret is 40 bytes.
        let ct = cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// The plain text of a sealed record, if this key sealed it for `owner`.
    pub fn open(&self, sealed: &[u8], owner: &str) -> Result<Vec<u8>, StoreError> {
        let corrupt = |reason: &str| StoreError::Corrupt {
            keyspace: "meta",
            reason: format!("sealed secret of '{owner}': {reason}"),
        };
        if sealed.len() < NONCE_LEN {
            return Err(corrupt("too short"));
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        ChaCha20Poly1305::new(&self.key)
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: owner.as_bytes(),
                },
            )
            .map_err(|_| corrupt("does not open with this node key (node.key replaced?)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_only_for_its_owner_and_key() {
        let k = NodeKey::random();
        let s = k.seal(b"secret", "AK1");
        assert!(!s.windows(6).any(|w| w == b"secret"));
        assert_eq!(k.open(&s, "AK1").unwrap(), b"secret");
        assert!(k.open(&s, "AK2").is_err());
        assert!(NodeKey::random().open(&s, "AK1").is_err());
    }

    #[test]
    fn signatures_bind_key_purpose_and_data() {
        let k = NodeKey::random();
        let sig = k.sign("handler", b"data");
        assert!(k.signature_matches("handler", b"data", &sig));
        assert!(!k.signature_matches("handler", b"datA", &sig));
        assert!(!k.signature_matches("other", b"data", &sig));
        assert!(!k.signature_matches("handler", b"data", &sig[..15]));
        assert!(!NodeKey::random().signature_matches("handler", b"data", &sig));
    }

    #[test]
    fn key_file_is_created_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let a = NodeKey::load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = NodeKey::load_or_create(dir.path()).unwrap();
        assert_eq!(b.open(&a.seal(b"x", "o"), "o").unwrap(), b"x");
    }
}
