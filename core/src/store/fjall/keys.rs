//! How records are keyed in fjall. All keys sort the way recovery scans
//! them: big-endian integers, and strings with a length prefix so that one
//! name can never be a prefix of another's key. Changing any of this changes
//! the on-disk format.

use super::codec::encode;
use crate::routing::spec::BindingSpec;

/// Meta keyspace record kinds (first key byte).
pub(crate) mod kind {
    pub const FORMAT: u8 = b'f';
    pub const COUNTER: u8 = b'n';
    pub const TENANT: u8 = b't';
    pub const USER: u8 = b'u';
    pub const EXCHANGE: u8 = b'x';
    pub const BINDING: u8 = b'b';
    pub const QUEUE: u8 = b'q';
    pub const QUEUE_STATE: u8 = b's';
    pub const GROUP: u8 = b'g';
    pub const SHARED_REFS: u8 = b'c';
    pub const RETAINED: u8 = b'r';
    pub const ADAPTER_STATE: u8 = b'k';
    pub const TOPIC_PERMISSION: u8 = b'P';
    /// Present in an encrypted data directory: a known value sealed under
    /// the current key (`check_encryption` in mod.rs).
    pub const ENCRYPTION: u8 = b'e';
}

/// Builds a key from parts.
#[derive(Default)]
struct KeyBuf(Vec<u8>);

impl KeyBuf {
    pub fn new(kind: u8) -> Self {
        let mut v = Vec::with_capacity(32);
        v.push(kind);
        KeyBuf(v)
    }

    /// A length-prefixed string (names are at most 255 bytes; longer ones are cut,
    /// which cannot happen for validated names).
    pub fn str(mut self, s: &str) -> Self {
        let b = s.as_bytes();
        let n = b.len().min(255);
        self.0.push(n as u8);
        self.0.extend_from_slice(&b[..n]);
        self
    }

    /// Raw bytes with a 2-byte length prefix (for long adapter keys).
    pub fn bytes(mut self, b: &[u8]) -> Self {
        let n = b.len().min(u16::MAX as usize);
        self.0.extend_from_slice(&(n as u16).to_be_bytes());
        self.0.extend_from_slice(&b[..n]);
        self
    }

    pub fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn done(self) -> Vec<u8> {
        self.0
    }
}

pub(crate) fn counter(name: &str) -> Vec<u8> {
    KeyBuf::new(kind::COUNTER).str(name).done()
}

pub(crate) fn tenant(name: &str) -> Vec<u8> {
    KeyBuf::new(kind::TENANT).str(name).done()
}

pub(crate) fn user(name: &str) -> Vec<u8> {
    KeyBuf::new(kind::USER).str(name).done()
}

pub(crate) fn topic_permission(user: &str, tenant: &str, exchange: &str) -> Vec<u8> {
    KeyBuf::new(kind::TOPIC_PERMISSION)
        .str(user)
        .str(tenant)
        .str(exchange)
        .done()
}

pub(crate) fn exchange(tenant: &str, name: &str) -> Vec<u8> {
    KeyBuf::new(kind::EXCHANGE).str(tenant).str(name).done()
}

/// Bindings are keyed by their whole (encoded) spec: there is nothing shorter
/// that identifies one.
pub(crate) fn binding(tenant: &str, spec: &BindingSpec) -> Vec<u8> {
    KeyBuf::new(kind::BINDING)
        .str(tenant)
        .bytes(&encode(spec))
        .done()
}

pub(crate) fn queue(id: u64) -> Vec<u8> {
    KeyBuf::new(kind::QUEUE).u64(id).done()
}

pub(crate) fn queue_state(id: u64) -> Vec<u8> {
    KeyBuf::new(kind::QUEUE_STATE).u64(id).done()
}

/// Every group of a queue starts with this.
pub(crate) fn groups_of(queue: u64) -> Vec<u8> {
    KeyBuf::new(kind::GROUP).u64(queue).done()
}

pub(crate) fn group(queue: u64, group: &str) -> Vec<u8> {
    KeyBuf::new(kind::GROUP).u64(queue).str(group).done()
}

pub(crate) fn shared_refs(body: u64) -> Vec<u8> {
    KeyBuf::new(kind::SHARED_REFS).u64(body).done()
}

/// The body id back from a shared-refs key.
pub(crate) fn parse_shared_refs(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(1..9)?.try_into().ok()?))
}

pub(crate) fn retained(tenant: &str, topic: &str) -> Vec<u8> {
    KeyBuf::new(kind::RETAINED)
        .str(tenant)
        .bytes(topic.as_bytes())
        .done()
}

/// Every record of an adapter namespace starts with this.
pub(crate) fn adapter_namespace(namespace: &str) -> Vec<u8> {
    KeyBuf::new(kind::ADAPTER_STATE).str(namespace).done()
}

pub(crate) fn adapter(namespace: &str, key: &[u8]) -> Vec<u8> {
    KeyBuf::new(kind::ADAPTER_STATE)
        .str(namespace)
        .bytes(key)
        .done()
}

/// The adapter's own key back from a full key of its namespace.
pub(crate) fn parse_adapter<'a>(namespace_prefix: &[u8], key: &'a [u8]) -> Option<&'a [u8]> {
    let rest = key.get(namespace_prefix.len()..)?;
    let len = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
    rest.get(2..2 + len)
}

/// Key of a queue log entry: queue id then sequence number.
pub(crate) fn log_key(queue: u64, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&queue.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Splits a log key back into (queue, seq).
pub(crate) fn parse_log_key(k: &[u8]) -> Option<(u64, u64)> {
    let q = u64::from_be_bytes(k.get(..8)?.try_into().ok()?);
    let s = u64::from_be_bytes(k.get(8..16)?.try_into().ok()?);
    Some((q, s))
}

/// Key of a delayed message: due time then a unique id.
pub(crate) fn delay_key(due: u64, id: u64) -> [u8; 16] {
    log_key(due, id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_like_their_parts() {
        assert!(log_key(1, 5) < log_key(1, 6));
        assert!(log_key(1, u64::MAX) < log_key(2, 0));
        assert_eq!(parse_log_key(&log_key(7, 9)), Some((7, 9)));
        let a = KeyBuf::new(kind::QUEUE).str("ab").str("c").done();
        let b = KeyBuf::new(kind::QUEUE).str("a").str("bc").done();
        assert_ne!(a, b);
    }
}
