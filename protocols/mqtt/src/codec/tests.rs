//! Codec tests: version detection, framing, server-sent packets read back by
//! rumqttc as a client would, and the robustness properties (no panic, bounded
//! buffering) over random and mutated byte streams.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use rumqttc::mqttbytes::{self as mqtt4, v4};
use rumqttc::v5::mqttbytes::{self as mqtt5, v5};

use super::*;
use ProtocolVersion::{V5, V311};

mod generators;
mod server;

const MAX: usize = 1 << 20;

fn encode(p: &Packet) -> BytesMut {
    let mut out = BytesMut::new();
    p.write(&mut out, None).expect("encodable packet");
    out
}

fn read_all(bytes: &[u8], version: ProtocolVersion) -> Result<Vec<Packet>, CodecError> {
    let mut buf = BytesMut::from(bytes);
    let mut packets = vec![];
    while let Some(p) = Packet::read(&mut buf, version, MAX)? {
        packets.push(p);
    }
    assert!(buf.is_empty(), "{} bytes left", buf.len());
    Ok(packets)
}

fn v4_connect() -> Packet {
    Packet::V4(v4::Packet::Connect(v4::Connect::new("client-1")))
}

fn v5_connect() -> Packet {
    let connect = v5::Connect {
        keep_alive: 30,
        client_id: "c5".into(),
        clean_start: true,
        properties: None,
    };
    Packet::V5(v5::Packet::Connect(connect, None, None))
}

#[test]
fn peek_detects_the_version_and_waits_for_bytes() {
    for (packet, version) in [(v4_connect(), V311), (v5_connect(), V5)] {
        let bytes = encode(&packet);
        for n in 0..bytes.len() {
            let got = peek_connect(&bytes[..n]).expect("a prefix is not an error");
            // Name and level sit in the first 9 bytes of a short CONNECT.
            assert_eq!(got, (n >= 9).then_some(version), "prefix of {n}");
        }
        assert_eq!(peek_connect(&bytes).ok().flatten(), Some(version));
        assert_eq!(read_all(&bytes, version).ok(), Some(vec![packet]));
    }
}

#[test]
fn peek_refuses_what_is_not_a_connect() {
    assert!(matches!(
        peek_connect(&[0x30, 0]),
        Err(CodecError::FirstPacketNotConnect { packet_type: 3 })
    ));
    assert!(matches!(
        peek_connect(&[0xC0, 0]),
        Err(CodecError::FirstPacketNotConnect { .. })
    ));
    assert!(matches!(
        peek_connect(&[0x12]),
        Err(CodecError::InvalidFixedHeaderFlags { .. })
    ));
    assert!(matches!(
        peek_connect(&[0x10, 0x80, 0x80, 0x80, 0x80]),
        Err(CodecError::MalformedVariableInteger)
    ));
    assert!(matches!(
        peek_connect(&[0x10, 1, 0, 7]),
        Err(CodecError::Malformed(_))
    ));
    let http = b"GET / HTTP/1.1\r\n";
    assert!(matches!(
        peek_connect(http),
        Err(CodecError::FirstPacketNotConnect { .. })
    ));
    let amqp = b"AMQP\x00\x00\x09\x01";
    assert!(matches!(
        peek_connect(amqp),
        Err(CodecError::FirstPacketNotConnect { .. })
    ));
    let odd_name = [0x10, 10, 0, 4, b'M', b'Q', b'T', b'X', 4, 0, 0, 0];
    assert!(
        matches!(peek_connect(&odd_name), Err(CodecError::InvalidProtocolName(n)) if n == "MQTX")
    );
    let long_name = [0x10, 10, 0, 9, b'x'];
    assert!(matches!(
        peek_connect(&long_name),
        Err(CodecError::InvalidProtocolName(_))
    ));
}

#[test]
fn unsupported_versions_get_a_refusal_connack() {
    let mqtt31 = [
        0x10, 12, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 2, 0, 60,
    ];
    let err = peek_connect(&mqtt31).expect_err("3.1 is not supported");
    assert!(matches!(
        err,
        CodecError::UnsupportedProtocolVersion { level: 3 }
    ));
    let mut out = BytesMut::new();
    let connack = err.refusal_connack().expect("a CONNACK");
    connack.write(&mut out, None).expect("encodable");
    assert_eq!(&out[..], &[0x20, 0x02, 0x00, 0x01]);

    let mqtt6 = [0x10, 10, 0, 4, b'M', b'Q', b'T', b'T', 6, 2, 0, 60];
    let err = peek_connect(&mqtt6).expect_err("6 is not supported");
    assert_eq!(err.v5_reason_code(), 0x84);
    out.clear();
    err.refusal_connack()
        .expect("a CONNACK")
        .write(&mut out, None)
        .expect("encodable");
    assert_eq!(&out[..], &[0x20, 0x03, 0x00, 0x84, 0x00]);
}

