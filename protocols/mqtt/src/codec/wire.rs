//! Bounds-checked reading of MQTT's primitive types from a complete packet, and
//! the MQTT 5 property-block walker.
//!
//! rumqttc reads property blocks by adding up a cursor and stops when it passes
//! the declared length, so a property that runs past the block silently eats
//! the payload, duplicates are kept (the last wins), and a few cursor sums are
//! wrong (AUTH properties). The server has to refuse all of that (MQTT 5.0 § 2.2.2), so
//! every packet is walked here first, with exact bounds, before rumqttc sees it.

use super::error::{CodecError, StringFault};
use crate::topic;

/// A cursor over the bytes of one packet; every read checks its bounds.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

/// A property identifier.
pub(crate) type PropertyId = u8;

/// Property identifiers (MQTT 5.0 § 2.2.2.2).
pub(crate) mod id {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

/// The packet (or part of one) a property block belongs to; each allows its own identifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Block {
    Connect,
    Will,
    Publish,
    /// PUBACK, PUBREC, PUBREL, PUBCOMP.
    Ack,
    Subscribe,
    Unsubscribe,
    Disconnect,
    Auth,
}

/// One decoded property value, borrowing from the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Value<'a> {
    Byte(u8),
    U16(u16),
    U32(u32),
    VarInt(u32),
    Str(&'a str),
    Binary(&'a [u8]),
    Pair(&'a str, &'a str),
}

/// Which identifiers a block contained (all valid ones are below 64).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Seen(u64);

impl Seen {
    pub(crate) fn has(self, id: PropertyId) -> bool {
        id < 64 && self.0 & (1 << id) != 0
    }
}

/// Outcome of decoding a Variable Byte Integer from a prefix of some bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VarInt {
    /// The value, how many bytes encoded it, and whether that was the fewest possible.
    Complete {
        value: u32,
        len: usize,
        minimal: bool,
    },
    /// The bytes end before the last byte of the integer.
    Incomplete,
    /// A fifth byte would be needed: not an MQTT integer.
    Malformed,
}

/// Decodes a Variable Byte Integer (MQTT 5.0 § 1.5.5, 3.1.1 § 2.2.3) from the start of `bytes`.
pub(crate) fn decode_varint(bytes: &[u8]) -> VarInt {
    let mut value: u32 = 0;
    for (i, &byte) in bytes.iter().take(4).enumerate() {
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            // A last byte of 0 after a continuation adds nothing: a longer-than-needed form.
            let minimal = i == 0 || byte != 0;
            return VarInt::Complete {
                value,
                len: i + 1,
                minimal,
            };
        }
    }
    if bytes.len() >= 4 {
        VarInt::Malformed
    } else {
        VarInt::Incomplete
    }
}

/// Checks an MQTT UTF-8 string: well formed, no U+0000.
pub(crate) fn check_utf8<'a>(bytes: &'a [u8], field: &'static str) -> Result<&'a str, CodecError> {
    let s = std::str::from_utf8(bytes).map_err(|_| CodecError::InvalidString {
        field,
        fault: StringFault::NotUtf8,
    })?;
    if s.contains('\0') {
        return Err(CodecError::InvalidString {
            field,
            fault: StringFault::NullCharacter,
        });
    }
    Ok(s)
}

