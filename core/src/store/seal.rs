//! Encryption at rest: values are sealed before they reach a disk backend.
//!
//! A sealed value is `[version][key id: 4][nonce: 24][ciphertext][tag: 16]`,
//! XChaCha20-Poly1305. The nonce is random: at 192 bits two values never
//! share one however many a key seals, so nothing has to count writes per key
//! (AES-GCM's 96-bit random nonces would need a key change after about 2^32
//! messages). The associated data is the keyspace and the record's key, so a
//! sealed value moved under another key (another queue's log, another user)
//! does not open.
//!
//! The key id is a hash of the key, stored with every value: when the key is
//! changed, values written under an old one still open while that key is
//! listed among the old keys, and a wrong key is told apart from a damaged value.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The layout version of a sealed value.
const VERSION: u8 = 1;
const ID_LEN: usize = 4;
const NONCE_LEN: usize = 24;
/// Version, key id, nonce.
pub(crate) const HEADER_LEN: usize = 1 + ID_LEN + NONCE_LEN;
const TAG_LEN: usize = 16;
/// Bytes of a key.
pub const KEY_LEN: usize = 32;

/// The keys a data directory is sealed with: the current one seals every new
/// value; old ones only open what was written under them.
pub struct EncryptionKeys {
    current: SealKey,
    old: Vec<SealKey>,
}

struct SealKey {
    id: [u8; ID_LEN],
    cipher: XChaCha20Poly1305,
}

impl SealKey {
    fn new(bytes: &[u8; KEY_LEN]) -> Self {
        let digest = Sha256::new()
            .chain_update(b"gateway encryption key id\0")
            .chain_update(bytes)
            .finalize();
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&digest[..ID_LEN]);
        SealKey {
            id,
            cipher: XChaCha20Poly1305::new(Key::from_slice(bytes)),
        }
    }
}

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// It cannot be read.
    #[error("encryption key file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It holds something other than a key.
    #[error(
        "encryption key file {path}: expected 32 bytes or 64 hex digits (as `gateway keygen` writes), found {found}"
    )]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What it holds instead.
        found: String,
    },
}

/// Why a sealed value does not open.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    /// Not a sealed value (too short or another layout).
    #[error("not an encrypted value")]
    NotSealed,
    /// Sealed under a key that is not configured.
    #[error(
        "written under encryption key {0}, which is not configured (list it in [storage] old_keys)"
    )]
    UnknownKey(String),
    /// The key is known but the value does not verify: altered, or moved from another record.
    #[error("does not verify under encryption key {0} (altered or damaged)")]
    Forged(String),
}

impl EncryptionKeys {
    /// Keys from their bytes: `current` seals, `old` only open.
    pub fn new(current: &[u8; KEY_LEN], old: &[[u8; KEY_LEN]]) -> Self {
        EncryptionKeys {
            current: SealKey::new(current),
            old: old.iter().map(SealKey::new).collect(),
        }
    }

    /// Keys read from files (see [`read_key_file`]).
    pub fn from_files(current: &Path, old: &[PathBuf]) -> Result<Self, KeyFileError> {
        let current = read_key_file(current)?;
        let old = old
            .iter()
            .map(|p| read_key_file(p).map(|k| *k))
            .collect::<Result<Vec<_>, _>>()?;
        let old = Zeroizing::new(old);
        Ok(Self::new(&current, &old))
    }

    /// The current key's id, as logged and stored (8 hex digits).
    pub fn current_id(&self) -> String {
        hex_id(&self.current.id)
    }

    /// Seals what `write` appends to a buffer (it starts after the header).
    pub(crate) fn seal_with<E>(
        &self,
        aad: &[u8],
        write: impl FnOnce(Vec<u8>) -> Result<Vec<u8>, E>,
    ) -> Result<Vec<u8>, E> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let mut buf = Vec::with_capacity(HEADER_LEN + 64);
        buf.push(VERSION);
        buf.extend_from_slice(&self.current.id);
        buf.extend_from_slice(&nonce);
        let mut buf = write(buf)?;
        let tag = self
            .current
            .cipher
            .encrypt_in_place_detached(XNonce::from_slice(&nonce), aad, &mut buf[HEADER_LEN..])
            // Only refused for a plaintext beyond 256 GiB.
            .unwrap_or_default();
        buf.extend_from_slice(&tag);
        Ok(buf)
    }

    /// Seals `plain`.
    pub(crate) fn seal(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        self.seal_with(aad, |mut buf| {
            buf.extend_from_slice(plain);
            Ok::<_, std::convert::Infallible>(buf)
        })
        .unwrap_or_else(|never| match never {})
    }

    /// The plaintext of a sealed value, and whether it was sealed under an
    /// old key (so it would be sealed anew under the current one).
    pub(crate) fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<(Vec<u8>, bool), OpenError> {
        if sealed.len() < HEADER_LEN + TAG_LEN || sealed[0] != VERSION {
            return Err(OpenError::NotSealed);
        }
        let id = &sealed[1..1 + ID_LEN];
        let (key, old) = if self.current.id == id {
            (&self.current, false)
        } else {
            match self.old.iter().find(|k| k.id == id) {
                Some(k) => (k, true),
                None => return Err(OpenError::UnknownKey(hex_id(id))),
            }
        };
        let nonce = XNonce::from_slice(&sealed[1 + ID_LEN..HEADER_LEN]);
        let (body, tag) = sealed[HEADER_LEN..].split_at(sealed.len() - HEADER_LEN - TAG_LEN);
        let mut plain = body.to_vec();
        key.cipher
            .decrypt_in_place_detached(nonce, aad, &mut plain, Tag::from_slice(tag))
            .map_err(|_| OpenError::Forged(hex_id(id)))?;
        Ok((plain, old))
    }

    /// The id of the key a sealed value was written under.
    pub(crate) fn key_id_of(sealed: &[u8]) -> Option<String> {
        (sealed.len() >= HEADER_LEN && sealed[0] == VERSION).then(|| hex_id(&sealed[1..1 + ID_LEN]))
    }
}

