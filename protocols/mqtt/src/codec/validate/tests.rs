use super::*;
use ProtocolVersion::{V5, V311};

#[test]
fn fixed_header_flags() {
    assert!(check_fixed_header(V311, 0x10).is_ok());
    assert!(check_fixed_header(V311, 0x82).is_ok());
    assert!(check_fixed_header(V311, 0xA2).is_ok());
    assert!(check_fixed_header(V311, 0x62).is_ok());
    assert!(check_fixed_header(V311, 0x3D).is_ok()); // DUP, QoS 2, retain
    assert!(matches!(
        check_fixed_header(V311, 0x80),
        Err(CodecError::InvalidFixedHeaderFlags { .. })
    ));
    assert!(matches!(
        check_fixed_header(V311, 0x60),
        Err(CodecError::InvalidFixedHeaderFlags { .. })
    ));
    assert!(matches!(
        check_fixed_header(V311, 0x41),
        Err(CodecError::InvalidFixedHeaderFlags { .. })
    ));
    assert!(matches!(
        check_fixed_header(V311, 0xC1),
        Err(CodecError::InvalidFixedHeaderFlags { .. })
    ));
    assert!(matches!(
        check_fixed_header(V311, 0x36),
        Err(CodecError::InvalidQos)
    ));
    assert!(matches!(
        check_fixed_header(V311, 0x38),
        Err(CodecError::DupOnQos0)
    ));
    assert!(matches!(
        check_fixed_header(V311, 0x00),
        Err(CodecError::ReservedPacketType(0))
    ));
    assert!(matches!(
        check_fixed_header(V311, 0xF0),
        Err(CodecError::ReservedPacketType(15))
    ));
    assert!(check_fixed_header(V5, 0xF0).is_ok());
    for server_only in [0x20, 0x90, 0xB0, 0xD0] {
        assert!(matches!(
            check_fixed_header(V5, server_only),
            Err(CodecError::UnexpectedPacketType(_))
        ));
    }
}

fn body(version: ProtocolVersion, byte1: u8, body: &[u8]) -> Result<Checked, CodecError> {
    check_body(version, byte1, body)
}

#[test]
fn connect_rules() {
    let base = |flags: u8| {
        let mut b = vec![0, 4, b'M', b'Q', b'T', b'T', 4, flags, 0, 60, 0, 1, b'c'];
        if flags & 0x04 != 0 {
            b.extend([0, 1, b't', 0, 1, b'p']);
        }
        if flags & 0x80 != 0 {
            b.extend([0, 1, b'u']);
        }
        if flags & 0x40 != 0 {
            b.extend([0, 1, b'p']);
        }
        b
    };
    assert!(body(V311, 0x10, &base(0x02)).is_ok());
    assert!(body(V311, 0x10, &base(0xC2 | 0x04 | 0x08 | 0x20)).is_ok());
    assert!(matches!(
        body(V311, 0x10, &base(0x03)),
        Err(CodecError::ConnectReservedFlag)
    ));
    assert!(matches!(
        body(V311, 0x10, &base(0x08)),
        Err(CodecError::WillFlagsWithoutWill)
    ));
    assert!(matches!(
        body(V311, 0x10, &base(0x20)),
        Err(CodecError::WillFlagsWithoutWill)
    ));
    assert!(matches!(
        body(V311, 0x10, &base(0x1C)),
        Err(CodecError::InvalidQos)
    ));
    assert!(matches!(
        body(V311, 0x10, &base(0x40)),
        Err(CodecError::PasswordWithoutUsername)
    ));
    let mut trailing = base(0x02);
    trailing.push(0);
    assert!(matches!(
        body(V311, 0x10, &trailing),
        Err(CodecError::Malformed(_))
    ));
    let mut wild_will = base(0x06);
    wild_will[15] = b'#';
    assert!(matches!(
        body(V311, 0x10, &wild_will),
        Err(CodecError::TopicNameInvalid(_))
    ));
    let mut nul_id = base(0x02);
    nul_id[12] = 0;
    assert!(matches!(
        body(V311, 0x10, &nul_id),
        Err(CodecError::InvalidString { .. })
    ));
    let mut binary_password = base(0xC2);
    let last = binary_password.len() - 1;
    binary_password[last] = 0xFF;
    assert!(matches!(
        body(V311, 0x10, &binary_password),
        Err(CodecError::PasswordNotUtf8)
    ));
    let mut old = base(0x02);
    old.splice(0..6, [0, 6, b'M', b'Q', b'I', b's', b'd', b'p']);
    old[8] = 3;
    assert!(matches!(
        body(V311, 0x10, &old),
        Err(CodecError::UnsupportedProtocolVersion { level: 3 })
    ));
}

#[test]
fn publish_rules() {
    assert!(body(V311, 0x30, &[0, 1, b'a', 1, 2]).is_ok());
    assert!(matches!(
        body(V311, 0x30, &[0, 0, 1]),
        Err(CodecError::TopicNameInvalid(_))
    ));
    assert!(matches!(
        body(V311, 0x30, &[0, 1, b'+']),
        Err(CodecError::TopicNameInvalid(_))
    ));
    assert!(matches!(
        body(V311, 0x32, &[0, 1, b'a', 0, 0]),
        Err(CodecError::PacketIdZero)
    ));
    assert!(matches!(
        body(V311, 0x30, &[0, 2, 0xC3, 0x28]),
        Err(CodecError::InvalidString { .. })
    ));
    assert!(body(V5, 0x30, &[0, 1, b'a', 0, 9]).is_ok());
    assert!(matches!(
        body(V5, 0x30, &[0, 0, 0]),
        Err(CodecError::EmptyTopicWithoutAlias)
    ));
    assert!(body(V5, 0x30, &[0, 0, 3, 0x23, 0, 1, 7]).is_ok());
    // A non-UTF-8 MQTT 5 topic, which rumqttc would keep as bytes.
    assert!(matches!(
        body(V5, 0x30, &[0, 1, 0xFF, 0]),
        Err(CodecError::InvalidString { .. })
    ));
}

