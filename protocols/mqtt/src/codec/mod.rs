//! The MQTT packet codec, server side: rumqttc's 3.1.1 (`mqttbytes::v4`) and
//! 5.0 (`v5::mqttbytes::v5`) packet types behind one [`Packet`], with the
//! validation a server owes the specification and rumqttc (a client library)
//! does not do.
//!
//! Pure: bytes in, packets out. "Need more bytes" is `Ok(None)`, never an
//! error; any error means the connection is closed (after the reply
//! [`CodecError`] describes). The protocol version is fixed by the first
//! packet: [`peek_connect`] reads it, then every [`Packet::read`] uses it.
//!
//! Reading a packet takes three steps:
//! 1. the fixed header: a type a client may send, with the right flag bits,
//!    and a total size within the limit, refused before the body is buffered;
//! 2. the body, walked with exact bounds on the raw bytes (module `validate`):
//!    lengths, reserved bits, UTF-8, topic and filter syntax, MQTT 5
//!    properties. rumqttc never sees a packet this step refused, which also
//!    keeps its lenient paths (and any panic they could hide) out of reach;
//! 3. rumqttc decodes the checked bytes (zero-copy payloads), except the MQTT 5
//!    DISCONNECT (rumqttc refuses remaining lengths 0 and 1) and AUTH (rumqttc's
//!    reader does not know packet type 15), which step 2 decodes itself.

mod encode;
mod error;
mod out;
mod validate;
mod wire;

#[cfg(test)]
mod tests;

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;

pub use error::{CodecError, StringFault, reason};
pub use out::{AckKind, OutPublish, write_ack, write_pingresp, write_publish};
use validate::Checked;
use wire::VarInt;

/// The MQTT protocol version of a connection, fixed by its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolVersion {
    /// MQTT 3.1.1, protocol level 4.
    V311,
    /// MQTT 5.0, protocol level 5.
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte of CONNECT.
    pub fn level(self) -> u8 {
        match self {
            ProtocolVersion::V311 => 4,
            ProtocolVersion::V5 => 5,
        }
    }
}

/// One MQTT control packet of either version.
///
/// The variants wrap rumqttc's own packet enums, whose sizes differ (a v5
/// CONNECT carries many optional properties); boxing would cost an allocation
/// per packet to save a few hundred bytes of stack.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)]
pub enum Packet {
    /// An MQTT 3.1.1 packet.
    V4(v4::Packet),
    /// An MQTT 5.0 packet (never `v5::Packet::Auth`: see [`Packet::Auth`]).
    V5(v5::Packet),
    /// MQTT 5.0 AUTH. rumqttc's `Auth` cannot be built outside rumqttc (its
    /// reason code type is not exported), its reader does not know packet
    /// type 15 and its writer miscounts string properties, so AUTH has its own type.
    Auth(AuthPacket),
}

/// MQTT 5.0 AUTH (§ 3.15), for enhanced authentication.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthPacket {
    /// 0x00 success, 0x18 continue authentication, 0x19 re-authenticate.
    pub reason_code: u8,
    /// Authentication Method.
    pub method: Option<String>,
    /// Authentication Data.
    pub data: Option<Bytes>,
    /// Reason String.
    pub reason_string: Option<String>,
    /// User Properties, in order.
    pub user_properties: Vec<(String, String)>,
}

impl Packet {
    /// The protocol version this packet is written in.
    pub fn version(&self) -> ProtocolVersion {
        match self {
            Packet::V4(_) => ProtocolVersion::V311,
            Packet::V5(_) | Packet::Auth(_) => ProtocolVersion::V5,
        }
    }

