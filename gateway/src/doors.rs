//! The protocol doors: each is bound to its listener and served by its own
//! crate. A door whose listen address is "off" is not started.

use std::net::SocketAddr;

use gw_core::Engine;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::{Addresses, StartError};
use crate::config::{Config, DoorConfig};

/// Binds a door's listener and logs the address it got, one line per door
/// (scripts and tests read "… listening on ADDRESS").
pub(crate) async fn bind(
    door: &'static str,
    address: SocketAddr,
) -> Result<TcpListener, StartError> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Bind {
            door,
            address,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| StartError::Bind {
        door,
        address,
        source,
    })?;
    tracing::info!(door, address = %local, "{door} listening on {local}");
    Ok(listener)
}

/// Starts every configured door.
pub(crate) async fn start(
    config: &Config,
    _engine: &Engine,
    _shutdown: &CancellationToken,
    _tracker: &TaskTracker,
) -> Result<Addresses, StartError> {
    let addresses = Addresses::default();
    for (name, door) in [
        ("amqp", &config.amqp),
        ("mqtt", &config.mqtt),
        ("http", &config.http),
    ] {
        not_built(name, door);
    }
    Ok(addresses)
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
