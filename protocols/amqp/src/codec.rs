//! AMQP 0-9-1 frames: bytes in, [`Frame`]s out, and frames back to bytes.
//!
//! Pure: no I/O. The connection reads into a `BytesMut` and calls [`decode`]
//! until it returns `Ok(None)` ("need more bytes", never an error), and encodes
//! replies by appending to its write buffer.
//!
//! amq-protocol 10.6 parses and generates method arguments and content-header
//! properties. Around it this module adds what a *server* needs (§ 4.2.3 of
//! the spec for the frame layout):
//!
//! ```text
//! frame := u8 type, u16 channel, u32 size, payload (size bytes), u8 0xCE
//! ```
//!
//! - the 7-byte frame header is checked before the payload is buffered, so a
//!   frame claiming 4 GiB is refused at once instead of growing the buffer;
//! - body frames are sliced out of the read buffer as `Bytes` (zero copy);
//!   amq-protocol would copy them byte by byte into a `Vec`;
//! - field tables nested deeper than [`MAX_NESTING_DEPTH`] are refused before
//!   the recursive parser sees them (see `table.rs`: it would overflow the stack);
//! - unknown methods (540) are told apart from malformed arguments (502);
//! - encoding appends straight into `BytesMut` and writes body frames by hand.

use amq_protocol::frame::AMQPContentHeader;
use amq_protocol::frame::parsing::parse_content_header;
use amq_protocol::protocol::{AMQPClass, parse_class};
use amq_protocol::types::ShortString;
use bytes::{Buf, Bytes, BytesMut};

pub use crate::table::MAX_NESTING_DEPTH;
use crate::table::{self, Depth};

/// What a client sends first (AMQP 0-9-1 § 4.2.2), and what the server answers
/// with before closing when the client asked for anything else.
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

/// Frame type octets (§ 4.2.3).
pub const FRAME_METHOD: u8 = 1;
/// Content header frame type.
pub const FRAME_HEADER: u8 = 2;
/// Content body frame type.
pub const FRAME_BODY: u8 = 3;
/// Heartbeat frame type.
pub const FRAME_HEARTBEAT: u8 = 8;
/// The octet that ends every frame.
pub const FRAME_END: u8 = 0xCE;
/// Bytes a frame adds around its payload: 7 of header, 1 of frame end.
pub const FRAME_OVERHEAD: u32 = 8;
/// Payload bytes tolerated beyond `frame_max - 8`, as RabbitMQ does: "quite a
/// few clients get it wrong, off-by 1 or 8 (empty frame size) are typical".
/// So a frame is refused when its payload exceeds `frame_max` itself.
pub const FRAME_SIZE_FUDGE: u32 = FRAME_OVERHEAD;

/// The most [`decode`] reserves ahead for an incomplete frame when `frame_max`
/// is 0 (no limit): a claimed size is not yet a reason to allocate 4 GiB.
pub const UNLIMITED_RESERVE: usize = 1 << 20;

const HEADER_LEN: usize = 7;
/// Class id (2), weight (2) and body size (8) precede the property flags of a content header.
const PROPERTIES_AT: usize = 12;
/// The shortest content header: no property flag set.
const CONTENT_HEADER_MIN: usize = PROPERTIES_AT + 2;

/// One decoded frame. The channel number comes first.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// A method with its arguments.
    Method(u16, AMQPClass),
    /// A content header: class id (60 for basic), body size, properties.
    Header(u16, AMQPContentHeader),
    /// A piece of a content body, sliced out of the read buffer without a copy.
    Body(u16, Bytes),
    /// A heartbeat. Always on channel 0: one elsewhere is a decode error.
    Heartbeat,
}

impl Frame {
    /// The channel the frame was sent on.
    pub fn channel(&self) -> u16 {
        match self {
            Frame::Method(c, _) | Frame::Header(c, _) | Frame::Body(c, _) => *c,
            Frame::Heartbeat => 0,
        }
    }
}

