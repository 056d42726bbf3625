//! The write side of a connection: one buffer every task of the connection
//! encodes its frames into, written to the socket by whoever finds it idle.
//!
//! Why one shared buffer: the reader (method replies), the confirm task and
//! every consumer task produce frames. Encoding straight into one `BytesMut`
//! under a short lock costs no allocation and no channel send per frame.
//!
//! Who writes: on a plain TCP socket, a producer that pushes while no write
//! is in progress writes the buffer to the socket itself, with a non-blocking
//! `try_write` under the lock (so the write order is the push order). That
//! saves a task wake-up on the latency path of every lone delivery or reply.
//! What the socket does not take at once is left to the writer task, which
//! waits for writability; while it is busy, producers only append, so under
//! load frames pile up and go out in large writes. Other streams (TLS, say)
//! have no non-blocking write that is sure to reach the socket, so there the
//! writer task writes everything.
//!
//! Backpressure: producers that can wait (consumer tasks) call
//! [`Outbox::wait_room`] before producing, so a slow client slows only its own
//! deliveries; what is buffered stays near [`HIGH_WATER`], no-ack consumers
//! included.
//!
//! Heartbeats out: when nothing was written for half the negotiated interval,
//! the writer sends a heartbeat frame (as RabbitMQ does).

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::codec::encode_heartbeat;

/// Producers that can wait stop adding frames above this many buffered bytes.
pub const HIGH_WATER: usize = 512 * 1024;
/// A write buffer that grew beyond this (a huge message) is not kept for reuse.
const KEEP_CAPACITY: usize = 4 * 1024 * 1024;

/// The socket's write side, as the writer task uses it.
pub trait Socket: Send + 'static {
    /// Writes all of `buf` (and flushes it, for a buffering stream).
    fn write_all(&mut self, buf: &[u8]) -> impl Future<Output = io::Result<()>> + Send;

    /// Ends the stream once everything is written (a TCP half just drops).
    fn close(&mut self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }
}

/// A plain TCP socket's write half: producers may write to it directly.
pub struct TcpSocket(Arc<OwnedWriteHalf>);

impl TcpSocket {
    /// Wraps the write half of an accepted connection.
    pub fn new(write: OwnedWriteHalf) -> Self {
        TcpSocket(Arc::new(write))
    }

    /// The non-blocking write producers use ([`Outbox::new`]).
    pub fn direct(&self) -> DirectWrite {
        let sock = Arc::clone(&self.0);
        Arc::new(move |b: &[u8]| sock.try_write(b))
    }
}

impl Socket for TcpSocket {
    async fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.0.try_write(buf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.0.writable().await?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Any other stream's write half, written by the writer task only.
pub struct StreamSocket<W>(pub W);

impl<W: AsyncWrite + Unpin + Send + 'static> Socket for StreamSocket<W> {
    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf).await?;
        self.0.flush().await
    }

    async fn close(&mut self) {
        // A TLS stream says close_notify here; the connection bounds the wait.
        let _ = self.0.shutdown().await;
    }
}

/// A non-blocking write to the socket, shared with the writer task.
pub type DirectWrite = Arc<dyn Fn(&[u8]) -> io::Result<usize> + Send + Sync>;

struct State {
    buf: BytesMut,
    /// Bytes the writer task took and is still writing: they count against
    /// the high-water mark, and while non-zero producers must not write.
    writing: usize,
    /// When the socket last took bytes (for heartbeats).
    last_write: Instant,
    closed: bool,
}

/// The frames waiting to be written to one connection's socket.
pub struct Outbox {
    state: Mutex<State>,
    /// Direct writes from producers; `None` where only the writer task writes.
    direct: Option<DirectWrite>,
    /// Wakes the writer (one permit is kept if it is busy).
    wake: Notify,
    /// Wakes producers waiting for room.
    drained: Notify,
    /// Send a heartbeat after this long without writing (0: never).
    heartbeat_ms: AtomicU64,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").field("len", &self.len()).finish()
    }
}

