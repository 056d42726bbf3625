//! The AMQP 0-9-1 door of the gateway: RabbitMQ clients onto the engine.
//!
//! # Layout
//! - [`serve`] and [`Config`] (this file): the accept loop, the connection
//!   limit, backpressure monitoring, shutdown.
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

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gw_core::Engine;
use tokio::net::TcpListener;
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

/// What every connection task of one listener shares.
pub(crate) struct Server {
    pub engine: Engine,
    pub config: Config,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    /// True while the engine asks publishers to slow down.
    pub pressure: watch::Receiver<bool>,
    /// Open connections, for `max_connections`.
    pub open: AtomicUsize,
}

/// How often the engine's backpressure flag is sampled.
const PRESSURE_POLL: Duration = Duration::from_millis(100);

/// Accepts connections until `shutdown` is cancelled. Every connection task is
/// spawned with `tracker.spawn(..)` so the gateway can wait for them to drain;
/// on `shutdown` each connection is closed with `connection.close` 320
/// CONNECTION_FORCED and given a moment to answer.
pub async fn serve(
    listener: TcpListener,
    engine: Engine,
    config: Config,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
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
    serve_with_pressure(listener, engine, config, shutdown, tracker, pressure).await;
}

/// [`serve`] with the backpressure signal given instead of sampled from the
/// engine (tests drive `connection.blocked` with it).
#[doc(hidden)]
pub async fn serve_with_pressure(
    listener: TcpListener,
    engine: Engine,
    config: Config,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    pressure: watch::Receiver<bool>,
) {
    let server = Arc::new(Server {
        engine,
        config,
        shutdown: shutdown.clone(),
        tracker: tracker.clone(),
        pressure,
        open: AtomicUsize::new(0),
    });
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                let over =
                    server.open.fetch_add(1, Ordering::AcqRel) >= server.config.max_connections;
                let server = Arc::clone(&server);
                tracker.spawn(async move {
                    connection::serve_connection(stream, peer, Arc::clone(&server), over).await;
                    server.open.fetch_sub(1, Ordering::AcqRel);
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "AMQP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
