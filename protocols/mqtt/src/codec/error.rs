//! Everything the codec can refuse, and what the connection answers to each.
//!
//! Every variant closes the network connection: MQTT has no "skip this packet"
//! for bad bytes (3.1.1 § 4.8, 5.0 § 4.13). What differs is what is sent first:
//! an MQTT 5 client gets a DISCONNECT (or, while connecting, a CONNACK) with
//! [`CodecError::v5_reason_code`]; a 3.1.1 client gets nothing, except the
//! CONNACK return codes of [`CodecError::v4_connack_code`].

use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;
use thiserror::Error;

use super::{Packet, ProtocolVersion};
use crate::topic::TopicError;

/// MQTT 5 reason codes the codec produces (MQTT 5.0 § 2.4).
pub mod reason {
    /// The packet could not be parsed according to the specification.
    pub const MALFORMED_PACKET: u8 = 0x81;
    /// The packet is well formed but breaks a rule of the protocol.
    pub const PROTOCOL_ERROR: u8 = 0x82;
    /// The client asked for a protocol version the server does not speak.
    pub const UNSUPPORTED_PROTOCOL_VERSION: u8 = 0x84;
    /// The credentials could not be checked.
    pub const BAD_USER_NAME_OR_PASSWORD: u8 = 0x86;
    /// A topic filter was refused.
    pub const TOPIC_FILTER_INVALID: u8 = 0x8F;
    /// A topic name was refused.
    pub const TOPIC_NAME_INVALID: u8 = 0x90;
    /// A topic alias of 0.
    pub const TOPIC_ALIAS_INVALID: u8 = 0x94;
    /// The packet is bigger than the receiver's maximum packet size.
    pub const PACKET_TOO_LARGE: u8 = 0x95;
    /// The payload does not match the payload format indicator.
    pub const PAYLOAD_FORMAT_INVALID: u8 = 0x99;
}

/// Which rule a UTF-8 string field broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringFault {
    /// Ill-formed UTF-8 (including encoded surrogates) [MQTT-1.5.3-1], [MQTT-1.5.4-1].
    NotUtf8,
    /// Contains U+0000 [MQTT-1.5.3-2], [MQTT-1.5.4-2].
    NullCharacter,
}

