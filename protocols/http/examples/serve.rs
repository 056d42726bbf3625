//! Runs the engine on a temp (or given) data dir with the HTTP door on a port,
//! printing the address; stops on Ctrl-C.
//!
//! ```text
//! cargo run --release -p gw-http --example serve -- [PORT] [DATA_DIR|-] [max_messages_per_send]
//! ```
#![allow(clippy::unwrap_used)]

use gw_core::{Engine, EngineConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(8080);
    let tmp = tempfile::tempdir().unwrap();
    let dir = args
        .next()
        .map_or_else(|| tmp.path().to_path_buf(), Into::into);
    let mut config = gw_http::Config::default();
    if let Some(n) = args.next().and_then(|n| n.parse().ok()) {
        config.max_messages_per_send = n;
        config.max_body_bytes = config.max_body_bytes.max(n * 4096);
    }
    let engine = Engine::open(EngineConfig::new(&dir)).unwrap();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    println!("http listening on {}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let server = tokio::spawn(gw_http::serve(
        listener,
        engine.clone(),
        config,
        shutdown.clone(),
        tracker.clone(),
        None,
    ));
    let _ = tokio::signal::ctrl_c().await;
    shutdown.cancel();
    let _ = server.await;
    tracker.close();
    tracker.wait().await;
    engine.close();
}
