//! The protocol doors: each is bound to its listener and served by its own
//! crate. A door whose listen address is "off" is not started.

use gw_core::Engine;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::{Addresses, StartError};
use crate::config::{Config, DoorConfig};

/// Starts every configured door.
pub(crate) async fn start(
    config: &Config,
    _engine: &Engine,
    _shutdown: &CancellationToken,
    _tracker: &TaskTracker,
) -> Result<Addresses, StartError> {
    for (name, door) in [
        ("amqp", &config.amqp),
        ("mqtt", &config.mqtt),
        ("http", &config.http),
    ] {
        not_built(name, door);
    }
    Ok(Addresses::default())
}

/// A door whose crate is not wired in yet: say so instead of listening on a dead port.
fn not_built(name: &'static str, door: &DoorConfig) {
    if door.listen.is_some() {
        tracing::warn!(
            door = name,
            "the {name} door is not part of this build yet; not listening"
        );
    }
}
