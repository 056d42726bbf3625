//! MQTT topics and topic filters: validation, `$share` parsing, the mapping
//! onto AMQP routing keys and binding patterns, and matching through that mapping.
//!
//! MQTT publishes go to the exchange [`AMQP_TOPIC_EXCHANGE`] with the topic as
//! routing key, following RabbitMQ's MQTT plugin (`rabbit_mqtt_util:mqtt_to_amqp`
//! and `amqp_to_mqtt`) so that its users find the same keys here:
//!
//! | MQTT | AMQP | meaning                          |
//! |------|------|----------------------------------|
//! | `/`  | `.`  | level separator                  |
//! | `+`  | `*`  | exactly one level (filters only) |
//! | `#`  | `#`  | any number of levels, at the end |
//!
//! Consequences, all shared with RabbitMQ:
//!
//! - A `.` inside an MQTT level is not escaped. On the way in it is kept, so it
//!   becomes an AMQP word separator; on the way out every `.` becomes `/`. MQTT
//!   `a.b` and `a/b` are therefore the same topic across the gateway: both are
//!   routing key `a.b`, a subscriber to `a/+` receives a publish to `a.b`, and
//!   it receives it with the topic `a/b`. A client library that dispatches by
//!   matching the received topic against its own filter (`a.b`) will not find a
//!   handler for `a/b`.
//! - Empty levels survive the round trip: `a//b` ↔ `a..b`, `/a` ↔ `.a`, `/` ↔ `.`.
//!   AMQP topic matching treats an empty word as a word, as MQTT treats an empty
//!   level as a level, so `+/a` (`*.a`) matches `/a` (`.a`) on both sides.
//!
//! Where we differ from RabbitMQ, on purpose:
//!
//! - RabbitMQ also turns `*` into `+` when it converts a routing key into a
//!   topic name, which yields a topic containing a wildcard, which a client must
//!   treat as a protocol violation. [`routing_key_to_topic`] only maps `.` to `/`
//!   and refuses keys whose topic would be invalid (`+`, `#`, U+0000, empty).
//! - A filter level that is exactly `*` is a literal in MQTT but a wildcard in an
//!   AMQP pattern; RabbitMQ silently over-matches, [`filter_to_binding_key`]
//!   refuses it so the subscription can be answered "topic filter invalid".
//!
//! Matching: there is one topic matcher in the gateway, the engine's
//! ([`gw_core::topic_matches`], the rules `amq.topic` routes by), and the door
//! matches through the mapping above ([`binding_matches`]). MQTT's own rules
//! come out the same: `+` is one level, empty ones included; `sport/#` matches
//! `sport` [MQTT-4.7.1-2] as `sport.#` matches `sport`. The one MQTT rule AMQP
//! does not have, a leading wildcard never matching a `$` topic
//! [MQTT-4.7.2-1], is added by [`binding_matches`]; the engine still routes
//! such a message to the session queue and the door drops it at delivery.

use thiserror::Error;

/// The exchange every MQTT publish is routed through (RabbitMQ's default for its MQTT plugin).
pub const AMQP_TOPIC_EXCHANGE: &str = "amq.topic";

/// Longest UTF-8 string MQTT can carry: its length prefix is two bytes.
pub const MAX_STRING_LEN: usize = u16::MAX as usize;

/// The prefix of a shared subscription's topic filter [MQTT-4.8.2-1].
pub const SHARE_PREFIX: &str = "$share/";

/// Why a topic name or topic filter was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TopicError {
    /// Topic names and filters are at least one character long [MQTT-4.7.3-1].
    #[error("empty topic or topic filter")]
    Empty,
    /// Longer than a two-byte length prefix can describe.
    #[error("topic longer than 65535 bytes")]
    TooLong,
    /// U+0000 is not allowed in any MQTT string [MQTT-4.7.3-2], [MQTT-1.5.4-2].
    #[error("topic contains U+0000")]
    NullCharacter,
    /// A topic name is not a filter: no `+` or `#` [MQTT-3.3.2-2].
    #[error("wildcard in a topic name")]
    WildcardInTopicName,
    /// `#` stands alone as the last level ([MQTT-4.7.1-1] in 5.0, [MQTT-4.7.1-2] in 3.1.1).
    #[error("'#' is not the last level on its own")]
    MultiLevelWildcardMisplaced,
    /// `+` occupies a whole level ([MQTT-4.7.1-2] in 5.0, [MQTT-4.7.1-3] in 3.1.1).
    #[error("'+' does not occupy a whole level")]
    SingleLevelWildcardMisplaced,
    /// `$share/{ShareName}/{filter}`: ShareName is non-empty and has no `/ + #`,
    /// and a filter follows it [MQTT-4.8.2-1], [MQTT-4.8.2-2].
    #[error("malformed $share/{{ShareName}}/{{filter}}")]
    InvalidSharedSubscription,
    /// A level that is exactly `*` means "one level" to AMQP but is a literal to MQTT.
    #[error("a '*' level cannot be expressed as an AMQP binding pattern")]
    UnmappableLevel,
}

