//! Field tables on the wire: the two guards amq-protocol does not give a server.
//!
//! 1. **Nesting depth.** amq-protocol parses field tables and arrays recursively,
//!    spending roughly 1.5 KiB of stack per nesting level (measured). A table
//!    nested 1,500 levels deep fits in 7.5 KB of payload, far below any
//!    frame-max, and overflows a 2 MiB tokio worker stack, which aborts the
//!    whole process, not just one connection. So before a method or content
//!    header reaches the parser we walk its field table iteratively (no
//!    recursion, no allocation) and refuse anything nested deeper than
//!    [`MAX_NESTING_DEPTH`].
//! 2. **Short strings inside tables.** amq-protocol writes an
//!    `AMQPValue::ShortString` table value with the type tag `_`, which no
//!    parser accepts (RabbitMQ's and amq-protocol's own included: `s` means a
//!    short int there). Nothing read from the AMQP wire produces such a value,
//!    but a message from another door may carry one, so outgoing tables are
//!    rewritten to send short strings as long strings (`S`).
//!
//! Wire format of a table (AMQP 0-9-1 § 4.2.5.5, RabbitMQ's type tags):
//! ```text
//! table := u32 size, then (shortstr key, u8 type, value)*   (size bytes)
//! array := u32 size, then (u8 type, value)*                 (size bytes)
//! ```

use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString};

/// Deepest nesting of tables and arrays accepted from a peer, counting the
/// top-level table (method arguments or message headers) as level 1.
///
/// Real clients nest two or three levels (client capabilities, `x-death`).
pub const MAX_NESTING_DEPTH: usize = 64;

/// The outcome of walking a table without parsing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Depth {
    /// Nested no deeper than [`MAX_NESTING_DEPTH`], or malformed before getting
    /// deeper (the parser will report the malformation itself).
    Shallow,
    /// Nested deeper than [`MAX_NESTING_DEPTH`].
    TooDeep,
}

/// Walks the field table starting at `bytes[0]` and reports whether it nests
/// deeper than [`MAX_NESTING_DEPTH`].
///
/// The walk follows the same grammar, in the same order, as amq-protocol's
/// parser, so wherever the walk stops on malformed input the parser stops too,
/// without having gone any deeper.
pub(crate) fn check_depth(bytes: &[u8]) -> Depth {
    // One end offset per open container, and whether it is a table (entries
    // have keys) or an array. A fixed array: the depth is bounded anyway.
    let mut ends = [(0usize, false); MAX_NESTING_DEPTH];
    let Some(len) = read_u32(bytes, 0) else {
        return Depth::Shallow;
    };
    let Some(end) = 4usize.checked_add(len).filter(|&e| e <= bytes.len()) else {
        return Depth::Shallow;
    };
    ends[0] = (end, true);
    let mut open = 1;
    let mut pos = 4;
    while open > 0 {
        let (end, is_table) = ends[open - 1];
        if pos == end {
            open -= 1;
            continue;
        }
        if is_table {
            let Some(&key_len) = bytes.get(pos) else {
                return Depth::Shallow;
            };
            pos += 1 + usize::from(key_len);
        }
        let Some(&tag) = bytes.get(pos).filter(|_| pos < end) else {
            return Depth::Shallow;
        };
        pos += 1;
        let fixed = match tag {
            b't' | b'b' | b'B' => 1,
            b's' | b'U' | b'u' => 2,
            b'I' | b'i' | b'f' => 4,
            b'D' => 5,
            b'L' | b'l' | b'd' | b'T' => 8,
            b'V' => 0,
            b'S' | b'x' => match read_u32(bytes, pos) {
                Some(n) => 4 + n,
                None => return Depth::Shallow,
            },
            b'A' | b'F' => {
                let Some(n) = read_u32(bytes, pos) else {
                    return Depth::Shallow;
                };
                let Some(inner_end) = (pos + 4).checked_add(n).filter(|&e| e <= end) else {
                    return Depth::Shallow;
                };
                if open == MAX_NESTING_DEPTH {
                    return Depth::TooDeep;
                }
                ends[open] = (inner_end, tag == b'F');
                open += 1;
                pos += 4;
                continue;
            }
            _ => return Depth::Shallow,
        };
        pos = match pos.checked_add(fixed) {
            Some(p) if p <= end => p,
            _ => return Depth::Shallow,
        };
    }
    Depth::Shallow
}

