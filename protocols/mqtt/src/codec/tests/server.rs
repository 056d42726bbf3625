//! The MQTT 5 packets a server sends, with every property the server may set.

use bytes::Bytes;
use rumqttc::v5::mqttbytes::{self as mqtt5, v5};

/// MQTT 5 packets a server sends, with every property the server may set.
pub fn server_v5_packets() -> Vec<v5::Packet> {
    let user = vec![
        ("k".to_string(), "v".to_string()),
        ("k".to_string(), "w".to_string()),
    ];
    let connack_props = v5::ConnAckProperties {
        session_expiry_interval: Some(60),
        receive_max: Some(100),
        max_qos: Some(1),
        retain_available: Some(1),
        max_packet_size: Some(1 << 20),
        assigned_client_identifier: Some("auto-1".into()),
        topic_alias_max: Some(10),
        reason_string: Some("welcome".into()),
        user_properties: user.clone(),
        wildcard_subscription_available: Some(1),
        subscription_identifiers_available: Some(1),
        shared_subscription_available: Some(1),
        server_keep_alive: Some(30),
        response_information: Some("replies/".into()),
        server_reference: None,
        authentication_method: None,
        authentication_data: None,
    };
    let publish_props = v5::PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(9),
        topic_alias: Some(2),
        response_topic: Some("r/1".into()),
        correlation_data: Some(Bytes::from_static(&[0, 1])),
        user_properties: user.clone(),
        subscription_identifiers: vec![1, 300, 268_435_455],
        content_type: Some("text/plain".into()),
    };
    let mut publish = v5::Publish::new("a/b", mqtt5::QoS::AtLeastOnce, "hi", Some(publish_props));
    publish.pkid = 1;
    vec![
        v5::Packet::ConnAck(v5::ConnAck {
            session_present: true,
            code: v5::ConnectReturnCode::Success,
            properties: Some(connack_props),
        }),
        v5::Packet::ConnAck(v5::ConnAck {
            session_present: false,
            code: v5::ConnectReturnCode::NotAuthorized,
            properties: None,
        }),
        v5::Packet::Publish(publish),
        v5::Packet::Publish(v5::Publish::new("a", mqtt5::QoS::AtMostOnce, "", None)),
        v5::Packet::PubAck(v5::PubAck::new(1, None)),
        v5::Packet::PubAck(v5::PubAck {
            pkid: 2,
            reason: v5::PubAckReason::PayloadFormatInvalid,
            properties: Some(v5::PubAckProperties {
                reason_string: Some("no".into()),
                user_properties: user.clone(),
            }),
        }),
        v5::Packet::PubRec(v5::PubRec {
            pkid: 3,
            reason: v5::PubRecReason::NoMatchingSubscribers,
            properties: None,
        }),
        v5::Packet::PubRel(v5::PubRel::new(4, None)),
        v5::Packet::PubComp(v5::PubComp {
            pkid: 5,
            reason: v5::PubCompReason::PacketIdentifierNotFound,
            properties: None,
        }),
        v5::Packet::SubAck(v5::SubAck {
            pkid: 6,
            return_codes: vec![
                v5::SubscribeReasonCode::Success(mqtt5::QoS::ExactlyOnce),
                v5::SubscribeReasonCode::TopicFilterInvalid,
                v5::SubscribeReasonCode::SharedSubscriptionsNotSupported,
            ],
            properties: Some(v5::SubAckProperties {
                reason_string: Some("partly".into()),
                user_properties: user.clone(),
            }),
        }),
        v5::Packet::UnsubAck(v5::UnsubAck {
            pkid: 7,
            reasons: vec![
                v5::UnsubAckReason::Success,
                v5::UnsubAckReason::NoSubscriptionExisted,
            ],
            properties: None,
        }),
        v5::Packet::PingResp(v5::PingResp),
        v5::Packet::Disconnect(v5::Disconnect::new(
            v5::DisconnectReasonCode::SessionTakenOver,
        )),
        v5::Packet::Disconnect(v5::Disconnect {
            reason_code: v5::DisconnectReasonCode::ServerMoved,
            properties: Some(v5::DisconnectProperties {
                session_expiry_interval: None,
                reason_string: Some("moved".into()),
                user_properties: user,
                server_reference: Some("other:1883".into()),
            }),
        }),
    ]
}
