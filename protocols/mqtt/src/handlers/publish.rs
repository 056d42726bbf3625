//! PUBLISH from a client (§ 3.3): topic aliases, the publish permission,
//! the message for the engine, retained messages, and the acknowledgement
//! once the engine has stored what it must.

use bytes::Bytes;
use gw_core::{Access, Message, now_millis};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;

use crate::client::{Client, Reply};
use crate::codec::{AckKind, ProtocolVersion};
use crate::error::{self, MqttError, code};
use crate::properties::{self, PropertiesError};
use crate::retain;

impl Client {
    /// A 3.1.1 PUBLISH.
    pub fn publish_v4(&mut self, mut p: v4::Publish) -> Result<(), MqttError> {
        own(&mut p.payload);
        let qos = p.qos as u8;
        if self.duplicate_qos2(qos, p.pkid) {
            return Ok(());
        }
        let message = Ok(properties::message_from_v4_publish(&p));
        self.publish(&p.topic, qos, p.retain, p.pkid, message)
    }

    /// An MQTT 5 PUBLISH: resolves its topic alias first (§ 3.3.2.3.4).
    pub fn publish_v5(&mut self, mut p: v5::Publish) -> Result<(), MqttError> {
        own(&mut p.payload);
        if let Some(c) = p
            .properties
            .as_mut()
            .and_then(|p| p.correlation_data.as_mut())
        {
            own(c);
        }
        let qos = p.qos as u8;
        let alias = p.properties.as_ref().and_then(|props| props.topic_alias);
        if let Some(alias) = alias {
            let max = self.config.topic_alias_maximum;
            if alias > max {
                // [MQTT-3.3.2-9]: outside the range we announced.
                return Err(MqttError::TopicAliasInvalid { alias, max });
            }
            let slot = usize::from(alias) - 1;
            if p.topic.is_empty() {
                let known = self
                    .traffic
                    .as_ref()
                    .and_then(|t| t.aliases_in.get(slot))
                    .and_then(Option::as_ref);
                let Some(topic) = known else {
                    return Err(MqttError::Protocol(format!(
                        "topic alias {alias} is not set"
                    )));
                };
                p.topic = Bytes::copy_from_slice(topic.as_bytes());
            } else {
                let aliases = &mut self.traffic().aliases_in;
                if aliases.len() <= slot {
                    aliases.resize(slot + 1, None);
                }
                let topic = String::from_utf8_lossy(&p.topic).into_owned();
                if let Some(s) = aliases.get_mut(slot) {
                    *s = Some(topic);
                }
            }
        }
        if self.duplicate_qos2(qos, p.pkid) {
            return Ok(());
        }
        let message = properties::message_from_v5_publish(&p, now_millis());
        let topic = String::from_utf8_lossy(&p.topic);
        self.publish(&topic, qos, p.retain, p.pkid, message)
    }

    /// A QoS 2 PUBLISH whose packet id already has a PUBREC out is a re-send:
    /// acknowledge it again without publishing twice (§ 4.3.3).
    fn duplicate_qos2(&mut self, qos: u8, pid: u16) -> bool {
        if qos != 2 || !self.incoming_qos2.contains(&pid) {
            return false;
        }
        self.reply(None, ack(AckKind::PubRec, pid, code::SUCCESS, None));
        true
    }

