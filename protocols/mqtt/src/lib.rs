//! The MQTT 3.1.1 and 5.0 adapter: MQTT clients onto the gateway's engine.
//!
//! - [`codec`]: packets in and out (rumqttc's codecs plus the server-side validation).
//! - [`topic`]: topic names and filters, matching, `$share`, and their AMQP form.
//! - [`properties`]: PUBLISH ↔ the engine's [`gw_core::Message`].

pub mod codec;
pub mod properties;
pub mod topic;
