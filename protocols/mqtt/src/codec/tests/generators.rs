//! Proptest strategies for valid client packet streams, stream mutations, and
//! a fixed set of server packets.

use bytes::Bytes;
use proptest::prelude::*;
use proptest::sample::Index;
use rumqttc::mqttbytes::{self as mqtt4, v4};
use rumqttc::v5::mqttbytes::{self as mqtt5, v5};

use super::super::{AuthPacket, Packet, ProtocolVersion};

/// One edit of an encoded stream.
#[derive(Debug, Clone)]
pub enum Mutation {
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    Truncate(Index),
}

impl Mutation {
    pub fn apply(&self, bytes: &mut Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        match self {
            Mutation::Flip(at, bit) => {
                let i = at.index(bytes.len());
                if let Some(b) = bytes.get_mut(i) {
                    *b ^= 1 << (bit % 8);
                }
            }
            Mutation::Set(at, v) => {
                let i = at.index(bytes.len());
                if let Some(b) = bytes.get_mut(i) {
                    *b = *v;
                }
            }
            Mutation::Insert(at, v) => {
                let i = at.index(bytes.len() + 1);
                bytes.insert(i, *v);
            }
            Mutation::Delete(at) => {
                let i = at.index(bytes.len());
                bytes.remove(i);
            }
            Mutation::Truncate(at) => {
                let i = at.index(bytes.len());
                bytes.truncate(i);
            }
        }
    }
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        2 => any::<Index>().prop_map(Mutation::Delete),
        1 => any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn text() -> impl Strategy<Value = String> {
    "[a-z0-9é€😀 ]{0,8}"
}

fn level() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9é€😀._$-]{0,4}"
}

/// Never empty, by construction (filters would reject too many cases).
fn non_empty(s: String) -> String {
    if s.is_empty() { "x".to_string() } else { s }
}

fn topic() -> impl Strategy<Value = String> {
    prop::collection::vec(level(), 1..4).prop_map(|levels| non_empty(levels.join("/")))
}

fn filter() -> impl Strategy<Value = String> {
    let level = prop_oneof![3 => level(), 1 => Just("+".to_string())];
    let plain = (prop::collection::vec(level, 1..4), any::<bool>()).prop_map(|(levels, hash)| {
        let f = non_empty(levels.join("/"));
        if hash { format!("{f}/#") } else { f }
    });
    prop_oneof![
        4 => plain.clone(),
        1 => Just("#".to_string()),
        1 => ("[a-z]{1,4}", plain).prop_map(|(g, f)| format!("$share/{g}/{f}")),
    ]
}

fn payload() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from)
}

fn pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec((text(), text()), 0..3)
}

fn q4(n: u8) -> mqtt4::QoS {
    match n {
        0 => mqtt4::QoS::AtMostOnce,
        1 => mqtt4::QoS::AtLeastOnce,
        _ => mqtt4::QoS::ExactlyOnce,
    }
}

fn q5(n: u8) -> mqtt5::QoS {
    match n {
        0 => mqtt5::QoS::AtMostOnce,
        1 => mqtt5::QoS::AtLeastOnce,
        _ => mqtt5::QoS::ExactlyOnce,
    }
}

fn v4_connect() -> impl Strategy<Value = v4::Packet> {
    let will = prop::option::of((topic(), payload(), 0u8..3, any::<bool>()));
    let login = prop::option::of(("[a-z]{1,8}", "[a-z]{0,8}"));
    (
        "[a-zA-Z0-9]{0,12}",
        any::<u16>(),
        any::<bool>(),
        will,
        login,
    )
        .prop_map(|(id, keep_alive, clean, will, login)| {
            v4::Packet::Connect(v4::Connect {
                protocol: mqtt4::Protocol::V4,
                keep_alive,
                client_id: id,
                clean_session: clean,
                last_will: will.map(|(t, m, q, r)| v4::LastWill {
                    topic: t,
                    message: m,
                    qos: q4(q),
                    retain: r,
                }),
                login: login.map(|(u, p)| v4::Login::new(u, p)),
            })
        })
}

fn v4_packet() -> impl Strategy<Value = v4::Packet> {
    let publish = (
        topic(),
        0u8..3,
        any::<bool>(),
        any::<bool>(),
        1u16..,
        payload(),
    )
        .prop_map(|(topic, qos, retain, dup, pkid, payload)| {
            let mut p = v4::Publish::from_bytes(topic, q4(qos), payload);
            p.retain = retain;
            if qos > 0 {
                p.dup = dup;
                p.pkid = pkid;
            }
            v4::Packet::Publish(p)
        });
    let subscribe =
        (1u16.., prop::collection::vec((filter(), 0u8..3), 1..4)).prop_map(|(pkid, filters)| {
            let filters = filters
                .into_iter()
                .map(|(f, q)| v4::SubscribeFilter::new(f, q4(q)))
                .collect();
            v4::Packet::Subscribe(v4::Subscribe { pkid, filters })
        });
    let unsubscribe = (1u16.., prop::collection::vec(filter(), 1..4))
        .prop_map(|(pkid, topics)| v4::Packet::Unsubscribe(v4::Unsubscribe { pkid, topics }));
    prop_oneof![
        4 => publish,
        1 => any::<u16>().prop_map(|id| v4::Packet::PubAck(v4::PubAck::new(id))),
        1 => any::<u16>().prop_map(|id| v4::Packet::PubRec(v4::PubRec::new(id))),
        1 => any::<u16>().prop_map(|id| v4::Packet::PubRel(v4::PubRel::new(id))),
        1 => any::<u16>().prop_map(|id| v4::Packet::PubComp(v4::PubComp::new(id))),
        2 => subscribe,
        1 => unsubscribe,
        1 => Just(v4::Packet::PingReq),
        1 => Just(v4::Packet::Disconnect),
    ]
}