#[test]
fn every_prefix_is_need_more() {
    let publish = Packet::V4(v4::Packet::Publish(v4::Publish::new(
        "a/b",
        mqtt4::QoS::AtLeastOnce,
        vec![7; 300],
    )));
    let publish = match publish {
        Packet::V4(v4::Packet::Publish(mut p)) => {
            p.pkid = 9;
            Packet::V4(v4::Packet::Publish(p))
        }
        other => other,
    };
    let bytes = encode(&publish);
    for n in 0..bytes.len() {
        let mut buf = BytesMut::from(&bytes[..n]);
        assert!(
            matches!(Packet::read(&mut buf, V311, MAX), Ok(None)),
            "prefix {n}"
        );
        assert_eq!(buf.len(), n, "nothing consumed");
    }
}

#[test]
fn too_large_is_refused_from_the_fixed_header() {
    // A PUBLISH announcing 200 MB: refused with only its first 5 bytes buffered.
    let mut buf = BytesMut::from(&[0x30, 0x80, 0x80, 0x80, 0x60][..]);
    let err = Packet::read(&mut buf, V311, 1024).expect_err("too large");
    assert!(
        matches!(err, CodecError::PacketTooLarge { size, max: 1024 } if size == 5 + (0x60 << 21))
    );
    assert_eq!(err.v5_reason_code(), 0x95);
    // The limit counts the whole packet: 2 header bytes + 8 = 10.
    let ten = [0x30, 8, 0, 1, b'a', 1, 2, 3, 4, 5];
    assert!(Packet::read(&mut BytesMut::from(&ten[..]), V311, 10).is_ok_and(|p| p.is_some()));
    assert!(matches!(
        Packet::read(&mut BytesMut::from(&ten[..]), V311, 9),
        Err(CodecError::PacketTooLarge { size: 10, max: 9 })
    ));
}

#[test]
fn remaining_length_must_be_minimal_in_v5_only() {
    let padded = [0xC0, 0x80, 0x00];
    assert!(matches!(
        Packet::read(&mut BytesMut::from(&padded[..]), V311, MAX),
        Ok(Some(_))
    ));
    assert!(matches!(
        Packet::read(&mut BytesMut::from(&padded[..]), V5, MAX),
        Err(CodecError::MalformedVariableInteger)
    ));
}

