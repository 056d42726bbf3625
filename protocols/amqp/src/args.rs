//! `x-*` arguments: `queue.declare` arguments → the engine's [`QueueSettings`],
//! the equivalence check of a redeclaration, and `basic.consume` arguments.
//!
//! Validation and texts follow RabbitMQ (`rabbit_amqqueue:declare_args/0`,
//! `rabbit_misc:assert_args_equivalence/4`): a wrong type or value is 406
//! PRECONDITION_FAILED "invalid arg 'x-…' for queue 'q' in vhost '/': …", and a
//! redeclaration whose arguments differ is 406 "inequivalent arg 'x-…' for
//! queue 'q' in vhost '/': received … but current is …".
//!
//! Mapping (a queue starts from [`QueueSettings::classic`]):
//!
//! | argument | setting |
//! |---|---|
//! | `x-queue-type` classic, quorum / fifo | kind Standard / Fifo (others refused) |
//! | `x-message-ttl`, `x-expires` (ms) | `message_ttl_ms`, `expires_ms` |
//! | `x-dead-letter-exchange` [+ `-routing-key`] | `dead_letter` Exchange |
//! | `x-max-length`, `x-max-length-bytes` | `max_length`, `max_bytes` |
//! | `x-overflow` drop-head (dead-letter-head with a DLX), reject-publish, reject-publish-dlx | `overflow` |
//! | `x-delivery-limit` L | `max_deliveries` L + 1 (L redeliveries after the first) |
//! | `x-single-active-consumer` | `single_active_consumer` |
//! | `x-max-priority` 1–255 | `max_priority` |
//! | `x-retention`, `x-ack-timeout` (ms, gateway's own) | `retention_ms`, `ack_timeout_ms` |

use amq_protocol::types::FieldTable;
use gw_core::{
    DeadLetterTarget, HeaderValue, Headers, Overflow, QueueKind, QueueSettings, StartPosition,
    TagFilter, UnixMillis, now_millis,
};

use crate::error::{AmqpError, AmqpResult};
use crate::properties::headers_from_table;

/// Arguments compared when a queue is declared again (the ones that shape it).
const EQUIVALENCE_KEYS: &[&str] = &[
    "x-queue-type",
    "x-message-ttl",
    "x-expires",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-length-bytes",
    "x-overflow",
    "x-delivery-limit",
    "x-single-active-consumer",
    "x-max-priority",
    "x-retention",
    "x-ack-timeout",
];

/// RabbitMQ's bound on TTLs and expiries (`?MAX_EXPIRY_TIMER`).
const MAX_EXPIRY: i64 = 4_294_967_295;

/// A queue's settings and the arguments to store with it.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueArgs {
    /// What the engine is told.
    pub settings: QueueSettings,
    /// The arguments as given, for redeclaration checks and display.
    pub arguments: Headers,
}

