//! Frames back to bytes, appended to the connection's write buffer.
//!
//! Method arguments and content-header properties go through amq-protocol's
//! generators, writing straight into the `BytesMut` (see [`Appender`]); body
//! frames, the bulk of the bytes, are written by hand.

use std::io;

use amq_protocol::frame::{BackToTheBuffer, GenError, GenResult, WriteContext};
use amq_protocol::protocol::basic::{AMQPProperties, gen_properties};
use amq_protocol::protocol::{AMQPClass, gen_class};
use bytes::{BufMut, BytesMut};

use super::{
    CodecError, FRAME_BODY, FRAME_END, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD, FRAME_OVERHEAD,
    Frame, HEADER_LEN,
};
use crate::table;

/// Appends a method frame.
///
/// # Errors
/// [`CodecError::Encode`] if amq-protocol refuses the method (a bug); `out`
/// is then left as it was.
pub fn encode_method(
    out: &mut BytesMut,
    channel: u16,
    method: &AMQPClass,
) -> Result<(), CodecError> {
    let start = begin_frame(out, FRAME_METHOD, channel);
    let res = gen_class(method)(WriteContext::from(Appender::new(out))).map(drop);
    end_frame(out, start, res)
}

/// Appends a heartbeat frame (channel 0, empty payload).
pub fn encode_heartbeat(out: &mut BytesMut) {
    out.extend_from_slice(&[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);
}

/// Appends a content header frame and the body frames that carry `body`.
///
/// Each body frame carries at most `frame_max - 8` bytes; an empty body has no
/// body frame at all (§ 4.2.6.2). Short-string values in the headers table are
/// sent as long strings, the only string type every peer can read.
///
/// # Errors
/// [`CodecError::Encode`] if amq-protocol refuses the properties (a bug);
/// `out` is then left as it was.
pub fn encode_content(
    out: &mut BytesMut,
    channel: u16,
    class_id: u16,
    properties: &AMQPProperties,
    body: &[u8],
    frame_max: u32,
) -> Result<(), CodecError> {
    let chunk = max_body_chunk(frame_max);
    let frames = body.len().div_ceil(chunk);
    out.reserve(64 + body.len() + frames * FRAME_OVERHEAD as usize);
    encode_header(out, channel, class_id, body.len() as u64, properties)?;
    for piece in body.chunks(chunk) {
        encode_body(out, channel, piece);
    }
    Ok(())
}

/// Appends a `basic.deliver` method frame, written by hand: it goes out once
/// per delivery, and building amq-protocol's struct would allocate three
/// strings each time. Strings longer than a short string allows (a routing
/// key from MQTT) are cut at 255 bytes on a character boundary.
pub fn encode_deliver(
    out: &mut BytesMut,
    channel: u16,
    consumer_tag: &str,
    delivery_tag: u64,
    redelivered: bool,
    exchange: &str,
    routing_key: &str,
) {
    let start = begin_frame(out, FRAME_METHOD, channel);
    out.put_u16(60);
    out.put_u16(60);
    put_short(out, consumer_tag);
    out.put_u64(delivery_tag);
    out.put_u8(u8::from(redelivered));
    put_short(out, exchange);
    put_short(out, routing_key);
    patch_size(out, start);
}

/// Appends a `basic.get-ok` method frame, by hand like [`encode_deliver`].
pub fn encode_get_ok(
    out: &mut BytesMut,
    channel: u16,
    delivery_tag: u64,
    redelivered: bool,
    exchange: &str,
    routing_key: &str,
    message_count: u32,
) {
    let start = begin_frame(out, FRAME_METHOD, channel);
    out.put_u16(60);
    out.put_u16(71);
    out.put_u64(delivery_tag);
    out.put_u8(u8::from(redelivered));
    put_short(out, exchange);
    put_short(out, routing_key);
    out.put_u32(message_count);
    patch_size(out, start);
}

/// Writes a short string, cut to 255 bytes on a character boundary.
fn put_short(out: &mut BytesMut, s: &str) {
    let mut n = s.len().min(255);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    out.put_u8(n as u8);
    out.extend_from_slice(&s.as_bytes()[..n]);
}

fn patch_size(out: &mut BytesMut, start: usize) {
    let size = (out.len() - start - HEADER_LEN) as u32;
    out[start + 3..start + HEADER_LEN].copy_from_slice(&size.to_be_bytes());
    out.put_u8(FRAME_END);
}

/// Appends any [`Frame`] as it is (a body frame is not split).
///
/// # Errors
/// As [`encode_method`] and [`encode_content`].
pub fn encode_frame(out: &mut BytesMut, frame: &Frame) -> Result<(), CodecError> {
    match frame {
        Frame::Method(channel, method) => encode_method(out, *channel, method),
        Frame::Header(channel, h) => {
            encode_header(out, *channel, h.class_id, h.body_size, &h.properties)
        }
        Frame::Body(channel, body) => {
            encode_body(out, *channel, body);
            Ok(())
        }
        Frame::Heartbeat => {
            encode_heartbeat(out);
            Ok(())
        }
    }
}

fn max_body_chunk(frame_max: u32) -> usize {
    match frame_max {
        0 => u32::MAX as usize,
        n => n.saturating_sub(FRAME_OVERHEAD).max(1) as usize,
    }
}

fn encode_header(
    out: &mut BytesMut,
    channel: u16,
    class_id: u16,
    body_size: u64,
    properties: &AMQPProperties,
) -> Result<(), CodecError> {
    let sanitized;
    let properties = match properties.headers() {
        Some(h) if table::has_short_string(h) => {
            sanitized = properties
                .clone()
                .with_headers(table::without_short_strings(h));
            &sanitized
        }
        _ => properties,
    };
    let start = begin_frame(out, FRAME_HEADER, channel);
    out.put_u16(class_id);
    out.put_u16(0); // weight, unused (§ 4.2.6.1)
    out.put_u64(body_size);
    let res = gen_properties(properties)(WriteContext::from(Appender::new(out))).map(drop);
    end_frame(out, start, res)
}

/// Body frames are the hot path, so they are written by hand.
fn encode_body(out: &mut BytesMut, channel: u16, piece: &[u8]) {
    out.reserve(piece.len() + FRAME_OVERHEAD as usize);
    out.put_u8(FRAME_BODY);
    out.put_u16(channel);
    out.put_u32(piece.len() as u32);
    out.extend_from_slice(piece);
    out.put_u8(FRAME_END);
}

/// Writes the frame header with a size to be patched by [`end_frame`].
fn begin_frame(out: &mut BytesMut, frame_type: u8, channel: u16) -> usize {
    let start = out.len();
    out.put_u8(frame_type);
    out.put_u16(channel);
    out.put_u32(0);
    start
}

fn end_frame(
    out: &mut BytesMut,
    start: usize,
    res: Result<(), GenError>,
) -> Result<(), CodecError> {
    let size = out.len() - start - HEADER_LEN;
    match (res, u32::try_from(size)) {
        (Ok(()), Ok(size)) => {
            out[start + 3..start + HEADER_LEN].copy_from_slice(&size.to_be_bytes());
            out.put_u8(FRAME_END);
            Ok(())
        }
        (res, _) => {
            out.truncate(start);
            let reason = res
                .err()
                .map_or_else(|| format!("payload of {size} bytes"), |e| e.to_string());
            Err(CodecError::Encode { reason })
        }
    }
}

/// Lets amq-protocol's generators append straight into a `BytesMut`.
///
/// They need `Write + BackToTheBuffer`: a length prefix is reserved, the value
/// written after it, then the prefix filled in. `Vec<u8>` would do, but costs
/// a copy into the write buffer and an allocation per length prefix; `&mut [u8]`
/// panics (`split_at_mut`) when fewer than 4 bytes remain. Here the prefix is
/// reserved as zeros and later overwritten in place (`patch_at`).
struct Appender<'a> {
    buf: &'a mut BytesMut,
    patch_at: Option<usize>,
}