impl Outbox {
    /// An empty outbox; `direct` is the socket's non-blocking write, if it
    /// has one ([`TcpSocket::direct`]). Run [`run_writer`] on the same socket.
    pub fn new(direct: Option<DirectWrite>) -> Self {
        Outbox {
            state: Mutex::new(State {
                buf: BytesMut::with_capacity(64 * 1024),
                writing: 0,
                last_write: Instant::now(),
                closed: false,
            }),
            direct,
            wake: Notify::new(),
            drained: Notify::new(),
            heartbeat_ms: AtomicU64::new(0),
        }
    }

    /// Appends frames: `encode` writes into the buffer under the lock (keep it
    /// short). If no write is in progress the frames go to the socket at once.
    /// Nothing is added once the outbox is closed; `encode` then runs on a
    /// scratch buffer and its result is thrown away.
    pub fn push<R>(&self, encode: impl FnOnce(&mut BytesMut) -> R) -> R {
        let mut st = self.state.lock();
        if st.closed {
            drop(st);
            return encode(&mut BytesMut::new());
        }
        let r = encode(&mut st.buf);
        if st.buf.is_empty() || st.writing > 0 {
            // Empty, or the writer is busy and will take it next.
            return r;
        }
        // On a full socket or an error the writer takes over: it waits for
        // writability, or reports the error.
        if let Some(direct) = &self.direct
            && let Ok(n) = direct(&st.buf)
        {
            st.buf.advance(n);
            st.last_write = Instant::now();
            if st.buf.is_empty() {
                return r;
            }
        }
        drop(st);
        self.wake.notify_one();
        r
    }

    /// Bytes waiting to be written, or being written.
    pub fn len(&self) -> usize {
        let st = self.state.lock();
        st.buf.len() + st.writing
    }

    /// True once [`Outbox::close`] was called (or the socket failed).
    pub fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    /// Waits until fewer than `limit` bytes are buffered (or the outbox closed).
    pub async fn wait_below(&self, limit: usize) {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let st = self.state.lock();
                if st.closed || st.buf.len() + st.writing < limit {
                    return;
                }
            }
            notified.await;
        }
    }

    /// Waits until the buffer is below [`HIGH_WATER`].
    pub async fn wait_room(&self) {
        self.wait_below(HIGH_WATER).await;
    }

    /// The writer ends once what is buffered is written; later pushes are dropped.
    pub fn close(&self) {
        self.state.lock().closed = true;
        self.wake.notify_one();
        self.drained.notify_waiters();
    }

    /// Sets the heartbeat interval negotiated with the client (0 = none).
    pub fn set_heartbeat(&self, seconds: u16) {
        // RabbitMQ sends a heartbeat after half the interval of silence.
        self.heartbeat_ms
            .store(u64::from(seconds) * 500, Ordering::Relaxed);
        self.wake.notify_one();
    }

    fn take_into(&self, spare: &mut BytesMut) -> Taken {
        let mut st = self.state.lock();
        st.writing = 0;
        if !st.buf.is_empty() {
            std::mem::swap(&mut st.buf, spare);
            st.writing = spare.len();
            Taken::Data
        } else if st.closed {
            Taken::Closed
        } else {
            Taken::Nothing(st.last_write)
        }
    }

    fn written(&self) {
        let mut st = self.state.lock();
        st.writing = 0;
        st.last_write = Instant::now();
    }
}

enum Taken {
    Data,
    Nothing(Instant),
    Closed,
}

