//! Helpers shared by the engine's tests.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::sync::Arc;
use std::time::Duration;

use gw_core::{
    ConsumerSpec, DEFAULT_GROUP, Delivery, EncryptionKeys, Engine, EngineConfig, MemoryStore,
    Message, Queue, QueueSettings, QueueSpec, SyncPolicy,
};

pub fn open(dir: &std::path::Path) -> Engine {
    let mut c = EngineConfig::new(dir);
    c.sync = SyncPolicy::Never;
    Engine::open(c).expect("engine opens")
}

/// Where a test's engine keeps its state. Opening again is a restart: the
/// new engine recovers what the previous one stored.
pub enum Backend {
    /// fjall in a temporary data directory.
    Fjall(tempfile::TempDir),
    /// Memory that outlives the engines opened on it.
    Memory(MemoryStore),
    /// fjall with encryption at rest: every value sealed under this key.
    FjallEncrypted(tempfile::TempDir, Arc<EncryptionKeys>),
}

impl Backend {
    pub fn fjall() -> Self {
        Backend::Fjall(tempfile::tempdir().expect("temporary directory"))
    }

    pub fn memory() -> Self {
        Backend::Memory(MemoryStore::new())
    }

    pub fn fjall_encrypted() -> Self {
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        Backend::FjallEncrypted(
            tempfile::tempdir().expect("temporary directory"),
            Arc::new(EncryptionKeys::new(&key, &[])),
        )
    }

    /// The engine's configuration on this backend (no fsync: tests only
    /// need writes to reach the operating system).
    pub fn config(&self) -> EngineConfig {
        let mut c = match self {
            Backend::Fjall(dir) => EngineConfig::new(dir.path()),
            Backend::Memory(store) => EngineConfig::in_memory(store),
            Backend::FjallEncrypted(dir, keys) => EngineConfig {
                encryption: Some(Arc::clone(keys)),
                ..EngineConfig::new(dir.path())
            },
        };
        c.sync = SyncPolicy::Never;
        c
    }

    /// Opens an engine on it (again: a restart).
    pub fn open(&self) -> Engine {
        Engine::open(self.config()).expect("engine opens")
    }
}

pub fn msg(key: &str, body: &str) -> Message {
    let mut m = Message::new(body.to_owned());
    m.routing_key = key.into();
    m.properties.delivery_mode = Some(2);
    m
}

pub fn spec(settings: QueueSettings) -> QueueSpec {
    QueueSpec {
        durable: true,
        settings,
        default_group: true,
        ..Default::default()
    }
}

pub fn body(d: &Delivery) -> String {
    String::from_utf8_lossy(&d.message.body).into_owned()
}

/// Takes everything available now (waiting briefly for the first).
pub async fn drain(q: &Queue, group: &str, ack: bool) -> Vec<Delivery> {
    let c = q
        .consume(
            group,
            ConsumerSpec {
                no_ack: ack,
                ..Default::default()
            },
        )
        .expect("consume");
    let mut out = Vec::new();
    while let Ok(Ok(_)) =
        tokio::time::timeout(Duration::from_millis(200), c.take(1000, &mut out)).await
    {}
    out
}

pub fn default_group() -> &'static str {
    DEFAULT_GROUP
}

/// Takes exactly `n` deliveries (no-ack), failing after 5 s.
pub async fn take_n(q: &Queue, group: &str, n: usize) -> Vec<Delivery> {
    let c = q
        .consume(
            group,
            ConsumerSpec {
                no_ack: true,
                ..Default::default()
            },
        )
        .expect("consume");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        while out.len() < n {
            c.take(n - out.len(), &mut out).await.expect("take");
        }
    })
    .await
    .expect("deliveries arrive");
    out
}
