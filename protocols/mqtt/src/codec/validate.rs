//! The server-side rules rumqttc does not enforce, checked on the raw bytes of
//! each packet before rumqttc decodes it.
//!
//! rumqttc is written as a client: it ignores reserved bits, accepts trailing
//! bytes, empty SUBSCRIBE/UNSUBSCRIBE lists, wildcards in topic names and
//! non-UTF-8 MQTT 5 topics, keeps duplicate properties, and cannot read some
//! valid MQTT 5 packets at all (DISCONNECT with a remaining length of 0 or 1,
//! any AUTH). This module walks every client packet with exact bounds first,
//! so rumqttc only ever sees bytes we already know to be well formed, and it
//! decodes the MQTT 5 DISCONNECT and AUTH itself.

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5;

use super::error::CodecError;
use super::wire::{Block, Reader, Value, id};
use super::{AuthPacket, ProtocolVersion};
use crate::topic;

/// Control packet types (MQTT 5.0 § 2.1.2).
pub(crate) mod kind {
    pub const CONNECT: u8 = 1;
    pub const CONNACK: u8 = 2;
    pub const PUBLISH: u8 = 3;
    pub const PUBACK: u8 = 4;
    pub const PUBREC: u8 = 5;
    pub const PUBREL: u8 = 6;
    pub const PUBCOMP: u8 = 7;
    pub const SUBSCRIBE: u8 = 8;
    pub const SUBACK: u8 = 9;
    pub const UNSUBSCRIBE: u8 = 10;
    pub const UNSUBACK: u8 = 11;
    pub const PINGRESP: u8 = 13;
    pub const DISCONNECT: u8 = 14;
    pub const AUTH: u8 = 15;
}

/// What the body check produced: either "let rumqttc decode it" or the packet itself.
#[derive(Debug)]
pub(crate) enum Checked {
    /// Well formed; rumqttc decodes it.
    ForRumqttc,
    /// MQTT 5 DISCONNECT, decoded here (rumqttc refuses remaining lengths 0 and 1).
    Disconnect(v5::Disconnect),
    /// MQTT 5 AUTH, decoded here (rumqttc's reader does not know packet type 15).
    Auth(AuthPacket),
}

/// Checks the first byte: a type a client may send, with the flags its type requires.
///
/// Runs before the rest of the packet is buffered, so junk is refused early.
pub(crate) fn check_fixed_header(version: ProtocolVersion, byte1: u8) -> Result<(), CodecError> {
    let (packet_type, flags) = (byte1 >> 4, byte1 & 0x0F);
    match packet_type {
        0 => return Err(CodecError::ReservedPacketType(0)),
        kind::AUTH if version == ProtocolVersion::V311 => {
            return Err(CodecError::ReservedPacketType(kind::AUTH));
        }
        kind::CONNACK | kind::SUBACK | kind::UNSUBACK | kind::PINGRESP => {
            return Err(CodecError::UnexpectedPacketType(packet_type));
        }
        _ => {}
    }
    let required = match packet_type {
        kind::PUBLISH => {
            // [MQTT-3.3.1-4]: QoS 3 is malformed; [MQTT-3.3.1-2]: no DUP at QoS 0.
            let qos = (flags >> 1) & 0b11;
            if qos == 3 {
                return Err(CodecError::InvalidQos);
            }
            if qos == 0 && flags & 0b1000 != 0 {
                return Err(CodecError::DupOnQos0);
            }
            return Ok(());
        }
        kind::PUBREL | kind::SUBSCRIBE | kind::UNSUBSCRIBE => 0b0010,
        _ => 0,
    };
    if flags != required {
        return Err(CodecError::InvalidFixedHeaderFlags { packet_type, flags });
    }
    Ok(())
}

/// Checks the bytes after the fixed header of a client packet whose first
/// byte passed [`check_fixed_header`].
pub(crate) fn check_body(
    version: ProtocolVersion,
    byte1: u8,
    body: &[u8],
) -> Result<Checked, CodecError> {
    let v5 = version == ProtocolVersion::V5;
    let mut r = Reader::new(body);
    match byte1 >> 4 {
        kind::CONNECT => connect(version, &mut r)?,
        kind::PUBLISH => publish(v5, byte1, &mut r)?,
        kind::PUBACK | kind::PUBREC | kind::PUBREL | kind::PUBCOMP => ack(v5, byte1 >> 4, &mut r)?,
        kind::SUBSCRIBE => subscribe(v5, &mut r)?,
        kind::UNSUBSCRIBE => unsubscribe(v5, &mut r)?,
        kind::DISCONNECT if v5 => return disconnect(&mut r).map(Checked::Disconnect),
        kind::AUTH => return auth(&mut r).map(Checked::Auth),
        // PINGREQ, and DISCONNECT in 3.1.1, have no body.
        _ => {}
    }
    r.expect_end("packet")?;
    Ok(Checked::ForRumqttc)
}