/// Everything that can be wrong with the bytes a peer sent, or (one variant)
/// with a frame we failed to encode. Every decode error is a connection error:
/// the connection answers `connection.close` with [`CodecError::reply_code`]
/// and [`CodecError::reply_text`], except [`CodecError::BadProtocolHeader`],
/// which is answered with [`PROTOCOL_HEADER`] and an immediate close.
/// After any error the byte stream is out of sync and must not be decoded further.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The connection did not start with [`PROTOCOL_HEADER`].
    #[error("expected the AMQP 0-9-1 protocol header, got \"{}\"", received.escape_ascii())]
    BadProtocolHeader {
        /// The bytes received in its place (up to 8).
        received: Vec<u8>,
    },
    /// The frame type octet is none of 1, 2, 3, 8.
    #[error("unknown frame type {frame_type} on channel {channel}")]
    UnknownFrameType {
        /// The type octet.
        frame_type: u8,
        /// The channel.
        channel: u16,
    },
    /// The frame header announces more payload than the negotiated frame-max allows.
    #[error(
        "frame of type {frame_type} on channel {channel} is {size} bytes, larger than frame_max {frame_max}"
    )]
    FrameTooLarge {
        /// The type octet.
        frame_type: u8,
        /// The channel.
        channel: u16,
        /// The announced payload size.
        size: u32,
        /// The negotiated frame-max.
        frame_max: u32,
    },
    /// The octet after the payload is not 0xCE.
    #[error(
        "frame of type {frame_type} on channel {channel} ends with {found:#04x} instead of 0xce"
    )]
    BadFrameEnd {
        /// The type octet.
        frame_type: u8,
        /// The channel.
        channel: u16,
        /// The octet found.
        found: u8,
    },
    /// A method payload under 4 bytes, a content header under 14, or a
    /// heartbeat with any payload at all.
    #[error(
        "frame of type {frame_type} on channel {channel} has an impossible payload size {size}"
    )]
    BadPayloadSize {
        /// The type octet.
        frame_type: u8,
        /// The channel.
        channel: u16,
        /// The payload size.
        size: u32,
    },
    /// A heartbeat on a channel other than 0 (§ 4.2.7).
    #[error("heartbeat frame on channel {channel}; heartbeats belong on channel 0")]
    HeartbeatOnChannel {
        /// The channel.
        channel: u16,
    },
    /// A class id or method id that AMQP 0-9-1 does not define.
    #[error("unknown method {class_id}/{method_id} on channel {channel}")]
    UnknownMethod {
        /// The channel.
        channel: u16,
        /// The class id.
        class_id: u16,
        /// The method id.
        method_id: u16,
    },
    /// A known method whose arguments do not decode (short, trailing bytes,
    /// a bad field-table type, a short string that is not UTF-8, ...).
    #[error("cannot decode the arguments of method {class_id}/{method_id} on channel {channel}")]
    MalformedMethod {
        /// The channel.
        channel: u16,
        /// The class id.
        class_id: u16,
        /// The method id.
        method_id: u16,
    },
    /// A content header whose properties do not decode.
    #[error("cannot decode the content header properties on channel {channel}")]
    MalformedHeader {
        /// The channel.
        channel: u16,
    },
    /// A field table nested deeper than [`MAX_NESTING_DEPTH`].
    #[error("field table on channel {channel} nested deeper than {MAX_NESTING_DEPTH} levels")]
    TooDeep {
        /// The channel.
        channel: u16,
        /// The class id of the method, 0 for a content header.
        class_id: u16,
        /// The method id, 0 for a content header.
        method_id: u16,
    },
    /// amq-protocol refused to generate a frame: a bug on our side.
    #[error("cannot encode a frame: {reason}")]
    Encode {
        /// What amq-protocol said.
        reason: String,
    },
}

impl CodecError {
    /// The AMQP reply code for `connection.close`.
    pub fn reply_code(&self) -> u16 {
        match self {
            CodecError::BadProtocolHeader { .. }
            | CodecError::UnknownFrameType { .. }
            | CodecError::FrameTooLarge { .. }
            | CodecError::BadFrameEnd { .. }
            | CodecError::BadPayloadSize { .. } => 501, // FRAME_ERROR
            CodecError::MalformedMethod { .. }
            | CodecError::MalformedHeader { .. }
            | CodecError::TooDeep { .. } => 502, // SYNTAX_ERROR
            CodecError::HeartbeatOnChannel { .. } => 505, // UNEXPECTED_FRAME
            CodecError::UnknownMethod { .. } => 540,      // NOT_IMPLEMENTED
            CodecError::Encode { .. } => 541,             // INTERNAL_ERROR
        }
    }

