//! The MQTT door on an engine of its own, for benchmarks and manual tests.
//!
//! ```sh
//! cargo run --release -p gw-mqtt --example serve -- --port 1883 [--data-dir DIR] [--anonymous always]
//! ```
//! Prints `listening on ADDRESS` (and the pid); stops on Ctrl-C. Without
//! `--data-dir` the data lives in a temporary directory removed at exit.

use std::time::Duration;

use gw_core::{Engine, EngineConfig};
use gw_mqtt::{Anonymous, Config};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let port: u16 = arg("--port").map_or(Ok(1883), |p| p.parse())?;
    let temp = tempfile::tempdir()?;
    let dir = arg("--data-dir").map_or_else(|| temp.path().to_path_buf(), Into::into);
    let engine = Engine::open(EngineConfig::new(dir))?;
    let mut config = Config::default();
    if let Some(a) = arg("--anonymous") {
        config.allow_anonymous = match a.as_str() {
            "always" => Anonymous::Always,
            "never" => Anonymous::Never,
            _ => Anonymous::Loopback,
        };
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!(
        "listening on {} (pid {})",
        listener.local_addr()?,
        std::process::id()
    );
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let server = tokio::spawn(gw_mqtt::serve(
        listener,
        engine.clone(),
        config,
        shutdown.clone(),
        tracker.clone(),
    ));
    tokio::signal::ctrl_c().await?;
    shutdown.cancel();
    server.await?;
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
    engine.close();
    Ok(())
}
