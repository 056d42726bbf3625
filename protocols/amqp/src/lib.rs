//! The AMQP 0-9-1 door of the gateway: RabbitMQ clients onto the engine.
//!
//! # Layout
//! - [`AmqpDoor`] and [`Config`] (this file): the door the gateway's accept
//!   layer (`gw-listen`) serves and refuses connections through, and the
//!   engine's backpressure, sampled for every connection.
//! - `connection.rs`: one connection's reader loop: frames in, dispatch to
//!   channels, heartbeats in, closing (`connection/control.rs`: channel 0 —
//!   close, update-secret, blocked/unblocked); `handshake.rs` before it
//!   (Start/StartOk/Tune/TuneOk/Open, PLAIN and AMQPLAIN); `io.rs` reads frames.
//! - `outbox.rs`: the connection's write buffer, written directly by whoever
//!   finds the socket idle, else by the writer task (heartbeats out).
//! - `session.rs`: what a connection's tasks share once it is open.
//! - `channel.rs`: per-channel state and method dispatch; `tags.rs`: delivery
//!   tags ↔ engine deliveries; `consumer.rs`: one task per `basic.consume`;
//!   `confirms.rs`: publisher confirms and other replies that wait for the disk.
//! - `methods/`: exchange, queue, basic, confirm and tx methods, one file per class.
//! - `args.rs`: `x-*` arguments ↔ queue settings and consumer options.
//! - `error.rs`: engine and protocol errors → reply codes, in one place.
//! - [`codec`], [`assembler`], [`properties`]: frames, content assembly,
//!   message properties (pure, fuzzed).
//!
//! The mapping onto the engine follows RabbitMQ's documented behaviour; see
//! `DESIGN.md` (protocol mapping) and the notes in each module.

// Tests may unwrap; the library may not (workspace lint `clippy::unwrap_used`).
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod assembler;
pub mod codec;
pub mod properties;
pub(crate) mod table;

mod args;
mod channel;
mod confirms;
mod connection;
mod consumer;
mod error;
mod handshake;
mod io;
mod methods;
mod outbox;
mod session;
mod tags;
mod window;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gw_core::Engine;
use gw_listen::{Door, Stream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use error::{AmqpError, code_name};

/// Settings read from the `[amqp]` table of the gateway's TOML file (without `listen`).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Largest frame, in bytes, offered in `connection.tune` (RabbitMQ: 131072).
    /// Clients may ask for less, never more; the minimum is 4096.
    pub frame_max: u32,
    /// Most channels per connection, offered in `connection.tune` (RabbitMQ: 2047).
    pub channel_max: u16,
    /// Heartbeat interval offered, in seconds; 0 turns heartbeats off (RabbitMQ: 60).
    /// The client's answer decides; a client silent for two intervals is disconnected.
    pub heartbeat: u16,
    /// Largest message body accepted, in bytes (RabbitMQ: 128 MiB).
    pub max_message_size: u64,
    /// Most open AMQP connections; further ones are refused with 530 NOT_ALLOWED.
    pub max_connections: usize,
    /// Seconds a client has to complete the handshake (RabbitMQ: 10).
    pub handshake_timeout_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            frame_max: 131_072,
            channel_max: 2047,
            heartbeat: 60,
            max_message_size: assembler::DEFAULT_MAX_MESSAGE_SIZE,
            max_connections: 65_536,
            handshake_timeout_secs: 10,
        }
    }
}

/// What every connection task of the door shares.
pub(crate) struct Server {
    pub engine: Engine,
    pub config: Config,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    /// True while the engine asks publishers to slow down.
    pub pressure: watch::Receiver<bool>,
}

/// How often the engine's backpressure flag is sampled.
const PRESSURE_POLL: Duration = Duration::from_millis(100);

/// The AMQP door: hand it connections through `gw_listen` (its accept loop
/// or [`gw_listen::admit`]). Every task a connection starts is spawned on
/// `tracker`, so the gateway can wait for them to drain; on `shutdown` each
/// connection is closed with `connection.close` 320 CONNECTION_FORCED and
/// given a moment to answer.
#[derive(Clone)]
pub struct AmqpDoor {
    server: Arc<Server>,
}

impl AmqpDoor {
    /// The door, sampling the engine's backpressure until `shutdown`.
    pub fn new(
        engine: Engine,
        config: Config,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> Self {
        let (pressure_tx, pressure) = watch::channel(engine.under_pressure());
        {
            let (engine, shutdown) = (engine.clone(), shutdown.clone());
            tracker.spawn(async move {
                let mut tick = tokio::time::interval(PRESSURE_POLL);
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        _ = tick.tick() => {
                            let now = engine.under_pressure();
                            pressure_tx.send_if_modified(|was| std::mem::replace(was, now) != now);
                        }
                    }
                }
            });
        }
        Self::with_pressure(engine, config, shutdown, tracker, pressure)
    }

    /// [`AmqpDoor::new`] with the backpressure signal given instead of
    /// sampled from the engine (tests drive `connection.blocked` with it).
    #[doc(hidden)]
    pub fn with_pressure(
        engine: Engine,
        config: Config,
        shutdown: CancellationToken,
        tracker: TaskTracker,
        pressure: watch::Receiver<bool>,
    ) -> Self {
        AmqpDoor {
            server: Arc::new(Server {
                engine,
                config,
                shutdown,
                tracker,
                pressure,
            }),
        }
    }
}

impl Door for AmqpDoor {
    const NAME: &'static str = "amqp";

    fn max_connections(&self) -> usize {
        self.server.config.max_connections
    }

    fn serve<S: Stream>(
        &self,
        stream: S,
        peer: SocketAddr,
    ) -> impl Future<Output = ()> + Send + 'static {
        connection::serve_connection(stream, peer, Arc::clone(&self.server), false)
    }

    /// The handshake runs as usual and `connection.open` is answered with
    /// 530 NOT_ALLOWED "node connection limit is reached", as RabbitMQ
    /// answers a node over its connection limit; the handshake timeout bounds it.
    fn refuse<S: Stream>(
        &self,
        stream: S,
        peer: SocketAddr,
    ) -> impl Future<Output = ()> + Send + 'static {
        connection::serve_connection(stream, peer, Arc::clone(&self.server), true)
    }
}