/// A packet the server refuses to read or cannot write.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The first packet of a connection was not a CONNECT: close without a
    /// reply [MQTT-3.1.0-1].
    #[error("first packet is not CONNECT (packet type {packet_type})")]
    FirstPacketNotConnect {
        /// The control packet type (high nibble of the first byte).
        packet_type: u8,
    },
    /// CONNECT with a protocol name that is neither "MQTT" nor "MQIsdp": the
    /// server may close without a reply [MQTT-3.1.2-1].
    #[error("unknown protocol name {0:?}")]
    InvalidProtocolName(String),
    /// A protocol level we do not speak (3 is MQTT 3.1, "MQIsdp"): answer
    /// [`CodecError::refusal_connack`] and close [MQTT-3.1.2-2].
    #[error("unsupported protocol level {level}")]
    UnsupportedProtocolVersion {
        /// The level the client sent.
        level: u8,
    },
    /// Refused from its fixed header, before the rest was buffered.
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    PacketTooLarge {
        /// The whole packet's size, fixed header included.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The remaining length is longer than four bytes, or (MQTT 5) not in its
    /// shortest form [MQTT-1.5.5-1].
    #[error("malformed variable byte integer")]
    MalformedVariableInteger,
    /// Packet type 0, or 15 before MQTT 5 (reserved).
    #[error("reserved packet type {0}")]
    ReservedPacketType(u8),
    /// A packet only the server sends (CONNACK, SUBACK, UNSUBACK, PINGRESP).
    #[error("packet type {0} is never sent by a client")]
    UnexpectedPacketType(u8),
    /// Reserved fixed-header flag bits: 0b0010 for PUBREL, SUBSCRIBE and
    /// UNSUBSCRIBE, 0 for the others except PUBLISH [MQTT-2.2.2-1], [MQTT-2.2.2-2].
    #[error("invalid fixed header flags {flags:#06b} for packet type {packet_type}")]
    InvalidFixedHeaderFlags {
        /// The control packet type.
        packet_type: u8,
        /// The low nibble that was sent.
        flags: u8,
    },
    /// PUBLISH with both QoS bits set [MQTT-3.3.1-4], a will QoS of 3
    /// [MQTT-3.1.2-14], or a requested QoS of 3 in SUBSCRIBE.
    #[error("invalid QoS 3")]
    InvalidQos,
    /// DUP set on a QoS 0 PUBLISH [MQTT-3.3.1-2].
    #[error("DUP flag set on a QoS 0 PUBLISH")]
    DupOnQos0,
    /// A UTF-8 string field that is ill-formed or contains U+0000.
    #[error("invalid string in {field}: {fault:?}")]
    InvalidString {
        /// Which field.
        field: &'static str,
        /// What was wrong with it.
        fault: StringFault,
    },
    /// Refused topic name (PUBLISH, will or response topic).
    #[error("invalid topic name: {0}")]
    TopicNameInvalid(TopicError),
    /// MQTT 5 PUBLISH with an empty topic and no topic alias (§ 3.3.2.1).
    #[error("empty topic name without a topic alias")]
    EmptyTopicWithoutAlias,
    /// MQTT 5 topic alias of 0 [MQTT-3.3.2-8].
    #[error("topic alias 0")]
    TopicAliasZero,
    /// Refused topic filter (SUBSCRIBE, UNSUBSCRIBE).
    #[error("invalid topic filter: {0}")]
    TopicFilterInvalid(TopicError),
    /// SUBSCRIBE or UNSUBSCRIBE without a single filter ([MQTT-3.8.3-3] in
    /// 3.1.1, [MQTT-3.8.3-2] in 5.0; [MQTT-3.10.3-2]).
    #[error("SUBSCRIBE or UNSUBSCRIBE without topic filters")]
    NoTopicFilters,
    /// Reserved bits of a subscription options byte [MQTT-3.8.3-4] (3.1.1),
    /// [MQTT-3.8.3-5] (5.0).
    #[error("reserved bits set in subscription options")]
    ReservedSubscriptionOptions,
    /// MQTT 5 Retain Handling of 3 (§ 3.8.3.1).
    #[error("retain handling 3")]
    InvalidRetainHandling,
    /// MQTT 5 No Local on a shared subscription [MQTT-3.8.3-4].
    #[error("no local on a shared subscription")]
    NoLocalOnSharedSubscription,
    /// PUBLISH (QoS > 0), SUBSCRIBE or UNSUBSCRIBE with packet identifier 0
    /// ([MQTT-2.3.1-1] in 3.1.1, [MQTT-2.2.1-3] in 5.0).
    #[error("packet identifier 0")]
    PacketIdZero,
    /// CONNECT reserved flag bit 0 set [MQTT-3.1.2-3].
    #[error("CONNECT reserved flag set")]
    ConnectReservedFlag,
    /// Will QoS or Will Retain set while the Will Flag is 0 ([MQTT-3.1.2-11],
    /// [MQTT-3.1.2-13], [MQTT-3.1.2-15] in 3.1.1 numbering).
    #[error("will QoS or retain set without a will")]
    WillFlagsWithoutWill,
    /// 3.1.1 only: a password without a user name [MQTT-3.1.2-22].
    #[error("password without user name")]
    PasswordWithoutUsername,
    /// The password is binary data the codec (rumqttc) can only read as UTF-8:
    /// it cannot match any of our users' passwords, so refuse the credentials.
    #[error("password is not UTF-8")]
    PasswordNotUtf8,
    /// MQTT 5: a property that may not appear in this packet, or an unknown
    /// identifier (§ 2.2.2.2: malformed).
    #[error("property {id:#04x} not allowed in this packet")]
    UnexpectedProperty {
        /// The property identifier.
        id: u8,
    },
    /// MQTT 5: a property other than User Property given twice (protocol error).
    #[error("property {id:#04x} given twice")]
    DuplicateProperty {
        /// The property identifier.
        id: u8,
    },
    /// MQTT 5: a property with a value the specification forbids (protocol error).
    #[error("invalid value for property {id:#04x}")]
    InvalidPropertyValue {
        /// The property identifier.
        id: u8,
    },
    /// MQTT 5: a reason code that is not defined for this packet.
    #[error("invalid reason code {code:#04x}")]
    InvalidReasonCode {
        /// The reason code that was sent.
        code: u8,
    },
    /// Any other violation of the packet layout: truncated fields, bytes left
    /// over, a length that runs past the end, or a field rumqttc refused.
    #[error("malformed packet: {0}")]
    Malformed(String),
    /// rumqttc refused bytes that [`super::Packet::read`]'s own checks had
    /// accepted. Should not happen (the property tests look for it); it
    /// still means "malformed" and closes the connection.
    #[error("rumqttc could not decode the packet: {0}")]
    Decode(String),
    /// Writing: a string or binary field longer than 65535 bytes, which
    /// rumqttc would silently truncate into a corrupt packet.
    #[error("{field} is longer than 65535 bytes")]
    FieldTooLong {
        /// Which field.
        field: &'static str,
    },
    /// Writing: rumqttc refused the packet (packet id 0 at QoS > 0, a packet
    /// longer than 268435455 bytes, ...).
    #[error("cannot encode packet: {0}")]
    Encode(String),
}

