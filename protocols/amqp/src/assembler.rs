//! Per-channel content assembly: `basic.publish`, one content header, then body
//! frames until the announced size has arrived (AMQP 0-9-1 § 4.2.6).
//!
//! A plain state machine in the manner of RabbitMQ's `rabbit_command_assembler`:
//! every frame the connection receives for a channel goes through
//! [`Assembler::push`], which hands methods straight back and holds content
//! frames until a whole message is there. It knows nothing else about the
//! channel (open, closing, flow, confirms).
//!
//! Errors follow RabbitMQ: any frame out of order is 505 UNEXPECTED_FRAME, a
//! connection error; a message larger than the configured maximum is 406
//! PRECONDITION_FAILED, a channel error, refused when its header arrives and
//! before any of its body is buffered.

use amq_protocol::protocol::AMQPClass;
use amq_protocol::protocol::basic::{self, AMQPProperties};
use amq_protocol::types::ShortString;
use bytes::{Bytes, BytesMut};

use crate::codec::{Frame, short_text};

/// RabbitMQ's default `max_message_size`: 128 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 128 * 1024 * 1024;

/// The `basic` class id: the only class whose content a client may send.
const BASIC_CLASS: u16 = 60;

/// A published message, whole.
#[derive(Clone, Debug, PartialEq)]
pub struct Content {
    /// The `basic.publish` that announced it.
    pub publish: basic::Publish,
    /// The properties from its content header.
    pub properties: AMQPProperties,
    /// The body: the frame's own bytes when it came in one frame.
    pub body: Bytes,
}

/// What a frame amounted to, when it completed something.
#[derive(Clone, Debug, PartialEq)]
pub enum Assembled {
    /// A method without content, to be handled at once.
    Method(AMQPClass),
    /// A message, complete.
    Content(Box<Content>),
}

/// What the channel was waiting for when a frame arrived out of order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    /// A method frame.
    Method,
    /// The content header following `basic.publish`.
    ContentHeader,
    /// More content body.
    ContentBody,
}

/// A frame that breaks the method / header / body order, or a message too large.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AssemblyError {
    /// A frame of the wrong kind for the channel's state.
    #[error("{}", unexpected_text(*.expected))]
    UnexpectedFrame {
        /// What the channel was waiting for.
        expected: Expected,
    },
    /// A content header for a class other than `basic`.
    #[error("expected content header for class 60, got one for class {class_id} instead")]
    WrongClass {
        /// The class id in the header.
        class_id: u16,
    },
    /// Body frames carrying more bytes than the content header announced.
    #[error("content body of {received} bytes exceeds the {declared} bytes its header announced")]
    BodyOverrun {
        /// The size the header announced.
        declared: u64,
        /// The bytes received so far.
        received: u64,
    },
    /// The content header announces a body above the configured maximum.
    #[error("message size {size} is larger than configured max size {max}")]
    MessageTooLarge {
        /// The announced body size.
        size: u64,
        /// The configured maximum.
        max: u64,
    },
}

fn unexpected_text(expected: Expected) -> &'static str {
    match expected {
        Expected::Method => "expected method frame, got non method frame instead",
        Expected::ContentHeader => {
            "expected content header for class 60, got non content header frame instead"
        }
        Expected::ContentBody => "expected content body, got non content body frame instead",
    }
}

impl AssemblyError {
    /// The AMQP reply code: 406 for [`AssemblyError::MessageTooLarge`], else 505.
    pub fn reply_code(&self) -> u16 {
        match self {
            AssemblyError::MessageTooLarge { .. } => 406,
            _ => 505,
        }
    }

    /// True when the whole connection must close (505); false when only the
    /// channel closes (406).
    pub fn is_connection_error(&self) -> bool {
        self.reply_code() != 406
    }

    /// The reply text, in RabbitMQ's form (`"UNEXPECTED_FRAME - ..."`).
    pub fn reply_text(&self) -> ShortString {
        let name = match self.reply_code() {
            406 => "PRECONDITION_FAILED",
            _ => "UNEXPECTED_FRAME",
        };
        short_text(format!("{name} - {self}"))
    }
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Idle,
    /// `basic.publish` seen, content header next.
    Header(basic::Publish),
    /// Header seen; body frames until `size` bytes. `message` is what will be
    /// handed out, boxed once here; its body is filled in at the end.
    Body {
        message: Box<Content>,
        size: u64,
        body: Body,
    },
}

/// The body received so far, copied at most once.
#[derive(Debug)]
enum Body {
    /// Nothing yet.
    Empty,
    /// One frame's bytes, kept as they are in case they are the whole body.
    One(Bytes),
    /// Several frames, joined in a buffer reserved to the full size.
    Joined(BytesMut),
}

impl Body {
    fn len(&self) -> usize {
        match self {
            Body::Empty => 0,
            Body::One(b) => b.len(),
            Body::Joined(b) => b.len(),
        }
    }