    /// The class and method ids the error is about, for `connection.close`
    /// (0, 0 when it is not about a method).
    pub fn class_method(&self) -> (u16, u16) {
        match *self {
            CodecError::UnknownMethod {
                class_id,
                method_id,
                ..
            }
            | CodecError::MalformedMethod {
                class_id,
                method_id,
                ..
            }
            | CodecError::TooDeep {
                class_id,
                method_id,
                ..
            } => (class_id, method_id),
            _ => (0, 0),
        }
    }

    /// The reply text for `connection.close`, in RabbitMQ's form
    /// (`"FRAME_ERROR - ..."`), cut to fit a short string.
    pub fn reply_text(&self) -> ShortString {
        let name = match self.reply_code() {
            501 => "FRAME_ERROR",
            502 => "SYNTAX_ERROR",
            505 => "UNEXPECTED_FRAME",
            540 => "NOT_IMPLEMENTED",
            _ => "INTERNAL_ERROR",
        };
        short_text(format!("{name} - {self}"))
    }
}

/// Cuts `text` to at most 255 bytes on a character boundary.
pub(crate) fn short_text(mut text: String) -> ShortString {
    let mut cut = text.len().min(amq_protocol::types::MAX_SHORT_STRING_LENGTH);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    ShortString::try_new(text).unwrap_or_default()
}

/// Consumes the 8-byte protocol header that opens a connection.
///
/// `Ok(None)` while fewer than 8 bytes have arrived and they still match;
/// a mismatch is reported as soon as it is visible, so a client speaking
/// something else (HTTP, TLS, AMQP 1.0) is answered without waiting.
/// RabbitMQ also accepts the 0-9 and 0-8 headers; we do not, and answer them
/// with ours, as the spec asks of a server that does not speak the version.
pub fn decode_protocol_header(buf: &mut BytesMut) -> Result<Option<()>, CodecError> {
    let n = buf.len().min(PROTOCOL_HEADER.len());
    if buf[..n] != PROTOCOL_HEADER[..n] {
        return Err(CodecError::BadProtocolHeader {
            received: buf[..n].to_vec(),
        });
    }
    if n < PROTOCOL_HEADER.len() {
        return Ok(None);
    }
    buf.advance(PROTOCOL_HEADER.len());
    Ok(Some(()))
}

/// Takes one frame off the front of `buf`.
///
/// `Ok(None)` means the frame is not complete yet: read more and call again.
/// In that case `buf` has been reserved to hold the whole frame, and never
/// more than `frame_max` payload bytes, so a peer cannot make it grow without
/// bound. `frame_max` is the negotiated maximum frame size; 0 means no limit
/// as in the spec (then at most [`UNLIMITED_RESERVE`] is reserved ahead), so
/// the handshake must never agree to 0.
pub fn decode(buf: &mut BytesMut, frame_max: u32) -> Result<Option<Frame>, CodecError> {
    let Some(head) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let frame_type = head[0];
    let channel = u16::from_be_bytes([head[1], head[2]]);
    let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]);
    if !matches!(
        frame_type,
        FRAME_METHOD | FRAME_HEADER | FRAME_BODY | FRAME_HEARTBEAT
    ) {
        return Err(CodecError::UnknownFrameType {
            frame_type,
            channel,
        });
    }
    if frame_max != 0
        && u64::from(size) + u64::from(FRAME_OVERHEAD)
            > u64::from(frame_max) + u64::from(FRAME_SIZE_FUDGE)
    {
        return Err(CodecError::FrameTooLarge {
            frame_type,
            channel,
            size,
            frame_max,
        });
    }
    let payload_len = size as usize;
    let total = HEADER_LEN + payload_len + 1;
    if buf.len() < total {
        let missing = total - buf.len();
        buf.reserve(match frame_max {
            0 => missing.min(UNLIMITED_RESERVE),
            _ => missing,
        });
        return Ok(None);
    }
    let found = buf[total - 1];
    if found != FRAME_END {
        return Err(CodecError::BadFrameEnd {
            frame_type,
            channel,
            found,
        });
    }
    let bad_size = CodecError::BadPayloadSize {
        frame_type,
        channel,
        size,
    };
    let frame = match frame_type {
        FRAME_BODY => {
            let mut raw = buf.split_to(total);
            raw.advance(HEADER_LEN);
            raw.truncate(payload_len);
            return Ok(Some(Frame::Body(channel, raw.freeze())));
        }
        FRAME_HEARTBEAT if size != 0 => return Err(bad_size),
        FRAME_HEARTBEAT if channel != 0 => return Err(CodecError::HeartbeatOnChannel { channel }),
        FRAME_HEARTBEAT => Frame::Heartbeat,
        FRAME_METHOD => decode_method(channel, &buf[HEADER_LEN..total - 1]).ok_or(bad_size)??,
        _ => decode_header(channel, &buf[HEADER_LEN..total - 1]).ok_or(bad_size)??,
    };
    buf.advance(total);
    Ok(Some(frame))
}

