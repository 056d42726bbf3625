//! What can end an MQTT connection, and every mapping of engine errors onto
//! MQTT reason and return codes (the one place that does it).

use gw_core::Error as EngineError;
use rumqttc::mqttbytes::v4;
use thiserror::Error;

use crate::codec::CodecError;

/// MQTT 5 reason codes the adapter uses beyond the codec's (MQTT 5.0 § 2.4).
pub(crate) mod code {
    pub const SUCCESS: u8 = 0x00;
    pub const NO_MATCHING_SUBSCRIBERS: u8 = 0x10;
    pub const UNSPECIFIED: u8 = 0x80;
    pub const PROTOCOL_ERROR: u8 = 0x82;
    pub const IMPLEMENTATION_SPECIFIC: u8 = 0x83;
    pub const CLIENT_ID_NOT_VALID: u8 = 0x85;
    pub const BAD_USER_NAME_OR_PASSWORD: u8 = 0x86;
    pub const NOT_AUTHORIZED: u8 = 0x87;
    pub const SERVER_UNAVAILABLE: u8 = 0x88;
    pub const BAD_AUTHENTICATION_METHOD: u8 = 0x8C;
    pub const SERVER_SHUTTING_DOWN: u8 = 0x8B;
    pub const KEEP_ALIVE_TIMEOUT: u8 = 0x8D;
    pub const SESSION_TAKEN_OVER: u8 = 0x8E;
    pub const TOPIC_FILTER_INVALID: u8 = 0x8F;
    pub const TOPIC_NAME_INVALID: u8 = 0x90;
    pub const PACKET_ID_NOT_FOUND: u8 = 0x92;
    pub const RECEIVE_MAXIMUM_EXCEEDED: u8 = 0x93;
    pub const TOPIC_ALIAS_INVALID: u8 = 0x94;
    pub const QUOTA_EXCEEDED: u8 = 0x97;
    pub const ADMINISTRATIVE_ACTION: u8 = 0x98;
    pub const PAYLOAD_FORMAT_INVALID: u8 = 0x99;
    pub const RETAIN_NOT_SUPPORTED: u8 = 0x9A;
}

/// Why a connection is being closed by the server (or was by the client).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum MqttError {
    /// The client sent bytes the codec refused.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The client closed the connection without DISCONNECT.
    #[error("connection closed by the client")]
    Eof,
    /// A packet that breaks the protocol's rules in context (a second CONNECT,
    /// an unknown topic alias, ...).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// MQTT 5 topic alias above the maximum we announced [MQTT-3.3.2-9].
    #[error("topic alias {alias} above the maximum {max}")]
    TopicAliasInvalid {
        /// What the client sent.
        alias: u16,
        /// What we announced.
        max: u16,
    },
    /// More unacknowledged QoS 1/2 publishes than our Receive Maximum [MQTT-3.3.4-9].
    #[error("receive maximum of {0} exceeded")]
    ReceiveMaximumExceeded(u16),
    /// A QoS 0 publish whose payload contradicts its payload format indicator.
    #[error("payload is not UTF-8 although its payload format indicator says so")]
    PayloadFormatInvalid,
    /// RETAIN set while the server announced that retain is unavailable [MQTT-3.3.1-?].
    #[error("retained messages are not supported")]
    RetainNotSupported,
    /// Not allowed where the protocol cannot answer with an error code.
    #[error("not authorized: {0}")]
    NotAuthorized(String),
    /// Nothing received for 1.5 × keep alive [MQTT-3.1.2-24].
    #[error("keep alive timeout")]
    KeepAliveTimeout,
    /// An engine call failed in a way that ends the connection.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl MqttError {
    /// The MQTT 5 DISCONNECT reason code sent before closing.
    pub fn disconnect_code(&self) -> u8 {
        match self {
            MqttError::Codec(e) => e.v5_reason_code(),
            MqttError::Io(_) | MqttError::Eof => code::UNSPECIFIED,
            MqttError::Protocol(_) => code::PROTOCOL_ERROR,
            MqttError::TopicAliasInvalid { .. } => code::TOPIC_ALIAS_INVALID,
            MqttError::ReceiveMaximumExceeded(_) => code::RECEIVE_MAXIMUM_EXCEEDED,
            MqttError::PayloadFormatInvalid => code::PAYLOAD_FORMAT_INVALID,
            MqttError::RetainNotSupported => code::RETAIN_NOT_SUPPORTED,
            MqttError::NotAuthorized(_) => code::NOT_AUTHORIZED,
            MqttError::KeepAliveTimeout => code::KEEP_ALIVE_TIMEOUT,
            MqttError::Engine(e) => disconnect_code(e),
        }
    }

    /// True when the will message is published as the connection ends: every
    /// way of ending except the client's own DISCONNECT, which is not an error.
    pub fn is_client_gone(&self) -> bool {
        matches!(self, MqttError::Io(_) | MqttError::Eof)
    }
}

