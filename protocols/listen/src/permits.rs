//! Connection permits: how many connections a door serves at once, and what
//! happens to the one after.
//!
//! A permit is taken after `accept` (not before, as mini-redis does): a
//! client over the limit gets an answer in its protocol's terms instead of
//! waiting unanswered in the kernel's backlog. Refusing costs a task and a
//! few seconds of the peer's time, so refusals are limited too: past
//! [`MAX_REFUSING`] at once, a connection is closed without an answer (a
//! flood cannot make the refusals themselves the resource it exhausts).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::either::Either;

use crate::{Door, Stream};

/// Connections being refused at once, per door, before further ones are
/// closed unanswered.
pub const MAX_REFUSING: usize = 256;

/// One door's connection limit, shared by all its listeners (and by the
/// MQTT-over-WebSocket hand-off, which counts against the MQTT door).
#[derive(Clone, Debug)]
pub struct Permits {
    open: Arc<Semaphore>,
    refusing: Arc<Semaphore>,
}

impl Permits {
    /// The door's own limit ([`Door::max_connections`]), [`MAX_REFUSING`] refusals.
    pub fn for_door<D: Door>(door: &D) -> Self {
        Self::new(door.max_connections(), MAX_REFUSING)
    }

    /// At most `max_connections` served and `max_refusing` being refused at once.
    pub fn new(max_connections: usize, max_refusing: usize) -> Self {
        let cap = |n: usize| n.min(Semaphore::MAX_PERMITS);
        Permits {
            open: Arc::new(Semaphore::new(cap(max_connections))),
            refusing: Arc::new(Semaphore::new(cap(max_refusing))),
        }
    }

    /// Connections that could be served now.
    pub fn available(&self) -> usize {
        self.open.available_permits()
    }
}

/// Decides what one stream gets: served while the door has room (the
/// permit is held until the connection ends), refused in the protocol's
/// terms when it is full, or closed at once when too many refusals are
/// already under way (`None`: the stream has been dropped).
///
/// The accept loop spawns the future; the HTTP door's `/mqtt` upgrade runs
/// it for WebSocket streams, so both count against the MQTT door's limit.
pub fn admit<D: Door, S: Stream>(
    door: &D,
    permits: &Permits,
    stream: S,
    peer: SocketAddr,
) -> Option<impl Future<Output = ()> + Send + 'static> {
    if let Ok(permit) = Arc::clone(&permits.open).try_acquire_owned() {
        let serving = door.serve(stream, peer);
        return Some(Either::Left(async move {
            serving.await;
            drop(permit);
        }));
    }
    match Arc::clone(&permits.refusing).try_acquire_owned() {
        Ok(permit) => {
            tracing::debug!(door = D::NAME, %peer, "max_connections reached; refusing");
            let refusing = door.refuse(stream, peer);
            Some(Either::Right(async move {
                refusing.await;
                drop(permit);
            }))
        }
        Err(_) => {
            tracing::debug!(door = D::NAME, %peer, "max_connections reached and too many refusals under way; closing");
            None
        }
    }
}
