//! The `gateway` binary's library: configuration, wiring and shutdown, usable
//! by tests and embedders.
//!
//! - `cli.rs`: flags (with `GATEWAY_*` environment fallbacks);
//! - `config.rs`: defaults < TOML file < environment < flags, validated;
//! - `app.rs`: [`Gateway`]: opens the engine, starts the doors, stops in order;
//! - `listeners.rs`: listen settings → addresses, bound and logged;
//! - `doors.rs`: each door built and its listeners served through the
//!   accept layer (`gw-listen`);
//! - `fd_limit.rs`: the descriptor limit raised, and each door's connection
//!   cap derived from it;
//! - `shutdown.rs`, `logging.rs`.

mod app;
pub mod cli;
pub mod config;
mod doors;
pub mod fd_limit;
pub mod listeners;
pub mod logging;
pub mod shutdown;

pub use app::{Addresses, Gateway, Listening, StartError, run_until};
pub use config::{Config, ConfigError, LogFormat};
