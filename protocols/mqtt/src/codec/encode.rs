//! Writing packets: rumqttc's encoders, guarded where they go wrong.
//!
//! - Every string and binary field is written with `len as u16`, so a field
//!   over 65535 bytes silently becomes a corrupt packet: refused here first.
//! - MQTT 5 DISCONNECT with a reason code but no properties is written with a
//!   remaining length one short of its body (a stray byte corrupts the stream),
//!   and with empty properties loses its reason code: encoded here instead.
//! - MQTT 5 AUTH miscounts its property lengths: encoded here ([`AuthPacket`]).
//! - CONNECT patches its flags at an offset counted from the start of the
//!   buffer, not of the packet: encoded into a scratch buffer.
//! - A failed write leaves partial bytes in the buffer: they are truncated.

use bytes::{BufMut, BytesMut};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;

use super::error::CodecError;
use super::wire::id;
use super::{AuthPacket, Packet};
use crate::topic::MAX_STRING_LEN;

/// Encodes `packet` at the end of `out`; see [`Packet::write`].
pub(crate) fn write(
    packet: &Packet,
    out: &mut BytesMut,
    max: Option<usize>,
) -> Result<usize, CodecError> {
    check_lengths(packet)?;
    let start = out.len();
    let written = match packet {
        Packet::V4(p @ v4::Packet::Connect(_)) => {
            let mut scratch = BytesMut::new();
            let n = p.write(&mut scratch, usize::MAX).map_err(encode_error);
            out.extend_from_slice(&scratch);
            n.map(drop)
        }
        Packet::V5(p @ v5::Packet::Connect(..)) => {
            let mut scratch = BytesMut::new();
            let n = p.write(&mut scratch, None).map_err(encode_error);
            out.extend_from_slice(&scratch);
            n.map(drop)
        }
        Packet::V5(v5::Packet::Disconnect(d)) => {
            write_disconnect(d, out);
            Ok(())
        }
        Packet::V5(v5::Packet::Auth(_)) => Err(CodecError::Encode(
            "rumqttc cannot encode AUTH; use Packet::Auth".into(),
        )),
        Packet::Auth(a) => {
            write_auth(a, out);
            Ok(())
        }
        Packet::V4(p) => p.write(out, usize::MAX).map(drop).map_err(encode_error),
        Packet::V5(p) => p.write(out, None).map(drop).map_err(encode_error),
    };
    let len = out.len() - start;
    // [MQTT-3.1.2-24]: never send more than the client's Maximum Packet Size.
    let result = match (written, max) {
        (Err(e), _) => Err(e),
        (Ok(()), Some(max)) if len > max => Err(CodecError::PacketTooLarge { size: len, max }),
        (Ok(()), _) => Ok(len),
    };
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn encode_error(e: impl std::fmt::Display) -> CodecError {
    CodecError::Encode(e.to_string())
}

fn fits(field: &'static str, len: usize) -> Result<(), CodecError> {
    if len > MAX_STRING_LEN {
        Err(CodecError::FieldTooLong { field })
    } else {
        Ok(())
    }
}

fn fits_opt<T: AsRef<[u8]>>(field: &'static str, value: &Option<T>) -> Result<(), CodecError> {
    value
        .as_ref()
        .map_or(Ok(()), |v| fits(field, v.as_ref().len()))
}

fn fits_pairs(pairs: &[(String, String)]) -> Result<(), CodecError> {
    pairs.iter().try_for_each(|(k, v)| {
        fits("user property name", k.len())?;
        fits("user property value", v.len())
    })
}

/// The reason string and user properties of an acknowledgement's optional properties.
macro_rules! ack_props {
    ($ack:expr) => {
        match &$ack.properties {
            Some(p) => ack_props(&p.reason_string, &p.user_properties),
            None => Ok(()),
        }
    };
}

/// Every length-prefixed field of the packets the server writes (and of the
/// client packets the tests write) must fit its two-byte prefix.
fn check_lengths(packet: &Packet) -> Result<(), CodecError> {
    match packet {
        Packet::V4(v4::Packet::Publish(p)) => fits("topic", p.topic.len()),
        Packet::V4(v4::Packet::Connect(c)) => {
            fits("client identifier", c.client_id.len())?;
            if let Some(w) = &c.last_will {
                fits("will topic", w.topic.len())?;
                fits("will payload", w.message.len())?;
            }
            Ok(())
        }
        Packet::V5(v5::Packet::Publish(p)) => {
            fits("topic", p.topic.len())?;
            let Some(props) = &p.properties else {
                return Ok(());
            };
            fits_opt("response topic", &props.response_topic)?;
            fits_opt("content type", &props.content_type)?;
            fits_opt("correlation data", &props.correlation_data)?;
            fits_pairs(&props.user_properties)
        }
        Packet::V5(v5::Packet::ConnAck(c)) => {
            let Some(p) = &c.properties else {
                return Ok(());
            };
            fits_opt("assigned client identifier", &p.assigned_client_identifier)?;
            fits_opt("reason string", &p.reason_string)?;
            fits_opt("response information", &p.response_information)?;
            fits_opt("server reference", &p.server_reference)?;
            fits_opt("authentication method", &p.authentication_method)?;
            fits_opt("authentication data", &p.authentication_data)?;
            fits_pairs(&p.user_properties)
        }
        Packet::V5(v5::Packet::PubAck(a)) => ack_props!(a),
        Packet::V5(v5::Packet::PubRec(a)) => ack_props!(a),
        Packet::V5(v5::Packet::PubRel(a)) => ack_props!(a),
        Packet::V5(v5::Packet::PubComp(a)) => ack_props!(a),
        Packet::V5(v5::Packet::SubAck(a)) => ack_props!(a),
        Packet::V5(v5::Packet::UnsubAck(a)) => ack_props!(a),
        Packet::V5(v5::Packet::Disconnect(d)) => {
            let Some(p) = &d.properties else {
                return Ok(());
            };
            fits_opt("reason string", &p.reason_string)?;
            fits_opt("server reference", &p.server_reference)?;
            fits_pairs(&p.user_properties)
        }
        Packet::Auth(a) => {
            fits_opt("authentication method", &a.method)?;
            fits_opt("authentication data", &a.data)?;
            fits_opt("reason string", &a.reason_string)?;
            fits_pairs(&a.user_properties)
        }
        _ => Ok(()),
    }
}

fn ack_props(reason: &Option<String>, user: &[(String, String)]) -> Result<(), CodecError> {
    fits_opt("reason string", reason)?;
    fits_pairs(user)
}

/// Variable Byte Integer, shortest form. Callers keep values below 2^28.
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

/// A length-prefixed field whose length [`check_lengths`] already bounded.
fn put_prefixed(out: &mut BytesMut, bytes: &[u8]) {
    out.put_u16(u16::try_from(bytes.len()).unwrap_or(u16::MAX));
    out.extend_from_slice(bytes);
}

fn put_user_properties(out: &mut BytesMut, pairs: &[(String, String)]) {
    for (k, v) in pairs {
        out.put_u8(id::USER_PROPERTY);
        put_prefixed(out, k.as_bytes());
        put_prefixed(out, v.as_bytes());
    }
}

/// Fixed header, then the body.
fn put_packet(out: &mut BytesMut, byte1: u8, body: &[u8]) {
    out.put_u8(byte1);
    put_varint(out, body.len());
    out.extend_from_slice(body);
}

/// MQTT 5 DISCONNECT (§ 3.14): `E0 00` for a plain normal disconnection, else
/// reason code and a property block (possibly empty).
fn write_disconnect(d: &v5::Disconnect, out: &mut BytesMut) {
    let normal = d.reason_code == v5::DisconnectReasonCode::NormalDisconnection;
    if normal && d.properties.is_none() {
        out.put_slice(&[0xE0, 0x00]);
        return;
    }
    let mut props = BytesMut::new();
    if let Some(p) = &d.properties {
        if let Some(v) = p.session_expiry_interval {
            props.put_u8(id::SESSION_EXPIRY_INTERVAL);
            props.put_u32(v);
        }
        if let Some(s) = &p.reason_string {
            props.put_u8(id::REASON_STRING);
            put_prefixed(&mut props, s.as_bytes());
        }
        put_user_properties(&mut props, &p.user_properties);
        if let Some(s) = &p.server_reference {
            props.put_u8(id::SERVER_REFERENCE);
            put_prefixed(&mut props, s.as_bytes());
        }
    }
    let mut body = BytesMut::with_capacity(props.len() + 5);
    body.put_u8(d.reason_code as u8);
    put_varint(&mut body, props.len());
    body.extend_from_slice(&props);
    put_packet(out, 0xE0, &body);
}

/// MQTT 5 AUTH (§ 3.15): `F0 00` for success without properties.
fn write_auth(a: &AuthPacket, out: &mut BytesMut) {
    let mut props = BytesMut::new();
    if let Some(m) = &a.method {
        props.put_u8(id::AUTHENTICATION_METHOD);
        put_prefixed(&mut props, m.as_bytes());
    }
    if let Some(d) = &a.data {
        props.put_u8(id::AUTHENTICATION_DATA);
        put_prefixed(&mut props, d);
    }
    if let Some(s) = &a.reason_string {
        props.put_u8(id::REASON_STRING);
        put_prefixed(&mut props, s.as_bytes());
    }
    put_user_properties(&mut props, &a.user_properties);
    if a.reason_code == 0 && props.is_empty() {
        out.put_slice(&[0xF0, 0x00]);
        return;
    }
    let mut body = BytesMut::with_capacity(props.len() + 5);
    body.put_u8(a.reason_code);
    put_varint(&mut body, props.len());
    body.extend_from_slice(&props);
    put_packet(out, 0xF0, &body);
}
