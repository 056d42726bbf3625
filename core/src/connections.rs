//! Open client connections of every door, so operators can list and close
//! them whatever protocol they speak. Adapters register each connection with
//! a closer (how to close it from outside) and hold the returned guard for the
//! connection's lifetime.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::message::UnixMillis;

/// What the management API shows of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// Engine-wide id; also the owner id of the connection's exclusive queues.
    pub id: u64,
    /// "amqp", "mqtt", "http", …
    pub protocol: &'static str,
    /// Client address.
    pub peer: String,
    /// Authenticated user.
    pub user: String,
    /// Tenant (vhost) in use.
    pub tenant: String,
    /// Client's own name for itself (MQTT client id, AMQP connection_name).
    pub client: String,
    /// When it connected.
    pub connected_at: UnixMillis,
}

type Closer = Arc<dyn Fn(&str) + Send + Sync>;

#[derive(Default)]
pub(crate) struct Connections {
    next: AtomicU64,
    open: Mutex<BTreeMap<u64, (ConnectionInfo, Closer)>>,
}

impl Connections {
    pub fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn register(self: &Arc<Self>, info: ConnectionInfo, closer: Closer) -> ConnectionGuard {
        let id = info.id;
        self.open.lock().insert(id, (info, closer));
        ConnectionGuard {
            registry: Arc::clone(self),
            id,
        }
    }

    pub fn list(&self) -> Vec<ConnectionInfo> {
        self.open.lock().values().map(|(i, _)| i.clone()).collect()
    }

    pub fn close(&self, id: u64, reason: &str) -> Result<()> {
        let closer = self.open.lock().get(&id).map(|(_, c)| Arc::clone(c));
        match closer {
            Some(c) => {
                c(reason);
                Ok(())
            }
            None => Err(Error::not_found("connection", id.to_string())),
        }
    }

    pub fn update(&self, id: u64, f: impl FnOnce(&mut ConnectionInfo)) {
        if let Some((info, _)) = self.open.lock().get_mut(&id) {
            f(info);
        }
    }
}

/// Unregisters its connection when dropped.
pub struct ConnectionGuard {
    registry: Arc<Connections>,
    id: u64,
}

impl ConnectionGuard {
    /// The connection's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Changes what is shown (the tenant and user become known after the handshake).
    pub fn update(&self, f: impl FnOnce(&mut ConnectionInfo)) {
        self.registry.update(self.id, f);
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.registry.open.lock().remove(&self.id);
    }
}

impl std::fmt::Debug for ConnectionGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionGuard")
            .field("id", &self.id)
            .finish()
    }
}