/// Reads `queue.declare` arguments. `resource` names the queue in texts
/// (`queue 'q' in vhost '/'`).
pub fn queue_args(table: &FieldTable, resource: &str) -> AmqpResult<QueueArgs> {
    let arguments = headers_from_table(table);
    let invalid = |key: &str, why: String| {
        AmqpError::precondition(format!("invalid arg '{key}' for {resource}: {why}"))
    };
    let mut s = QueueSettings::classic();
    for (key, value) in arguments.iter() {
        match key {
            "x-queue-type" => {
                s.kind = match value.as_str() {
                    Some("classic" | "quorum") => QueueKind::Standard,
                    Some("fifo") => QueueKind::Fifo,
                    Some(other) => {
                        return Err(invalid(key, format!("unsupported queue type '{other}'")));
                    }
                    None => return Err(invalid(key, unacceptable(value))),
                };
            }
            "x-message-ttl" => {
                s.message_ttl_ms = Some(expiry(value, true).map_err(|w| invalid(key, w))?);
            }
            "x-expires" => s.expires_ms = Some(expiry(value, false).map_err(|w| invalid(key, w))?),
            "x-dead-letter-exchange" => {
                let exchange = string(value).map_err(|w| invalid(key, w))?;
                let routing_key = match arguments.get("x-dead-letter-routing-key") {
                    Some(rk) => Some(
                        string(rk)
                            .map_err(|w| invalid("x-dead-letter-routing-key", w))?
                            .to_owned(),
                    ),
                    None => None,
                };
                s.dead_letter = Some(DeadLetterTarget::Exchange {
                    exchange: exchange.to_owned(),
                    routing_key,
                });
            }
            "x-dead-letter-routing-key" => {
                string(value).map_err(|w| invalid(key, w))?;
                if arguments.get("x-dead-letter-exchange").is_none() {
                    return Err(invalid(key, "routing_key_but_no_dlx_defined".into()));
                }
            }
            "x-max-length" => {
                s.max_length = Some(non_negative(value).map_err(|w| invalid(key, w))?)
            }
            "x-max-length-bytes" => {
                s.max_bytes = Some(non_negative(value).map_err(|w| invalid(key, w))?);
            }
            "x-overflow" => {
                s.overflow = match value.as_str() {
                    Some("drop-head") => Overflow::DropHead,
                    Some("reject-publish") => Overflow::RejectPublish,
                    Some("reject-publish-dlx") => Overflow::RejectPublishDlx,
                    Some("dead-letter-head") => Overflow::DeadLetterHead,
                    Some(other) => {
                        return Err(invalid(
                            key,
                            format!("{{unknown_overflow,<<\"{other}\">>}}"),
                        ));
                    }
                    None => return Err(invalid(key, unacceptable(value))),
                };
            }
            "x-delivery-limit" => {
                let limit = non_negative(value).map_err(|w| invalid(key, w))?;
                s.max_deliveries = Some(u32::try_from(limit.saturating_add(1)).unwrap_or(u32::MAX));
            }
            "x-single-active-consumer" => match value {
                HeaderValue::Bool(b) => s.single_active_consumer = *b,
                other => return Err(invalid(key, unacceptable(other))),
            },
            "x-max-priority" => {
                let p = non_negative(value).map_err(|w| invalid(key, w))?;
                if p > 255 {
                    return Err(invalid(key, format!("{{max_value_exceeded,{p}}}")));
                }
                // 0 means "no priorities", as RabbitMQ reads it.
                s.max_priority = u8::try_from(p).ok().filter(|&p| p > 0);
            }
            "x-retention" => s.retention_ms = non_negative(value).map_err(|w| invalid(key, w))?,
            "x-ack-timeout" => {
                let t = non_negative(value).map_err(|w| invalid(key, w))?;
                s.ack_timeout_ms = (t > 0).then_some(t);
            }
            _ => {}
        }
    }
    // RabbitMQ's drop-head (the default) dead-letters what it drops when the
    // queue has a dead-letter exchange.
    if s.overflow == Overflow::DropHead && s.dead_letter.is_some() {
        s.overflow = Overflow::DeadLetterHead;
    }
    s.validate()
        .map_err(|e| AmqpError::precondition(format!("invalid arguments for {resource}: {e}")))?;
    Ok(QueueArgs {
        settings: s,
        arguments,
    })
}

/// Refuses a redeclaration whose shaping arguments differ from the queue's,
/// in RabbitMQ's words. `x-queue-type` classic equals no type at all.
pub fn check_equivalent(current: &Headers, wanted: &Headers, resource: &str) -> AmqpResult {
    for &key in EQUIVALENCE_KEYS {
        let (have, want) = (current.get(key), wanted.get(key));
        let same = match (have, want) {
            (None, None) => true,
            (Some(a), Some(b)) => type_class(a) == type_class(b) && same_value(a, b),
            (None, Some(v)) | (Some(v), None) => {
                key == "x-queue-type" && v.as_str() == Some("classic")
            }
        };
        if !same {
            return Err(AmqpError::precondition(format!(
                "inequivalent arg '{key}' for {resource}: received {} but current is {}",
                describe(want),
                describe(have)
            )));
        }
    }
    Ok(())
}

/// Where a consumer's group starts, from `x-stream-offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offset {
    /// "first": the oldest retained message.
    First,
    /// "last": the last message published so far.
    Last,
    /// "next": only messages published from now on.
    Next,
    /// A sequence number of the queue's log.
    Sequence(u64),
    /// Messages published at or after this time (ms since the epoch).
    Time(UnixMillis),
}

impl Offset {
    /// The engine's start position, given the queue's `[head, next)` bounds.
    pub fn position(self, bounds: (u64, u64)) -> StartPosition {
        match self {
            Offset::First => StartPosition::Oldest,
            Offset::Next => StartPosition::Latest,
            Offset::Last => StartPosition::Sequence(bounds.1.saturating_sub(1).max(bounds.0)),
            Offset::Sequence(s) => StartPosition::Sequence(s),
            Offset::Time(t) => StartPosition::Time(t),
        }
    }
}

