//! Runs the AMQP door alone for benchmarks and manual tests:
//!
//! ```sh
//! cargo run --release -p gw-amqp --example serve -- [PORT] [DATA_DIR]
//! ```
//!
//! Port 5672 by default; without a data directory a temporary one is used and
//! removed at exit. Prints `listening on ADDRESS`; stops on Ctrl-C. With
//! `SERVE_STATS=1` it prints the store's group-commit counters every 5 s.
#![allow(clippy::unwrap_used)]

use gw_core::{Engine, EngineConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().map_or(5672, |p| p.parse().expect("port"));
    let temp;
    let dir = match args.next() {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            temp = tempfile::tempdir().unwrap();
            temp.path().to_owned()
        }
    };
    let engine = Engine::open(EngineConfig::new(&dir)).unwrap();
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    println!("listening on {}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let serve = tokio::spawn(gw_amqp::serve(
        listener,
        engine.clone(),
        gw_amqp::Config::default(),
        shutdown.clone(),
        tracker.clone(),
    ));
    if std::env::var_os("SERVE_STATS").is_some() {
        let engine = engine.clone();
        tokio::spawn(async move {
            let mut last = engine.store_stats();
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                let now = engine.store_stats();
                let syncs = now.syncs - last.syncs;
                println!(
                    "store: {} batches, {} ops, {} syncs, {:.0} us/sync, {:.0} us/apply",
                    now.batches - last.batches,
                    now.ops - last.ops,
                    syncs,
                    (now.sync_micros - last.sync_micros) as f64 / syncs.max(1) as f64,
                    (now.apply_micros - last.apply_micros) as f64
                        / (now.batches - last.batches).max(1) as f64,
                );
                last = now;
            }
        });
    }
    tokio::signal::ctrl_c().await.unwrap();
    shutdown.cancel();
    let _ = serve.await;
    tracker.close();
    tracker.wait().await;
    engine.close();
}
