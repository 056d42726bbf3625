//! Encoders for the packets a server sends on its hot path: PUBLISH, the four
//! publish acknowledgements and PINGRESP, written straight into the
//! connection's write buffer.
//!
//! rumqttc's writers need an owned packet (a `String` topic for 3.1.1, a copied
//! `Bytes` topic for 5.0) per message; at a few hundred thousand deliveries a
//! second those allocations are a large share of the work. These writers take
//! borrowed parts instead and produce the same bytes (the tests read them back
//! with rumqttc's client-side decoders). Everything else the server sends
//! (CONNACK, SUBACK, UNSUBACK, DISCONNECT) goes through [`super::Packet::write`].

use bytes::{BufMut, BytesMut};
use rumqttc::v5::mqttbytes::v5;

use super::ProtocolVersion;
use super::error::CodecError;
use super::wire::id;
use crate::topic::MAX_STRING_LEN;

/// Largest remaining length a fixed header can express (MQTT § 2.2.3).
const MAX_REMAINING: usize = 268_435_455;

/// The parts of an outgoing PUBLISH, borrowed from the message being delivered.
#[derive(Debug, Clone, Copy)]
pub struct OutPublish<'a> {
    /// Topic name; empty when a topic alias the client already knows stands for it.
    pub topic: &'a str,
    /// `topic` is an AMQP routing key: write each `.` as `/` (saves building
    /// the topic string for every delivery).
    pub dots_to_slashes: bool,
    /// 0, 1 or 2.
    pub qos: u8,
    /// Re-sent after a reconnect [MQTT-3.3.1-1].
    pub dup: bool,
    /// Retain flag as the subscriber sees it.
    pub retain: bool,
    /// Packet identifier (ignored at QoS 0).
    pub pid: u16,
    /// Application payload.
    pub payload: &'a [u8],
}

/// Which publish acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    /// PUBACK (QoS 1).
    PubAck,
    /// PUBREC (QoS 2, step 1).
    PubRec,
    /// PUBREL (QoS 2, step 2; fixed-header flags 0b0010).
    PubRel,
    /// PUBCOMP (QoS 2, step 3).
    PubComp,
}

impl AckKind {
    fn byte1(self) -> u8 {
        match self {
            AckKind::PubAck => 0x40,
            AckKind::PubRec => 0x50,
            AckKind::PubRel => 0x62,
            AckKind::PubComp => 0x70,
        }
    }
}

fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

fn put_varint(out: &mut BytesMut, mut value: usize) {
    loop {
        let byte = (value % 128) as u8;
        value /= 128;
        if value == 0 {
            out.put_u8(byte);
            return;
        }
        out.put_u8(byte | 0x80);
    }
}

fn put_str(out: &mut BytesMut, s: &[u8]) {
    // Callers check lengths first; the cast cannot truncate.
    out.put_u16(s.len() as u16);
    out.put_slice(s);
}

fn fits(field: &'static str, len: usize) -> Result<(), CodecError> {
    if len > MAX_STRING_LEN {
        Err(CodecError::FieldTooLong { field })
    } else {
        Ok(())
    }
}

/// Length of an MQTT 5 PUBLISH property block's content, after checking that
/// every field fits its length prefix.
fn properties_len(p: &v5::PublishProperties) -> Result<usize, CodecError> {
    let mut len = 0;
    if p.payload_format_indicator.is_some() {
        len += 2;
    }
    if p.message_expiry_interval.is_some() {
        len += 5;
    }
    if p.topic_alias.is_some() {
        len += 3;
    }
    if let Some(t) = &p.response_topic {
        fits("response topic", t.len())?;
        len += 3 + t.len();
    }
    if let Some(c) = &p.correlation_data {
        fits("correlation data", c.len())?;
        len += 3 + c.len();
    }
    for (k, v) in &p.user_properties {
        fits("user property name", k.len())?;
        fits("user property value", v.len())?;
        len += 5 + k.len() + v.len();
    }
    for &sid in &p.subscription_identifiers {
        if sid == 0 || sid > MAX_REMAINING {
            return Err(CodecError::Encode(format!("subscription identifier {sid}")));
        }
        len += 1 + varint_len(sid);
    }
    if let Some(c) = &p.content_type {
        fits("content type", c.len())?;
        len += 3 + c.len();
    }
    Ok(len)
}

