//! What exchanges and bindings are declared with: plain data, stored in the
//! catalog and compared for RabbitMQ's equivalence checks.

use serde::{Deserialize, Serialize};

use crate::message::Headers;

/// How an exchange picks destinations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExchangeKind {
    /// Routing key equals binding key.
    Direct,
    /// Every binding.
    Fanout,
    /// Binding key is a pattern of `.`-separated words with `*` and `#`.
    Topic,
    /// Binding arguments are matched against message headers.
    Headers,
}

impl ExchangeKind {
    /// Parses AMQP's type names.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "direct" => Some(ExchangeKind::Direct),
            "fanout" => Some(ExchangeKind::Fanout),
            "topic" => Some(ExchangeKind::Topic),
            "headers" => Some(ExchangeKind::Headers),
            _ => None,
        }
    }

    /// AMQP's type name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
        }
    }
}

/// What an exchange is declared with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExchangeSpec {
    /// Its kind.
    pub kind: ExchangeKind,
    /// Survives restarts.
    pub durable: bool,
    /// Deleted when its last binding (as a source) goes.
    pub auto_delete: bool,
    /// Clients may not publish to it directly.
    pub internal: bool,
    /// Where messages go that no binding routes (RabbitMQ's `alternate-exchange`).
    pub alternate_exchange: Option<String>,
    /// Declaration arguments as given.
    pub arguments: Headers,
}

impl ExchangeSpec {
    /// A durable exchange of this kind with nothing else set.
    pub fn new(kind: ExchangeKind) -> Self {
        ExchangeSpec {
            kind,
            durable: true,
            auto_delete: false,
            internal: false,
            alternate_exchange: None,
            arguments: Headers::new(),
        }
    }
}

/// What a binding points at.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Destination {
    /// A queue of the same tenant.
    Queue(String),
    /// An exchange of the same tenant.
    Exchange(String),
}

impl Destination {
    /// The destination's name.
    pub fn name(&self) -> &str {
        match self {
            Destination::Queue(n) | Destination::Exchange(n) => n,
        }
    }
}

/// A binding from an exchange to a destination.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BindingSpec {
    /// The exchange messages come from.
    pub source: String,
    /// Where they go.
    pub destination: Destination,
    /// Binding key (pattern for topic exchanges; ignored by fanout and headers).
    pub routing_key: String,
    /// Binding arguments (the match table of headers exchanges).
    pub arguments: Headers,
}
