//! Out of file descriptors: connections waiting in the backlog are closed
//! at once (the spare descriptor), not left hanging, and serving resumes
//! when descriptors are back. Its own test binary: it lowers the process's
//! descriptor limit, which no other test may share.
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

use std::fs::File;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use gw_listen::{Door, Permits, Stream, serve_listener};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Writes "served" and closes.
#[derive(Clone)]
struct Hello;

// The trait's futures are 'static (they own the stream): not `async fn`s,
// which would borrow `self`.
#[allow(clippy::manual_async_fn)]
impl Door for Hello {
    const NAME: &'static str = "hello";

    fn max_connections(&self) -> usize {
        1000
    }

    fn serve<S: Stream>(
        &self,
        mut stream: S,
        _: SocketAddr,
    ) -> impl Future<Output = ()> + Send + 'static {
        async move {
            let _ = stream.write_all(b"served").await;
            let _ = stream.shutdown().await;
        }
    }

    fn refuse<S: Stream>(
        &self,
        stream: S,
        _: SocketAddr,
    ) -> impl Future<Output = ()> + Send + 'static {
        async move { drop(stream) }
    }
}

/// What the server did with `client` within 10 s: its first bytes, "" for a
/// close, or "hung".
async fn fate(client: &mut TcpStream) -> String {
    let mut buf = [0u8; 16];
    match tokio::time::timeout(Duration::from_secs(10), client.read(&mut buf)).await {
        Err(_) => "hung".into(),
        Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => String::new(),
        Ok(Err(e)) => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_connections_are_closed_at_once_while_descriptors_are_out() {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, 256.min(hard), hard).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (shutdown, tracker) = (CancellationToken::new(), TaskTracker::new());
    let door = Hello;
    tokio::spawn(serve_listener(
        listener,
        door.clone(),
        Permits::for_door(&door),
        shutdown.clone(),
        tracker,
    ));
    // Served while descriptors last (and the spare descriptor is taken).
    let mut first = TcpStream::connect(addr).await.unwrap();
    assert_eq!(fate(&mut first).await, "served");
    drop(first);
    // Ten clients wait in a second listener's backlog; then every
    // descriptor is taken, and only then is the listener served: it has
    // none to accept them with.
    let second = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let second_addr = second.local_addr().unwrap();
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(TcpStream::connect(second_addr).await.unwrap());
    }
    let mut filler = Vec::new();
    while let Ok(f) = File::open("/dev/null") {
        filler.push(f);
    }
    tokio::spawn(serve_listener(
        second,
        door.clone(),
        Permits::for_door(&door),
        shutdown.clone(),
        TaskTracker::new(),
    ));
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(fate(c).await, "", "client {i}");
    }
    // Descriptors back: served again, without a restart.
    drop(clients);
    drop(filler);
    for a in [addr, second_addr] {
        let mut after = TcpStream::connect(a).await.unwrap();
        assert_eq!(fate(&mut after).await, "served");
    }
    shutdown.cancel();
}
