//! The state every handler shares: the engine, the settings, the shutdown
//! signal, the long-poll budget and a few small caches.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use gw_core::Engine;
use parking_lot::RwLock;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::AuthCache;
use crate::config::Config;
use crate::metrics::Rates;
use crate::ws::StreamHandler;

/// What the routes share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

/// The shared parts (reachable only inside the crate: the module is private).
pub struct Inner {
    pub engine: Engine,
    pub config: Config,
    /// Cancelled when the gateway shuts down: new requests get 503, long polls end.
    pub shutdown: CancellationToken,
    /// Tracks MQTT-over-WebSocket sessions so the gateway waits for them.
    pub tracker: TaskTracker,
    pub mqtt_websocket: Option<StreamHandler>,
    /// One permit per concurrent long poll.
    pub long_polls: Arc<Semaphore>,
    pub auth: AuthCache,
    /// Engine queue id → queue name per tenant, to resolve `q-<id>` without a scan.
    pub queue_ids: RwLock<HashMap<(String, u64), String>>,
    pub rates: Rates,
    /// The OpenAPI document, set once the router is built.
    pub openapi: OnceLock<Bytes>,
    /// Message lookups scan logs; one at a time.
    pub lookups: Semaphore,
    pub started: Instant,
}

impl AppState {
    /// State for a router serving `engine` with these settings; `shutdown`
    /// ends long polls and refuses new requests, `tracker` receives the
    /// WebSocket sessions handed to `mqtt_websocket`.
    pub fn new(
        engine: Engine,
        config: Config,
        shutdown: CancellationToken,
        tracker: TaskTracker,
        mqtt_websocket: Option<StreamHandler>,
    ) -> Self {
        let long_polls = Arc::new(Semaphore::new(config.max_long_polls));
        AppState {
            inner: Arc::new(Inner {
                engine,
                config,
                shutdown,
                tracker,
                mqtt_websocket,
                long_polls,
                auth: AuthCache::default(),
                queue_ids: RwLock::new(HashMap::new()),
                rates: Rates::default(),
                openapi: OnceLock::new(),
                lookups: Semaphore::new(1),
                started: Instant::now(),
            }),
        }
    }

    /// State with its own shutdown token and tracker and no WebSocket handler
    /// (tests that drive the router with `oneshot`).
    pub fn standalone(engine: Engine, config: Config) -> Self {
        Self::new(
            engine,
            config,
            CancellationToken::new(),
            TaskTracker::new(),
            None,
        )
    }

    /// The shared parts.
    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The shutdown signal.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.inner.shutdown
    }
}