fn read_u32(bytes: &[u8], at: usize) -> Option<usize> {
    let raw = bytes.get(at..at.checked_add(4)?)?;
    let arr: [u8; 4] = raw.try_into().ok()?;
    usize::try_from(u32::from_be_bytes(arr)).ok()
}

/// Fields that precede the one field-table argument of a method.
#[derive(Clone, Copy)]
enum Field {
    Octet,
    Short,
    ShortStr,
}

/// Where the field-table argument starts in a method's argument bytes (after
/// the class and method ids), for the methods that have one; `None` for the
/// others, or when the arguments end before the table.
///
/// The layouts are AMQP 0-9-1's; `octet` also stands for a packed bit group.
pub(crate) fn method_table_offset(class_id: u16, method_id: u16, args: &[u8]) -> Option<usize> {
    use Field::{Octet, Short, ShortStr};
    let before: &[Field] = match (class_id, method_id) {
        (10, 10) => &[Octet, Octet],                     // connection.start
        (10, 11) => &[],                                 // connection.start-ok
        (40, 10) => &[Short, ShortStr, ShortStr, Octet], // exchange.declare
        (40, 30) | (40, 40) => &[Short, ShortStr, ShortStr, ShortStr, Octet], // exchange.(un)bind
        (50, 10) => &[Short, ShortStr, Octet],           // queue.declare
        (50, 20) => &[Short, ShortStr, ShortStr, ShortStr, Octet], // queue.bind
        (50, 50) => &[Short, ShortStr, ShortStr, ShortStr], // queue.unbind
        (60, 20) => &[Short, ShortStr, ShortStr, Octet], // basic.consume
        _ => return None,
    };
    let mut pos = 0usize;
    for field in before {
        pos += match field {
            Octet => 1,
            Short => 2,
            ShortStr => 1 + usize::from(*args.get(pos)?),
        };
    }
    (pos < args.len()).then_some(pos)
}

/// Where the headers table starts in a content header's property bytes (after
/// class id, weight and body size), when the headers flag is set.
///
/// Property flags are big-endian, highest bit first: content-type (15),
/// content-encoding (14), headers (13); the first two are short strings.
pub(crate) fn header_table_offset(props: &[u8]) -> Option<usize> {
    let flags = u16::from_be_bytes([*props.first()?, *props.get(1)?]);
    if flags & (1 << 13) == 0 {
        return None;
    }
    let mut pos = 2usize;
    for bit in [15, 14] {
        if flags & (1 << bit) != 0 {
            pos += 1 + usize::from(*props.get(pos)?);
        }
    }
    (pos < props.len()).then_some(pos)
}

/// True when a short-string value occurs anywhere in the table.
pub(crate) fn has_short_string(table: &FieldTable) -> bool {
    table.inner().values().any(value_has_short_string)
}

fn value_has_short_string(value: &AMQPValue) -> bool {
    match value {
        AMQPValue::ShortString(_) => true,
        AMQPValue::FieldTable(t) => has_short_string(t),
        AMQPValue::FieldArray(a) => a.as_slice().iter().any(value_has_short_string),
        _ => false,
    }
}

/// The table with every short-string value turned into a long string: the
/// only form of a string value every AMQP peer can read.
pub(crate) fn without_short_strings(table: &FieldTable) -> FieldTable {
    let mut out = FieldTable::default();
    for (k, v) in table {
        out.insert(k.clone(), value_without_short_strings(v));
    }
    out
}

