//! Wiring: opens the engine, starts the doors, and stops everything in order.

use std::net::SocketAddr;
use std::time::Duration;

use gw_core::{Engine, EngineConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::doors;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory cannot be created or written.
    #[error("data directory {dir} is not usable: {source}")]
    DataDir {
        /// The directory.
        dir: String,
        /// Why.
        source: std::io::Error,
    },
    /// The engine refused to open (locked, corrupt, other format).
    #[error("{0}")]
    Engine(#[from] gw_core::Error),
    /// A listener could not be bound.
    #[error("cannot listen for {door} on {address}: {source}")]
    Bind {
        /// Which door.
        door: &'static str,
        /// The address asked for.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A TLS certificate, key or CA file cannot be used.
    #[error("{0}")]
    Tls(#[from] gw_listen::TlsError),
    /// A door's settings are wrong.
    #[error("[{door}] settings: {message}")]
    DoorSettings {
        /// Which door.
        door: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// Every address each door listens on, in the order configured (port 0
/// resolved to the port chosen).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listening {
    /// AMQP 0.9.1.
    pub amqp: Vec<SocketAddr>,
    /// MQTT 3.1.1/5.0.
    pub mqtt: Vec<SocketAddr>,
    /// HTTP.
    pub http: Vec<SocketAddr>,
    /// AMQP over TLS.
    pub amqps: Vec<SocketAddr>,
    /// MQTT over TLS.
    pub mqtts: Vec<SocketAddr>,
    /// HTTPS (with MQTT over secure WebSocket).
    pub https: Vec<SocketAddr>,
}

/// The first address of each door (see [`Listening`] for all of them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Addresses {
    /// AMQP 0.9.1.
    pub amqp: Option<SocketAddr>,
    /// MQTT 3.1.1/5.0.
    pub mqtt: Option<SocketAddr>,
    /// HTTP.
    pub http: Option<SocketAddr>,
    /// AMQP over TLS.
    pub amqps: Option<SocketAddr>,
    /// MQTT over TLS.
    pub mqtts: Option<SocketAddr>,
    /// HTTPS.
    pub https: Option<SocketAddr>,
}

/// A running gateway.
pub struct Gateway {
    engine: Engine,
    listening: Listening,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl Gateway {
    /// Opens the store and starts every configured door.
    pub async fn start(config: Config) -> Result<Gateway, StartError> {
        let doors = doors::parse(&config)?;
        check_data_dir(&config)?;
        let engine_config = EngineConfig {
            sync: config.sync,
            cache_bytes: config.cache_bytes,
            queue_memory_bytes: config.queue_memory_bytes,
            watermarks: config.watermarks,
            encryption: config.encryption.clone(),
            ..EngineConfig::new(&config.data_dir)
        };
        let engine = tokio::task::spawn_blocking(move || Engine::open(engine_config))
            .await
            .map_err(|e| {
                StartError::Engine(gw_core::Error::invalid_state(format!(
                    "engine start panicked: {e}"
                )))
            })??;
        tracing::info!(data_dir = %config.data_dir.display(), sync = ?config.sync, "engine open");
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        match doors::start(&config, doors, &engine, &shutdown, &tracker).await {
            Ok(listening) => Ok(Gateway {
                engine,
                listening,
                shutdown,
                tracker,
            }),
            Err(e) => {
                shutdown.cancel();
                tracker.close();
                tracker.wait().await;
                engine.close();
                Err(e)
            }
        }
    }

    /// The engine behind the doors.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Where each door listens: its first address (tests connect there).
    pub fn addresses(&self) -> Addresses {
        let l = &self.listening;
        Addresses {
            amqp: l.amqp.first().copied(),
            mqtt: l.mqtt.first().copied(),
            http: l.http.first().copied(),
            amqps: l.amqps.first().copied(),
            mqtts: l.mqtts.first().copied(),
            https: l.https.first().copied(),
        }
    }

    /// Every address of every door.
    pub fn listening(&self) -> &Listening {
        &self.listening
    }

    /// Stops accepting, asks connections to finish, waits up to `grace` for
    /// them, then flushes and closes the store.
    /// True when the store flushed and closed cleanly (every write stored).
    pub async fn stop(self, grace: Duration) -> bool {
        self.shutdown.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                tasks = self.tracker.len(),
                "connections still open after the grace period; closing anyway"
            );
        }
        let engine = self.engine.clone();
        let clean = tokio::task::spawn_blocking(move || engine.close())
            .await
            .unwrap_or(false);
        if clean {
            tracing::info!("store flushed and closed");
        } else {
            let health = self.engine.store_health();
            tracing::error!(
                write_errors = health.write_errors,
                cause = health
                    .last_error
                    .as_deref()
                    .unwrap_or("the store was already closed"),
                "store closed, but not every write was stored"
            );
        }
        clean
    }
}

/// Creates the data directory and proves it is writable, so the problem is
/// reported as such rather than as a storage error.
fn check_data_dir(config: &Config) -> Result<(), StartError> {
    let dir = &config.data_dir;
    let fail = |source| StartError::DataDir {
        dir: dir.display().to_string(),
        source,
    };
    // Durably: a first start must not leave a data directory that a power
    // cut can undo (with the store that will live in it).
    gw_core::create_dir_all_durably(dir).map_err(fail)?;
    // Nothing depends on the probe surviving, or its removal.
    let probe = dir.join(".gateway-write-probe");
    std::fs::write(&probe, b"").map_err(fail)?;
    std::fs::remove_file(&probe).map_err(fail)?;
    Ok(())
}

/// Waits for the gateway to be stopped by an outside token (tests, embedders).
pub async fn run_until(config: Config, stop: CancellationToken) -> Result<(), StartError> {
    let grace = config.shutdown_grace;
    let gw = Gateway::start(config).await?;
    stop.cancelled().await;
    gw.stop(grace).await;
    Ok(())
}
