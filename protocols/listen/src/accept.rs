//! The accept loop every door's listeners run.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backoff::{Backoff, MAX_PAUSE};
use crate::{Door, Permits, Stream, admit};

/// Where connections come from: a `TcpListener`, or a test's stand-in.
pub trait Acceptor: Send + 'static {
    /// The streams it yields.
    type Stream: Stream;

    /// The next connection, ready for a door.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;

    /// After `accept` failed for want of a descriptor: takes one waiting
    /// connection with the spare descriptor (`spare.rs`) and closes it at
    /// once. False when none was waiting or there is no spare (then the
    /// loop backs off). A stand-in without a backlog sheds nothing.
    fn shed(&self) -> bool {
        false
    }
}

impl Acceptor for TcpListener {
    type Stream = TcpStream;

    async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, peer) = TcpListener::accept(self).await?;
        // The one place TCP_NODELAY is set: every door batches its own
        // writes, so Nagle's algorithm would only add latency to replies.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, cause = %e, "TCP_NODELAY");
        }
        Ok((stream, peer))
    }

    fn shed(&self) -> bool {
        use futures::FutureExt;
        // The accept that just failed left the listener marked readable, so
        // this polls `accept(2)` once: a connection, or WouldBlock (pending).
        crate::spare::released(|| match TcpListener::accept(self).now_or_never() {
            Some(Ok((stream, peer))) => {
                tracing::debug!(%peer, "no descriptor to serve it; closed at once");
                drop(stream);
                true
            }
            _ => false,
        })
        .unwrap_or(false)
    }
}

/// Connections shed in one go before the loop accepts again (the freed
/// descriptors may let it serve the next one).
const SHED_BATCH: usize = 64;

/// Accepts connections until `shutdown` is cancelled and runs each in a task
/// on `tracker` (so the gateway can wait for them to drain): served, refused
/// or closed as [`admit`] decides against `permits`. Accept errors back off
/// (see `backoff.rs`), except that while descriptors are out the waiting
/// connections are closed at once (see [`Acceptor::shed`]) rather than left
/// in the backlog; connections already open are not touched when it stops.
pub async fn serve_listener<A: Acceptor, D: Door>(
    listener: A,
    door: D,
    permits: Permits,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    crate::spare::reserve();
    let mut backoff = Backoff::new();
    let mut shed_total = 0u64;
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff.accepted();
                admit(&door, &permits, stream, peer).spawn_on(&tracker);
            }
            Err(e) => {
                let mut shed = 0;
                if out_of_descriptors(&e) {
                    while shed < SHED_BATCH && listener.shed() {
                        shed += 1;
                    }
                }
                shed_total += shed as u64;
                let failure = backoff.failed(&e, Instant::now());
                match failure.warn {
                    Some(failures) => tracing::warn!(
                        door = D::NAME,
                        cause = %e,
                        failures,
                        closed_unserved = shed_total,
                        "{} accept failed ({failures} times since the last warning): {e}; {} waiting connections closed unserved, pausing accepts for up to {}s when none is waiting",
                        D::NAME,
                        std::mem::take(&mut shed_total),
                        MAX_PAUSE.as_secs()
                    ),
                    None => tracing::debug!(door = D::NAME, cause = %e, shed, "accept failed"),
                }
                // Shedding made progress (and cleared the backlog it could):
                // accept again at once, no spinning on an error that frees nothing.
                if shed == 0 && !failure.pause.is_zero() {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(failure.pause) => {}
                    }
                }
            }
        }
    }
    tracing::debug!(door = D::NAME, "stopped accepting");
}