/// What `basic.consume` arguments ask for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConsumeArgs {
    /// `x-consumer-group`: the group to join (None: the queue's default group).
    pub group: Option<String>,
    /// `x-stream-offset`: where a new group starts, or where an idle group rewinds to.
    pub offset: Option<Offset>,
    /// `x-tags` + `x-tag-match`.
    pub filter: Option<TagFilter>,
    /// `x-priority`.
    pub priority: i32,
}

/// Reads `basic.consume` arguments (`resource` names the queue in texts).
pub fn consume_args(table: &FieldTable, resource: &str) -> AmqpResult<ConsumeArgs> {
    consume_args_at(table, resource, now_millis())
}

fn consume_args_at(table: &FieldTable, resource: &str, now: UnixMillis) -> AmqpResult<ConsumeArgs> {
    let args = headers_from_table(table);
    let invalid = |key: &str, why: String| {
        AmqpError::precondition(format!("invalid arg '{key}' for {resource}: {why}"))
    };
    let mut out = ConsumeArgs::default();
    for (key, value) in args.iter() {
        match key {
            "x-priority" => {
                let p = integer(value).map_err(|w| invalid(key, w))?;
                out.priority = i32::try_from(p).unwrap_or(if p < 0 { i32::MIN } else { i32::MAX });
            }
            "x-consumer-group" => {
                let g = string(value).map_err(|w| invalid(key, w))?;
                if !g.is_empty() {
                    out.group = Some(g.to_owned());
                }
            }
            "x-stream-offset" => {
                out.offset = Some(offset(value, now).map_err(|w| invalid(key, w))?)
            }
            "x-tags" => {
                let tags = tag_list(value).map_err(|w| invalid(key, w))?;
                if tags.is_empty() {
                    return Err(invalid(key, "names no tag".into()));
                }
                out.filter = Some(TagFilter {
                    tags,
                    match_all: false,
                });
            }
            "x-tag-match" => match value.as_str() {
                Some("any" | "all") => {}
                Some(other) => {
                    return Err(invalid(
                        key,
                        format!("expected 'any' or 'all', got '{other}'"),
                    ));
                }
                None => return Err(invalid(key, unacceptable(value))),
            },
            _ => {}
        }
    }
    if let Some(f) = &mut out.filter {
        f.match_all = args.get("x-tag-match").and_then(HeaderValue::as_str) == Some("all");
    }
    Ok(out)
}

fn offset(value: &HeaderValue, now: UnixMillis) -> Result<Offset, String> {
    match value {
        HeaderValue::Timestamp(secs) => Ok(Offset::Time(secs.saturating_mul(1000))),
        v if is_integer(v) => {
            let n = integer(v)?;
            u64::try_from(n)
                .map(Offset::Sequence)
                .map_err(|_| format!("{{value_negative,{n}}}"))
        }
        v => match v.as_str() {
            Some("first") => Ok(Offset::First),
            Some("last") => Ok(Offset::Last),
            Some("next") => Ok(Offset::Next),
            Some(s) => interval_ms(s)
                .map(|ms| Offset::Time(now.saturating_sub(ms)))
                .ok_or_else(|| format!("{{invalid_offset,<<\"{s}\">>}}")),
            None => Err(unacceptable(v)),
        },
    }
}

/// A RabbitMQ stream interval such as "30s", "15m", "2h", "7D", "1M", "1Y".
fn interval_ms(s: &str) -> Option<u64> {
    let digits = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(digits);
    let n: u64 = n.parse().ok().filter(|&n| n > 0)?;
    let unit_ms: u64 = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "D" => 86_400_000,
        "M" => 30 * 86_400_000,
        "Y" => 365 * 86_400_000,
        _ => return None,
    };
    Some(n.saturating_mul(unit_ms))
}

fn tag_list(value: &HeaderValue) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |t: &str| {
        let t = t.trim();
        if !t.is_empty() && !out.iter().any(|o| o == t) {
            out.push(t.to_owned());
        }
    };
    match value {
        HeaderValue::Array(items) => {
            for item in items {
                add(item.as_str().ok_or_else(|| unacceptable(item))?);
            }
        }
        other => other
            .as_str()
            .ok_or_else(|| unacceptable(other))?
            .split(',')
            .for_each(add),
    }
    Ok(out)
}

