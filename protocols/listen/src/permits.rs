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
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::{Door, Stream};

/// Connections being refused at once, per door, before further ones are
/// closed unanswered.
pub const MAX_REFUSING: usize = 256;

/// At most one "max_connections reached" warning per door this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// One door's connection limit, shared by all its listeners (and by the
/// MQTT-over-WebSocket hand-off, which counts against the MQTT door).
#[derive(Clone, Debug)]
pub struct Permits {
    open: Arc<Semaphore>,
    refusing: Arc<Semaphore>,
    max_connections: usize,
    turned_away: Arc<Mutex<TurnedAway>>,
}

/// Connections refused or closed since the last warning.
#[derive(Debug, Default)]
struct TurnedAway {
    last_warning: Option<Instant>,
    refused: u64,
    closed: u64,
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
            max_connections,
            turned_away: Arc::default(),
        }
    }

    /// Counts one connection turned away (`refused` in the protocol's
    /// terms, else closed unanswered) and logs one warning per [`WARN_EVERY`]
    /// with the counts since the last: a flood is one line, not one a connection.
    fn turned_away(&self, door: &'static str, refused: bool) {
        let mut t = self.turned_away.lock().unwrap_or_else(|e| e.into_inner());
        if refused {
            t.refused += 1;
        } else {
            t.closed += 1;
        }
        let now = Instant::now();
        if t.last_warning
            .is_some_and(|at| now.duration_since(at) < WARN_EVERY)
        {
            return;
        }
        t.last_warning = Some(now);
        let (refused, closed) = (
            std::mem::take(&mut t.refused),
            std::mem::take(&mut t.closed),
        );
        drop(t);
        tracing::warn!(
            door,
            max_connections = self.max_connections,
            refused,
            closed,
            "{door} max_connections ({}) reached: {refused} connections refused, {closed} closed unanswered (too many refusals under way) since the last warning",
            self.max_connections
        );
    }

    /// Connections that could be served now.
    pub fn available(&self) -> usize {
        self.open.available_permits()
    }
}

/// What [`admit`] decided for one stream.
pub enum Admission<S, R> {
    /// Served by the door; the future holds the permit until the connection ends.
    Serve(S),
    /// Refused in the protocol's terms; the future holds a refusal permit.
    Refuse(R),
    /// Closed unanswered: the stream has been dropped.
    Closed,
}

impl<S, R> Admission<S, R>
where
    S: Future<Output = ()> + Send + 'static,
    R: Future<Output = ()> + Send + 'static,
{
    /// Runs the connection as a task of its own on `tracker`. Served and
    /// refused connections are spawned as tasks of their own types, so an
    /// idle connection's task is no larger than the door's serving future
    /// (a refusal's future may be larger: it is short-lived).
    pub fn spawn_on(self, tracker: &TaskTracker) {
        match self {
            Admission::Serve(f) => {
                tracker.spawn(f);
            }
            Admission::Refuse(f) => {
                tracker.spawn(f);
            }
            Admission::Closed => {}
        }
    }

    /// The connection as one boxed future, for a caller that runs it itself
    /// (the HTTP door's `/mqtt` upgrade).
    pub fn boxed(self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        match self {
            Admission::Serve(f) => Box::pin(f),
            Admission::Refuse(f) => Box::pin(f),
            Admission::Closed => Box::pin(std::future::ready(())),
        }
    }
}

/// Decides what one stream gets: served while the door has room (the
/// permit is held until the connection ends), refused in the protocol's
/// terms when it is full, or closed at once when too many refusals are
/// already under way.
///
/// The accept loop spawns the result; the HTTP door's `/mqtt` upgrade runs
/// it for WebSocket streams, so both count against the MQTT door's limit.
pub fn admit<D: Door, S: Stream>(
    door: &D,
    permits: &Permits,
    stream: S,
    peer: SocketAddr,
) -> Admission<impl Future<Output = ()> + Send + 'static, impl Future<Output = ()> + Send + 'static>
{
    // `map` keeps the permit beside the door's future; an `async` block
    // awaiting it would hold the future twice (once captured, once awaited).
    if let Ok(permit) = Arc::clone(&permits.open).try_acquire_owned() {
        return Admission::Serve(door.serve(stream, peer).map(move |()| drop(permit)));
    }
    match Arc::clone(&permits.refusing).try_acquire_owned() {
        Ok(permit) => {
            tracing::debug!(door = D::NAME, %peer, "max_connections reached; refusing");
            permits.turned_away(D::NAME, true);
            Admission::Refuse(door.refuse(stream, peer).map(move |()| drop(permit)))
        }
        Err(_) => {
            tracing::debug!(door = D::NAME, %peer, "max_connections reached and too many refusals under way; closing");
            permits.turned_away(D::NAME, false);
            Admission::Closed
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A door whose serving future is large and refusing future larger.
    #[derive(Clone)]
    struct Big;

    impl Door for Big {
        const NAME: &'static str = "big";

        fn max_connections(&self) -> usize {
            1
        }

        fn serve<S: Stream>(
            &self,
            stream: S,
            _: SocketAddr,
        ) -> impl Future<Output = ()> + Send + 'static {
            let state = [0u8; 1000];
            async move {
                tokio::task::yield_now().await;
                drop((stream, state));
            }
        }

        fn refuse<S: Stream>(
            &self,
            stream: S,
            _: SocketAddr,
        ) -> impl Future<Output = ()> + Send + 'static {
            let state = [0u8; 5000];
            async move {
                tokio::task::yield_now().await;
                drop((stream, state));
            }
        }
    }

    /// Memory per connection: what a served connection's task holds is the
    /// door's future and the permit, not a second copy of the future nor
    /// room for a refusal.
    #[tokio::test]
    async fn a_served_connection_costs_its_future_and_a_permit() {
        let permits = Permits::for_door(&Big);
        let peer = "127.0.0.1:1".parse().unwrap();
        let (a, _a) = tokio::io::duplex(8);
        let served = std::mem::size_of_val(&Big.serve(tokio::io::duplex(8).0, peer));
        let Admission::Serve(task) = admit(&Big, &permits, a, peer) else {
            panic!("not served");
        };
        let size = std::mem::size_of_val(&task);
        assert!(
            size <= served + 32,
            "task {size} bytes for a {served}-byte future"
        );
        let (b, _b) = tokio::io::duplex(8);
        assert!(matches!(
            admit(&Big, &permits, b, peer),
            Admission::Refuse(_)
        ));
        drop(task);
        assert_eq!(permits.available(), 1);
    }
}