fn value_without_short_strings(value: &AMQPValue) -> AMQPValue {
    match value {
        AMQPValue::ShortString(s) => AMQPValue::LongString(LongString::from(s.as_str())),
        AMQPValue::FieldTable(t) => AMQPValue::FieldTable(without_short_strings(t)),
        AMQPValue::FieldArray(a) => AMQPValue::FieldArray(FieldArray::from(
            a.as_slice()
                .iter()
                .map(value_without_short_strings)
                .collect::<Vec<_>>(),
        )),
        other => other.clone(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A table `{ "k": [[[ ... ]]] }` with `levels` containers in all.
    pub(crate) fn nested_table(levels: usize) -> Vec<u8> {
        let mut inner: Vec<u8> = Vec::new();
        for _ in 1..levels {
            let mut v = vec![b'A'];
            v.extend_from_slice(&(inner.len() as u32).to_be_bytes());
            v.extend(inner);
            inner = v;
        }
        let mut entries = vec![1u8, b'k'];
        entries.extend(inner);
        if levels == 1 {
            entries = vec![1u8, b'k', b'V'];
        }
        let mut t = (entries.len() as u32).to_be_bytes().to_vec();
        t.extend(entries);
        t
    }

    #[test]
    fn depth_limit_is_exact() {
        assert_eq!(check_depth(&nested_table(1)), Depth::Shallow);
        assert_eq!(
            check_depth(&nested_table(MAX_NESTING_DEPTH)),
            Depth::Shallow
        );
        assert_eq!(
            check_depth(&nested_table(MAX_NESTING_DEPTH + 1)),
            Depth::TooDeep
        );
        assert_eq!(check_depth(&nested_table(5_000)), Depth::TooDeep);
    }

    #[test]
    fn walk_skips_every_scalar_type() {
        // key "a" -> each scalar type once, then a nested table with a long string.
        let mut e = Vec::new();
        for (tag, size) in [
            (b't', 1),
            (b'b', 1),
            (b'B', 1),
            (b's', 2),
            (b'u', 2),
            (b'I', 4),
            (b'i', 4),
            (b'f', 4),
            (b'D', 5),
            (b'l', 8),
            (b'd', 8),
            (b'T', 8),
            (b'V', 0),
        ] {
            e.extend([1, b'a', tag]);
            e.extend(std::iter::repeat_n(0u8, size));
        }
        e.extend([
            1, b'n', b'F', 0, 0, 0, 10, 1, b'x', b'S', 0, 0, 0, 2, b'h', b'i',
        ]);
        let mut t = (e.len() as u32).to_be_bytes().to_vec();
        t.extend(e);
        assert_eq!(check_depth(&t), Depth::Shallow);
    }

    #[test]
    fn malformed_tables_are_left_to_the_parser() {
        assert_eq!(check_depth(&[]), Depth::Shallow);
        assert_eq!(check_depth(&[0, 0, 0, 9, 1]), Depth::Shallow);
        assert_eq!(check_depth(&[0, 0, 0, 3, 1, b'k', b'z']), Depth::Shallow);
        // An inner array claiming more bytes than its parent has.
        assert_eq!(
            check_depth(&[0, 0, 0, 7, 1, b'k', b'A', 0, 0, 0, 9]),
            Depth::Shallow
        );
    }

    #[test]
    fn header_offset_skips_the_leading_strings() {
        assert_eq!(header_table_offset(&[0x20, 0, 0, 0, 0, 0]), Some(2));
        assert_eq!(
            header_table_offset(&[0xE0, 0, 1, b'a', 0, 0, 0, 0, 0, 0]),
            Some(5)
        );
        assert_eq!(header_table_offset(&[0x80, 0, 1, b'a']), None);
        assert_eq!(header_table_offset(&[0xE0, 0, 9]), None);
    }

    #[test]
    fn short_strings_become_long_strings() {
        let mut inner = FieldTable::default();
        inner.insert("s".into(), AMQPValue::ShortString("x".into()));
        let mut t = FieldTable::default();
        t.insert(
            "a".into(),
            AMQPValue::FieldArray(vec![AMQPValue::FieldTable(inner)].into()),
        );
        assert!(has_short_string(&t));
        let fixed = without_short_strings(&t);
        assert!(!has_short_string(&fixed));
        let mut want_inner = FieldTable::default();
        want_inner.insert("s".into(), AMQPValue::LongString("x".into()));
        let mut want = FieldTable::default();
        want.insert(
            "a".into(),
            AMQPValue::FieldArray(vec![AMQPValue::FieldTable(want_inner)].into()),
        );
        assert_eq!(fixed, want);
    }
}
