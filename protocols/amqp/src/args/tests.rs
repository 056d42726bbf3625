//! Unit tests of argument mapping and equivalence.
use super::*;
use amq_protocol::types::{AMQPValue, FieldArray};

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert((*k).into(), v.clone());
    }
    t
}

const Q: &str = "queue 'q' in vhost '/'";

fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

#[test]
fn defaults_are_classic() {
    let a = queue_args(&FieldTable::default(), Q).unwrap();
    assert_eq!(a.settings, QueueSettings::classic());
    assert!(a.arguments.is_empty());
}

#[test]
fn every_argument_maps() {
    let a = queue_args(
        &table(&[
            ("x-queue-type", long("fifo")),
            ("x-message-ttl", AMQPValue::LongInt(60_000)),
            ("x-expires", AMQPValue::LongLongInt(120_000)),
            ("x-dead-letter-exchange", long("dlx")),
            ("x-dead-letter-routing-key", long("dead")),
            ("x-max-length", AMQPValue::ShortInt(10)),
            ("x-max-length-bytes", AMQPValue::LongUInt(1_000)),
            ("x-overflow", long("reject-publish")),
            ("x-delivery-limit", AMQPValue::LongInt(3)),
            ("x-single-active-consumer", AMQPValue::Boolean(true)),
            ("x-max-priority", AMQPValue::ShortShortUInt(5)),
            ("x-retention", AMQPValue::LongLongInt(3_600_000)),
            ("x-ack-timeout", AMQPValue::LongInt(30_000)),
            ("x-queue-mode", long("lazy")),
        ]),
        Q,
    )
    .unwrap();
    let s = a.settings;
    assert_eq!(s.kind, QueueKind::Fifo);
    assert_eq!(s.message_ttl_ms, Some(60_000));
    assert_eq!(s.expires_ms, Some(120_000));
    assert_eq!(
        s.dead_letter,
        Some(DeadLetterTarget::Exchange {
            exchange: "dlx".into(),
            routing_key: Some("dead".into())
        })
    );
    assert_eq!(s.max_length, Some(10));
    assert_eq!(s.max_bytes, Some(1_000));
    assert_eq!(s.overflow, Overflow::RejectPublish);
    assert_eq!(s.max_deliveries, Some(4), "x-delivery-limit 3 = 4 attempts");
    assert!(s.single_active_consumer);
    assert_eq!(s.max_priority, Some(5));
    assert_eq!(s.retention_ms, 3_600_000);
    assert_eq!(s.ack_timeout_ms, Some(30_000));
    assert_eq!(a.arguments.0.len(), 14);
}

#[test]
fn overflow_values_as_rabbitmq_reads_them() {
    let overflow =
        |entries: &[(&str, AMQPValue)]| queue_args(&table(entries), Q).unwrap().settings.overflow;
    assert_eq!(overflow(&[]), Overflow::DropHead);
    assert_eq!(
        overflow(&[("x-overflow", long("reject-publish-dlx"))]),
        Overflow::RejectPublishDlx
    );
    // drop-head, said or by default, dead-letters when there is a DLX.
    assert_eq!(
        overflow(&[("x-dead-letter-exchange", long("dlx"))]),
        Overflow::DeadLetterHead
    );
    assert_eq!(
        overflow(&[
            ("x-overflow", long("drop-head")),
            ("x-dead-letter-exchange", long("dlx"))
        ]),
        Overflow::DeadLetterHead
    );
}

#[test]
fn wrong_types_and_values_are_406_in_rabbitmq_words() {
    let err = |entries: &[(&str, AMQPValue)]| queue_args(&table(entries), Q).unwrap_err();
    let e = err(&[("x-message-ttl", long("soon"))]);
    assert_eq!(e.code, 406);
    assert_eq!(
        e.text,
        "PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue 'q' in vhost '/': \"expected integer, got longstr\""
    );
    assert!(
        err(&[("x-max-length", AMQPValue::LongInt(-1))])
            .text
            .ends_with("{value_negative,-1}")
    );
    assert!(
        err(&[("x-expires", AMQPValue::LongInt(0))])
            .text
            .ends_with("{value_zero,0}")
    );
    assert!(
        err(&[("x-queue-type", long("stream"))])
            .text
            .contains("unsupported queue type 'stream'")
    );
    assert!(
        err(&[("x-single-active-consumer", long("yes"))])
            .text
            .ends_with("{unacceptable_type,longstr}")
    );
    assert!(
        err(&[("x-overflow", long("explode"))])
            .text
            .contains("unknown_overflow")
    );
    assert!(
        err(&[("x-max-priority", AMQPValue::LongInt(256))])
            .text
            .contains("max_value_exceeded")
    );
    assert!(
        err(&[("x-dead-letter-routing-key", long("k"))])
            .text
            .contains("routing_key_but_no_dlx_defined")
    );
    assert!(
        err(&[("x-message-ttl", AMQPValue::LongLongInt(1 << 40))])
            .text
            .contains("value_too_large")
    );
}

