//! The `gateway` binary's library: configuration, wiring and shutdown, usable
//! by tests and embedders.
//!
//! - `cli.rs`: flags (with `GATEWAY_*` environment fallbacks);
//! - `config.rs`: defaults < TOML file < environment < flags, validated;
//! - `app.rs`: [`Gateway`]: opens the engine, starts the doors, stops in order;
//! - `doors.rs`: binds each door's listener and hands it to its crate;
//! - `shutdown.rs`, `logging.rs`.

mod app;
pub mod cli;
pub mod config;
mod doors;
pub mod logging;
pub mod shutdown;

pub use app::{Addresses, Gateway, StartError, run_until};
pub use config::{Config, ConfigError, LogFormat};