fn v5_connect() -> impl Strategy<Value = v5::Packet> {
    let props = prop::option::of((
        any::<u32>(),
        prop::option::of(1u16..),
        prop::option::of(1u32..),
        prop::option::of(any::<u16>()),
        prop::option::of(0u8..2),
        pairs(),
        prop::option::of(("[A-Z-]{1,8}", prop::option::of(payload()))),
    ))
    .prop_map(|p| {
        p.map(
            |(sei, rm, mps, tam, rpi, user, auth)| v5::ConnectProperties {
                session_expiry_interval: Some(sei),
                receive_maximum: rm,
                max_packet_size: mps,
                topic_alias_max: tam,
                request_response_info: rpi,
                request_problem_info: rpi,
                user_properties: user,
                authentication_method: auth.as_ref().map(|(m, _)| m.clone()),
                authentication_data: auth.and_then(|(_, d)| d),
            },
        )
    });
    let will_props = prop::option::of((
        any::<u32>(),
        prop::option::of(0u8..2),
        prop::option::of(topic()),
        pairs(),
    ))
    .prop_map(|p| {
        p.map(|(delay, pfi, rt, user)| v5::LastWillProperties {
            delay_interval: Some(delay),
            payload_format_indicator: pfi,
            message_expiry_interval: Some(60),
            content_type: Some("text/plain".into()),
            response_topic: rt,
            correlation_data: Some(Bytes::from_static(b"c")),
            user_properties: user,
        })
    });
    let will = prop::option::of((topic(), payload(), 0u8..3, any::<bool>(), will_props));
    let login = prop::option::of(("[a-z]{1,8}", "[a-z]{0,8}"));
    (
        "[a-zA-Z0-9]{0,12}",
        any::<u16>(),
        any::<bool>(),
        props,
        will,
        login,
    )
        .prop_map(|(id, keep_alive, clean_start, properties, will, login)| {
            let connect = v5::Connect {
                keep_alive,
                client_id: id,
                clean_start,
                properties,
            };
            let will = will.map(|(t, m, q, r, p)| v5::LastWill::new(t, m.to_vec(), q5(q), r, p));
            v5::Packet::Connect(connect, will, login.map(|(u, p)| v5::Login::new(u, p)))
        })
}

