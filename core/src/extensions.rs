//! The gateway's extras carried in message headers, read the same way whatever
//! door a message came through: AMQP headers, MQTT 5 user properties and the
//! HTTP publish API's `headers` all become [`Headers`] first, and this turns
//! them into the engine's fields. One reader means a header works identically
//! on every protocol.
//!
//! | header       | value                                             | engine field  |
//! |--------------|---------------------------------------------------|---------------|
//! | `x-delay`    | milliseconds: any integer, or a decimal string    | `deliver_at`  |
//! | `x-tags`     | a comma-separated string or an array of strings;  | `tags`        |
//! |              | several `x-tags` headers add up                   |               |
//! | `x-group-id` | a non-empty string                                | `group_key`   |
//!
//! The headers stay on the message so consumers see what the publisher sent.

use crate::message::{HeaderValue, Headers, Message, UnixMillis};

/// Header delaying a message by this many milliseconds.
pub const X_DELAY: &str = "x-delay";
/// Header carrying a message's tags.
pub const X_TAGS: &str = "x-tags";
/// Header carrying the FIFO group key.
pub const X_GROUP_ID: &str = "x-group-id";

impl Message {
    /// Sets `deliver_at`, `tags` and `group_key` from the extension headers,
    /// with `now` as the time a delay counts from. Fields the headers do not
    /// name are left as they are.
    pub fn apply_extension_headers(&mut self, now: UnixMillis) {
        if let Some(delay) = delay_millis(&self.headers) {
            self.deliver_at = Some(now.saturating_add(delay));
        }
        let tags = tags(&self.headers);
        if !tags.is_empty() {
            self.tags = tags;
        }
        if let Some(key) = self
            .headers
            .get(X_GROUP_ID)
            .and_then(HeaderValue::as_str)
            .filter(|s| !s.is_empty())
        {
            self.group_key = Some(key.to_owned());
        }
    }
}

/// The first `x-delay` as milliseconds: any integer type or a decimal string.
/// Zero, negative or unparsable means no delay (as RabbitMQ's delayed-message
/// exchange ignores a bad `x-delay`).
fn delay_millis(headers: &Headers) -> Option<u64> {
    let value = headers.get(X_DELAY)?;
    let millis = match value {
        HeaderValue::ShortString(_) | HeaderValue::LongString(_) => {
            value.as_str()?.trim().parse::<u64>().ok()?
        }
        HeaderValue::Timestamp(_) => return None,
        other => u64::try_from(other.as_i64()?).ok()?,
    };
    Some(millis).filter(|d| *d > 0)
}

/// Every `x-tags` header, split at commas, trimmed, without blanks or repeats.
fn tags(headers: &Headers) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |tag: &str| {
        let tag = tag.trim();
        if !tag.is_empty() && !out.iter().any(|t| t == tag) {
            out.push(tag.to_owned());
        }
    };
    for (_, value) in headers.iter().filter(|(k, _)| *k == X_TAGS) {
        match value {
            HeaderValue::Array(items) => items
                .iter()
                .filter_map(HeaderValue::as_str)
                .for_each(&mut add),
            other => other
                .as_str()
                .into_iter()
                .flat_map(|s| s.split(','))
                .for_each(&mut add),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(headers: &[(&str, HeaderValue)]) -> Message {
        let mut m = Message::new("x");
        for (k, v) in headers {
            m.headers.push(*k, v.clone());
        }
        m.apply_extension_headers(1_000);
        m
    }

    #[test]
    fn delay_from_integers_and_numeric_strings() {
        let at = |v| with(&[(X_DELAY, v)]).deliver_at;
        assert_eq!(at(HeaderValue::I32(250)), Some(1_250));
        assert_eq!(at(HeaderValue::U8(5)), Some(1_005));
        assert_eq!(at(HeaderValue::string(" 40 ")), Some(1_040));
        assert_eq!(at(HeaderValue::I64(-5)), None);
        assert_eq!(at(HeaderValue::I32(0)), None);
        assert_eq!(at(HeaderValue::string("soon")), None);
        assert_eq!(at(HeaderValue::string("-5")), None);
        assert_eq!(
            at(HeaderValue::string(u64::MAX.to_string())),
            Some(u64::MAX)
        );
        assert_eq!(at(HeaderValue::F64(3.0)), None);
        assert_eq!(
            at(HeaderValue::I64(i64::MAX)),
            Some(1_000 + i64::MAX as u64)
        );
    }

    #[test]
    fn tags_from_strings_arrays_and_repeated_headers() {
        let m = with(&[
            (X_TAGS, HeaderValue::string("red, blue,,red")),
            (
                X_TAGS,
                HeaderValue::Array(vec![HeaderValue::string("green"), HeaderValue::I32(1)]),
            ),
        ]);
        assert_eq!(m.tags, ["red", "blue", "green"]);
        assert!(with(&[]).tags.is_empty());
    }

    #[test]
    fn group_id_sets_the_fifo_key() {
        assert_eq!(
            with(&[(X_GROUP_ID, HeaderValue::string("g1"))])
                .group_key
                .as_deref(),
            Some("g1")
        );
        assert_eq!(
            with(&[(X_GROUP_ID, HeaderValue::string(""))]).group_key,
            None
        );
        assert_eq!(with(&[(X_GROUP_ID, HeaderValue::I32(1))]).group_key, None);
    }

    #[test]
    fn headers_stay_for_consumers() {
        let m = with(&[(X_DELAY, HeaderValue::I32(1))]);
        assert!(m.headers.get(X_DELAY).is_some());
    }
}