impl CodecError {
    /// The MQTT 5 reason code for a DISCONNECT (or CONNACK) sent before closing.
    ///
    /// Topic problems get their specific codes (0x8F, 0x90) rather than the
    /// stricter 0x81 because they tell the client what to fix; the connection
    /// is closed either way.
    pub fn v5_reason_code(&self) -> u8 {
        use CodecError::*;
        match self {
            UnsupportedProtocolVersion { .. } | InvalidProtocolName(_) => {
                reason::UNSUPPORTED_PROTOCOL_VERSION
            }
            PacketTooLarge { .. } => reason::PACKET_TOO_LARGE,
            TopicNameInvalid(_) => reason::TOPIC_NAME_INVALID,
            TopicFilterInvalid(_) => reason::TOPIC_FILTER_INVALID,
            TopicAliasZero => reason::TOPIC_ALIAS_INVALID,
            PasswordNotUtf8 => reason::BAD_USER_NAME_OR_PASSWORD,
            FirstPacketNotConnect { .. }
            | UnexpectedPacketType(_)
            | EmptyTopicWithoutAlias
            | NoTopicFilters
            | InvalidRetainHandling
            | NoLocalOnSharedSubscription
            | PacketIdZero
            | DuplicateProperty { .. }
            | InvalidPropertyValue { .. } => reason::PROTOCOL_ERROR,
            MalformedVariableInteger
            | ReservedPacketType(_)
            | InvalidFixedHeaderFlags { .. }
            | InvalidQos
            | DupOnQos0
            | InvalidString { .. }
            | ReservedSubscriptionOptions
            | ConnectReservedFlag
            | WillFlagsWithoutWill
            | PasswordWithoutUsername
            | UnexpectedProperty { .. }
            | InvalidReasonCode { .. }
            | Malformed(_)
            | Decode(_)
            | FieldTooLong { .. }
            | Encode(_) => reason::MALFORMED_PACKET,
        }
    }

    /// The MQTT 3.1.1 CONNACK return code to send before closing, for the few
    /// CONNECT errors 3.1.1 answers at all (§ 3.2.2.3).
    pub fn v4_connack_code(&self) -> Option<v4::ConnectReturnCode> {
        match self {
            CodecError::UnsupportedProtocolVersion { .. } => {
                Some(v4::ConnectReturnCode::RefusedProtocolVersion)
            }
            CodecError::PasswordNotUtf8 => Some(v4::ConnectReturnCode::BadUserNamePassword),
            _ => None,
        }
    }

    /// The CONNACK to send before closing when the protocol level is unknown
    /// [MQTT-3.1.2-2]. The client's packet format is unknown too: levels below
    /// 5 (3.1 and older) get the 3.1.1 form with return code 0x01, levels above
    /// 5 the MQTT 5 form with reason code 0x84, the form a newer client is
    /// likelier to read.
    pub fn refusal_connack(&self) -> Option<Packet> {
        let CodecError::UnsupportedProtocolVersion { level } = *self else {
            return None;
        };
        Some(if level < 5 {
            Packet::V4(v4::Packet::ConnAck(v4::ConnAck::new(
                v4::ConnectReturnCode::RefusedProtocolVersion,
                false,
            )))
        } else {
            Packet::V5(v5::Packet::ConnAck(v5::ConnAck {
                session_present: false,
                code: v5::ConnectReturnCode::UnsupportedProtocolVersion,
                properties: None,
            }))
        })
    }

    /// The protocol version a refusal CONNACK is written with.
    pub fn refusal_version(&self) -> Option<ProtocolVersion> {
        self.refusal_connack().map(|p| p.version())
    }
}

impl From<rumqttc::mqttbytes::Error> for CodecError {
    fn from(e: rumqttc::mqttbytes::Error) -> Self {
        CodecError::Decode(e.to_string())
    }
}

impl From<rumqttc::v5::mqttbytes::Error> for CodecError {
    fn from(e: rumqttc::v5::mqttbytes::Error) -> Self {
        CodecError::Decode(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes() {
        assert_eq!(CodecError::Malformed("x".into()).v5_reason_code(), 0x81);
        assert_eq!(CodecError::PacketIdZero.v5_reason_code(), 0x82);
        assert_eq!(
            CodecError::UnsupportedProtocolVersion { level: 3 }.v5_reason_code(),
            0x84
        );
        assert_eq!(
            CodecError::TopicFilterInvalid(TopicError::Empty).v5_reason_code(),
            0x8F
        );
        assert_eq!(
            CodecError::TopicNameInvalid(TopicError::Empty).v5_reason_code(),
            0x90
        );
        assert_eq!(CodecError::TopicAliasZero.v5_reason_code(), 0x94);
        assert_eq!(
            CodecError::PacketTooLarge { size: 2, max: 1 }.v5_reason_code(),
            0x95
        );
    }

    #[test]
    fn refusal_connacks() {
        let old = CodecError::UnsupportedProtocolVersion { level: 3 };
        assert_eq!(
            old.v4_connack_code(),
            Some(v4::ConnectReturnCode::RefusedProtocolVersion)
        );
        assert_eq!(old.refusal_version(), Some(ProtocolVersion::V311));
        let newer = CodecError::UnsupportedProtocolVersion { level: 6 };
        assert_eq!(newer.refusal_version(), Some(ProtocolVersion::V5));
        assert!(CodecError::PacketIdZero.refusal_connack().is_none());
    }
}
