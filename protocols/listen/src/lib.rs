//! The gateway's accept layer: the one accept loop, the connection permits
//! and the accept back-off every door goes through, so a door only says how
//! to serve a stream and how to refuse one.
//!
//! # Layout
//! - this file: [`Door`] (what a protocol door offers the layer) and
//!   [`Stream`] (the byte streams it serves);
//! - `permits.rs`: [`Permits`], a door's connection limit (shared by all its
//!   listeners and the MQTT-over-WebSocket hand-off) and [`admit`], which
//!   picks serve or refuse for one stream;
//! - `accept.rs`: [`serve_listener`], the accept loop (`TCP_NODELAY`, one
//!   task per connection on the gateway's `TaskTracker`, stop on shutdown);
//! - `backoff.rs`: what an accept error costs (sleep, one rate-limited warning);
//! - `spare.rs`: the descriptor kept in reserve so that, while the process
//!   has none, waiting connections are closed at once, not left hanging;
//! - `tls.rs`: [`TlsDoor`] (any door served over TLS: the handshake inside
//!   the connection's task and permit, bounded by a timeout), [`Tls`] (the
//!   certificate files, loaded and reloaded) and [`peer_identity`] (the
//!   verified client certificate's user, which the doors read).
//!
//! Why a crate of its own rather than a module of `gateway`: the doors'
//! integration tests serve a door on a listener without the gateway (which
//! depends on the doors), and they must do it through this same code, so
//! there is one accept implementation.

mod accept;
mod backoff;
mod permits;
mod spare;
mod tls;

use std::any::Any;
use std::future::Future;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

pub use accept::{Acceptor, serve_listener};
pub use permits::{Admission, MAX_REFUSING, Permits, admit};
pub use tls::{
    Alpn, HandshakeCounts, Identified, IdentityFrom, MinVersion, PeerIdentity, Tls, TlsDoor,
    TlsError, TlsSettings, TlsStream, is_tls, peer_identity,
};

/// A connection's byte stream: TCP today, TLS or a WebSocket too. A door is
/// written against this, never against `TcpStream`, so a new transport is
/// a change to the layer only.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for S {}

/// A protocol door as the accept layer sees it. Cheap to clone (a handle on
/// the door's shared state); the futures it returns own what they need, so
/// each runs as its own task.
pub trait Door: Clone + Send + Sync + 'static {
    /// The door's name in logs: `"amqp"`, `"mqtt"`, `"http"`.
    const NAME: &'static str;

    /// The most connections served at once (the door's `max_connections`).
    fn max_connections(&self) -> usize;

    /// Serves one accepted connection until it ends.
    fn serve<S: Stream>(
        &self,
        stream: S,
        peer: SocketAddr,
    ) -> impl Future<Output = ()> + Send + 'static;

    /// Answers a connection over [`Door::max_connections`] in the protocol's
    /// own terms (AMQP 530, MQTT CONNACK, HTTP 503), then closes it. It must
    /// end within a bounded time (the door's handshake timeout at most)
    /// whatever the peer does.
    fn refuse<S: Stream>(
        &self,
        stream: S,
        peer: SocketAddr,
    ) -> impl Future<Output = ()> + Send + 'static;
}

/// The plain TCP socket under `stream`, when it is one: a door may write to
/// it without a task switch (non-blocking writes from whichever task has
/// bytes). Any other stream comes back unchanged.
pub fn into_tcp<S: Stream>(stream: S) -> Result<TcpStream, S> {
    let mut slot = Some(stream);
    let tcp = (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<TcpStream>>()
        .and_then(Option::take);
    match (tcp, slot) {
        (Some(tcp), _) => Ok(tcp),
        (None, Some(stream)) => Err(stream),
        (None, None) => unreachable!("the slot is emptied only when it holds a TcpStream"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn tcp_streams_are_found_and_others_given_back() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let peer = client.local_addr().unwrap();
        let tcp = into_tcp(client).unwrap();
        assert_eq!(tcp.local_addr().unwrap(), peer);
        let (a, _b) = tokio::io::duplex(8);
        assert!(into_tcp(a).is_err());
    }
}