/// CONNECT (§ 3.1): flags [MQTT-3.1.2-3/11/13/14/15/22], strings, properties,
/// exact end.
fn connect(version: ProtocolVersion, r: &mut Reader<'_>) -> Result<(), CodecError> {
    let v5 = version == ProtocolVersion::V5;
    let name = r.binary("protocol name")?;
    let level = r.u8("protocol level")?;
    if name != b"MQTT" {
        return Err(match name {
            b"MQIsdp" => CodecError::UnsupportedProtocolVersion { level },
            _ => CodecError::InvalidProtocolName(String::from_utf8_lossy(name).into_owned()),
        });
    }
    if level != version.level() {
        return Err(CodecError::UnsupportedProtocolVersion { level });
    }
    let flags = r.u8("connect flags")?;
    if flags & 0b0000_0001 != 0 {
        return Err(CodecError::ConnectReservedFlag);
    }
    let will = flags & 0b0000_0100 != 0;
    let will_qos = (flags >> 3) & 0b11;
    let will_retain = flags & 0b0010_0000 != 0;
    let password = flags & 0b0100_0000 != 0;
    let username = flags & 0b1000_0000 != 0;
    if !will && (will_qos != 0 || will_retain) {
        return Err(CodecError::WillFlagsWithoutWill);
    }
    if will_qos == 3 {
        return Err(CodecError::InvalidQos);
    }
    if !v5 && password && !username {
        return Err(CodecError::PasswordWithoutUsername);
    }
    r.u16("keep alive")?;
    if v5 {
        let seen = r.properties(Block::Connect, |_, _| Ok(()))?;
        // § 3.1.2.11.10: Authentication Data without an Authentication Method.
        if seen.has(id::AUTHENTICATION_DATA) && !seen.has(id::AUTHENTICATION_METHOD) {
            return Err(CodecError::InvalidPropertyValue {
                id: id::AUTHENTICATION_DATA,
            });
        }
    }
    r.string("client identifier")?;
    if will {
        if v5 {
            r.properties(Block::Will, |_, _| Ok(()))?;
        }
        let topic = r.string("will topic")?;
        topic::validate_topic_name(topic).map_err(CodecError::TopicNameInvalid)?;
        r.binary("will payload")?;
    }
    if username {
        r.string("user name")?;
    }
    if password {
        // Binary data in the spec; rumqttc can only hold UTF-8.
        let bytes = r.binary("password")?;
        if std::str::from_utf8(bytes).is_err() {
            return Err(CodecError::PasswordNotUtf8);
        }
    }
    Ok(())
}

/// PUBLISH (§ 3.3): topic name rules, packet id, properties. The payload is opaque.
fn publish(v5: bool, byte1: u8, r: &mut Reader<'_>) -> Result<(), CodecError> {
    let topic_name = r.string("topic name")?;
    if (byte1 >> 1) & 0b11 != 0 && r.u16("packet identifier")? == 0 {
        return Err(CodecError::PacketIdZero);
    }
    if v5 {
        let seen = r.properties(Block::Publish, |_, _| Ok(()))?;
        // § 3.3.2.1: an empty topic is only allowed with a topic alias.
        if topic_name.is_empty() {
            return if seen.has(id::TOPIC_ALIAS) {
                // The rest is payload.
                r.take(r.remaining(), "payload").map(drop)
            } else {
                Err(CodecError::EmptyTopicWithoutAlias)
            };
        }
    }
    topic::validate_topic_name(topic_name).map_err(CodecError::TopicNameInvalid)?;
    r.take(r.remaining(), "payload").map(drop)
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP (§ 3.4–3.7). In 3.1.1 exactly a packet id;
/// in 5.0 optionally a reason code and properties.
fn ack(v5: bool, packet_type: u8, r: &mut Reader<'_>) -> Result<(), CodecError> {
    r.u16("packet identifier")?;
    if !v5 || r.is_empty() {
        return Ok(());
    }
    let code = r.u8("reason code")?;
    let valid: &[u8] = match packet_type {
        kind::PUBACK | kind::PUBREC => &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99],
        _ => &[0x00, 0x92],
    };
    if !valid.contains(&code) {
        return Err(CodecError::InvalidReasonCode { code });
    }
    // § 3.4.2.2: a remaining length below 4 means no property length.
    if !r.is_empty() {
        r.properties(Block::Ack, |_, _| Ok(()))?;
    }
    Ok(())
}