/// A parsed `$share/{group}/{filter}` topic filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedFilter<'a> {
    /// The ShareName: subscribers with the same name compete for messages.
    pub group: &'a str,
    /// The topic filter after the ShareName.
    pub filter: &'a str,
}

/// Checks a PUBLISH topic name (or a will topic, or a response topic).
///
/// An empty name is refused here; MQTT 5's "empty topic plus topic alias" is
/// resolved by the connection before the topic is used.
pub fn validate_topic_name(topic: &str) -> Result<(), TopicError> {
    check_string(topic)?;
    if topic.contains(['+', '#']) {
        return Err(TopicError::WildcardInTopicName);
    }
    Ok(())
}

/// Checks a SUBSCRIBE or UNSUBSCRIBE topic filter's syntax.
///
/// `$share/...` is checked as a plain filter here; see [`parse_shared`] for
/// the shared-subscription rules, which only MQTT 5 defines.
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    check_string(filter)?;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        if level.contains('#') && (level != "#" || !last) {
            return Err(TopicError::MultiLevelWildcardMisplaced);
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::SingleLevelWildcardMisplaced);
        }
    }
    Ok(())
}

/// Splits `$share/{group}/{filter}`; `Ok(None)` when the filter is not shared.
///
/// The inner filter is validated with [`validate_topic_filter`].
pub fn parse_shared(filter: &str) -> Result<Option<SharedFilter<'_>>, TopicError> {
    let Some(rest) = filter.strip_prefix(SHARE_PREFIX) else {
        return Ok(None);
    };
    // [MQTT-4.8.2-2]: the ShareName is followed by a "/", which is followed by a filter.
    let (group, inner) = rest
        .split_once('/')
        .ok_or(TopicError::InvalidSharedSubscription)?;
    if group.is_empty() || group.contains(['+', '#']) || inner.is_empty() {
        return Err(TopicError::InvalidSharedSubscription);
    }
    validate_topic_filter(inner)?;
    Ok(Some(SharedFilter {
        group,
        filter: inner,
    }))
}

/// Does a message with `routing_key` match `binding`, a binding key made by
/// [`filter_to_binding_key`]? The engine's topic matching, plus MQTT's rule
/// that a filter starting with a wildcard does not match a topic starting
/// with `$` [MQTT-4.7.2-1]: AMQP has no such rule (a `#` binding on
/// `amq.topic` receives `$SYS.x`), so it is applied here, where MQTT differs
/// on purpose, and nowhere else.
pub fn binding_matches(binding: &str, routing_key: &str) -> bool {
    if routing_key.starts_with('$') && matches!(binding.split('.').next(), Some("*" | "#")) {
        return false;
    }
    gw_core::topic_matches(binding, routing_key)
}

/// MQTT topic name → AMQP routing key: `/` becomes `.`, nothing else changes.
pub fn topic_to_routing_key(topic: &str) -> String {
    topic.replace('/', ".")
}

/// AMQP routing key → MQTT topic name: `.` becomes `/`.
///
/// Routing keys published over AMQP or HTTP may hold characters an MQTT topic
/// name may not (`+`, `#`, U+0000) or be empty; those are refused, and such a
/// message cannot be delivered to an MQTT subscriber under its own name.
pub fn routing_key_to_topic(routing_key: &str) -> Result<String, TopicError> {
    let topic = routing_key.replace('.', "/");
    validate_topic_name(&topic)?;
    Ok(topic)
}

/// MQTT topic filter → AMQP topic binding pattern: `/` → `.`, `+` → `*`, `#` → `#`.
///
/// The filter must be valid ([`validate_topic_filter`]) and not shared (pass
/// [`SharedFilter::filter`]). A level that is exactly `*` is refused with
/// [`TopicError::UnmappableLevel`]: AMQP would read it as a wildcard.
pub fn filter_to_binding_key(filter: &str) -> Result<String, TopicError> {
    let mut key = String::with_capacity(filter.len());
    for (i, level) in filter.split('/').enumerate() {
        if i > 0 {
            key.push('.');
        }
        match level {
            "+" => key.push('*'),
            "*" => return Err(TopicError::UnmappableLevel),
            other => key.push_str(other),
        }
    }
    Ok(key)
}