/// CONNACK reason code (MQTT 5) for an engine error during CONNECT.
pub fn connack_v5(e: &EngineError) -> u8 {
    match e {
        EngineError::AuthenticationFailed(_) => code::BAD_USER_NAME_OR_PASSWORD,
        EngineError::AccessRefused(_) | EngineError::NotFound { .. } => code::NOT_AUTHORIZED,
        EngineError::LimitReached(_) => code::QUOTA_EXCEEDED,
        EngineError::ShuttingDown => code::SERVER_UNAVAILABLE,
        EngineError::Invalid { .. } => code::IMPLEMENTATION_SPECIFIC,
        _ => code::UNSPECIFIED,
    }
}

/// The 3.1.1 return code closest to an MQTT 5 CONNACK reason code.
pub fn v4_connack_for(reason: u8) -> v4::ConnectReturnCode {
    match reason {
        code::CLIENT_ID_NOT_VALID => v4::ConnectReturnCode::BadClientId,
        code::BAD_USER_NAME_OR_PASSWORD => v4::ConnectReturnCode::BadUserNamePassword,
        code::NOT_AUTHORIZED | code::PAYLOAD_FORMAT_INVALID | code::TOPIC_NAME_INVALID => {
            v4::ConnectReturnCode::NotAuthorized
        }
        0x84 => v4::ConnectReturnCode::RefusedProtocolVersion,
        _ => v4::ConnectReturnCode::ServiceUnavailable,
    }
}

/// PUBACK / PUBREC reason code (MQTT 5) for a publish the engine refused.
pub fn puback_v5(e: &EngineError) -> u8 {
    match e {
        EngineError::AccessRefused(_) => code::NOT_AUTHORIZED,
        EngineError::LimitReached(_) => code::QUOTA_EXCEEDED,
        EngineError::Invalid { .. } | EngineError::NotFound { .. } => code::IMPLEMENTATION_SPECIFIC,
        _ => code::UNSPECIFIED,
    }
}

/// SUBACK reason code (MQTT 5) for a subscription the engine refused. In
/// 3.1.1 every failure is 0x80.
pub fn suback_v5(e: &EngineError) -> u8 {
    match e {
        EngineError::AccessRefused(_) => code::NOT_AUTHORIZED,
        EngineError::LimitReached(_) => code::QUOTA_EXCEEDED,
        EngineError::Invalid { .. } => code::TOPIC_FILTER_INVALID,
        // A valid SUBSCRIBE the server does not accept (a share group that
        // filters on other tags).
        EngineError::PreconditionFailed(_) => code::IMPLEMENTATION_SPECIFIC,
        _ => code::UNSPECIFIED,
    }
}

/// DISCONNECT reason code (MQTT 5) for an engine error that ends a connection.
pub fn disconnect_code(e: &EngineError) -> u8 {
    match e {
        EngineError::ShuttingDown => code::SERVER_SHUTTING_DOWN,
        EngineError::AccessRefused(_) => code::NOT_AUTHORIZED,
        EngineError::LimitReached(_) => code::QUOTA_EXCEEDED,
        _ => code::UNSPECIFIED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_map_to_reason_codes() {
        let denied = EngineError::AccessRefused("x".into());
        assert_eq!(connack_v5(&denied), 0x87);
        assert_eq!(puback_v5(&denied), 0x87);
        assert_eq!(suback_v5(&denied), 0x87);
        let auth = EngineError::AuthenticationFailed("u".into());
        assert_eq!(connack_v5(&auth), 0x86);
        assert_eq!(disconnect_code(&EngineError::ShuttingDown), 0x8B);
        assert_eq!(
            MqttError::TopicAliasInvalid { alias: 9, max: 8 }.disconnect_code(),
            0x94
        );
        assert_eq!(MqttError::ReceiveMaximumExceeded(1).disconnect_code(), 0x93);
        assert_eq!(MqttError::KeepAliveTimeout.disconnect_code(), 0x8D);
        assert_eq!(v4_connack_for(0x85), v4::ConnectReturnCode::BadClientId);
    }
}
