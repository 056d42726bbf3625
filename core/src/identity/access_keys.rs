//! Access keys (AK/SK), as Huawei Cloud IAM issues them: an AK of 20
//! upper-case alphanumerics that names the key, and an SK of 40
//! alphanumerics, shown once at creation, that signs requests. A user has
//! at most [`MAX_ACCESS_KEYS`]. The SK is stored sealed (`node_key.rs`) and
//! held open in memory only, to verify signatures.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

/// Access keys one user may have (Huawei IAM's limit).
pub const MAX_ACCESS_KEYS: usize = 2;
const AK_LEN: usize = 20;
const SK_LEN: usize = 40;
const UPPER_DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// An access key as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct AccessKeyRecord {
    /// The AK.
    pub access: String,
    /// The user it belongs to.
    pub user: String,
    /// The SK, sealed with the node key for this AK.
    pub sealed_secret: Vec<u8>,
    /// Inactive keys verify nothing.
    pub active: bool,
    /// Free text given at creation.
    pub description: String,
    /// ms since the epoch.
    pub created_at: u64,
}

/// What may be shown of an access key (never its SK).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessKeyInfo {
    /// The AK.
    pub access: String,
    /// Its user.
    pub user: String,
    /// Active or not.
    pub active: bool,
    /// Free text.
    pub description: String,
    /// ms since the epoch.
    pub created_at: u64,
}

impl From<&AccessKeyRecord> for AccessKeyInfo {
    fn from(r: &AccessKeyRecord) -> Self {
        AccessKeyInfo {
            access: r.access.clone(),
            user: r.user.clone(),
            active: r.active,
            description: r.description.clone(),
            created_at: r.created_at,
        }
    }
}

/// `len` characters drawn uniformly from `alphabet` (rejection sampling, so
/// no character is likelier than another).
fn random_string(alphabet: &[u8], len: usize) -> String {
    let n = alphabet.len();
    let limit = 256 - 256 % n;
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        rand::fill(&mut buf);
        for &b in &buf {
            if (b as usize) < limit && out.len() < len {
                out.push(alphabet[b as usize % n] as char);
            }
        }
    }
    out
}

/// A fresh (AK, SK) pair.
pub(crate) fn new_pair() -> (String, String) {
    (
        random_string(UPPER_DIGITS, AK_LEN),
        random_string(ALNUM, SK_LEN),
    )
}

struct Entry {
    rec: AccessKeyRecord,
    secret: Arc<[u8]>,
}

/// Every access key, by AK, with its SK open.
#[derive(Default)]
pub(crate) struct AccessKeys {
    keys: RwLock<HashMap<String, Entry>>,
}

impl AccessKeys {
    pub fn put(&self, rec: AccessKeyRecord, secret: Arc<[u8]>) {
        self.keys
            .write()
            .insert(rec.access.clone(), Entry { rec, secret });
    }

    pub fn remove(&self, access: &str) -> Option<AccessKeyRecord> {
        self.keys.write().remove(access).map(|e| e.rec)
    }

    pub fn get(&self, access: &str) -> Option<AccessKeyRecord> {
        self.keys.read().get(access).map(|e| e.rec.clone())
    }

    /// The record and open SK of a key.
    pub fn secret(&self, access: &str) -> Option<(AccessKeyRecord, Arc<[u8]>)> {
        self.keys
            .read()
            .get(access)
            .map(|e| (e.rec.clone(), Arc::clone(&e.secret)))
    }

    /// A user's keys, oldest first.
    pub fn of_user(&self, user: &str) -> Vec<AccessKeyRecord> {
        let mut v: Vec<AccessKeyRecord> = self
            .keys
            .read()
            .values()
            .filter(|e| e.rec.user == user)
            .map(|e| e.rec.clone())
            .collect();
        v.sort_by(|a, b| (a.created_at, &a.access).cmp(&(b.created_at, &b.access)));
        v
    }

    pub fn all(&self) -> Vec<AccessKeyRecord> {
        let mut v: Vec<AccessKeyRecord> =
            self.keys.read().values().map(|e| e.rec.clone()).collect();
        v.sort_by(|a, b| (&a.user, a.created_at).cmp(&(&b.user, b.created_at)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_shaped_like_iam_keys() {
        let (ak, sk) = new_pair();
        assert_eq!(ak.len(), 20);
        assert!(ak.bytes().all(|b| UPPER_DIGITS.contains(&b)), "{ak}");
        assert_eq!(sk.len(), 40);
        assert!(sk.bytes().all(|b| b.is_ascii_alphanumeric()), "{sk}");
        assert_ne!(new_pair().0, ak);
    }
}