fn v5_packet() -> impl Strategy<Value = Packet> {
    let publish_props = prop::option::of((
        prop::option::of(0u8..2),
        prop::option::of(any::<u32>()),
        prop::option::of(1u16..),
        prop::option::of(topic()),
        prop::option::of(payload()),
        pairs(),
    ))
    .prop_map(|p| {
        p.map(|(pfi, mei, alias, rt, cd, user)| v5::PublishProperties {
            payload_format_indicator: pfi,
            message_expiry_interval: mei,
            topic_alias: alias,
            response_topic: rt,
            correlation_data: cd,
            user_properties: user,
            subscription_identifiers: vec![],
            content_type: Some("application/json".into()),
        })
    });
    let publish = (
        topic(),
        0u8..3,
        any::<bool>(),
        any::<bool>(),
        1u16..,
        payload(),
        publish_props,
    )
        .prop_map(|(topic, qos, retain, dup, pkid, payload, properties)| {
            let mut p = v5::Publish::new(topic, q5(qos), payload, properties);
            p.retain = retain;
            if qos > 0 {
                p.dup = dup;
                p.pkid = pkid;
            }
            Packet::V5(v5::Packet::Publish(p))
        });
    let ack_props = || prop::option::of((text(), pairs()));
    let ack =
        (0u8..4, any::<u16>(), any::<bool>(), ack_props()).prop_map(|(kind, pkid, ok, props)| {
            let packet = match kind {
                0 => v5::Packet::PubAck(v5::PubAck {
                    pkid,
                    reason: if ok {
                        v5::PubAckReason::Success
                    } else {
                        v5::PubAckReason::QuotaExceeded
                    },
                    properties: props.map(|(r, u)| v5::PubAckProperties {
                        reason_string: Some(r),
                        user_properties: u,
                    }),
                }),
                1 => v5::Packet::PubRec(v5::PubRec {
                    pkid,
                    reason: if ok {
                        v5::PubRecReason::Success
                    } else {
                        v5::PubRecReason::NoMatchingSubscribers
                    },
                    properties: props.map(|(r, u)| v5::PubRecProperties {
                        reason_string: Some(r),
                        user_properties: u,
                    }),
                }),
                2 => v5::Packet::PubRel(v5::PubRel {
                    pkid,
                    reason: if ok {
                        v5::PubRelReason::Success
                    } else {
                        v5::PubRelReason::PacketIdentifierNotFound
                    },
                    properties: props.map(|(r, u)| v5::PubRelProperties {
                        reason_string: Some(r),
                        user_properties: u,
                    }),
                }),
                _ => v5::Packet::PubComp(v5::PubComp {
                    pkid,
                    reason: if ok {
                        v5::PubCompReason::Success
                    } else {
                        v5::PubCompReason::PacketIdentifierNotFound
                    },
                    properties: props.map(|(r, u)| v5::PubCompProperties {
                        reason_string: Some(r),
                        user_properties: u,
                    }),
                }),
            };
            Packet::V5(packet)
        });
    let sub_filter = (filter(), 0u8..3, any::<bool>(), any::<bool>(), 0u8..3).prop_map(
        |(path, q, nl, rap, rh)| {
            let nolocal = nl && !path.starts_with("$share/");
            let retain_forward_rule = match rh {
                0 => v5::RetainForwardRule::OnEverySubscribe,
                1 => v5::RetainForwardRule::OnNewSubscribe,
                _ => v5::RetainForwardRule::Never,
            };
            v5::Filter {
                path,
                qos: q5(q),
                nolocal,
                preserve_retain: rap,
                retain_forward_rule,
            }
        },
    );
    let subscribe = (
        1u16..,
        prop::collection::vec(sub_filter, 1..4),
        prop::option::of((prop::option::of(1usize..268_435_456), pairs())),
    )
        .prop_map(|(pkid, filters, props)| {
            let properties = props.map(|(id, user_properties)| v5::SubscribeProperties {
                id,
                user_properties,
            });
            Packet::V5(v5::Packet::Subscribe(v5::Subscribe {
                pkid,
                filters,
                properties,
            }))
        });
    let unsubscribe = (
        1u16..,
        prop::collection::vec(filter(), 1..4),
        prop::option::of(pairs()),
    )
        .prop_map(|(pkid, filters, props)| {
            let properties =
                props.map(|user_properties| v5::UnsubscribeProperties { user_properties });
            Packet::V5(v5::Packet::Unsubscribe(v5::Unsubscribe {
                pkid,
                filters,
                properties,
            }))
        });
    let codes = [
        v5::DisconnectReasonCode::NormalDisconnection,
        v5::DisconnectReasonCode::DisconnectWithWillMessage,
        v5::DisconnectReasonCode::UnspecifiedError,
        v5::DisconnectReasonCode::MessageRateTooHigh,
    ];
    let disconnect = (
        prop::sample::select(codes.to_vec()),
        prop::option::of((
            prop::option::of(any::<u32>()),
            prop::option::of(text()),
            pairs(),
        )),
    )
        .prop_map(|(reason_code, props)| {
            let properties = props.map(|(sei, reason, user)| v5::DisconnectProperties {
                session_expiry_interval: sei,
                reason_string: reason,
                user_properties: user,
                server_reference: None,
            });
            Packet::V5(v5::Packet::Disconnect(v5::Disconnect {
                reason_code,
                properties,
            }))
        });
    let auth = (
        prop::sample::select(vec![0u8, 0x18, 0x19]),
        prop::option::of("[A-Z]{1,6}"),
        prop::option::of(payload()),
    )
        .prop_map(|(reason_code, method, data)| {
            Packet::Auth(AuthPacket {
                reason_code,
                method,
                data,
                ..AuthPacket::default()
            })
        });
    prop_oneof![
        4 => publish,
        2 => ack,
        2 => subscribe,
        1 => unsubscribe,
        1 => Just(Packet::V5(v5::Packet::PingReq(v5::PingReq))),
        1 => disconnect,
        1 => auth,
    ]
}

/// A CONNECT followed by up to 8 more packets, all of one version.
pub fn client_stream() -> impl Strategy<Value = (ProtocolVersion, Vec<Packet>)> {
    let v4_stream =
        (v4_connect(), prop::collection::vec(v4_packet(), 0..8)).prop_map(|(c, rest)| {
            let packets = std::iter::once(c).chain(rest).map(Packet::V4).collect();
            (ProtocolVersion::V311, packets)
        });
    let v5_stream =
        (v5_connect(), prop::collection::vec(v5_packet(), 0..8)).prop_map(|(c, rest)| {
            let packets = std::iter::once(Packet::V5(c)).chain(rest).collect();
            (ProtocolVersion::V5, packets)
        });
    prop_oneof![v4_stream, v5_stream]
}
