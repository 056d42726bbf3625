//! Every way an AMQP operation fails, as the reply the client gets: one place
//! that maps engine errors, codec errors and protocol violations to reply
//! codes and texts (AMQP 0-9-1 § 1.3 "Constants"; texts in RabbitMQ's words,
//! so client code that matches on them keeps working).
//!
//! Codes 311–313 and 403–406 are *soft* errors: `channel.close`, only that
//! channel ends. Everything else (320, 402, 501–506, 530, 540, 541) is a
//! *hard* error: `connection.close`.

use amq_protocol::types::ShortString;
use gw_core::Error as EngineError;

use crate::assembler::AssemblyError;
use crate::codec::{CodecError, short_text};

/// Reply codes used by this door (AMQP 0-9-1 constants).
pub mod code {
    /// basic.return: the message could not be routed (mandatory).
    pub const NO_ROUTE: u16 = 312;
    /// The server closed the connection (operator, shutdown).
    pub const CONNECTION_FORCED: u16 = 320;
    /// Permission denied.
    pub const ACCESS_REFUSED: u16 = 403;
    /// No such exchange or queue.
    pub const NOT_FOUND: u16 = 404;
    /// Exclusive queue of another connection.
    pub const RESOURCE_LOCKED: u16 = 405;
    /// A precondition of the request does not hold.
    pub const PRECONDITION_FAILED: u16 = 406;
    /// Malformed method arguments.
    pub const SYNTAX_ERROR: u16 = 502;
    /// A method not allowed here.
    pub const COMMAND_INVALID: u16 = 503;
    /// A channel used wrongly (not open, opened twice).
    pub const CHANNEL_ERROR: u16 = 504;
    /// A frame out of order.
    pub const UNEXPECTED_FRAME: u16 = 505;
    /// Not allowed (vhost, limits, negotiation).
    pub const NOT_ALLOWED: u16 = 530;
    /// Not implemented by this server.
    pub const NOT_IMPLEMENTED: u16 = 540;
    /// Our fault.
    pub const INTERNAL_ERROR: u16 = 541;
}

/// RabbitMQ's upper-case name of a reply code, prefixed to reply texts.
pub fn code_name(code: u16) -> &'static str {
    match code {
        200 => "OK",
        311 => "CONTENT_TOO_LARGE",
        312 => "NO_ROUTE",
        313 => "NO_CONSUMERS",
        320 => "CONNECTION_FORCED",
        402 => "INVALID_PATH",
        403 => "ACCESS_REFUSED",
        404 => "NOT_FOUND",
        405 => "RESOURCE_LOCKED",
        406 => "PRECONDITION_FAILED",
        501 => "FRAME_ERROR",
        502 => "SYNTAX_ERROR",
        503 => "COMMAND_INVALID",
        504 => "CHANNEL_ERROR",
        505 => "UNEXPECTED_FRAME",
        506 => "RESOURCE_ERROR",
        530 => "NOT_ALLOWED",
        540 => "NOT_IMPLEMENTED",
        _ => "INTERNAL_ERROR",
    }
}

/// A failed operation, ready to be sent as `channel.close` or `connection.close`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{text}")]
pub struct AmqpError {
    /// The reply code.
    pub code: u16,
    /// The reply text, `"NAME - explanation"`.
    pub text: String,
    /// The class of the method that failed (0 when none).
    pub class_id: u16,
    /// The method that failed (0 when none).
    pub method_id: u16,
}

impl AmqpError {
    /// An error with this code; the explanation is prefixed with the code's name.
    pub fn new(code: u16, explanation: impl std::fmt::Display) -> Self {
        AmqpError {
            code,
            text: format!("{} - {explanation}", code_name(code)),
            class_id: 0,
            method_id: 0,
        }
    }

    /// 404 NOT_FOUND.
    pub fn not_found(explanation: impl std::fmt::Display) -> Self {
        Self::new(code::NOT_FOUND, explanation)
    }

    /// 403 ACCESS_REFUSED.
    pub fn access_refused(explanation: impl std::fmt::Display) -> Self {
        Self::new(code::ACCESS_REFUSED, explanation)
    }

    /// 405 RESOURCE_LOCKED.
    pub fn resource_locked(explanation: impl std::fmt::Display) -> Self {
        Self::new(code::RESOURCE_LOCKED, explanation)
    }

    /// 406 PRECONDITION_FAILED.
    pub fn precondition(explanation: impl std::fmt::Display) -> Self {
        Self::new(code::PRECONDITION_FAILED, explanation)
    }