    fn append(&mut self, piece: Bytes, size: u64) {
        *self = match std::mem::replace(self, Body::Empty) {
            Body::Empty => Body::One(piece),
            Body::One(first) => {
                // `size` is bounded by the maximum message size checked at the header.
                let mut joined = BytesMut::with_capacity(usize::try_from(size).unwrap_or(0));
                joined.extend_from_slice(&first);
                joined.extend_from_slice(&piece);
                Body::Joined(joined)
            }
            Body::Joined(mut joined) => {
                joined.extend_from_slice(&piece);
                Body::Joined(joined)
            }
        }
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Body::Empty => Bytes::new(),
            Body::One(b) => b,
            Body::Joined(b) => b.freeze(),
        }
    }
}

/// Assembles `basic.publish` + content header + body frames on one channel.
#[derive(Debug)]
pub struct Assembler {
    state: State,
    max_message_size: u64,
}

impl Default for Assembler {
    fn default() -> Self {
        Assembler::new(DEFAULT_MAX_MESSAGE_SIZE)
    }
}

impl Assembler {
    /// An idle assembler refusing bodies over `max_message_size` bytes.
    pub fn new(max_message_size: u64) -> Self {
        Assembler {
            state: State::Idle,
            max_message_size,
        }
    }

    /// True between a `basic.publish` and the end of its body.
    pub fn in_progress(&self) -> bool {
        !matches!(self.state, State::Idle)
    }

    /// Forgets any half-assembled message (the channel is closing).
    pub fn reset(&mut self) {
        self.state = State::Idle;
    }

    /// Takes the next frame of this channel.
    ///
    /// `Ok(None)` when the frame was absorbed into a message still incomplete
    /// (or was a heartbeat, which never disturbs assembly). After an error the
    /// assembler is idle again; the channel (406) or the connection (505) is
    /// closing and should not feed it further frames.
    pub fn push(&mut self, frame: Frame) -> Result<Option<Assembled>, AssemblyError> {
        let result = self.step(frame);
        if result.is_err() {
            self.reset();
        }
        result
    }

    fn step(&mut self, frame: Frame) -> Result<Option<Assembled>, AssemblyError> {
        let unexpected = |expected| Err(AssemblyError::UnexpectedFrame { expected });
        match (std::mem::take(&mut self.state), frame) {
            (state, Frame::Heartbeat) => {
                self.state = state;
                Ok(None)
            }
            (State::Idle, Frame::Method(_, AMQPClass::Basic(basic::AMQPMethod::Publish(p)))) => {
                self.state = State::Header(p);
                Ok(None)
            }
            (State::Idle, Frame::Method(_, method)) => Ok(Some(Assembled::Method(method))),
            (State::Idle, _) => unexpected(Expected::Method),
            (State::Header(publish), Frame::Header(_, header)) => {
                if header.class_id != BASIC_CLASS {
                    return Err(AssemblyError::WrongClass {
                        class_id: header.class_id,
                    });
                }
                let size = header.body_size;
                if size > self.max_message_size {
                    let max = self.max_message_size;
                    return Err(AssemblyError::MessageTooLarge { size, max });
                }
                let (properties, body) = (header.properties, Bytes::new());
                let message = Box::new(Content {
                    publish,
                    properties,
                    body,
                });
                self.state = State::Body {
                    message,
                    size,
                    body: Body::Empty,
                };
                Ok(self.finish_if_complete())
            }
            (State::Header(_), _) => unexpected(Expected::ContentHeader),
            (
                State::Body {
                    message,
                    size,
                    mut body,
                },
                Frame::Body(_, piece),
            ) => {
                let received = (body.len() + piece.len()) as u64;
                if received > size {
                    return Err(AssemblyError::BodyOverrun {
                        declared: size,
                        received,
                    });
                }
                if !piece.is_empty() {
                    body.append(piece, size);
                }
                self.state = State::Body {
                    message,
                    size,
                    body,
                };
                Ok(self.finish_if_complete())
            }
            (State::Body { .. }, _) => unexpected(Expected::ContentBody),
        }
    }