#[test]
fn ack_rules() {
    assert!(body(V311, 0x40, &[0, 1]).is_ok());
    assert!(body(V311, 0x40, &[0, 1, 0]).is_err());
    assert!(body(V5, 0x40, &[0, 1]).is_ok());
    assert!(body(V5, 0x40, &[0, 1, 0x10]).is_ok());
    assert!(body(V5, 0x40, &[0, 1, 0x10, 0]).is_ok());
    assert!(matches!(
        body(V5, 0x40, &[0, 1, 0x92]),
        Err(CodecError::InvalidReasonCode { .. })
    ));
    assert!(body(V5, 0x62, &[0, 1, 0x92, 0]).is_ok());
    assert!(body(V5, 0x40, &[0]).is_err());
}

#[test]
fn subscribe_rules() {
    assert!(body(V311, 0x82, &[0, 1, 0, 1, b'#', 1]).is_ok());
    assert!(matches!(
        body(V311, 0x82, &[0, 1]),
        Err(CodecError::NoTopicFilters)
    ));
    assert!(matches!(
        body(V311, 0x82, &[0, 0, 0, 1, b'#', 1]),
        Err(CodecError::PacketIdZero)
    ));
    assert!(matches!(
        body(V311, 0x82, &[0, 1, 0, 1, b'#', 4]),
        Err(CodecError::ReservedSubscriptionOptions)
    ));
    assert!(matches!(
        body(V311, 0x82, &[0, 1, 0, 1, b'#', 3]),
        Err(CodecError::InvalidQos)
    ));
    assert!(matches!(
        body(V311, 0x82, &[0, 1, 0, 2, b'#', b'a', 0]),
        Err(CodecError::TopicFilterInvalid(_))
    ));
    assert!(matches!(
        body(V311, 0x82, &[0, 1, 0, 1, b'#']),
        Err(CodecError::Malformed(_))
    ));
    assert!(body(V5, 0x82, &[0, 1, 0, 0, 1, b'#', 0b0010_1110]).is_ok());
    assert!(matches!(
        body(V5, 0x82, &[0, 1, 0, 0, 1, b'#', 0x40]),
        Err(CodecError::ReservedSubscriptionOptions)
    ));
    assert!(matches!(
        body(V5, 0x82, &[0, 1, 0, 0, 1, b'#', 0x30]),
        Err(CodecError::InvalidRetainHandling)
    ));
    let shared = [
        0, 1, 0, 0, 11, b'$', b's', b'h', b'a', b'r', b'e', b'/', b'g', b'/', b'a', b'#', 0,
    ];
    assert!(matches!(
        body(V5, 0x82, &shared),
        Err(CodecError::TopicFilterInvalid(_))
    ));
    let mut shared_ok = shared;
    shared_ok[15] = b'b';
    assert!(body(V5, 0x82, &shared_ok).is_ok());
    shared_ok[16] = 0b100;
    assert!(matches!(
        body(V5, 0x82, &shared_ok),
        Err(CodecError::NoLocalOnSharedSubscription)
    ));
    assert!(matches!(
        body(V311, 0xA2, &[0, 1]),
        Err(CodecError::NoTopicFilters)
    ));
    assert!(matches!(
        body(V5, 0xA2, &[0, 1, 0]),
        Err(CodecError::NoTopicFilters)
    ));
    assert!(body(V5, 0xA2, &[0, 1, 0, 0, 1, b'+']).is_ok());
}

#[test]
fn disconnect_and_auth() {
    assert!(body(V311, 0xE0, &[]).is_ok());
    assert!(body(V311, 0xE0, &[0]).is_err());
    assert!(matches!(body(V5, 0xE0, &[]), Ok(Checked::Disconnect(d)) if d.properties.is_none()));
    let will = v5::DisconnectReasonCode::DisconnectWithWillMessage;
    assert!(matches!(body(V5, 0xE0, &[0x04]), Ok(Checked::Disconnect(d)) if d.reason_code == will));
    let with_props = [0x00, 5, 0x11, 0, 0, 0, 9];
    let Ok(Checked::Disconnect(d)) = body(V5, 0xE0, &with_props) else {
        panic!("a DISCONNECT with properties")
    };
    assert_eq!(
        d.properties.and_then(|p| p.session_expiry_interval),
        Some(9)
    );
    assert!(matches!(
        body(V5, 0xE0, &[0x05]),
        Err(CodecError::InvalidReasonCode { code: 5 })
    ));
    let auth = [0x18, 6, 0x15, 0, 3, b'a', b'b', b'c'];
    assert!(
        matches!(body(V5, 0xF0, &auth), Ok(Checked::Auth(a)) if a.method.as_deref() == Some("abc"))
    );
    assert!(matches!(body(V5, 0xF0, &[]), Ok(Checked::Auth(a)) if a.reason_code == 0));
    assert!(body(V5, 0xF0, &[0x01]).is_err());
    assert!(body(V5, 0xC0, &[0]).is_err());
}
