//! The read side of a connection: socket bytes into a buffer, frames out.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::codec::{self, CodecError, Frame};

/// Reads are made into at least this much free buffer space.
const READ_CHUNK: usize = 64 * 1024;

/// A socket's read half with its frame buffer.
pub struct FrameReader<R> {
    read: R,
    /// Bytes received and not yet decoded.
    pub buf: BytesMut,
    /// The negotiated frame size the decoder enforces.
    pub frame_max: u32,
}

/// Why no frame came.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The peer closed the connection.
    #[error("connection closed by the client")]
    Eof,
    /// The socket failed.
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes are not AMQP.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader enforcing `frame_max` from the start.
    pub fn new(read: R, frame_max: u32) -> Self {
        FrameReader {
            read,
            buf: BytesMut::with_capacity(READ_CHUNK),
            frame_max,
        }
    }

    /// Reads what the socket has (at least one byte); `Eof` at end of stream.
    /// Cancel-safe: nothing is lost when the future is dropped.
    pub async fn read_more(&mut self) -> Result<usize, ReadError> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        match self.read.read_buf(&mut self.buf).await? {
            0 => Err(ReadError::Eof),
            n => Ok(n),
        }
    }

    /// The next complete frame in the buffer, without reading.
    pub fn decode(&mut self) -> Result<Option<Frame>, CodecError> {
        codec::decode(&mut self.buf, self.frame_max)
    }

    /// The next frame, reading as needed.
    pub async fn next(&mut self) -> Result<Frame, ReadError> {
        loop {
            if let Some(frame) = self.decode()? {
                return Ok(frame);
            }
            self.read_more().await?;
        }
    }

    /// Consumes the 8-byte protocol header.
    pub async fn protocol_header(&mut self) -> Result<(), ReadError> {
        loop {
            if codec::decode_protocol_header(&mut self.buf)?.is_some() {
                return Ok(());
            }
            self.read_more().await?;
        }
    }
}