    fn finish_if_complete(&mut self) -> Option<Assembled> {
        match std::mem::take(&mut self.state) {
            State::Body {
                mut message,
                size,
                body,
            } if body.len() as u64 == size => {
                message.body = body.into_bytes();
                Some(Assembled::Content(message))
            }
            state => {
                self.state = state;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::frame::AMQPContentHeader;

    fn publish(ch: u16) -> Frame {
        let p = basic::Publish {
            exchange: "ex".into(),
            routing_key: "rk".into(),
            ..Default::default()
        };
        Frame::Method(ch, AMQPClass::Basic(basic::AMQPMethod::Publish(p)))
    }

    fn header(class_id: u16, body_size: u64) -> Frame {
        let properties = AMQPProperties::default().with_content_type("text/plain".into());
        Frame::Header(
            1,
            AMQPContentHeader {
                class_id,
                body_size,
                properties,
            },
        )
    }

    fn body(bytes: &'static [u8]) -> Frame {
        Frame::Body(1, Bytes::from_static(bytes))
    }

    fn ack() -> Frame {
        let ack = basic::Ack {
            delivery_tag: 7,
            multiple: false,
        };
        Frame::Method(1, AMQPClass::Basic(basic::AMQPMethod::Ack(ack)))
    }

    fn content(out: Option<Assembled>) -> Content {
        match out {
            Some(Assembled::Content(c)) => *c,
            other => panic!("expected content, got {other:?}"),
        }
    }

    #[test]
    fn methods_without_content_pass_straight_through() {
        let mut a = Assembler::default();
        assert!(matches!(a.push(ack()), Ok(Some(Assembled::Method(_)))));
        assert!(!a.in_progress());
    }

    #[test]
    fn single_frame_body_is_passed_through_without_copy() {
        let mut a = Assembler::default();
        let piece = Bytes::from(vec![7u8; 100]);
        let ptr = piece.as_ptr();
        assert_eq!(a.push(publish(1)), Ok(None));
        assert_eq!(a.push(header(60, 100)), Ok(None));
        assert!(a.in_progress());
        let c = content(a.push(Frame::Body(1, piece)).unwrap());
        assert_eq!(c.body.as_ptr(), ptr);
        assert_eq!(c.publish.routing_key.as_str(), "rk");
        assert_eq!(
            c.properties.content_type().as_ref().map(|s| s.as_str()),
            Some("text/plain")
        );
        assert!(!a.in_progress());
    }

    #[test]
    fn empty_body_completes_at_the_header() {
        let mut a = Assembler::default();
        a.push(publish(1)).unwrap();
        let c = content(a.push(header(60, 0)).unwrap());
        assert!(c.body.is_empty());
    }

    #[test]
    fn several_frames_join_into_one_buffer_and_heartbeats_interleave() {
        let mut a = Assembler::default();
        a.push(publish(1)).unwrap();
        a.push(header(60, 11)).unwrap();
        assert_eq!(a.push(body(b"hello")), Ok(None));
        assert_eq!(a.push(Frame::Heartbeat), Ok(None));
        assert_eq!(a.push(body(b"")), Ok(None));
        assert_eq!(a.push(body(b" ")), Ok(None));
        let c = content(a.push(body(b"world")).unwrap());
        assert_eq!(&c.body[..], b"hello world");
        // Ready for the next message.
        a.push(publish(1)).unwrap();
        assert_eq!(&content(a.push(header(60, 0)).unwrap()).body[..], b"");
    }

    #[test]
    fn frames_out_of_order_are_unexpected() {
        let unexpected = |e| Err(AssemblyError::UnexpectedFrame { expected: e });
        let mut a = Assembler::default();
        assert_eq!(a.push(header(60, 1)), unexpected(Expected::Method));
        assert_eq!(a.push(body(b"x")), unexpected(Expected::Method));

        a.push(publish(1)).unwrap();
        assert_eq!(a.push(ack()), unexpected(Expected::ContentHeader));
        assert!(!a.in_progress(), "an error leaves the assembler idle");

        a.push(publish(1)).unwrap();
        assert_eq!(a.push(body(b"x")), unexpected(Expected::ContentHeader));

        a.push(publish(1)).unwrap();
        a.push(header(60, 2)).unwrap();
        assert_eq!(a.push(publish(1)), unexpected(Expected::ContentBody));

        a.push(publish(1)).unwrap();
        a.push(header(60, 2)).unwrap();
        let err = a.push(header(60, 2)).unwrap_err();
        assert_eq!(err.reply_code(), 505);
        assert!(err.is_connection_error());
        assert_eq!(
            err.reply_text().as_str(),
            "UNEXPECTED_FRAME - expected content body, got non content body frame instead"
        );
    }

    #[test]
    fn wrong_class_and_overrun_are_unexpected_frames() {
        let mut a = Assembler::default();
        a.push(publish(1)).unwrap();
        let err = a.push(header(50, 1)).unwrap_err();
        assert_eq!(err, AssemblyError::WrongClass { class_id: 50 });
        assert_eq!(err.reply_code(), 505);

        a.push(publish(1)).unwrap();
        a.push(header(60, 3)).unwrap();
        a.push(body(b"ab")).unwrap();
        let err = a.push(body(b"cd")).unwrap_err();
        assert_eq!(
            err,
            AssemblyError::BodyOverrun {
                declared: 3,
                received: 4
            }
        );
        assert_eq!(err.reply_code(), 505);
    }

    #[test]
    fn oversized_message_is_refused_at_its_header() {
        let mut a = Assembler::new(10);
        a.push(publish(1)).unwrap();
        let err = a.push(header(60, 11)).unwrap_err();
        assert_eq!(err.reply_code(), 406);
        assert!(!err.is_connection_error());
        assert_eq!(
            err.reply_text().as_str(),
            "PRECONDITION_FAILED - message size 11 is larger than configured max size 10"
        );
        a.push(publish(1)).unwrap();
        a.push(header(60, 10)).unwrap();
        assert_eq!(
            &content(a.push(body(b"0123456789")).unwrap()).body[..],
            b"0123456789"
        );
    }
}
