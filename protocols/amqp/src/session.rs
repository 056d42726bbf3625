//! What the tasks of one open connection share: the engine and tenant, the
//! authenticated user, the negotiated limits, the outbox and the reader's
//! event queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use amq_protocol::protocol::AMQPClass;
use amq_protocol::types::{AMQPValue, FieldTable};
use gw_core::{Access, Engine, Principal, Tenant, TopicRules};
use parking_lot::RwLock;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::codec::encode_method;
use crate::error::{AmqpError, AmqpResult};
use crate::outbox::Outbox;

/// Capabilities the client announced in `connection.start-ok`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientCapabilities {
    /// The client understands a server-sent `basic.cancel`.
    pub consumer_cancel_notify: bool,
    /// The client understands `connection.blocked` / `unblocked`.
    pub connection_blocked: bool,
    /// The client expects `connection.close` 403 after a failed login.
    pub authentication_failure_close: bool,
}

impl ClientCapabilities {
    /// Reads the `capabilities` table of the client properties.
    pub fn from_client_properties(props: &FieldTable) -> Self {
        let caps = match props.inner().get("capabilities") {
            Some(AMQPValue::FieldTable(t)) => t.clone(),
            _ => FieldTable::default(),
        };
        let on = |k: &str| matches!(caps.inner().get(k), Some(AMQPValue::Boolean(true)));
        ClientCapabilities {
            consumer_cancel_notify: on("consumer_cancel_notify"),
            connection_blocked: on("connection.blocked"),
            authentication_failure_close: on("authentication_failure_close"),
        }
    }
}

/// Something a task tells the connection's reader.
#[derive(Debug)]
pub enum Event {
    /// The engine cancelled a consumer (its queue was deleted); the task
    /// already told the client.
    ConsumerGone {
        /// The channel.
        channel: u16,
        /// The consumer tag.
        tag: String,
        /// The task's id (a newer consumer may reuse the tag).
        id: u64,
    },
}

/// One open connection, as its tasks see it.
pub struct Session {
    /// The tenant the connection opened (its vhost).
    pub tenant: Tenant,
    /// The authenticated user (`connection.update-secret` may replace it).
    principal: RwLock<Principal>,
    /// Bumped whenever the principal changes, so cached permission checks expire.
    principal_epoch: AtomicU64,
    /// The user's topic permissions on this vhost (`None`: every routing key
    /// of every topic exchange is allowed).
    topic_rules: RwLock<Option<Arc<TopicRules>>>,
    /// When the login's token expires (ms since the epoch); 0 for a password
    /// login. `connection.update-secret` with a newer token moves it.
    token_expires_at: AtomicU64,
    /// Engine-wide id: owner of the connection's exclusive queues.
    pub conn_id: u64,
    /// Negotiated frame size.
    pub frame_max: u32,
    /// Largest message body accepted.
    pub max_message_size: u64,
    /// Frames out.
    pub outbox: Arc<Outbox>,
    /// What the client understands.
    pub caps: ClientCapabilities,
    /// Where consumer tasks are spawned.
    pub tracker: TaskTracker,
    /// Tells the reader what tasks noticed.
    pub events: mpsc::UnboundedSender<Event>,
    /// The engine (for durability barriers).
    pub engine: Engine,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("conn_id", &self.conn_id)
            .field("tenant", &self.tenant.name())
            .finish()
    }
}

/// How [`Session::new`] is filled in.
pub struct SessionInit {
    /// The tenant.
    pub tenant: Tenant,
    /// The user.
    pub principal: Principal,
    /// When the login's token expires, for a token login.
    pub token_expires_at: Option<u64>,
    /// Connection id.
    pub conn_id: u64,
    /// Negotiated frame size.
    pub frame_max: u32,
    /// Largest body.
    pub max_message_size: u64,
    /// Frames out.
    pub outbox: Arc<Outbox>,
    /// Client capabilities.
    pub caps: ClientCapabilities,
    /// Task tracker.
    pub tracker: TaskTracker,
    /// Reader events.
    pub events: mpsc::UnboundedSender<Event>,
    /// The engine.
    pub engine: Engine,
}