impl std::fmt::Debug for EncryptionKeys {
    // Never the keys themselves.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptionKeys")
            .field("current", &self.current_id())
            .field(
                "old",
                &self.old.iter().map(|k| hex_id(&k.id)).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn hex_id(id: &[u8]) -> String {
    id.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Reads a key file: 32 raw bytes, or 64 hex digits (surrounding whitespace
/// ignored). A file others may read is accepted with a warning, as ssh does
/// not: refusing would stop a gateway whose key a deployment tool wrote 0644.
pub fn read_key_file(path: &Path) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyFileError> {
    let read_err = |source| KeyFileError::Read {
        path: path.to_owned(),
        source,
    };
    let bytes = Zeroizing::new(std::fs::read(path).map_err(read_err)?);
    warn_if_readable_by_others(path);
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    if bytes.len() == KEY_LEN {
        key.copy_from_slice(&bytes);
        return Ok(key);
    }
    let text = bytes.trim_ascii();
    let malformed = || KeyFileError::Malformed {
        path: path.to_owned(),
        found: format!("{} bytes", bytes.len()),
    };
    if text.len() != 2 * KEY_LEN {
        return Err(malformed());
    }
    for (i, pair) in text.chunks(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        match (digit(pair[0]), digit(pair[1])) {
            (Some(hi), Some(lo)) => key[i] = (hi * 16 + lo) as u8,
            _ => return Err(malformed()),
        }
    }
    Ok(key)
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(file = %path.display(), "encryption key file is readable by other users; chmod 600 it");
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path) {}

/// Writes a new random key to `path` as 64 hex digits, readable by its owner
/// only; refuses to replace an existing file. Returns the key's id.
pub fn generate_key_file(path: &Path) -> std::io::Result<String> {
    use std::io::Write;
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    rand::fill(&mut key[..]);
    let mut text = Zeroizing::new(String::with_capacity(2 * KEY_LEN + 1));
    for b in key.iter() {
        let _ = write!(text, "{b:02x}");
    }
    text.push('\n');
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(hex_id(&SealKey::new(&key).id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_its_place() {
        let keys = EncryptionKeys::new(&[7; KEY_LEN], &[]);
        let sealed = keys.seal(b"log\0k1", b"hello marker");
        assert!(!sealed.windows(6).any(|w| w == b"marker"));
        assert_eq!(
            keys.open(b"log\0k1", &sealed).unwrap(),
            (b"hello marker".to_vec(), false)
        );
        // Moved under another key.
        assert!(matches!(
            keys.open(b"log\0k2", &sealed),
            Err(OpenError::Forged(_))
        ));
        // One bit flipped anywhere after the header.
        for i in HEADER_LEN..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(matches!(
                keys.open(b"log\0k1", &bad),
                Err(OpenError::Forged(_))
            ));
        }
        // Another key.
        let other = EncryptionKeys::new(&[8; KEY_LEN], &[]);
        assert!(matches!(
            other.open(b"log\0k1", &sealed),
            Err(OpenError::UnknownKey(_))
        ));
        assert!(matches!(
            keys.open(b"", b"short"),
            Err(OpenError::NotSealed)
        ));
    }

    #[test]
    fn an_old_key_still_opens_what_it_sealed() {
        let before = EncryptionKeys::new(&[1; KEY_LEN], &[]);
        let sealed = before.seal(b"a", b"v");
        let after = EncryptionKeys::new(&[2; KEY_LEN], &[[1; KEY_LEN]]);
        assert_eq!(after.open(b"a", &sealed).unwrap(), (b"v".to_vec(), true));
        assert_ne!(after.current_id(), before.current_id());
        assert_eq!(
            EncryptionKeys::key_id_of(&sealed),
            Some(before.current_id())
        );
        // Two seals of one value differ (random nonces).
        assert_ne!(after.seal(b"a", b"v"), after.seal(b"a", b"v"));
    }

    #[test]
    fn key_files_round_trip_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let id = generate_key_file(&path).unwrap();
        let keys = EncryptionKeys::from_files(&path, &[]).unwrap();
        assert_eq!(keys.current_id(), id);
        assert!(generate_key_file(&path).is_err(), "never replaces a key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let raw = dir.path().join("raw");
        std::fs::write(&raw, [9u8; KEY_LEN]).unwrap();
        assert!(EncryptionKeys::from_files(&raw, std::slice::from_ref(&path)).is_ok());
        for bad in [&b"too short"[..], &[b'z'; 64][..], &[b'a'; 63][..]] {
            std::fs::write(&raw, bad).unwrap();
            let e = EncryptionKeys::from_files(&raw, &[])
                .unwrap_err()
                .to_string();
            assert!(e.contains("expected 32 bytes or 64 hex digits"), "{e}");
        }
        let e = EncryptionKeys::from_files(&dir.path().join("none"), &[]).unwrap_err();
        assert!(e.to_string().contains("none"), "{e}");
    }
}