/// SUBSCRIBE (§ 3.8): packet id, properties, at least one filter with valid options.
fn subscribe(v5: bool, r: &mut Reader<'_>) -> Result<(), CodecError> {
    if r.u16("packet identifier")? == 0 {
        return Err(CodecError::PacketIdZero);
    }
    if v5 {
        r.properties(Block::Subscribe, |_, _| Ok(()))?;
    }
    if r.is_empty() {
        return Err(CodecError::NoTopicFilters);
    }
    while !r.is_empty() {
        let filter = r.string("topic filter")?;
        let options = r.u8("subscription options")?;
        // 3.1.1 uses bits 0-1; 5.0 bits 0-5 (QoS, No Local, Retain As Published,
        // Retain Handling) [MQTT-3.8.3-4] (3.1.1), [MQTT-3.8.3-5] (5.0).
        let reserved = if v5 { 0b1100_0000 } else { 0b1111_1100 };
        if options & reserved != 0 {
            return Err(CodecError::ReservedSubscriptionOptions);
        }
        if options & 0b11 == 3 {
            return Err(CodecError::InvalidQos);
        }
        check_filter(v5, filter, options & 0b100 != 0)?;
        if v5 && (options >> 4) & 0b11 == 3 {
            return Err(CodecError::InvalidRetainHandling);
        }
    }
    Ok(())
}

/// UNSUBSCRIBE (§ 3.10): packet id, properties, at least one filter.
fn unsubscribe(v5: bool, r: &mut Reader<'_>) -> Result<(), CodecError> {
    if r.u16("packet identifier")? == 0 {
        return Err(CodecError::PacketIdZero);
    }
    if v5 {
        r.properties(Block::Unsubscribe, |_, _| Ok(()))?;
    }
    if r.is_empty() {
        return Err(CodecError::NoTopicFilters);
    }
    while !r.is_empty() {
        check_filter(v5, r.string("topic filter")?, false)?;
    }
    Ok(())
}

/// Filter syntax, plus the `$share` rules in MQTT 5 ([MQTT-4.8.2-1/2], and no
/// No Local on a shared subscription [MQTT-3.8.3-4]). 3.1.1 does not define
/// shared subscriptions, so a 3.1.1 `$share/...` is only checked as a filter.
fn check_filter(v5: bool, filter: &str, no_local: bool) -> Result<(), CodecError> {
    topic::validate_topic_filter(filter).map_err(CodecError::TopicFilterInvalid)?;
    if v5 {
        let shared = topic::parse_shared(filter).map_err(CodecError::TopicFilterInvalid)?;
        if shared.is_some() && no_local {
            return Err(CodecError::NoLocalOnSharedSubscription);
        }
    }
    Ok(())
}

/// MQTT 5 DISCONNECT (§ 3.14): remaining length 0 = normal disconnection; 1 =
/// a reason code only; more = reason code and properties.
fn disconnect(r: &mut Reader<'_>) -> Result<v5::Disconnect, CodecError> {
    if r.is_empty() {
        return Ok(v5::Disconnect::new(
            v5::DisconnectReasonCode::NormalDisconnection,
        ));
    }
    let code = r.u8("reason code")?;
    let reason_code = v5::DisconnectReasonCode::try_from(code)
        .map_err(|_| CodecError::InvalidReasonCode { code })?;
    // A property block that is present but empty stays `Some`, so that what
    // was read is written back byte for byte.
    let mut properties = None;
    if !r.is_empty() {
        let mut props = v5::DisconnectProperties {
            session_expiry_interval: None,
            reason_string: None,
            user_properties: vec![],
            server_reference: None,
        };
        r.properties(Block::Disconnect, |pid, value| {
            match (pid, value) {
                (id::SESSION_EXPIRY_INTERVAL, Value::U32(v)) => {
                    props.session_expiry_interval = Some(v)
                }
                (id::REASON_STRING, Value::Str(s)) => props.reason_string = Some(s.to_owned()),
                (id::SERVER_REFERENCE, Value::Str(s)) => {
                    props.server_reference = Some(s.to_owned())
                }
                (_, Value::Pair(k, v)) => props.user_properties.push((k.to_owned(), v.to_owned())),
                _ => {}
            }
            Ok(())
        })?;
        properties = Some(props);
    }
    r.expect_end("DISCONNECT")?;
    Ok(v5::Disconnect {
        reason_code,
        properties,
    })
}

/// MQTT 5 AUTH (§ 3.15): remaining length 0 = success; else reason code and properties.
fn auth(r: &mut Reader<'_>) -> Result<AuthPacket, CodecError> {
    let mut packet = AuthPacket::default();
    if r.is_empty() {
        return Ok(packet);
    }
    let code = r.u8("reason code")?;
    if ![0x00, 0x18, 0x19].contains(&code) {
        return Err(CodecError::InvalidReasonCode { code });
    }
    packet.reason_code = code;
    if !r.is_empty() {
        r.properties(Block::Auth, |pid, value| {
            match (pid, value) {
                (id::AUTHENTICATION_METHOD, Value::Str(s)) => packet.method = Some(s.to_owned()),
                (id::AUTHENTICATION_DATA, Value::Binary(b)) => {
                    packet.data = Some(Bytes::copy_from_slice(b))
                }
                (id::REASON_STRING, Value::Str(s)) => packet.reason_string = Some(s.to_owned()),
                (_, Value::Pair(k, v)) => packet.user_properties.push((k.to_owned(), v.to_owned())),
                _ => {}
            }
            Ok(())
        })?;
    }
    r.expect_end("AUTH")?;
    Ok(packet)
}

#[cfg(test)]
mod tests;
