//! The socket and its read buffer: sized small while quiet, large while busy.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Read buffer growth: from READ_SMALL, ×4 each time a read fills all the
/// room there was, up to READ_LARGE; back to small after a read that does not.
const READ_SMALL: usize = 64;
const READ_LARGE: usize = 16 * 1024;

/// The socket and its read buffer.
pub(super) struct Io<S> {
    pub stream: S,
    pub rbuf: BytesMut,
    /// How much room the next read gets.
    pub chunk: usize,
    pub needs_flush: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Io<S> {
    pub fn new(stream: S) -> Self {
        Io {
            stream,
            rbuf: BytesMut::new(),
            chunk: READ_SMALL,
            needs_flush: false,
        }
    }

    fn reserve(&mut self) {
        if self.rbuf.capacity() == self.rbuf.len() {
            self.rbuf.reserve(self.chunk);
        }
    }

    pub fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        if self.rbuf.capacity() == 0 {
            return self.poll_read_idle(cx);
        }
        self.reserve();
        let spare = self.rbuf.capacity() - self.rbuf.len();
        let r = tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.rbuf);
        if let Poll::Ready(Ok(n)) = r {
            self.chunk = if n >= spare && n > 0 {
                (self.chunk * 4).min(READ_LARGE)
            } else {
                READ_SMALL
            };
        }
        r
    }

    /// A connection without a read buffer (given back while quiet) waits for
    /// input with the room for its first read on the stack: waiting costs
    /// no allocation, and the buffer comes back with the bytes.
    fn poll_read_idle(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        let mut room = [0u8; READ_SMALL];
        let mut buf = ReadBuf::new(&mut room);
        let r = Pin::new(&mut self.stream).poll_read(cx, &mut buf);
        if let Poll::Ready(Ok(())) = r {
            let n = buf.filled().len();
            self.rbuf.extend_from_slice(buf.filled());
            self.chunk = if n == READ_SMALL {
                READ_SMALL * 4
            } else {
                READ_SMALL
            };
            return Poll::Ready(Ok(n));
        }
        r.map_ok(|()| 0)
    }

    /// After the buffered packets were handled: a buffer grown by one large
    /// read is given back at once unless reads keep filling it (then it is
    /// reused, and given back when the connection goes quiet).
    pub fn release_read_buffer(&mut self) {
        if self.rbuf.is_empty() && self.chunk == READ_SMALL && self.rbuf.capacity() > 4 * READ_SMALL
        {
            self.rbuf = BytesMut::new();
        }
    }

    pub async fn read_more(&mut self) -> std::io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_read(cx)).await
    }

    /// Writes all of `out` (and flushes), giving up after `limit`.
    pub async fn write_out(&mut self, out: &mut BytesMut, limit: Duration) {
        let write = async {
            while !out.is_empty() {
                match self.stream.write(out).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => out.advance(n),
                }
            }
            let _ = self.stream.flush().await;
        };
        let _ = tokio::time::timeout(limit, write).await;
    }

    /// After our side is shut: reads and drops what the client still sends
    /// until it closes too, for up to `limit` (a "lingering close"). Closing
    /// a socket with unread input makes the kernel reset the connection, and
    /// a reset can cost the client the last acknowledgements we wrote, or
    /// make its next write fail before it reads them.
    pub async fn discard_until_eof(&mut self, limit: Duration) {
        let drain = async {
            loop {
                self.rbuf.clear();
                match self.read_more().await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        let _ = tokio::time::timeout(limit, drain).await;
    }

    /// A quiet connection gives back its read buffer, however small: the
    /// next read allocates one again.
    pub fn shrink_idle(&mut self) {
        if self.rbuf.is_empty() && self.rbuf.capacity() > 0 {
            self.rbuf = BytesMut::new();
            self.chunk = READ_SMALL;
        }
    }
}