impl Session {
    /// A session from its parts.
    pub fn new(init: SessionInit) -> Self {
        let topic_rules = init
            .principal
            .topic_rules(init.tenant.name(), "")
            .map(Arc::new);
        Session {
            topic_rules: RwLock::new(topic_rules),
            tenant: init.tenant,
            principal: RwLock::new(init.principal),
            principal_epoch: AtomicU64::new(0),
            token_expires_at: AtomicU64::new(init.token_expires_at.unwrap_or(0)),
            conn_id: init.conn_id,
            frame_max: init.frame_max,
            max_message_size: init.max_message_size,
            outbox: init.outbox,
            caps: init.caps,
            tracker: init.tracker,
            events: init.events,
            engine: init.engine,
        }
    }

    /// The tenant's name (the vhost, in texts).
    pub fn vhost(&self) -> &str {
        self.tenant.name()
    }

    /// The authenticated user's name.
    pub fn user(&self) -> String {
        self.principal.read().user().to_owned()
    }

    /// Replaces the user after `connection.update-secret`.
    pub fn set_principal(&self, p: Principal) {
        *self.topic_rules.write() = p.topic_rules(self.vhost(), "").map(Arc::new);
        *self.principal.write() = p;
        self.principal_epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// When the login's token expires, for a connection that logged in
    /// with a token.
    pub fn token_expires_at(&self) -> Option<u64> {
        match self.token_expires_at.load(Ordering::Acquire) {
            0 => None,
            at => Some(at),
        }
    }

    /// A token login's new token (`connection.update-secret`).
    pub fn set_token(&self, p: Principal, expires_at: u64) {
        self.set_principal(p);
        self.token_expires_at.store(expires_at, Ordering::Release);
    }

    /// Changes whenever the principal does.
    pub fn principal_epoch(&self) -> u64 {
        self.principal_epoch.load(Ordering::Acquire)
    }

    /// Checks a permission like RabbitMQ; `kind` is "queue" or "exchange" and
    /// the default exchange is checked as `amq.default`.
    pub fn check(&self, access: Access, kind: &str, name: &str) -> AmqpResult {
        let p = self.principal.read();
        p.check(self.vhost(), access, name).map_err(|_| {
            let what = match access {
                Access::Configure => "configure",
                Access::Write => "write",
                Access::Read => "read",
            };
            let name = if name.is_empty() { "amq.default" } else { name };
            AmqpError::access_refused(format!(
                "{what} access to {kind} '{name}' in vhost '{}' refused for user '{}'",
                self.vhost(),
                p.user()
            ))
        })
    }

    /// Topic authorisation (RabbitMQ's topic permissions): a routing key
    /// published (`Write`) or a binding key bound (`Read`) on a topic
    /// exchange. Other exchange kinds are not governed.
    pub fn check_topic(&self, access: Access, exchange: &str, key: &str) -> AmqpResult {
        // Most users have no topic permissions: a read of the lock and no
        // exchange lookup on their publishes.
        let guard = self.topic_rules.read();
        let Some(rules) = guard.as_ref() else {
            return Ok(());
        };
        let is_topic = self
            .tenant
            .exchange(exchange)
            .is_ok_and(|x| x.spec.kind == gw_core::ExchangeKind::Topic);
        if !is_topic {
            return Ok(());
        }
        rules
            .check(exchange, access, key)
            .map_err(|e| AmqpError::access_refused(e.to_string()))
    }

    /// Passes when the user has any of the three permissions on the resource
    /// (what a passive declare needs).
    pub fn check_any(&self, kind: &str, name: &str) -> AmqpResult {
        let first = self.check(Access::Configure, kind, name);
        if first.is_ok()
            || self.check(Access::Write, kind, name).is_ok()
            || self.check(Access::Read, kind, name).is_ok()
        {
            return Ok(());
        }
        first
    }

    /// Sends a method on a channel.
    pub fn send(&self, channel: u16, method: &AMQPClass) {
        self.outbox.push(|buf| {
            if let Err(e) = encode_method(buf, channel, method) {
                tracing::error!(error = %e, ?method, "cannot encode a reply");
            }
        });
    }

    /// `queue 'name' in vhost 'v'`: how RabbitMQ names a resource in texts.
    pub fn resource(&self, kind: &str, name: &str) -> String {
        format!("{kind} '{name}' in vhost '{}'", self.vhost())
    }
}