/// Writes what producers could not, until the outbox is closed and empty or
/// the socket fails (then `dead` is cancelled so the reader stops too).
pub async fn run_writer<S: Socket>(outbox: Arc<Outbox>, mut sock: S, dead: CancellationToken) {
    let mut spare = BytesMut::with_capacity(64 * 1024);
    loop {
        match outbox.take_into(&mut spare) {
            Taken::Data => {
                let res = sock.write_all(&spare).await;
                spare.clear();
                if spare.capacity() > KEEP_CAPACITY {
                    spare = BytesMut::with_capacity(64 * 1024);
                }
                outbox.written();
                outbox.drained.notify_waiters();
                if let Err(e) = res {
                    tracing::debug!(error = %e, "AMQP connection write failed");
                    outbox.close();
                    dead.cancel();
                    return;
                }
            }
            Taken::Closed => {
                sock.close().await;
                break;
            }
            Taken::Nothing(last_write) => {
                outbox.drained.notify_waiters();
                let hb = outbox.heartbeat_ms.load(Ordering::Relaxed);
                if hb == 0 {
                    outbox.wake.notified().await;
                    continue;
                }
                let due = last_write + Duration::from_millis(hb);
                tokio::select! {
                    () = outbox.wake.notified() => {}
                    () = tokio::time::sleep_until(due) => {
                        outbox.push(|buf| {
                            if buf.is_empty() {
                                encode_heartbeat(buf);
                            }
                        });
                    }
                }
            }
        }
    }
    outbox.drained.notify_waiters();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    /// A connected pair: the outbox writes to `server`, the test reads `client`.
    async fn pair() -> (Arc<Outbox>, TcpStream, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (_read, write) = server.into_split();
        std::mem::forget(_read);
        let socket = TcpSocket::new(write);
        let outbox = Arc::new(Outbox::new(Some(socket.direct())));
        let dead = CancellationToken::new();
        tokio::spawn(run_writer(Arc::clone(&outbox), socket, dead.clone()));
        (outbox, client, dead)
    }

    /// A stream without direct writes (TLS, say): the writer task writes all.
    #[tokio::test]
    async fn streams_without_direct_writes_go_through_the_writer() {
        let (client, server) = tokio::io::duplex(16);
        let (_read, write) = tokio::io::split(server);
        let outbox = Arc::new(Outbox::new(None));
        let dead = CancellationToken::new();
        tokio::spawn(run_writer(
            Arc::clone(&outbox),
            StreamSocket(write),
            dead.clone(),
        ));
        // More than the duplex holds: written as the client reads.
        outbox.push(|b| b.extend_from_slice(&[7u8; 100]));
        outbox.push(|b| b.extend_from_slice(b"end"));
        let (mut rd, _wr) = tokio::io::split(client);
        let mut got = vec![0u8; 103];
        rd.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[100..], b"end");
        outbox.wait_below(1).await;
        assert!(!dead.is_cancelled());
    }

    #[tokio::test]
    async fn frames_pushed_are_written_in_order_and_close_flushes() {
        let (outbox, mut client, dead) = pair().await;
        outbox.push(|b| b.extend_from_slice(b"one "));
        outbox.push(|b| b.extend_from_slice(b"two"));
        outbox.wait_below(1).await;
        outbox.close();
        outbox.push(|b| b.extend_from_slice(b"dropped"));
        let mut got = [0u8; 7];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"one two");
        assert!(!dead.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connection_gets_heartbeats() {
        let (outbox, mut client, _dead) = pair().await;
        outbox.set_heartbeat(2);
        let mut frame = [0u8; 8];
        client.read_exact(&mut frame).await.unwrap();
        assert_eq!(frame, [8, 0, 0, 0, 0, 0, 0, 0xCE]);
    }

    #[tokio::test]
    async fn wait_room_blocks_until_the_client_reads() {
        let (outbox, mut client, _dead) = pair().await;
        // Far more than the socket buffers hold: the rest waits in the outbox.
        let big = 64 * 1024 * 1024;
        outbox.push(|b| b.extend_from_slice(&vec![1u8; big]));
        let waiting = {
            let outbox = Arc::clone(&outbox);
            tokio::spawn(async move { outbox.wait_room().await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the client has read nothing yet");
        let mut sink = vec![0u8; big];
        client.read_exact(&mut sink).await.unwrap();
        waiting.await.unwrap();
        assert_eq!(outbox.len(), 0);
    }
}