impl<'a> Appender<'a> {
    fn new(buf: &'a mut BytesMut) -> Self {
        Appender {
            buf,
            patch_at: None,
        }
    }
}

impl io::Write for Appender<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self.patch_at {
            None => self.buf.extend_from_slice(data),
            Some(at) => {
                let end = at + data.len();
                let hole = self
                    .buf
                    .get_mut(at..end)
                    .ok_or_else(|| io::Error::other("patch overruns its hole"))?;
                hole.copy_from_slice(data);
                self.patch_at = Some(end);
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl BackToTheBuffer for Appender<'_> {
    fn reserve_write_use<
        Tmp,
        Gen: Fn(WriteContext<Self>) -> Result<(WriteContext<Self>, Tmp), GenError>,
        Before: Fn(WriteContext<Self>, Tmp) -> GenResult<Self>,
    >(
        s: WriteContext<Self>,
        reserved: usize,
        gen_after: &Gen,
        before: &Before,
    ) -> Result<WriteContext<Self>, GenError> {
        let WriteContext { write, position } = s;
        if write.patch_at.is_some() {
            // amq-protocol only writes a plain length into a hole.
            return Err(GenError::NotYetImplemented);
        }
        let hole = write.buf.len();
        write.buf.put_bytes(0, reserved);
        let (after, tmp) = gen_after(WriteContext {
            write,
            position: position + reserved as u64,
        })?;
        let WriteContext {
            mut write,
            position: end,
        } = after;
        write.patch_at = Some(hole);
        let filled = before(WriteContext { write, position }, tmp)?;
        let WriteContext { mut write, .. } = filled;
        if write.patch_at.take() != Some(hole + reserved) {
            return Err(GenError::InvalidOffset);
        }
        Ok(WriteContext {
            write,
            position: end,
        })
    }
}
