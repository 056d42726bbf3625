//! The AMQP 0-9-1 door of the gateway.
//!
//! Layout (the connection logic comes later):
//! - [`codec`]: bytes ↔ frames, on top of amq-protocol, with a server's guards.
//! - [`assembler`]: per channel, `basic.publish` + content header + body frames → one message.
//! - [`properties`]: basic properties and header tables ↔ the engine's [`gw_core::Message`].
//! - `table` (private): field-table nesting guard and wire fix-ups.

// Tests may unwrap; the library may not (workspace lint `clippy::unwrap_used`).
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod assembler;
pub mod codec;
pub mod properties;
mod table;