#[test]
fn v5_disconnect_forms_rumqttc_cannot_read() {
    // Remaining length 0 and 1 are valid (MQTT 5.0 § 3.14.2.1); rumqttc refuses both.
    assert!(v5::Packet::read(&mut BytesMut::from(&[0xE0, 0x00][..]), None).is_err());
    assert!(v5::Packet::read(&mut BytesMut::from(&[0xE0, 0x01, 0x04][..]), None).is_err());
    let packets = read_all(&[0xE0, 0x00, 0xE0, 0x01, 0x04], V5).expect("valid");
    let codes: Vec<_> = packets
        .iter()
        .map(|p| match p {
            Packet::V5(v5::Packet::Disconnect(d)) => d.reason_code,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        codes,
        [
            v5::DisconnectReasonCode::NormalDisconnection,
            v5::DisconnectReasonCode::DisconnectWithWillMessage
        ]
    );
}

#[test]
fn rumqttc_disconnect_encoder_is_why_we_encode_our_own() {
    // rumqttc writes reason + property length but announces only the reason.
    let d = v5::Disconnect::new(v5::DisconnectReasonCode::SessionTakenOver);
    let mut theirs = BytesMut::new();
    v5::Packet::Disconnect(d.clone())
        .write(&mut theirs, None)
        .expect("rumqttc writes it");
    assert_eq!(&theirs[..], &[0xE0, 0x01, 0x8E, 0x00]);
    let ours = encode(&Packet::V5(v5::Packet::Disconnect(d)));
    assert_eq!(&ours[..], &[0xE0, 0x02, 0x8E, 0x00]);
}

/// Everything the server sends is read back by rumqttc, as the client would,
/// to the same value, with no byte left over.
#[test]
fn server_packets_are_readable_by_clients() {
    let v4_packets = vec![
        v4::Packet::ConnAck(v4::ConnAck::new(v4::ConnectReturnCode::Success, true)),
        v4::Packet::SubAck(v4::SubAck::new(
            3,
            vec![
                v4::SubscribeReasonCode::Success(mqtt4::QoS::AtLeastOnce),
                v4::SubscribeReasonCode::Failure,
            ],
        )),
        v4::Packet::UnsubAck(v4::UnsubAck::new(4)),
        v4::Packet::PubAck(v4::PubAck::new(5)),
        v4::Packet::PubRec(v4::PubRec::new(6)),
        v4::Packet::PubRel(v4::PubRel::new(7)),
        v4::Packet::PubComp(v4::PubComp::new(8)),
        v4::Packet::PingResp,
        v4::Packet::Publish({
            let mut p = v4::Publish::new("t/1", mqtt4::QoS::ExactlyOnce, "x");
            p.pkid = 9;
            p.dup = true;
            p
        }),
    ];
    for p in v4_packets {
        let mut bytes = encode(&Packet::V4(p.clone()));
        assert_eq!(v4::Packet::read(&mut bytes, MAX).ok(), Some(p));
        assert!(bytes.is_empty());
    }
    for p in server::server_v5_packets() {
        let mut bytes = encode(&Packet::V5(p.clone()));
        assert_eq!(v5::Packet::read(&mut bytes, None).ok(), Some(p));
        assert!(bytes.is_empty());
    }
}

#[test]
fn writes_refuse_what_rumqttc_would_corrupt() {
    let mut out = BytesMut::from(&b"earlier"[..]);
    let long = Packet::V4(v4::Packet::Publish(v4::Publish::new(
        "t".repeat(70_000),
        mqtt4::QoS::AtMostOnce,
        "",
    )));
    assert!(matches!(
        long.write(&mut out, None),
        Err(CodecError::FieldTooLong { field: "topic" })
    ));
    let no_pkid = Packet::V5(v5::Packet::Publish(v5::Publish::new(
        "t",
        mqtt5::QoS::AtLeastOnce,
        "x",
        None,
    )));
    assert!(matches!(
        no_pkid.write(&mut out, None),
        Err(CodecError::Encode(_))
    ));
    let fine = Packet::V5(v5::Packet::Publish(v5::Publish::new(
        "t",
        mqtt5::QoS::AtMostOnce,
        "xyz",
        None,
    )));
    assert!(matches!(
        fine.write(&mut out, Some(8)),
        Err(CodecError::PacketTooLarge { size: 9, max: 8 })
    ));
    assert_eq!(&out[..], b"earlier", "failed writes leave the buffer alone");
    assert_eq!(fine.write(&mut out, Some(9)).ok(), Some(9));
}

#[test]
fn connect_is_encoded_correctly_after_other_bytes() {
    // rumqttc patches CONNECT flags at an offset from the buffer start.
    let mut c = v4::Connect::new("id");
    c.set_login("user", "pass");
    let packet = Packet::V4(v4::Packet::Connect(c));
    let mut out = BytesMut::from(&[0xC0, 0x00][..]);
    packet.write(&mut out, None).expect("encodable");
    assert_eq!(
        read_all(&out, V311).ok(),
        Some(vec![Packet::V4(v4::Packet::PingReq), packet])
    );
}

#[test]
fn auth_round_trips() {
    // rumqttc's v5 reader does not know packet type 15 at all.
    assert!(v5::Packet::read(&mut BytesMut::from(&[0xF0, 0x00][..]), None).is_err());
    let auth = AuthPacket {
        reason_code: 0x18,
        method: Some("SCRAM-SHA-1".into()),
        data: Some(Bytes::from_static(&[1, 2, 3])),
        reason_string: Some("continue".into()),
        user_properties: vec![("k".into(), "v".into())],
    };
    let bytes = encode(&Packet::Auth(auth.clone()));
    assert_eq!(read_all(&bytes, V5).ok(), Some(vec![Packet::Auth(auth)]));
    assert_eq!(
        &encode(&Packet::Auth(AuthPacket::default()))[..],
        &[0xF0, 0x00]
    );
}

#[test]
fn empty_topic_with_alias() {
    let mut p = v5::Publish::new("", mqtt5::QoS::AtMostOnce, "x", None);
    p.properties = Some(v5::PublishProperties {
        topic_alias: Some(3),
        ..Default::default()
    });
    let packet = Packet::V5(v5::Packet::Publish(p));
    assert_eq!(read_all(&encode(&packet), V5).ok(), Some(vec![packet]));
}

/// Feeds `bytes` in chunks the way a connection would: peek the version,
/// then read packets until more bytes are needed or an error ends it all.
/// Checks that "need more" never holds more than one packet's worth.
fn feed(
    bytes: &[u8],
    chunks: &[usize],
    max: usize,
    version: Option<ProtocolVersion>,
) -> Result<Vec<Packet>, CodecError> {
    let mut buf = BytesMut::new();
    let mut version = version;
    let mut packets = vec![];
    let mut rest = bytes;
    let mut sizes = chunks.iter().copied().cycle();
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(1).clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        buf.extend_from_slice(chunk);
        loop {
            let v = match version {
                Some(v) => v,
                None => match peek_connect(&buf)? {
                    Some(v) => *version.insert(v),
                    None => {
                        assert!(buf.len() < 14, "peek waits for at most 13 bytes");
                        break;
                    }
                },
            };
            match Packet::read(&mut buf, v, max)? {
                Some(p) => packets.push(p),
                None => {
                    assert!(
                        buf.len() < max.max(5),
                        "{} bytes buffered, limit {max}",
                        buf.len()
                    );
                    break;
                }
            }
        }
    }
    Ok(packets)
}

