use super::*;
use mqtt5::QoS;

fn full_publish() -> v5::Publish {
    let props = v5::PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(30),
        topic_alias: None,
        response_topic: Some("replies/client-1".into()),
        correlation_data: Some(Bytes::from_static(&[0, 255, 7])),
        user_properties: vec![
            ("b".into(), "2".into()),
            ("a".into(), "1".into()),
            ("b".into(), "3".into()),
            (TAGS_HEADER.into(), "red, blue,,red".into()),
            (DELAY_HEADER.into(), "1500".into()),
        ],
        subscription_identifiers: vec![],
        content_type: Some("text/plain".into()),
    };
    v5::Publish::new("sensors/1/temp", QoS::AtLeastOnce, "21.5", Some(props))
}

#[test]
fn v5_publish_to_message() {
    let m = message_from_v5_publish(&full_publish(), 10_000).expect("valid publish");
    assert_eq!(m.exchange, "amq.topic");
    assert_eq!(m.routing_key, "sensors.1.temp");
    assert_eq!(m.body, Bytes::from_static(b"21.5"));
    assert_eq!(m.properties.delivery_mode, Some(2));
    assert!(m.is_persistent());
    assert_eq!(m.properties.content_type.as_deref(), Some("text/plain"));
    assert_eq!(m.properties.reply_to.as_deref(), Some("replies.client-1"));
    assert_eq!(
        m.properties.correlation_id,
        Some(Bytes::from_static(&[0, 255, 7]))
    );
    assert_eq!(m.properties.expiration.as_deref(), Some("30000"));
    assert_eq!(m.ttl_millis(), Some(30_000));
    assert_eq!(m.deliver_at, Some(11_500));
    assert_eq!(m.tags, vec!["red".to_string(), "blue".to_string()]);
    let names: Vec<&str> = m.headers.iter().map(|(k, _)| k).collect();
    assert_eq!(
        names,
        [
            "b",
            "a",
            "b",
            TAGS_HEADER,
            DELAY_HEADER,
            PAYLOAD_FORMAT_HEADER
        ]
    );
    assert_eq!(m.header("b"), Some(&HeaderValue::string("2")));
    assert_eq!(m.header(PAYLOAD_FORMAT_HEADER), Some(&HeaderValue::U8(1)));
}

#[test]
fn v5_round_trip() {
    let original = full_publish();
    let m = message_from_v5_publish(&original, 0).expect("valid publish");
    let back = v5_publish_from_message(&m, "sensors/1/temp", QoS::AtLeastOnce, false, 0);
    assert_eq!(back, original);
    // And again through a second hop.
    let m2 = message_from_v5_publish(&back, 0).expect("valid publish");
    assert_eq!(m2, m);
}

#[test]
fn v5_minimal_round_trip() {
    let original = v5::Publish::new("a", QoS::AtMostOnce, "x", None);
    let m = message_from_v5_publish(&original, 0).expect("valid publish");
    assert_eq!(m.properties.delivery_mode, Some(1));
    assert!(m.headers.is_empty() && m.tags.is_empty() && m.deliver_at.is_none());
    assert_eq!(
        v5_publish_from_message(&m, "a", QoS::AtMostOnce, false, 0),
        original
    );
}

#[test]
fn payload_format_is_checked() {
    let mut p = v5::Publish::new("a", QoS::AtMostOnce, vec![0xFF, 0xFE], None);
    p.properties = Some(v5::PublishProperties {
        payload_format_indicator: Some(1),
        ..Default::default()
    });
    let err = message_from_v5_publish(&p, 0).expect_err("not UTF-8");
    assert_eq!(err, PropertiesError::PayloadFormatInvalid);
    assert_eq!(err.v5_reason_code(), 0x99);
    // Indicator 0 (unspecified bytes) is kept and not checked.
    p.properties = Some(v5::PublishProperties {
        payload_format_indicator: Some(0),
        ..Default::default()
    });
    let m = message_from_v5_publish(&p, 0).expect("bytes are fine");
    assert_eq!(m.header(PAYLOAD_FORMAT_HEADER), Some(&HeaderValue::U8(0)));
    let out = v5_publish_from_message(&m, "a", QoS::AtMostOnce, false, 0);
    let props = out.properties.expect("indicator kept");
    assert_eq!(props.payload_format_indicator, Some(0));
    assert!(
        props.user_properties.is_empty(),
        "the indicator header is not a user property"
    );
}

#[test]
fn non_utf8_topic_is_refused() {
    let mut p = v5::Publish::new("a", QoS::AtMostOnce, "x", None);
    p.topic = Bytes::from_static(&[0xFF]);
    assert_eq!(
        message_from_v5_publish(&p, 0),
        Err(PropertiesError::TopicNameInvalid)
    );
}

#[test]
fn expiry_counts_down_and_rounds_up() {
    let mut m = Message::new("x");
    m.properties.expiration = Some("30000".into());
    let expiry = |m: &Message, elapsed| {
        v5_publish_from_message(m, "t", QoS::AtMostOnce, false, elapsed)
            .properties
            .and_then(|p| p.message_expiry_interval)
    };
    assert_eq!(expiry(&m, 0), Some(30));
    assert_eq!(expiry(&m, 2_500), Some(28));
    assert_eq!(expiry(&m, 29_999), Some(1));
    assert_eq!(expiry(&m, 60_000), Some(1));
    m.properties.expiration = Some("500".into());
    assert_eq!(expiry(&m, 0), Some(1));
    m.properties.expiration = Some("99999999999999999".into());
    assert_eq!(expiry(&m, 0), Some(u32::MAX));
    m.properties.expiration = Some("soon".into());
    assert_eq!(expiry(&m, 0), None);
}