    fn publish(
        &mut self,
        topic: &str,
        qos: u8,
        retain: bool,
        pid: u16,
        message: Result<Message, PropertiesError>,
    ) -> Result<(), MqttError> {
        self.publishes = true;
        let v5 = self.version == ProtocolVersion::V5;
        if qos > 0 && v5 && self.inbound_in_flight() >= usize::from(self.config.receive_maximum) {
            return Err(MqttError::ReceiveMaximumExceeded(
                self.config.receive_maximum,
            ));
        }
        if retain && !self.config.retain_available {
            return Err(MqttError::RetainNotSupported);
        }
        let kind = if qos == 2 {
            AckKind::PubRec
        } else {
            AckKind::PubAck
        };
        if !self.may_publish() {
            let why = format!("publishing to '{topic}' is not allowed");
            tracing::debug!(client_id = self.client_id(), topic, "publish refused");
            // 3.1.1 can only close [MQTT-3.3.5-2]; 5.0 answers QoS 1/2 with 0x87.
            if qos == 0 || !v5 {
                return Err(MqttError::NotAuthorized(why));
            }
            let text = self.text(|| why);
            self.reply(None, ack(kind, pid, code::NOT_AUTHORIZED, text));
            return Ok(());
        }
        if let Err(e) = self.check_topic(Access::Write, topic) {
            // Topic authorisation, as Mosquitto's ACLs: 5.0 answers QoS 1/2
            // with 0x87; QoS 0, and 3.1.1 which has no negative ack, are
            // dropped (3.1.1 still acknowledged, so the client's flow goes on).
            tracing::debug!(client_id = self.client_id(), topic, cause = %e, "publish refused by a topic permission");
            if qos == 0 {
                return Ok(());
            }
            if v5 {
                let text = self.text(|| e.to_string());
                self.reply(None, ack(kind, pid, code::NOT_AUTHORIZED, text));
            } else {
                if qos == 2 {
                    self.incoming_qos2.insert(pid);
                }
                self.reply(None, ack(kind, pid, code::SUCCESS, None));
            }
            return Ok(());
        }
        let mut message = match message {
            Ok(m) => m,
            Err(PropertiesError::PayloadFormatInvalid) if qos > 0 => {
                let text = self.text(|| "payload is not UTF-8".into());
                self.reply(None, ack(kind, pid, code::PAYLOAD_FORMAT_INVALID, text));
                return Ok(());
            }
            Err(PropertiesError::PayloadFormatInvalid) => {
                return Err(MqttError::PayloadFormatInvalid);
            }
            Err(e) => return Err(MqttError::Protocol(e.to_string())),
        };
        let publisher = self.has_no_local.then(|| self.client_id().to_owned());
        properties::mark_mqtt_headers(&mut message, qos, retain, publisher.as_deref());
        let retained_ticket = if retain {
            retain::store(&self.tenant, topic, &message)
        } else {
            None
        };
        // QoS 1 and 2 publishes are visible to subscribers only once stored:
        // one the client is told failed (PUBACK 0x80, a dropped connection)
        // is never delivered. QoS 0 has no answer to keep true.
        let published = if qos > 0 {
            self.tenant.publish_confirmed(message)
        } else {
            self.tenant.publish(message)
        };
        let receipt = match published {
            Ok(r) => r,
            Err(e) if qos > 0 && v5 && !matches!(e, gw_core::Error::ShuttingDown) => {
                tracing::debug!(cause = %e, topic, "publish refused by the engine");
                let text = self.text(|| e.to_string());
                self.reply(None, ack(kind, pid, error::puback_v5(&e), text));
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        if qos == 0 {
            return Ok(());
        }
        let reason = match (receipt.routed, receipt.rejected) {
            (0, 0) if v5 => code::NO_MATCHING_SUBSCRIBERS,
            (0, r) if r > 0 && v5 => code::QUOTA_EXCEEDED,
            _ => code::SUCCESS,
        };
        let mut ticket = receipt.ticket.max(retained_ticket);
        if qos == 2 && reason < 0x80 {
            self.incoming_qos2.insert(pid);
            ticket = ticket.max(self.save_record());
        }
        let text = (reason == code::QUOTA_EXCEEDED)
            .then(|| self.text(|| "every queue is full".into()))
            .flatten();
        self.reply(ticket, ack(kind, pid, reason, text));
        Ok(())
    }
}

/// Small payloads decoded from the read buffer are views into it: a message
/// kept in a queue would keep the whole read chunk (16 KiB under load)
/// alive. Copied into a buffer of their own; large ones were read into an
/// allocation of their own anyway.
fn own(bytes: &mut Bytes) {
    if bytes.len() < 8192 {
        *bytes = Bytes::copy_from_slice(bytes);
    }
}

/// A publish acknowledgement reply.
pub fn ack(kind: AckKind, pid: u16, reason: u8, text: Option<String>) -> Reply {
    Reply::Ack {
        kind,
        pid,
        reason,
        text,
    }
}