proptest! {
    // 256 cases each by default; PROPTEST_CASES=100000 for a longer hunt.

    /// Valid client streams decode, in any chunking, to packets that encode
    /// back to the very same bytes.
    #[test]
    fn valid_streams_round_trip(
        (version, packets) in generators::client_stream(),
        chunks in prop::collection::vec(1usize..64, 1..16),
    ) {
        let mut bytes = BytesMut::new();
        for p in &packets {
            p.write(&mut bytes, None).expect("generated packets encode");
        }
        let decoded = feed(&bytes, &chunks, MAX, None);
        prop_assert!(decoded.is_ok(), "{:?}", decoded);
        let decoded = decoded.unwrap_or_default();
        prop_assert_eq!(decoded.len(), packets.len());
        prop_assert_eq!(decoded.first().map(Packet::version), Some(version));
        let mut again = BytesMut::new();
        for p in &decoded {
            p.write(&mut again, None).expect("decoded packets encode");
        }
        prop_assert_eq!(&again[..], &bytes[..]);
    }

    /// Mutated valid streams, with or without their CONNECT: no panic,
    /// bounded buffering, every refusal comes from our checks (none from
    /// rumqttc), and whatever decodes can be written again.
    #[test]
    fn mutated_streams_are_handled(
        (version, packets) in generators::client_stream(),
        skip_connect in any::<bool>(),
        mutations in prop::collection::vec(generators::mutation(), 1..8),
        chunks in prop::collection::vec(1usize..64, 1..16),
        max in 8usize..2048,
    ) {
        let mut bytes = BytesMut::new();
        let skip = usize::from(skip_connect);
        for p in packets.iter().skip(skip) {
            p.write(&mut bytes, None).expect("generated packets encode");
        }
        let mut bytes = bytes.to_vec();
        for m in &mutations {
            m.apply(&mut bytes);
        }
        match feed(&bytes, &chunks, max, skip_connect.then_some(version)) {
            Ok(decoded) => {
                for p in decoded {
                    let mut out = BytesMut::new();
                    prop_assert!(p.write(&mut out, None).is_ok(), "{:?}", p);
                }
            }
            Err(e) => prop_assert!(!matches!(e, CodecError::Decode(_)), "{}", e),
        }
    }

    /// Random bytes, read as either version from the first byte or after a peek.
    #[test]
    fn random_bytes_are_handled(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        version in prop::sample::select(vec![None, Some(V311), Some(V5)]),
        chunks in prop::collection::vec(1usize..64, 1..16),
        max in 8usize..2048,
    ) {
        if let Err(e) = feed(&bytes, &chunks, max, version) {
            prop_assert!(!matches!(e, CodecError::Decode(_)), "{}", e);
        }
    }
}