/// `EMFILE` (this process) or `ENFILE` (the whole system).
fn out_of_descriptors(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(e.raw_os_error(), Some(23 | 24))
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::VecDeque;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio::sync::{Mutex, Notify};

    use super::*;

    /// Hands out what the test queued, then waits forever.
    struct Scripted {
        next: Mutex<VecDeque<io::Result<DuplexStream>>>,
        calls: AtomicUsize,
    }

    impl Scripted {
        fn new(items: Vec<io::Result<DuplexStream>>) -> Arc<Self> {
            Arc::new(Scripted {
                next: Mutex::new(items.into()),
                calls: AtomicUsize::new(0),
            })
        }
    }

    impl Acceptor for Arc<Scripted> {
        type Stream = DuplexStream;

        async fn accept(&self) -> io::Result<(DuplexStream, SocketAddr)> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let item = self.next.lock().await.pop_front();
            match item {
                Some(r) => r.map(|s| (s, "127.0.0.1:1".parse().unwrap())),
                None => std::future::pending().await,
            }
        }
    }

    /// Serves by writing "served" and holding the stream until released;
    /// refuses by writing "refused".
    #[derive(Clone, Default)]
    struct Echo {
        served: Arc<AtomicUsize>,
        refused: Arc<AtomicUsize>,
        release: Arc<Notify>,
    }

    impl Door for Echo {
        const NAME: &'static str = "test";

        fn max_connections(&self) -> usize {
            2
        }

        fn serve<S: Stream>(
            &self,
            mut stream: S,
            _: SocketAddr,
        ) -> impl Future<Output = ()> + Send + 'static {
            let (served, release) = (Arc::clone(&self.served), Arc::clone(&self.release));
            async move {
                served.fetch_add(1, Ordering::SeqCst);
                let _ = stream.write_all(b"served").await;
                release.notified().await;
            }
        }

        fn refuse<S: Stream>(
            &self,
            mut stream: S,
            _: SocketAddr,
        ) -> impl Future<Output = ()> + Send + 'static {
            let (refused, release) = (Arc::clone(&self.refused), Arc::clone(&self.release));
            async move {
                refused.fetch_add(1, Ordering::SeqCst);
                let _ = stream.write_all(b"refused").await;
                release.notified().await;
            }
        }
    }

    /// What the door first wrote to `client` ("" when it closed the stream).
    async fn answer(client: &mut DuplexStream) -> String {
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(60), client.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[tokio::test]
    async fn over_the_limit_is_refused_then_closed() {
        let door = Echo::default();
        let mut clients = Vec::new();
        let mut servers = Vec::new();
        for _ in 0..5 {
            let (c, s) = tokio::io::duplex(64);
            clients.push(c);
            servers.push(Ok(s));
        }
        let acceptor = Scripted::new(servers);
        let (shutdown, tracker) = (CancellationToken::new(), TaskTracker::new());
        // Two served, one refused (the refusal limit is 1); the served and
        // refused connections are held until released, so the other two are closed.
        let permits = Permits::new(door.max_connections(), 1);
        let task = tokio::spawn(serve_listener(
            Arc::clone(&acceptor),
            door.clone(),
            permits.clone(),
            shutdown.clone(),
            tracker.clone(),
        ));
        while acceptor.calls.load(Ordering::SeqCst) < 6 {
            tokio::task::yield_now().await;
        }
        let mut answers = Vec::new();
        for c in &mut clients {
            answers.push(answer(c).await);
        }
        assert_eq!(answers, ["served", "served", "refused", "", ""]);
        assert_eq!(door.served.load(Ordering::SeqCst), 2);
        assert_eq!(door.refused.load(Ordering::SeqCst), 1);
        assert_eq!(permits.available(), 0);
        // The permits come back when the served connections end.
        door.release.notify_waiters();
        shutdown.cancel();
        task.await.unwrap();
        tracker.close();
        tracker.wait().await;
        assert_eq!(permits.available(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn accept_errors_back_off_instead_of_spinning() {
        let door = Echo::default();
        let mut script: Vec<io::Result<DuplexStream>> = (0..12)
            .map(|_| Err(io::Error::from_raw_os_error(24)))
            .collect();
        let (client, server) = tokio::io::duplex(64);
        script.push(Ok(server));
        let acceptor = Scripted::new(script);
        let (shutdown, tracker) = (CancellationToken::new(), TaskTracker::new());
        let started = Instant::now();
        let task = tokio::spawn(serve_listener(
            Arc::clone(&acceptor),
            door.clone(),
            Permits::for_door(&door),
            shutdown.clone(),
            tracker.clone(),
        ));
        let mut client = client;
        assert_eq!(answer(&mut client).await, "served");
        // 5 + 10 + … + 640 ms, then 1 s four times: the clock had to move
        // that far (paused time jumps only to a sleep's deadline).
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(1275 + 4000), "{waited:?}");
        assert_eq!(acceptor.calls.load(Ordering::SeqCst), 14);
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_a_pause() {
        let door = Echo::default();
        let acceptor = Scripted::new(
            (0..20)
                .map(|_| Err(io::Error::from_raw_os_error(24)))
                .collect(),
        );
        let (shutdown, tracker) = (CancellationToken::new(), TaskTracker::new());
        let task = tokio::spawn(serve_listener(
            acceptor,
            door.clone(),
            Permits::for_door(&door),
            shutdown.clone(),
            tracker,
        ));
        tokio::time::sleep(Duration::from_millis(3)).await;
        let at = Instant::now();
        shutdown.cancel();
        task.await.unwrap();
        assert!(at.elapsed() < Duration::from_millis(5));
    }
}