/// The `prefetch-size` of a `basic.qos` frame at the front of `buf`.
///
/// amq-protocol reads that field as reserved and drops it; the connection
/// peeks at it before [`decode`] so the window in bytes can be honoured.
/// `None` when `buf` does not start with a `basic.qos` method frame.
pub fn peek_qos_prefetch_size(buf: &[u8]) -> Option<u32> {
    let head = buf.get(..HEADER_LEN + 8)?;
    if head[0] != FRAME_METHOD || head[HEADER_LEN..HEADER_LEN + 4] != [0, 60, 0, 10] {
        return None;
    }
    let size = &head[HEADER_LEN + 4..HEADER_LEN + 8];
    Some(u32::from_be_bytes([size[0], size[1], size[2], size[3]]))
}

/// `None` when the payload is too short to hold the class and method ids.
fn decode_method(channel: u16, payload: &[u8]) -> Option<Result<Frame, CodecError>> {
    let ids = payload.get(..4)?;
    let class_id = u16::from_be_bytes([ids[0], ids[1]]);
    let method_id = u16::from_be_bytes([ids[2], ids[3]]);
    if !is_known_method(class_id, method_id) {
        return Some(Err(CodecError::UnknownMethod {
            channel,
            class_id,
            method_id,
        }));
    }
    let args = &payload[4..];
    if let Some(at) = table::method_table_offset(class_id, method_id, args)
        && table::check_depth(&args[at..]) == Depth::TooDeep
    {
        return Some(Err(CodecError::TooDeep {
            channel,
            class_id,
            method_id,
        }));
    }
    Some(match parse_class(payload) {
        Ok(([], class)) => Ok(Frame::Method(channel, class)),
        // Incomplete means the arguments stop short: the frame is complete,
        // so it is as malformed as any other failure or trailing garbage.
        _ => Err(CodecError::MalformedMethod {
            channel,
            class_id,
            method_id,
        }),
    })
}

/// `None` when the payload is too short for class id, weight and body size.
fn decode_header(channel: u16, payload: &[u8]) -> Option<Result<Frame, CodecError>> {
    if payload.len() < CONTENT_HEADER_MIN {
        return None;
    }
    let props = &payload[PROPERTIES_AT..];
    if let Some(at) = table::header_table_offset(props)
        && table::check_depth(&props[at..]) == Depth::TooDeep
    {
        return Some(Err(CodecError::TooDeep {
            channel,
            class_id: 0,
            method_id: 0,
        }));
    }
    // The weight field is ignored: always 0 in practice, as amq-protocol does.
    Some(match parse_content_header(payload) {
        Ok(([], header)) => Ok(Frame::Header(channel, header)),
        _ => Err(CodecError::MalformedHeader { channel }),
    })
}

/// True for every (class, method) pair AMQP 0-9-1 defines, both directions.
///
/// amq-protocol's parser fails the same way for an unknown id as for bad
/// arguments, so we look first: unknown is 540 NOT_IMPLEMENTED, bad is 502.
pub fn is_known_method(class_id: u16, method_id: u16) -> bool {
    let methods: &[u16] = match class_id {
        10 => &[10, 11, 20, 21, 30, 31, 40, 41, 50, 51, 60, 61, 70, 71], // connection
        20 => &[10, 11, 20, 21, 40, 41],                                 // channel
        30 => &[10, 11],                                                 // access
        40 => &[10, 11, 20, 21, 30, 31, 40, 51],                         // exchange
        50 => &[10, 11, 20, 21, 30, 31, 40, 41, 50, 51],                 // queue
        60 => &[
            10, 11, 20, 21, 30, 31, 40, 50, 60, 70, 71, 72, 80, 90, 100, 110, 111, 120,
        ], // basic
        85 => &[10, 11],                                                 // confirm
        90 => &[10, 11, 20, 21, 30, 31],                                 // tx
        _ => &[],
    };
    methods.contains(&method_id)
}

mod encode;
pub use encode::{
    encode_content, encode_deliver, encode_frame, encode_get_ok, encode_heartbeat, encode_method,
};

#[cfg(test)]
mod tests;
