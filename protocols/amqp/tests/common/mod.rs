//! Starts the engine on a temporary data directory and the AMQP door on a
//! free port, in-process, for tests that drive it with real clients.
#![allow(dead_code, clippy::unwrap_used)]

pub mod lapin_util;
pub mod raw;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gw_amqp::Config;
use gw_core::{Engine, EngineConfig};
use lapin::{Connection, ConnectionProperties};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A running door with its engine.
pub struct Gateway {
    pub addr: SocketAddr,
    pub engine: Engine,
    pub dir: PathBuf,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    serve: JoinHandle<()>,
    _temp: Option<tempfile::TempDir>,
    /// Drives `connection.blocked` (only for [`Gateway::start_pressured`]).
    pub pressure: Option<tokio::sync::watch::Sender<bool>>,
}

impl Gateway {
    /// A fresh engine on a temporary directory, default settings.
    pub async fn start() -> Gateway {
        Self::start_with(Config::default()).await
    }

    /// A fresh engine with these door settings.
    pub async fn start_with(config: Config) -> Gateway {
        let temp = tempfile::tempdir().unwrap();
        let mut g = Self::start_on(temp.path(), config).await;
        g._temp = Some(temp);
        g
    }

    /// A fresh engine whose backpressure signal the test sets.
    pub async fn start_pressured(config: Config) -> Gateway {
        init_logging();
        let temp = tempfile::tempdir().unwrap();
        let engine = Engine::open(EngineConfig::new(temp.path())).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let (tx, rx) = tokio::sync::watch::channel(false);
        let door = gw_amqp::AmqpDoor::with_pressure(
            engine.clone(),
            config,
            shutdown.clone(),
            tracker.clone(),
            rx,
        );
        let serve = serve(listener, door, &shutdown, &tracker);
        Gateway {
            addr,
            engine,
            dir: temp.path().to_owned(),
            shutdown,
            tracker,
            serve,
            _temp: Some(temp),
            pressure: Some(tx),
        }
    }

    /// The engine on `dir` (reopened if it has data).
    pub async fn start_on(dir: &Path, config: Config) -> Gateway {
        init_logging();
        let engine = Engine::open(EngineConfig::new(dir)).unwrap();
        Self::start_engine(engine, dir, config).await
    }

    /// The door in front of an engine the test opened (`dir`: where it lives).
    pub async fn start_engine(engine: Engine, dir: &Path, config: Config) -> Gateway {
        init_logging();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let door =
            gw_amqp::AmqpDoor::new(engine.clone(), config, shutdown.clone(), tracker.clone());
        let serve = serve(listener, door, &shutdown, &tracker);
        Gateway {
            addr,
            engine,
            dir: dir.to_owned(),
            shutdown,
            tracker,
            serve,
            _temp: None,
            pressure: None,
        }
    }

    /// `amqp://guest:guest@addr/%2f`.
    pub fn uri(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    /// A lapin connection as guest to vhost "/".
    pub async fn connect(&self) -> Connection {
        Connection::connect(&self.uri(), ConnectionProperties::default())
            .await
            .unwrap()
    }

    /// Shuts the door down (connections get 320) and closes the engine;
    /// returns the temporary directory so a test can reopen it.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        self.shutdown.cancel();
        let _ = (&mut self.serve).await;
        self.tracker.close();
        tokio::time::timeout(Duration::from_secs(10), self.tracker.wait())
            .await
            .expect("connections drain");
        self.engine.close();
        self._temp.take()
    }
}

/// The door on `listener` through the gateway's accept layer.
fn serve(
    listener: TcpListener,
    door: gw_amqp::AmqpDoor,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> JoinHandle<()> {
    let permits = gw_listen::Permits::for_door(&door);
    tokio::spawn(gw_listen::serve_listener(
        listener,
        door,
        permits,
        shutdown.clone(),
        tracker.clone(),
    ))
}

pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GW_TEST_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Runs `f` with a deadline, so a hang fails the test instead of stalling it.
pub async fn within<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("timed out")
}
