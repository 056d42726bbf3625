//! The outgoing encoders against rumqttc's client-side decoders.
use bytes::Bytes;
use rumqttc::mqttbytes::{self as mqtt4, v4};
use rumqttc::v5::mqttbytes::{self as mqtt5};

use super::*;

fn publish(topic: &str, qos: u8, payload: &[u8]) -> OutPublish<'static> {
    let topic: &'static str = Box::leak(topic.to_owned().into_boxed_str());
    let payload: &'static [u8] = Box::leak(payload.to_vec().into_boxed_slice());
    OutPublish {
        topic,
        dots_to_slashes: false,
        qos,
        dup: qos > 0,
        retain: true,
        pid: if qos > 0 { 7 } else { 0 },
        payload,
    }
}

#[test]
fn v4_publish_reads_back() {
    for qos in 0..=2 {
        let p = publish("a/b/ü", qos, b"hello");
        let mut out = BytesMut::new();
        let n = write_publish(&mut out, ProtocolVersion::V311, &p, None, None).unwrap();
        assert_eq!(n, out.len());
        let got = v4::Packet::read(&mut out, 1 << 20).unwrap();
        let v4::Packet::Publish(got) = got else {
            panic!("{got:?}")
        };
        assert_eq!(got.topic, "a/b/ü");
        assert_eq!(got.qos as u8, qos);
        assert_eq!(got.dup, qos > 0);
        assert!(got.retain);
        assert_eq!(got.pkid, p.pid);
        assert_eq!(&got.payload[..], b"hello");
        // Byte for byte what rumqttc writes.
        let mut theirs = BytesMut::new();
        let mut q = v4::Publish::new("a/b/ü", mqtt4::qos(qos).unwrap(), "hello");
        q.dup = qos > 0;
        q.retain = true;
        q.pkid = p.pid;
        v4::Packet::Publish(q).write(&mut theirs, 1 << 20).unwrap();
        let mut ours = BytesMut::new();
        write_publish(&mut ours, ProtocolVersion::V311, &p, None, None).unwrap();
        assert_eq!(ours, theirs);
    }
}

#[test]
fn v5_publish_with_every_property_reads_back() {
    let props = v5::PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(9),
        topic_alias: Some(3),
        response_topic: Some("r/1".into()),
        correlation_data: Some(Bytes::from_static(&[0, 1, 2])),
        user_properties: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
        subscription_identifiers: vec![1, 300, 268_435_455],
        content_type: Some("text/plain".into()),
    };
    for qos in 0..=2 {
        let p = publish("t", qos, &[1, 2, 3]);
        let mut out = BytesMut::new();
        write_publish(&mut out, ProtocolVersion::V5, &p, Some(&props), None).unwrap();
        let got = v5::Packet::read(&mut out, None).unwrap();
        let v5::Packet::Publish(got) = got else {
            panic!("{got:?}")
        };
        assert_eq!(&got.topic[..], b"t");
        assert_eq!(got.qos, mqtt5::qos(qos).unwrap());
        assert_eq!(got.pkid, p.pid);
        assert_eq!(&got.payload[..], &[1, 2, 3]);
        assert_eq!(got.properties.as_ref(), Some(&props));
    }
    // No properties: a zero property length.
    let mut out = BytesMut::new();
    write_publish(
        &mut out,
        ProtocolVersion::V5,
        &publish("", 1, b"x"),
        None,
        None,
    )
    .unwrap();
    let v5::Packet::Publish(got) = v5::Packet::read(&mut out, None).unwrap() else {
        panic!()
    };
    assert!(got.properties.is_none());
}

#[test]
fn publish_limits() {
    let p = publish("t", 1, &[0; 100]);
    let mut out = BytesMut::from(&b"keep"[..]);
    let err = write_publish(&mut out, ProtocolVersion::V5, &p, None, Some(50));
    assert!(matches!(
        err,
        Err(CodecError::PacketTooLarge { size: 108, max: 50 })
    ));
    assert_eq!(&out[..], b"keep");
    let long = "x".repeat(MAX_STRING_LEN + 1);
    let bad = OutPublish { topic: &long, ..p };
    assert!(write_publish(&mut out, ProtocolVersion::V311, &bad, None, None).is_err());
    let zero = OutPublish { pid: 0, ..p };
    assert!(write_publish(&mut out, ProtocolVersion::V311, &zero, None, None).is_err());
    assert_eq!(&out[..], b"keep");
    // Routing keys are written as topics.
    let mut out = BytesMut::new();
    let key = OutPublish {
        topic: "a.b.c",
        dots_to_slashes: true,
        ..p
    };
    write_publish(&mut out, ProtocolVersion::V311, &key, None, None).unwrap();
    let v4::Packet::Publish(got) = v4::Packet::read(&mut out, 1 << 20).unwrap() else {
        panic!()
    };
    assert_eq!(got.topic, "a/b/c");
    // Exactly at the limit is fine.
    let mut out = BytesMut::new();
    assert_eq!(
        write_publish(&mut out, ProtocolVersion::V5, &p, None, Some(108)).ok(),
        Some(108)
    );
}