    /// Takes the next complete packet a client sent off the front of `buf`.
    ///
    /// `Ok(None)`: more bytes are needed (and `buf` is left as it was). A
    /// packet whose total size (fixed header included, as MQTT 5's Maximum
    /// Packet Size counts it) exceeds `max_packet_size` is refused from its
    /// fixed header, so `buf` never has to hold more than `max_packet_size`
    /// bytes of one packet. Any error is final: close the connection.
    pub fn read(
        buf: &mut BytesMut,
        version: ProtocolVersion,
        max_packet_size: usize,
    ) -> Result<Option<Packet>, CodecError> {
        let Some(&byte1) = buf.first() else {
            return Ok(None);
        };
        validate::check_fixed_header(version, byte1)?;
        let (header_len, remaining) = match wire::decode_varint(buf.get(1..).unwrap_or_default()) {
            // [MQTT-1.5.5-1]: MQTT 5 requires the shortest encoding; 3.1.1 does not.
            VarInt::Complete { minimal: false, .. } if version == ProtocolVersion::V5 => {
                return Err(CodecError::MalformedVariableInteger);
            }
            VarInt::Complete { value, len, .. } => (1 + len, value as usize),
            VarInt::Incomplete => return Ok(None),
            VarInt::Malformed => return Err(CodecError::MalformedVariableInteger),
        };
        let total = header_len + remaining;
        if total > max_packet_size {
            return Err(CodecError::PacketTooLarge {
                size: total,
                max: max_packet_size,
            });
        }
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        let mut frame = buf.split_to(total);
        let checked =
            validate::check_body(version, byte1, frame.get(header_len..).unwrap_or_default())?;
        let packet = match checked {
            Checked::Disconnect(d) => Packet::V5(v5::Packet::Disconnect(d)),
            Checked::Auth(a) => Packet::Auth(a),
            // The frame is complete and checked, so any rumqttc error (even its
            // "insufficient bytes") means the packet is malformed.
            Checked::ForRumqttc => match version {
                ProtocolVersion::V311 => Packet::V4(v4::Packet::read(&mut frame, usize::MAX)?),
                ProtocolVersion::V5 => Packet::V5(v5::Packet::read(&mut frame, None)?),
            },
        };
        Ok(Some(packet))
    }

    /// Appends this packet's encoding to `out`; returns its length.
    ///
    /// With `max_packet_size` (the client's MQTT 5 Maximum Packet Size) a
    /// larger packet is not written but refused with
    /// [`CodecError::PacketTooLarge`]: the server discards it as if sent
    /// [MQTT-3.1.2-24], [MQTT-3.1.2-25]. On any error `out` is left unchanged.
    pub fn write(
        &self,
        out: &mut BytesMut,
        max_packet_size: Option<usize>,
    ) -> Result<usize, CodecError> {
        encode::write(self, out, max_packet_size)
    }
}

/// Reads the protocol version from the start of a connection's first bytes,
/// without consuming them.
///
/// The first packet must be a CONNECT: anything else is
/// [`CodecError::FirstPacketNotConnect`], close at once [MQTT-3.1.0-1]. A
/// protocol name other than "MQTT" (or "MQIsdp" of 3.1) is
/// [`CodecError::InvalidProtocolName`], close [MQTT-3.1.2-1]; an unknown level
/// (including 3.1's level 3) is [`CodecError::UnsupportedProtocolVersion`]:
/// send [`CodecError::refusal_connack`], then close [MQTT-3.1.2-2].
pub fn peek_connect(buf: &[u8]) -> Result<Option<ProtocolVersion>, CodecError> {
    let Some((&byte1, rest)) = buf.split_first() else {
        return Ok(None);
    };
    let packet_type = byte1 >> 4;
    if packet_type != validate::kind::CONNECT {
        return Err(CodecError::FirstPacketNotConnect { packet_type });
    }
    if byte1 & 0x0F != 0 {
        return Err(CodecError::InvalidFixedHeaderFlags {
            packet_type,
            flags: byte1 & 0x0F,
        });
    }
    let (len, remaining) = match wire::decode_varint(rest) {
        VarInt::Complete { len, value, .. } => (len, value as usize),
        VarInt::Incomplete => return Ok(None),
        VarInt::Malformed => return Err(CodecError::MalformedVariableInteger),
    };
    // Only this packet's bytes: whatever follows belongs to the next one.
    let body = rest.get(len..).unwrap_or_default();
    let body = body.get(..remaining).unwrap_or(body);
    let complete = body.len() == remaining;
    let short = || {
        if complete {
            Err(CodecError::Malformed("CONNECT too short".into()))
        } else {
            Ok(None)
        }
    };
    let Some((name_len, after)) = body.split_first_chunk::<2>() else {
        return short();
    };
    let name_len = usize::from(u16::from_be_bytes(*name_len));
    if name_len != 4 && name_len != 6 {
        let seen = after.get(..name_len).unwrap_or(after);
        return Err(CodecError::InvalidProtocolName(
            String::from_utf8_lossy(seen).into_owned(),
        ));
    }
    let Some((name, after)) = after.split_at_checked(name_len) else {
        return short();
    };
    let Some(&level) = after.first() else {
        return short();
    };
    match (name, level) {
        (b"MQTT", 4) => Ok(Some(ProtocolVersion::V311)),
        (b"MQTT", 5) => Ok(Some(ProtocolVersion::V5)),
        (b"MQTT" | b"MQIsdp", level) => Err(CodecError::UnsupportedProtocolVersion { level }),
        (other, _) => Err(CodecError::InvalidProtocolName(
            String::from_utf8_lossy(other).into_owned(),
        )),
    }
}