fn is_integer(v: &HeaderValue) -> bool {
    matches!(
        v,
        HeaderValue::I8(_)
            | HeaderValue::U8(_)
            | HeaderValue::I16(_)
            | HeaderValue::U16(_)
            | HeaderValue::I32(_)
            | HeaderValue::U32(_)
            | HeaderValue::I64(_)
    )
}

fn integer(v: &HeaderValue) -> Result<i64, String> {
    match v {
        v if is_integer(v) => v.as_i64().ok_or_else(|| unacceptable(v)),
        other => Err(format!("\"expected integer, got {}\"", type_name(other))),
    }
}

fn non_negative(v: &HeaderValue) -> Result<u64, String> {
    let n = integer(v)?;
    u64::try_from(n).map_err(|_| format!("{{value_negative,{n}}}"))
}

/// A TTL (`zero_ok`) or an expiry (must be positive), bounded like RabbitMQ's.
fn expiry(v: &HeaderValue, zero_ok: bool) -> Result<u64, String> {
    let n = integer(v)?;
    if n < 0 {
        return Err(format!("{{value_negative,{n}}}"));
    }
    if n == 0 && !zero_ok {
        return Err("{value_zero,0}".into());
    }
    if n > MAX_EXPIRY {
        return Err(format!("{{value_too_large,{n},{MAX_EXPIRY}}}"));
    }
    Ok(n as u64)
}

fn string(v: &HeaderValue) -> Result<&str, String> {
    match v {
        HeaderValue::ShortString(_) | HeaderValue::LongString(_) => {
            v.as_str().ok_or_else(|| unacceptable(v))
        }
        other => Err(unacceptable(other)),
    }
}

fn unacceptable(v: &HeaderValue) -> String {
    format!("{{unacceptable_type,{}}}", type_name(v))
}

/// RabbitMQ's name of a field type, as its error texts show it.
pub fn type_name(v: &HeaderValue) -> &'static str {
    match v {
        HeaderValue::Bool(_) => "bool",
        HeaderValue::I8(_) => "byte",
        HeaderValue::U8(_) => "unsignedbyte",
        HeaderValue::I16(_) => "short",
        HeaderValue::U16(_) => "unsignedshort",
        HeaderValue::I32(_) => "signedint",
        HeaderValue::U32(_) => "unsignedint",
        HeaderValue::I64(_) => "long",
        HeaderValue::F32(_) => "float",
        HeaderValue::F64(_) => "double",
        HeaderValue::Decimal { .. } => "decimal",
        HeaderValue::ShortString(_) => "shortstr",
        HeaderValue::LongString(_) => "longstr",
        HeaderValue::Array(_) => "array",
        HeaderValue::Timestamp(_) => "timestamp",
        HeaderValue::Table(_) => "table",
        HeaderValue::Bytes(_) => "binary",
        HeaderValue::Void => "void",
    }
}

/// Integer types compare with each other, floats with floats, the rest by type.
fn type_class(v: &HeaderValue) -> &'static str {
    match v {
        v if is_integer(v) => "int",
        HeaderValue::F32(_) | HeaderValue::F64(_) => "float",
        HeaderValue::ShortString(_) | HeaderValue::LongString(_) => "string",
        other => type_name(other),
    }
}

fn same_value(a: &HeaderValue, b: &HeaderValue) -> bool {
    match (a.as_i64(), b.as_i64()) {
        (Some(x), Some(y)) if is_integer(a) && is_integer(b) => x == y,
        _ => match (a.as_str(), b.as_str()) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        },
    }
}

/// RabbitMQ's `val/1`: "the value 'V' of type 'T'", or "none".
fn describe(v: Option<&HeaderValue>) -> String {
    let Some(v) = v else {
        return "none".into();
    };
    let shown = match v {
        HeaderValue::Bool(b) => b.to_string(),
        HeaderValue::F32(f) => f.to_string(),
        HeaderValue::F64(f) => f.to_string(),
        other => match (other.as_str(), other.as_i64()) {
            (Some(s), _) => s.to_owned(),
            (None, Some(n)) => n.to_string(),
            _ => format!("{other:?}"),
        },
    };
    format!("the value '{shown}' of type '{}'", type_name(v))
}

#[cfg(test)]
mod tests;