#[test]
fn equivalence_follows_rabbitmq() {
    let args = |entries: &[(&str, AMQPValue)]| queue_args(&table(entries), Q).unwrap().arguments;
    let a = args(&[("x-message-ttl", AMQPValue::LongInt(100))]);
    let same_other_int_type = args(&[("x-message-ttl", AMQPValue::LongLongInt(100))]);
    assert!(check_equivalent(&a, &same_other_int_type, Q).is_ok());
    let e =
        check_equivalent(&a, &args(&[("x-message-ttl", AMQPValue::LongInt(200))]), Q).unwrap_err();
    assert_eq!(
        e.text,
        "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/': received the value '200' of type 'signedint' but current is the value '100' of type 'signedint'"
    );
    let e = check_equivalent(&Headers::new(), &a, Q).unwrap_err();
    assert!(
        e.text
            .ends_with("received the value '100' of type 'signedint' but current is none")
    );
    // classic is the same as no type; unknown arguments are not compared.
    assert!(
        check_equivalent(
            &Headers::new(),
            &args(&[("x-queue-type", long("classic"))]),
            Q
        )
        .is_ok()
    );
    assert!(check_equivalent(&Headers::new(), &args(&[("x-queue-mode", long("lazy"))]), Q).is_ok());
    assert!(
        check_equivalent(
            &Headers::new(),
            &args(&[("x-queue-type", long("quorum"))]),
            Q
        )
        .is_err()
    );
}

#[test]
fn consume_arguments() {
    let c = consume_args_at(
        &table(&[
            ("x-priority", AMQPValue::LongInt(5)),
            ("x-consumer-group", long("audit")),
            ("x-stream-offset", long("first")),
            (
                "x-tags",
                AMQPValue::FieldArray(FieldArray::from(vec![long("a"), long("b")])),
            ),
            ("x-tag-match", long("all")),
        ]),
        Q,
        10_000_000,
    )
    .unwrap();
    assert_eq!(c.priority, 5);
    assert_eq!(c.group.as_deref(), Some("audit"));
    assert_eq!(c.offset, Some(Offset::First));
    assert_eq!(
        c.filter,
        Some(TagFilter {
            tags: vec!["a".into(), "b".into()],
            match_all: true
        })
    );
    let off = |v: AMQPValue| {
        consume_args_at(&table(&[("x-stream-offset", v)]), Q, 10_000_000).map(|c| c.offset)
    };
    assert_eq!(off(long("next")).unwrap(), Some(Offset::Next));
    assert_eq!(off(long("last")).unwrap(), Some(Offset::Last));
    assert_eq!(
        off(AMQPValue::LongLongInt(42)).unwrap(),
        Some(Offset::Sequence(42))
    );
    assert_eq!(
        off(AMQPValue::Timestamp(5)).unwrap(),
        Some(Offset::Time(5_000))
    );
    assert_eq!(off(long("10s")).unwrap(), Some(Offset::Time(9_990_000)));
    assert_eq!(off(long("soon")).unwrap_err().code, 406);
    let tags = consume_args_at(&table(&[("x-tags", long("red, blue"))]), Q, 0).unwrap();
    assert_eq!(tags.filter.unwrap().tags, ["red", "blue"]);
    assert!(consume_args_at(&table(&[("x-tag-match", long("some"))]), Q, 0).is_err());
    assert!(consume_args_at(&table(&[("x-priority", long("high"))]), Q, 0).is_err());
    assert_eq!(Offset::Last.position((3, 10)), StartPosition::Sequence(9));
    assert_eq!(Offset::Last.position((0, 0)), StartPosition::Sequence(0));
}