    /// 503 COMMAND_INVALID.
    pub fn command_invalid(explanation: impl std::fmt::Display) -> Self {
        Self::new(code::COMMAND_INVALID, explanation)
    }

    /// 504 CHANNEL_ERROR.
    pub fn channel_error(explanation: impl std::fmt::Display) -> Self {
        Self::new(code::CHANNEL_ERROR, explanation)
    }

    /// 530 NOT_ALLOWED.
    pub fn not_allowed(explanation: impl std::fmt::Display) -> Self {
        Self::new(code::NOT_ALLOWED, explanation)
    }

    /// 540 NOT_IMPLEMENTED.
    pub fn not_implemented(explanation: impl std::fmt::Display) -> Self {
        Self::new(code::NOT_IMPLEMENTED, explanation)
    }

    /// 541 INTERNAL_ERROR.
    pub fn internal(explanation: impl std::fmt::Display) -> Self {
        Self::new(code::INTERNAL_ERROR, explanation)
    }

    /// Names the method the error answers, unless one is named already.
    pub fn on_method(mut self, class_id: u16, method_id: u16) -> Self {
        if self.class_id == 0 && self.method_id == 0 {
            self.class_id = class_id;
            self.method_id = method_id;
        }
        self
    }

    /// True for hard errors, which close the whole connection.
    pub fn is_connection_error(&self) -> bool {
        !matches!(self.code, 311..=313 | 403..=406)
    }

    /// The reply text cut to a short string.
    pub fn reply_text(&self) -> ShortString {
        short_text(self.text.clone())
    }

    /// Maps an engine error; `tenant` names the vhost in texts as RabbitMQ does.
    pub fn engine(err: EngineError, tenant: &str) -> Self {
        match err {
            EngineError::NotFound { kind, name } => {
                Self::not_found(format!("no {kind} '{name}' in vhost '{tenant}'"))
            }
            EngineError::PreconditionFailed(text) => Self::precondition(text),
            EngineError::ResourceLocked(text) => Self::resource_locked(text),
            EngineError::Invalid { field, reason } => {
                Self::precondition(format!("invalid {field}: {reason}"))
            }
            EngineError::AccessRefused(text) => Self::access_refused(text),
            EngineError::AuthenticationFailed(user) => {
                Self::access_refused(format!("login refused for user '{user}'"))
            }
            EngineError::UnknownDelivery(text) => Self::precondition(text),
            EngineError::ConsumerCancelled(text) => Self::not_found(text),
            EngineError::LimitReached(text) => Self::precondition(text),
            EngineError::ShuttingDown => Self::new(
                code::CONNECTION_FORCED,
                "broker forced connection closure with reason 'shutdown'",
            ),
            other => Self::internal(other),
        }
    }
}

impl From<CodecError> for AmqpError {
    fn from(e: CodecError) -> Self {
        let (class_id, method_id) = e.class_method();
        AmqpError {
            code: e.reply_code(),
            text: e.reply_text().as_str().to_owned(),
            class_id,
            method_id,
        }
    }
}

impl From<AssemblyError> for AmqpError {
    fn from(e: AssemblyError) -> Self {
        let mut err = AmqpError::new(e.reply_code(), &e);
        if e.reply_code() == code::PRECONDITION_FAILED {
            err = err.on_method(60, 40);
        }
        err
    }
}

/// `Result` of an AMQP operation.
pub type AmqpResult<T = ()> = Result<T, AmqpError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_and_hard_errors() {
        assert!(!AmqpError::not_found("x").is_connection_error());
        assert!(!AmqpError::precondition("x").is_connection_error());
        assert!(AmqpError::not_allowed("x").is_connection_error());
        assert!(AmqpError::channel_error("x").is_connection_error());
        assert!(AmqpError::new(code::CONNECTION_FORCED, "x").is_connection_error());
    }

    #[test]
    fn engine_errors_read_like_rabbitmq() {
        let e = AmqpError::engine(
            EngineError::NotFound {
                kind: "queue",
                name: "q1".into(),
            },
            "/",
        );
        assert_eq!(e.code, 404);
        assert_eq!(e.text, "NOT_FOUND - no queue 'q1' in vhost '/'");
        assert_eq!(
            AmqpError::engine(EngineError::ShuttingDown, "/").text,
            "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'"
        );
    }

    #[test]
    fn method_is_named_once() {
        let e = AmqpError::precondition("x")
            .on_method(50, 10)
            .on_method(60, 40);
        assert_eq!((e.class_id, e.method_id), (50, 10));
        let long = AmqpError::precondition("y".repeat(400));
        assert_eq!(long.reply_text().as_str().len(), 255);
    }
}