fn put_properties(out: &mut BytesMut, p: &v5::PublishProperties) {
    if let Some(v) = p.payload_format_indicator {
        out.put_u8(id::PAYLOAD_FORMAT_INDICATOR);
        out.put_u8(v);
    }
    if let Some(v) = p.message_expiry_interval {
        out.put_u8(id::MESSAGE_EXPIRY_INTERVAL);
        out.put_u32(v);
    }
    if let Some(v) = p.topic_alias {
        out.put_u8(id::TOPIC_ALIAS);
        out.put_u16(v);
    }
    if let Some(t) = &p.response_topic {
        out.put_u8(id::RESPONSE_TOPIC);
        put_str(out, t.as_bytes());
    }
    if let Some(c) = &p.correlation_data {
        out.put_u8(id::CORRELATION_DATA);
        put_str(out, c);
    }
    for (k, v) in &p.user_properties {
        out.put_u8(id::USER_PROPERTY);
        put_str(out, k.as_bytes());
        put_str(out, v.as_bytes());
    }
    for &sid in &p.subscription_identifiers {
        out.put_u8(id::SUBSCRIPTION_IDENTIFIER);
        put_varint(out, sid);
    }
    if let Some(c) = &p.content_type {
        out.put_u8(id::CONTENT_TYPE);
        put_str(out, c.as_bytes());
    }
}

/// Appends a PUBLISH; returns its size.
///
/// `props` only counts for MQTT 5 (3.1.1 has no properties). A packet larger
/// than `max_packet_size` (the client's Maximum Packet Size) is not written:
/// [`CodecError::PacketTooLarge`], and the caller discards the message as if
/// it had been sent [MQTT-3.1.2-25]. `out` is unchanged on any error.
pub fn write_publish(
    out: &mut BytesMut,
    version: ProtocolVersion,
    p: &OutPublish<'_>,
    props: Option<&v5::PublishProperties>,
    max_packet_size: Option<usize>,
) -> Result<usize, CodecError> {
    fits("topic", p.topic.len())?;
    if p.qos > 2 {
        return Err(CodecError::InvalidQos);
    }
    if p.qos > 0 && p.pid == 0 {
        return Err(CodecError::PacketIdZero);
    }
    let v5 = version == ProtocolVersion::V5;
    let props_len = match props {
        Some(props) if v5 => properties_len(props)?,
        _ => 0,
    };
    let mut remaining = 2 + p.topic.len() + p.payload.len();
    if p.qos > 0 {
        remaining += 2;
    }
    if v5 {
        remaining += varint_len(props_len) + props_len;
    }
    if remaining > MAX_REMAINING {
        return Err(CodecError::Encode(format!(
            "PUBLISH of {remaining} bytes is longer than MQTT allows"
        )));
    }
    let total = 1 + varint_len(remaining) + remaining;
    if let Some(max) = max_packet_size
        && total > max
    {
        return Err(CodecError::PacketTooLarge { size: total, max });
    }
    out.reserve(total);
    let byte1 = 0x30 | (u8::from(p.dup) << 3) | (p.qos << 1) | u8::from(p.retain);
    out.put_u8(byte1);
    put_varint(out, remaining);
    if p.dots_to_slashes {
        out.put_u16(p.topic.len() as u16);
        out.extend(p.topic.bytes().map(|b| if b == b'.' { b'/' } else { b }));
    } else {
        put_str(out, p.topic.as_bytes());
    }
    if p.qos > 0 {
        out.put_u16(p.pid);
    }
    if v5 {
        put_varint(out, props_len);
        if let Some(props) = props {
            put_properties(out, props);
        }
    }
    out.put_slice(p.payload);
    Ok(total)
}

/// Appends a PUBACK, PUBREC, PUBREL or PUBCOMP.
///
/// MQTT 5 uses the two-byte short form for success without a reason string
/// (§ 3.4.2.1); a reason string (only sent when the client did not refuse
/// problem information) goes in the property block.
pub fn write_ack(
    out: &mut BytesMut,
    version: ProtocolVersion,
    kind: AckKind,
    pid: u16,
    reason: u8,
    reason_string: Option<&str>,
) {
    let reason_string = reason_string.filter(|s| s.len() <= MAX_STRING_LEN);
    if version == ProtocolVersion::V311 || (reason == 0 && reason_string.is_none()) {
        out.put_slice(&[kind.byte1(), 2]);
        out.put_u16(pid);
        return;
    }
    let props_len = reason_string.map_or(0, |s| 3 + s.len());
    let remaining = 3 + varint_len(props_len) + props_len;
    out.put_u8(kind.byte1());
    put_varint(out, remaining);
    out.put_u16(pid);
    out.put_u8(reason);
    put_varint(out, props_len);
    if let Some(s) = reason_string {
        out.put_u8(id::REASON_STRING);
        put_str(out, s.as_bytes());
    }
}

/// Appends a PINGRESP.
pub fn write_pingresp(out: &mut BytesMut) {
    out.put_slice(&[0xD0, 0x00]);
}

#[cfg(test)]
mod tests;