#[test]
fn headers_render_as_user_properties() {
    let mut h = Headers::new();
    h.push("bool", HeaderValue::Bool(true));
    h.push("i8", HeaderValue::I8(-8));
    h.push("u32", HeaderValue::U32(32));
    h.push("i64", HeaderValue::I64(-64));
    h.push("f64", HeaderValue::F64(1.5));
    h.push(
        "dec",
        HeaderValue::Decimal {
            scale: 2,
            value: 12345,
        },
    );
    h.push("dec0", HeaderValue::Decimal { scale: 0, value: 7 });
    h.push("small", HeaderValue::Decimal { scale: 3, value: 5 });
    h.push("short", HeaderValue::ShortString("s".into()));
    h.push("long", HeaderValue::string("l"));
    h.push("ts", HeaderValue::Timestamp(1_700_000_000));
    h.push("void", HeaderValue::Void);
    h.push("binary", HeaderValue::Bytes(Bytes::from_static(b"b")));
    h.push(
        "bad utf8",
        HeaderValue::LongString(Bytes::from_static(&[0xFF])),
    );
    h.push("nul", HeaderValue::string("a\0b"));
    h.push("nul\0name", HeaderValue::string("x"));
    h.push("array", HeaderValue::Array(vec![HeaderValue::I8(1)]));
    h.push("table", HeaderValue::Table(Headers::new()));
    h.push("huge", HeaderValue::string("x".repeat(65_536)));
    h.push(PAYLOAD_FORMAT_HEADER, HeaderValue::U8(1));
    h.push("long", HeaderValue::string("again"));
    let got = user_properties(&h);
    let want = [
        ("bool", "true"),
        ("i8", "-8"),
        ("u32", "32"),
        ("i64", "-64"),
        ("f64", "1.5"),
        ("dec", "123.45"),
        ("dec0", "7"),
        ("small", "0.005"),
        ("short", "s"),
        ("long", "l"),
        ("ts", "1700000000"),
        ("void", ""),
        ("long", "again"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn reply_to_from_amqp() {
    let mut m = Message::new("x");
    m.properties.reply_to = Some("amq.gen-abc".into());
    let out = v5_publish_from_message(&m, "t", QoS::AtMostOnce, false, 0);
    assert_eq!(
        out.properties.and_then(|p| p.response_topic).as_deref(),
        Some("amq/gen-abc")
    );
    // A key that is no valid topic name is left out rather than sent broken.
    m.properties.reply_to = Some("a.#".into());
    assert_eq!(
        v5_publish_from_message(&m, "t", QoS::AtMostOnce, false, 0).properties,
        None
    );
}

#[test]
fn oversized_or_nul_properties_are_left_out() {
    let mut m = Message::new("x");
    m.properties.correlation_id = Some(Bytes::from(vec![1; 65_536]));
    m.properties.content_type = Some("text\0plain".into());
    assert_eq!(
        v5_publish_from_message(&m, "t", QoS::AtMostOnce, false, 0).properties,
        None
    );
}

#[test]
fn gateway_extras() {
    let user = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let extras = |pairs: &[(&str, &str)]| {
        let mut p = v5::Publish::new("t", QoS::AtMostOnce, "x", None);
        p.properties = Some(v5::PublishProperties {
            user_properties: user(pairs),
            ..Default::default()
        });
        let m = message_from_v5_publish(&p, 10).expect("valid publish");
        (m.deliver_at, m.tags)
    };
    assert_eq!(extras(&[("x-delay", " 250 ")]).0, Some(260));
    assert_eq!(extras(&[("x-delay", "0")]).0, None);
    assert_eq!(extras(&[("x-delay", "-5")]).0, None);
    assert_eq!(extras(&[("x-delay", "soon")]).0, None);
    assert_eq!(extras(&[("x-delay", "1"), ("x-delay", "2")]).0, Some(11));
    assert_eq!(
        extras(&[("x-tags", "a,b"), ("x-tags", " c , a ")]).1,
        ["a", "b", "c"]
    );
    assert!(extras(&[("x-tags", " , ")]).1.is_empty());
    let mut p = v5::Publish::new("t", QoS::AtMostOnce, "x", None);
    p.properties = Some(v5::PublishProperties {
        user_properties: user(&[("x-delay", &u64::MAX.to_string())]),
        ..Default::default()
    });
    assert_eq!(
        message_from_v5_publish(&p, 10).map(|m| m.deliver_at),
        Ok(Some(u64::MAX))
    );
}

#[test]
fn v4_round_trip() {
    let mut original = v4::Publish::new("a/b", mqtt4::QoS::ExactlyOnce, "payload");
    original.retain = true;
    let m = message_from_v4_publish(&original);
    assert_eq!(m.exchange, "amq.topic");
    assert_eq!(m.routing_key, "a.b");
    assert_eq!(m.properties.delivery_mode, Some(2));
    assert_eq!(m.body, Bytes::from_static(b"payload"));
    let back = v4_publish_from_message(&m, "a/b", mqtt4::QoS::ExactlyOnce, true);
    assert_eq!(back, original);
    let qos0 = v4::Publish::new("a", mqtt4::QoS::AtMostOnce, "x");
    assert_eq!(
        message_from_v4_publish(&qos0).properties.delivery_mode,
        Some(1)
    );
}
