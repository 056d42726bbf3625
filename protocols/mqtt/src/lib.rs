//! The MQTT 3.1.1 and 5.0 door: MQTT clients onto the gateway's engine.
//!
//! An adapter, not a second broker (nats-server's MQTT is the model): a
//! PUBLISH becomes an engine publish to `amq.topic` with the topic as routing
//! key (`/` → `.`); a session is an engine queue bound to `amq.topic` with its
//! filters; `$share/{group}/{filter}` is a consumer group on a queue of the
//! filter; retained messages and session records are kept by the engine.
//! Either protocol version is served on one port, picked by the CONNECT.
//! Connections arrive through [`MqttDoor`] (this file).
//!
//! # Layout
//! - [`codec`]: packets in and out (rumqttc's codecs, the server-side
//!   validation, and fast encoders for what the server sends most).
//! - [`topic`]: topic names and filters, matching, `$share`, their AMQP form.
//! - [`properties`]: PUBLISH ↔ [`gw_core::Message`].
//! - `connection.rs`: the byte stream, buffers, keep alive, the task loop.
//! - `client.rs`: a connected client's state; `handlers/`: one file per
//!   packet family working on it; `delivery.rs`: engine deliveries → PUBLISH.
//! - `session.rs`: session records and subscriptions; `registry.rs`: live
//!   clients (takeover), parked sessions (expiry, delayed wills), share groups;
//!   `signal.rs`: how a connection is asked to close.
//! - `retain.rs`, `will.rs`: retained and will messages; `tags.rs`: the
//!   `x-tags` filter of a SUBSCRIBE.
//! - `error.rs`: reason codes, and every engine error's MQTT code.
//! - [`config`]: the `[mqtt]` table.

mod client;
pub mod codec;
pub mod config;
mod connection;
mod delivery;
mod error;
mod handlers;
pub mod properties;
mod registry;
mod retain;
mod session;
mod signal;
mod tags;
pub mod topic;
mod will;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use gw_core::Engine;
use gw_listen::{Door, Stream};
use tokio_util::sync::CancellationToken;

pub use config::{Anonymous, Config};
pub use error::MqttError;
pub use session::{SESSION_NS, SESSION_QUEUE_PREFIX, SHARED_QUEUE_PREFIX};

/// The MQTT door: hand it connections through `gw_listen` (its accept loop,
/// or [`gw_listen::admit`] for WebSocket streams the HTTP door upgraded at
/// `/mqtt`). Either protocol version is served on one stream, picked by the
/// CONNECT. On `shutdown` each connection sends MQTT 5 clients DISCONNECT
/// 0x8B (Server shutting down), closes 3.1.1 clients, and ends.
#[derive(Clone)]
pub struct MqttDoor {
    engine: Engine,
    /// Stored sessions (and their timers), restored before the first client
    /// and kept while the door can take connections.
    registry: Arc<registry::Registry>,
    config: Arc<Config>,
    shutdown: CancellationToken,
}

impl MqttDoor {
    /// The door for `engine`; restores the stored sessions now.
    pub fn new(engine: Engine, config: Config, shutdown: CancellationToken) -> Self {
        MqttDoor {
            registry: registry::Registry::for_engine(&engine),
            engine,
            config: Arc::new(config),
            shutdown,
        }
    }
}

impl Door for MqttDoor {
    const NAME: &'static str = "mqtt";

    /// TCP and WebSocket connections together.
    fn max_connections(&self) -> usize {
        self.config.max_connections
    }

    fn serve<S: Stream>(
        &self,
        stream: S,
        peer: SocketAddr,
    ) -> impl Future<Output = ()> + Send + 'static {
        connection::run(
            stream,
            peer,
            self.engine.clone(),
            Arc::clone(&self.registry),
            Arc::clone(&self.config),
            self.shutdown.clone(),
        )
    }

    /// CONNACK 0x97 Quota exceeded (5.0) / 0x03 Server unavailable (3.1.1)
    /// once the CONNECT is read; closed if none comes within two seconds.
    fn refuse<S: Stream>(
        &self,
        stream: S,
        _peer: SocketAddr,
    ) -> impl Future<Output = ()> + Send + 'static {
        connection::refuse(stream, Arc::clone(&self.config), self.shutdown.clone())
    }
}