/// Rules every topic string shares: non-empty, fits a length prefix, no U+0000.
fn check_string(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_STRING_LEN {
        return Err(TopicError::TooLong);
    }
    if s.contains('\0') {
        return Err(TopicError::NullCharacter);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn topic_names() {
        for ok in [
            "a", "/", "a/b", "/a", "a//b", "a/", "$SYS/x", "a b/ü", "a.b", "*",
        ] {
            assert_eq!(validate_topic_name(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate_topic_name(""), Err(TopicError::Empty));
        assert_eq!(
            validate_topic_name("a/+"),
            Err(TopicError::WildcardInTopicName)
        );
        assert_eq!(
            validate_topic_name("a/#"),
            Err(TopicError::WildcardInTopicName)
        );
        assert_eq!(
            validate_topic_name("a+b"),
            Err(TopicError::WildcardInTopicName)
        );
        assert_eq!(validate_topic_name("a\0b"), Err(TopicError::NullCharacter));
        assert_eq!(
            validate_topic_name(&"x".repeat(65_536)),
            Err(TopicError::TooLong)
        );
        assert_eq!(validate_topic_name(&"x".repeat(65_535)), Ok(()));
    }

    #[test]
    fn topic_filters() {
        for ok in [
            "#",
            "+",
            "a/#",
            "a/+/b",
            "+/+",
            "/+",
            "+/",
            "a//#",
            "$share/g/a",
            "a*",
        ] {
            assert_eq!(validate_topic_filter(ok), Ok(()), "{ok}");
        }
        use TopicError::*;
        for (bad, why) in [
            ("", Empty),
            ("a#", MultiLevelWildcardMisplaced),
            ("a/#/b", MultiLevelWildcardMisplaced),
            ("#/", MultiLevelWildcardMisplaced),
            ("##", MultiLevelWildcardMisplaced),
            ("a/b#", MultiLevelWildcardMisplaced),
            ("a+", SingleLevelWildcardMisplaced),
            ("a/++", SingleLevelWildcardMisplaced),
            ("+a/b", SingleLevelWildcardMisplaced),
            ("a\0", NullCharacter),
        ] {
            assert_eq!(validate_topic_filter(bad), Err(why), "{bad:?}");
        }
    }

    #[test]
    fn shared_subscriptions() {
        assert_eq!(parse_shared("a/b"), Ok(None));
        assert_eq!(parse_shared("$share"), Ok(None));
        assert_eq!(parse_shared("$SHARE/g/a"), Ok(None));
        assert_eq!(
            parse_shared("$share/g/a/+/#"),
            Ok(Some(SharedFilter {
                group: "g",
                filter: "a/+/#"
            }))
        );
        assert_eq!(
            parse_shared("$share/g//"),
            Ok(Some(SharedFilter {
                group: "g",
                filter: "/"
            }))
        );
        for bad in [
            "$share/",
            "$share/g",
            "$share//a",
            "$share/g/",
            "$share/a+/x",
            "$share/#/x",
        ] {
            assert_eq!(
                parse_shared(bad),
                Err(TopicError::InvalidSharedSubscription),
                "{bad}"
            );
        }
        assert_eq!(
            parse_shared("$share/g/a#"),
            Err(TopicError::MultiLevelWildcardMisplaced)
        );
    }

    /// MQTT's topic matching as the specification states it (§ 4.7), level
    /// by level, written from the spec only to check [`binding_matches`]
    /// against it: the gateway itself matches through the AMQP mapping.
    fn spec_matches(filter: &str, topic: &str) -> bool {
        // [MQTT-4.7.2-1]
        if topic.starts_with('$') && filter.starts_with(['+', '#']) {
            return false;
        }
        let mut topic_levels = topic.split('/');
        let mut filter_levels = filter.split('/');
        loop {
            match (filter_levels.next(), topic_levels.next()) {
                // `#` matches the parent level too [MQTT-4.7.1-2].
                (Some("#"), _) => return true,
                (Some("+"), Some(_)) => {}
                (Some(f), Some(t)) if f == t => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }

    /// Filter and topic through the mapping, matched as the door matches.
    fn door_matches(filter: &str, topic: &str) -> bool {
        let binding = filter_to_binding_key(filter).unwrap();
        binding_matches(&binding, &topic_to_routing_key(topic))
    }

    #[test]
    fn matching() {
        let cases = [
            ("a/b", "a/b", true),
            ("a/b", "a/c", false),
            ("a/+", "a/b", true),
            ("a/+", "a", false),
            ("a/+", "a/", true),
            ("a/+", "a/b/c", false),
            ("+/+", "/a", true),
            ("+", "/a", false),
            ("+/a", "/a", true),
            ("a/#", "a", true),
            ("sport/#", "sport", true),
            ("a/#", "a/b/c", true),
            ("a/#", "ab", false),
            ("#", "a/b", true),
            ("#", "/", true),
            ("+/#", "a", true),
            ("a//b", "a//b", true),
            ("a//b", "a/b", false),
            ("a/b/c", "a/b", false),
            ("#", "$SYS/x", false),
            ("+/x", "$SYS/x", false),
            ("+", "$SYS", false),
            ("$SYS/#", "$SYS/x", true),
            ("$SYS/+", "$SYS/x", true),
            ("$SYS/#", "$SYS", true),
            ("a/$x", "a/$x", true),
            ("a/+", "a/$x", true),
            ("x*/+", "x*/a", true),
            ("x*/+", "$x/a", false),
            ("é/+", "é/x", true),
            ("+", "é", true),
        ];
        for (filter, topic, expected) in cases {
            assert_eq!(spec_matches(filter, topic), expected, "{filter} vs {topic}");
            assert_eq!(door_matches(filter, topic), expected, "{filter} vs {topic}");
        }
    }

    /// A level with a `.` is two levels to the gateway (the mapping's
    /// documented, RabbitMQ-compatible loss); the door then matches as MQTT
    /// matches the topic and filter with each `.` read as `/`.
    #[test]
    fn dots_in_levels_match_as_separators() {
        assert!(door_matches("a/+/c", "a.b/c"));
        assert!(door_matches("a.b/+", "a/b/c"));
        assert!(!door_matches("a/+", "a.b/c"));
    }

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just("a".to_owned()),
            Just("b".to_owned()),
            Just("$s".to_owned()),
            Just("x*".to_owned()),
            Just("a.b".to_owned()),
            Just(".".to_owned()),
            "[ab$.]{1,3}",
        ]
    }

    fn topic_name() -> impl Strategy<Value = String> {
        proptest::collection::vec(level(), 1..6).prop_map(|l| l.join("/"))
    }

    fn topic_filter() -> impl Strategy<Value = String> {
        let part = prop_oneof![3 => level(), 1 => Just("+".to_owned())];
        (proptest::collection::vec(part, 0..6), any::<bool>()).prop_map(|(mut l, hash)| {
            if hash || l.is_empty() {
                l.push("#".to_owned());
            }
            l.join("/")
        })
    }

    proptest! {
        /// Filter → binding key and topic → routing key, then the engine's
        /// matcher (plus the `$` rule), decide as the MQTT spec decides on the
        /// normalised topic and filter (each `.` read as a separator).
        #[test]
        fn mapping_plus_core_matcher_is_mqtt_matching(filter in topic_filter(), topic in topic_name()) {
            prop_assume!(validate_topic_filter(&filter).is_ok() && validate_topic_name(&topic).is_ok());
            let expected = spec_matches(&filter.replace('.', "/"), &topic.replace('.', "/"));
            prop_assert_eq!(door_matches(&filter, &topic), expected, "{} vs {}", filter, topic);
        }
    }

    #[test]
    fn routing_key_mapping() {
        for (topic, key) in [
            ("a/b/c", "a.b.c"),
            ("a", "a"),
            ("/a", ".a"),
            ("a//b", "a..b"),
            ("a/", "a."),
            ("/", "."),
            ("a*/b", "a*.b"),
            ("$SYS/x", "$SYS.x"),
        ] {
            assert_eq!(topic_to_routing_key(topic), key);
            assert_eq!(routing_key_to_topic(key).as_deref(), Ok(topic));
        }
        // A dot in an MQTT level becomes a separator: the documented, RabbitMQ-compatible loss.
        assert_eq!(topic_to_routing_key("a.b/c"), "a.b.c");
        assert_eq!(routing_key_to_topic("a.b.c").as_deref(), Ok("a/b/c"));
        // AMQP keys that are not valid MQTT topic names.
        assert_eq!(routing_key_to_topic(""), Err(TopicError::Empty));
        assert_eq!(
            routing_key_to_topic("a.#"),
            Err(TopicError::WildcardInTopicName)
        );
        assert_eq!(
            routing_key_to_topic("a+b"),
            Err(TopicError::WildcardInTopicName)
        );
        assert_eq!(routing_key_to_topic("a\0"), Err(TopicError::NullCharacter));
        // `*` in a routing key is a literal and stays one (RabbitMQ would turn it into `+`).
        assert_eq!(routing_key_to_topic("a.*").as_deref(), Ok("a/*"));
    }

    #[test]
    fn binding_key_mapping() {
        for (filter, key) in [
            ("a/b", "a.b"),
            ("a/+/c", "a.*.c"),
            ("a/#", "a.#"),
            ("#", "#"),
            ("+", "*"),
            ("+/+", "*.*"),
            ("/+", ".*"),
            ("a//#", "a..#"),
            ("a.b/+", "a.b.*"),
            ("a*/b*c", "a*.b*c"),
        ] {
            assert_eq!(
                filter_to_binding_key(filter).as_deref(),
                Ok(key),
                "{filter}"
            );
        }
        assert_eq!(
            filter_to_binding_key("a/*"),
            Err(TopicError::UnmappableLevel)
        );
        assert_eq!(filter_to_binding_key("*"), Err(TopicError::UnmappableLevel));
    }
}
