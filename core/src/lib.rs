//! The gateway's message engine: tenants, exchanges, queues, consumer groups and
//! durable storage, with no network I/O. Protocol adapters (AMQP, MQTT, HTTP)
//! translate their wire protocols onto this crate's API.

mod message;

pub use message::{now_millis, HeaderValue, Headers, Message, MessageId, Properties, UnixMillis};