fn truncated(what: &'static str) -> CodecError {
    CodecError::Malformed(format!("{what} runs past the end of the packet"))
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Fails unless every byte was consumed: MQTT packets carry no padding.
    pub(crate) fn expect_end(&self, packet: &'static str) -> Result<(), CodecError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(CodecError::Malformed(format!(
                "{} bytes left over in {packet}",
                self.buf.len()
            )))
        }
    }

    /// The next `n` bytes as a reader of their own.
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<Reader<'a>, CodecError> {
        let (head, tail) = self
            .buf
            .split_at_checked(n)
            .ok_or_else(|| truncated(what))?;
        self.buf = tail;
        Ok(Reader { buf: head })
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        let (&b, tail) = self.buf.split_first().ok_or_else(|| truncated(what))?;
        self.buf = tail;
        Ok(b)
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, CodecError> {
        let (b, tail) = self
            .buf
            .split_first_chunk::<2>()
            .ok_or_else(|| truncated(what))?;
        self.buf = tail;
        Ok(u16::from_be_bytes(*b))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, CodecError> {
        let (b, tail) = self
            .buf
            .split_first_chunk::<4>()
            .ok_or_else(|| truncated(what))?;
        self.buf = tail;
        Ok(u32::from_be_bytes(*b))
    }

    /// A Variable Byte Integer in its shortest form [MQTT-1.5.5-1].
    pub(crate) fn varint(&mut self, what: &'static str) -> Result<u32, CodecError> {
        match decode_varint(self.buf) {
            VarInt::Complete {
                value,
                len,
                minimal: true,
            } => {
                self.buf = self.buf.get(len..).unwrap_or_default();
                Ok(value)
            }
            VarInt::Complete { minimal: false, .. } | VarInt::Malformed => {
                Err(CodecError::MalformedVariableInteger)
            }
            VarInt::Incomplete => Err(truncated(what)),
        }
    }

    /// Binary Data: a two-byte length, then that many bytes.
    pub(crate) fn binary(&mut self, what: &'static str) -> Result<&'a [u8], CodecError> {
        let len = self.u16(what)?;
        Ok(self.take(usize::from(len), what)?.buf)
    }

    /// A UTF-8 Encoded String, checked [MQTT-1.5.4-1], [MQTT-1.5.4-2].
    pub(crate) fn string(&mut self, field: &'static str) -> Result<&'a str, CodecError> {
        let bytes = self.binary(field)?;
        check_utf8(bytes, field)
    }

    /// Walks a property block (its length, then the properties), checking that
    /// each identifier belongs in `block`, that only User Property repeats,
    /// that values are in range and strings valid, and that the block ends
    /// exactly where its length says. `visit` sees every property in order.
    pub(crate) fn properties(
        &mut self,
        block: Block,
        mut visit: impl FnMut(PropertyId, Value<'a>) -> Result<(), CodecError>,
    ) -> Result<Seen, CodecError> {
        let len = self.varint("property length")?;
        let len = usize::try_from(len).map_err(|_| truncated("property length"))?;
        let mut r = self.take(len, "properties")?;
        let mut seen = Seen::default();
        while !r.is_empty() {
            let pid = r.u8("property identifier")?;
            if !allowed(block, pid) {
                return Err(CodecError::UnexpectedProperty { id: pid });
            }
            if pid != id::USER_PROPERTY && seen.has(pid) {
                return Err(CodecError::DuplicateProperty { id: pid });
            }
            seen.0 |= 1 << pid;
            let value = r.value(pid)?;
            check_value(block, pid, value)?;
            visit(pid, value)?;
        }
        Ok(seen)
    }

    fn value(&mut self, pid: PropertyId) -> Result<Value<'a>, CodecError> {
        use id::*;
        const WHAT: &str = "property value";
        Ok(match pid {
            PAYLOAD_FORMAT_INDICATOR
            | REQUEST_PROBLEM_INFORMATION
            | REQUEST_RESPONSE_INFORMATION
            | MAXIMUM_QOS
            | RETAIN_AVAILABLE
            | WILDCARD_SUBSCRIPTION_AVAILABLE
            | SUBSCRIPTION_IDENTIFIER_AVAILABLE
            | SHARED_SUBSCRIPTION_AVAILABLE => Value::Byte(self.u8(WHAT)?),
            SERVER_KEEP_ALIVE | RECEIVE_MAXIMUM | TOPIC_ALIAS_MAXIMUM | TOPIC_ALIAS => {
                Value::U16(self.u16(WHAT)?)
            }
            MESSAGE_EXPIRY_INTERVAL
            | SESSION_EXPIRY_INTERVAL
            | WILL_DELAY_INTERVAL
            | MAXIMUM_PACKET_SIZE => Value::U32(self.u32(WHAT)?),
            SUBSCRIPTION_IDENTIFIER => Value::VarInt(self.varint(WHAT)?),
            CORRELATION_DATA | AUTHENTICATION_DATA => Value::Binary(self.binary(WHAT)?),
            USER_PROPERTY => Value::Pair(
                self.string("user property name")?,
                self.string("user property value")?,
            ),
            CONTENT_TYPE
            | RESPONSE_TOPIC
            | ASSIGNED_CLIENT_IDENTIFIER
            | AUTHENTICATION_METHOD
            | RESPONSE_INFORMATION
            | SERVER_REFERENCE
            | REASON_STRING => Value::Str(self.string("property")?),
            other => return Err(CodecError::UnexpectedProperty { id: other }),
        })
    }
}

/// The identifiers a client may send in each block (MQTT 5.0 § 2.2.2.2 and the
/// packet sections). An identifier outside its packet is malformed.
fn allowed(block: Block, pid: PropertyId) -> bool {
    use id::*;
    let list: &[u8] = match block {
        Block::Connect => &[
            SESSION_EXPIRY_INTERVAL,
            RECEIVE_MAXIMUM,
            MAXIMUM_PACKET_SIZE,
            TOPIC_ALIAS_MAXIMUM,
            REQUEST_RESPONSE_INFORMATION,
            REQUEST_PROBLEM_INFORMATION,
            USER_PROPERTY,
            AUTHENTICATION_METHOD,
            AUTHENTICATION_DATA,
        ],
        Block::Will => &[
            WILL_DELAY_INTERVAL,
            PAYLOAD_FORMAT_INDICATOR,
            MESSAGE_EXPIRY_INTERVAL,
            CONTENT_TYPE,
            RESPONSE_TOPIC,
            CORRELATION_DATA,
            USER_PROPERTY,
        ],
        // SUBSCRIPTION_IDENTIFIER is a PUBLISH property, but only server → client:
        // check_value refuses it as a protocol error rather than a malformed packet.
        Block::Publish => &[
            PAYLOAD_FORMAT_INDICATOR,
            MESSAGE_EXPIRY_INTERVAL,
            TOPIC_ALIAS,
            RESPONSE_TOPIC,
            CORRELATION_DATA,
            USER_PROPERTY,
            SUBSCRIPTION_IDENTIFIER,
            CONTENT_TYPE,
        ],
        Block::Ack | Block::Unsubscribe => &[REASON_STRING, USER_PROPERTY],
        Block::Subscribe => &[SUBSCRIPTION_IDENTIFIER, USER_PROPERTY],
        Block::Disconnect => &[
            SESSION_EXPIRY_INTERVAL,
            REASON_STRING,
            USER_PROPERTY,
            SERVER_REFERENCE,
        ],
        Block::Auth => &[
            AUTHENTICATION_METHOD,
            AUTHENTICATION_DATA,
            REASON_STRING,
            USER_PROPERTY,
        ],
    };
    list.contains(&pid)
}

/// Value rules of individual properties; each failure is a protocol error
/// unless noted.
fn check_value(block: Block, pid: PropertyId, value: Value<'_>) -> Result<(), CodecError> {
    let invalid = Err(CodecError::InvalidPropertyValue { id: pid });
    match (pid, value) {
        // Byte properties with a 0/1 domain.
        (
            id::PAYLOAD_FORMAT_INDICATOR
            | id::REQUEST_PROBLEM_INFORMATION
            | id::REQUEST_RESPONSE_INFORMATION,
            Value::Byte(b),
        ) if b > 1 => invalid,
        // Receive Maximum and Maximum Packet Size of 0.
        (id::RECEIVE_MAXIMUM, Value::U16(0)) | (id::MAXIMUM_PACKET_SIZE, Value::U32(0)) => invalid,
        // [MQTT-3.3.2-8]: the alias 0 is not permitted.
        (id::TOPIC_ALIAS, Value::U16(0)) => Err(CodecError::TopicAliasZero),
        // [MQTT-3.3.4-6]: a client never sends a Subscription Identifier in PUBLISH;
        // in SUBSCRIBE it is 1 to 268,435,455.
        (id::SUBSCRIPTION_IDENTIFIER, _) if block == Block::Publish => invalid,
        (id::SUBSCRIPTION_IDENTIFIER, Value::VarInt(0)) => invalid,
        // [MQTT-3.3.2-14]: a Response Topic is a topic name, without wildcards.
        (id::RESPONSE_TOPIC, Value::Str(t)) => {
            topic::validate_topic_name(t).map_err(CodecError::TopicNameInvalid)
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