proptest::proptest! {
    /// Whatever we encode, a client decodes to the same packet.
    #[test]
    fn any_publish_reads_back(
        topic in "[a-z/]{1,20}",
        qos in 0u8..=2,
        dup: bool,
        retain: bool,
        pid in 1u16..,
        payload in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
        expiry in proptest::option::of(proptest::num::u32::ANY),
        alias in proptest::option::of(1u16..),
        content in proptest::option::of("[ -~]{0,20}"),
        user in proptest::collection::vec(("[a-z]{0,5}", "[ -~]{0,8}"), 0..3),
        ids in proptest::collection::vec(1usize..268_435_455, 0..3),
        v5: bool,
    ) {
        let p = OutPublish {
            topic: &topic,
            dots_to_slashes: false,
            qos,
            dup: dup && qos > 0,
            retain,
            pid,
            payload: &payload,
        };
        let props = v5::PublishProperties {
            payload_format_indicator: None,
            message_expiry_interval: expiry,
            topic_alias: alias,
            response_topic: None,
            correlation_data: None,
            user_properties: user,
            subscription_identifiers: ids,
            content_type: content,
        };
        let mut out = BytesMut::new();
        if v5 {
            let n = write_publish(&mut out, ProtocolVersion::V5, &p, Some(&props), None).unwrap();
            proptest::prop_assert_eq!(n, out.len());
            let v5::Packet::Publish(got) = v5::Packet::read(&mut out, None).unwrap() else {
                panic!("not a publish")
            };
            proptest::prop_assert_eq!(&got.topic[..], topic.as_bytes());
            proptest::prop_assert_eq!(got.qos as u8, qos);
            proptest::prop_assert_eq!(got.retain, retain);
            proptest::prop_assert_eq!(&got.payload[..], &payload[..]);
            if qos > 0 {
                proptest::prop_assert_eq!(got.pkid, pid);
            }
            let empty = props == v5::PublishProperties::default();
            proptest::prop_assert_eq!(got.properties, (!empty).then_some(props));
        } else {
            write_publish(&mut out, ProtocolVersion::V311, &p, None, None).unwrap();
            let v4::Packet::Publish(got) = v4::Packet::read(&mut out, 1 << 20).unwrap() else {
                panic!("not a publish")
            };
            proptest::prop_assert_eq!(got.topic, topic);
            proptest::prop_assert_eq!(got.qos as u8, qos);
            proptest::prop_assert_eq!(&got.payload[..], &payload[..]);
        }
        proptest::prop_assert!(out.is_empty());
    }
}

#[test]
fn acks_read_back() {
    use AckKind::*;
    for kind in [PubAck, PubRec, PubRel, PubComp] {
        let mut out = BytesMut::new();
        write_ack(&mut out, ProtocolVersion::V311, kind, 9, 0x80, Some("x"));
        assert_eq!(out.len(), 4);
        let got = v4::Packet::read(&mut out, 100).unwrap();
        let pid = match got {
            v4::Packet::PubAck(a) => a.pkid,
            v4::Packet::PubRec(a) => a.pkid,
            v4::Packet::PubRel(a) => a.pkid,
            v4::Packet::PubComp(a) => a.pkid,
            other => panic!("{other:?}"),
        };
        assert_eq!(pid, 9);
    }
    let mut out = BytesMut::new();
    write_ack(&mut out, ProtocolVersion::V5, PubAck, 5, 0, None);
    assert_eq!(&out[..], &[0x40, 2, 0, 5]);
    let mut out = BytesMut::new();
    write_ack(&mut out, ProtocolVersion::V5, PubAck, 5, 0x87, Some("no"));
    let v5::Packet::PubAck(a) = v5::Packet::read(&mut out, None).unwrap() else {
        panic!()
    };
    assert_eq!(a.pkid, 5);
    assert_eq!(a.reason, v5::PubAckReason::NotAuthorized);
    assert_eq!(a.properties.unwrap().reason_string.as_deref(), Some("no"));
    let mut out = BytesMut::new();
    write_ack(&mut out, ProtocolVersion::V5, PubComp, 6, 0x92, None);
    let v5::Packet::PubComp(a) = v5::Packet::read(&mut out, None).unwrap() else {
        panic!()
    };
    assert_eq!(a.reason, v5::PubCompReason::PacketIdentifierNotFound);
    let mut out = BytesMut::new();
    write_pingresp(&mut out);
    assert_eq!(
        v4::Packet::read(&mut out, 10).unwrap(),
        v4::Packet::PingResp
    );
}
