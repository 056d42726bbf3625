//! The MQTT 3.1.1 and 5.0 door: MQTT clients onto the gateway's engine.
//!
//! An adapter, not a second broker (nats-server's MQTT is the model): a
//! PUBLISH becomes an engine publish to `amq.topic` with the topic as routing
//! key (`/` → `.`); a session is an engine queue bound to `amq.topic` with its
//! filters; `$share/{group}/{filter}` is a consumer group on a queue of the
//! filter; retained messages and session records are kept by the engine.
//! Either protocol version is served on one port, picked by the CONNECT.
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

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gw_core::Engine;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{Anonymous, Config};
pub use error::MqttError;
pub use session::{SESSION_NS, SESSION_QUEUE_PREFIX, SHARED_QUEUE_PREFIX};

/// Accepts MQTT connections until `shutdown` is cancelled. Every connection
/// runs in a task spawned on `tracker`; on shutdown each sends MQTT 5 clients
/// DISCONNECT 0x8B (Server shutting down), closes 3.1.1 clients, and ends.
pub async fn serve(
    listener: TcpListener,
    engine: Engine,
    config: Config,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let config = Arc::new(config);
    // Restore stored sessions (and their timers) before the first client, and
    // keep them for as long as the door is open.
    let _registry = registry::Registry::for_engine(&engine);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                // Acks and deliveries are batched by the connection; Nagle
                // would only add latency.
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(cause = %e, "TCP_NODELAY");
                }
                tracker.spawn(serve_stream(
                    stream,
                    peer,
                    engine.clone(),
                    Arc::clone(&config),
                    shutdown.clone(),
                ));
            }
            Err(e) => {
                // Typically out of file descriptors: let connections close.
                tracing::warn!(cause = %e, "MQTT accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Serves one MQTT connection over any byte stream until it ends: the HTTP
/// door hands over WebSocket connections upgraded at `/mqtt` (subprotocol
/// `mqtt`) as such streams; TCP connections of [`serve`] come here too.
///
/// Not an `async fn`, which would keep its parameters in every connection's
/// task state beside the connection that took them over.
pub fn serve_stream<S>(
    stream: S,
    peer: SocketAddr,
    engine: Engine,
    config: Arc<Config>,
    shutdown: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    connection::run(stream, peer, engine, config, shutdown)
}
