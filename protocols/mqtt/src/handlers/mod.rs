//! One handler file per packet family, each an `impl Client` block:
//! [`connect`] (CONNECT → CONNACK), [`publish`] (PUBLISH in), [`ack`]
//! (PUBACK, PUBREC, PUBREL, PUBCOMP), [`subscribe`] (SUBSCRIBE, UNSUBSCRIBE),
//! [`disconnect`] (DISCONNECT, and the end of a connection), [`resume`]
//! (a stored session picked up at CONNECT). This file
//! dispatches a decoded packet to them.

pub mod ack;
pub mod connect;
pub mod disconnect;
pub mod publish;
pub mod resume;
pub mod subscribe;

use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;

use crate::client::Client;
use crate::codec::{Packet, write_pingresp};
use crate::error::MqttError;

/// What the connection does after a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on.
    Continue,
    /// The client sent DISCONNECT: close; publish the will only if asked (5.0 0x04).
    Disconnect {
        /// Publish the will.
        will: bool,
    },
}

impl Client {
    /// Handles one packet from the connected client.
    pub fn handle(&mut self, packet: Packet) -> Result<Flow, MqttError> {
        match packet {
            Packet::V4(p) => match p {
                v4::Packet::Publish(p) => self.publish_v4(p)?,
                v4::Packet::PubAck(a) => self.on_puback(a.pkid),
                v4::Packet::PubRec(a) => self.on_pubrec(a.pkid, 0),
                v4::Packet::PubRel(a) => self.on_pubrel(a.pkid),
                v4::Packet::PubComp(a) => self.on_pubcomp(a.pkid),
                v4::Packet::Subscribe(s) => self.subscribe_v4(s),
                v4::Packet::Unsubscribe(u) => self.unsubscribe_v4(u),
                v4::Packet::PingReq => write_pingresp(&mut self.out),
                v4::Packet::Disconnect => return Ok(Flow::Disconnect { will: false }),
                // [MQTT-3.1.0-2]: a second CONNECT is a protocol violation.
                v4::Packet::Connect(_) => return Err(MqttError::Protocol("second CONNECT".into())),
                other => {
                    return Err(MqttError::Protocol(format!("unexpected packet {other:?}")));
                }
            },
            Packet::V5(p) => match p {
                v5::Packet::Publish(p) => self.publish_v5(p)?,
                v5::Packet::PubAck(a) => self.on_puback(a.pkid),
                v5::Packet::PubRec(a) => self.on_pubrec(a.pkid, v5_pubrec_code(&a.reason)),
                v5::Packet::PubRel(a) => self.on_pubrel(a.pkid),
                v5::Packet::PubComp(a) => self.on_pubcomp(a.pkid),
                v5::Packet::Subscribe(s) => self.subscribe_v5(s),
                v5::Packet::Unsubscribe(u) => self.unsubscribe_v5(u),
                v5::Packet::PingReq(_) => write_pingresp(&mut self.out),
                v5::Packet::Disconnect(d) => return self.on_disconnect_v5(&d),
                v5::Packet::Connect(..) => {
                    return Err(MqttError::Protocol("second CONNECT".into()));
                }
                other => {
                    return Err(MqttError::Protocol(format!("unexpected packet {other:?}")));
                }
            },
            // No authentication method was agreed at CONNECT (§ 4.12).
            Packet::Auth(_) => {
                return Err(MqttError::Protocol(
                    "AUTH without an authentication method".into(),
                ));
            }
        }
        Ok(Flow::Continue)
    }
}

/// Only whether PUBREC refused the message (≥ 0x80) matters.
fn v5_pubrec_code(reason: &v5::PubRecReason) -> u8 {
    match reason {
        v5::PubRecReason::Success | v5::PubRecReason::NoMatchingSubscribers => 0,
        _ => 0x80,
    }
}
