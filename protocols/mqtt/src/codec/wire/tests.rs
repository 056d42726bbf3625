use super::*;

#[test]
fn varints() {
    assert_eq!(
        decode_varint(&[0x00]),
        VarInt::Complete {
            value: 0,
            len: 1,
            minimal: true
        }
    );
    assert_eq!(
        decode_varint(&[0x7F]),
        VarInt::Complete {
            value: 127,
            len: 1,
            minimal: true
        }
    );
    assert_eq!(
        decode_varint(&[0x80, 0x01]),
        VarInt::Complete {
            value: 128,
            len: 2,
            minimal: true
        }
    );
    assert_eq!(
        decode_varint(&[0xFF, 0xFF, 0xFF, 0x7F]),
        VarInt::Complete {
            value: 268_435_455,
            len: 4,
            minimal: true
        }
    );
    assert_eq!(
        decode_varint(&[0x80, 0x00]),
        VarInt::Complete {
            value: 0,
            len: 2,
            minimal: false
        }
    );
    assert_eq!(decode_varint(&[]), VarInt::Incomplete);
    assert_eq!(decode_varint(&[0x80, 0x80, 0x80]), VarInt::Incomplete);
    assert_eq!(decode_varint(&[0x80, 0x80, 0x80, 0x80]), VarInt::Malformed);
    assert_eq!(
        decode_varint(&[0x80, 0x80, 0x80, 0x80, 0x01]),
        VarInt::Malformed
    );
}

#[test]
fn primitives_check_bounds() {
    let mut r = Reader::new(&[0x00, 0x03, b'a', b'b']);
    assert!(matches!(r.string("s"), Err(CodecError::Malformed(_))));
    let mut r = Reader::new(&[0x00, 0x01, 0x00]);
    assert!(matches!(
        r.string("s"),
        Err(CodecError::InvalidString {
            fault: StringFault::NullCharacter,
            ..
        })
    ));
    let mut r = Reader::new(&[0x00, 0x02, 0xC3, 0x28]);
    assert!(matches!(
        r.string("s"),
        Err(CodecError::InvalidString {
            fault: StringFault::NotUtf8,
            ..
        })
    ));
    // An encoded surrogate (U+D800) is ill-formed UTF-8.
    let mut r = Reader::new(&[0x00, 0x03, 0xED, 0xA0, 0x80]);
    assert!(r.string("s").is_err());
    let mut r = Reader::new(&[0x01]);
    assert!(r.u16("x").is_err());
    assert!(r.u32("x").is_err());
    assert_eq!(r.u8("x").ok(), Some(1));
    assert!(r.u8("x").is_err());
}

fn walk(block: Block, bytes: &[u8]) -> Result<Vec<(u8, String)>, CodecError> {
    let mut out = vec![];
    let mut r = Reader::new(bytes);
    r.properties(block, |pid, v| {
        out.push((pid, format!("{v:?}")));
        Ok(())
    })?;
    r.expect_end("test")?;
    Ok(out)
}

#[test]
fn property_blocks() {
    // Empty block.
    assert_eq!(walk(Block::Publish, &[0]).ok(), Some(vec![]));
    // Two user properties (repeatable) and a topic alias.
    let block = [10, 0x26, 0, 1, b'k', 0, 1, b'v', 0x23, 0, 7];
    assert_eq!(walk(Block::Publish, &block).map(|v| v.len()).ok(), Some(2));
    let block = [
        17, 0x26, 0, 1, b'k', 0, 1, b'v', 0x26, 0, 1, b'k', 0, 1, b'w', 0x23, 0, 7,
    ];
    assert_eq!(walk(Block::Publish, &block).map(|v| v.len()).ok(), Some(3));
    // A property that runs past the declared block length.
    assert!(matches!(
        walk(Block::Publish, &[2, 0x02, 0, 0, 0, 1]),
        Err(CodecError::Malformed(_))
    ));
    // Declared length longer than the packet.
    assert!(walk(Block::Publish, &[5, 0x01, 1]).is_err());
    // Duplicates, identifiers outside their packet, unknown identifiers.
    assert!(matches!(
        walk(Block::Publish, &[4, 0x01, 1, 0x01, 0]),
        Err(CodecError::DuplicateProperty { id: 0x01 })
    ));
    assert!(matches!(
        walk(Block::Publish, &[3, 0x21, 0, 1]),
        Err(CodecError::UnexpectedProperty { id: 0x21 })
    ));
    assert!(matches!(
        walk(Block::Ack, &[2, 0x7F, 0]),
        Err(CodecError::UnexpectedProperty { id: 0x7F })
    ));
    // Values out of range.
    assert!(matches!(
        walk(Block::Publish, &[3, 0x23, 0, 0]),
        Err(CodecError::TopicAliasZero)
    ));
    assert!(matches!(
        walk(Block::Publish, &[2, 0x01, 2]),
        Err(CodecError::InvalidPropertyValue { id: 0x01 })
    ));
    assert!(matches!(
        walk(Block::Publish, &[2, 0x0B, 1]),
        Err(CodecError::InvalidPropertyValue { id: 0x0B })
    ));
    assert!(walk(Block::Subscribe, &[2, 0x0B, 1]).is_ok());
    assert!(walk(Block::Subscribe, &[2, 0x0B, 0]).is_err());
    assert!(matches!(
        walk(Block::Subscribe, &[3, 0x0B, 0x81, 0x00]),
        Err(CodecError::MalformedVariableInteger)
    ));
    assert!(walk(Block::Connect, &[3, 0x21, 0, 0]).is_err());
    assert!(walk(Block::Connect, &[5, 0x27, 0, 0, 0, 0]).is_err());
    assert!(matches!(
        walk(Block::Publish, &[5, 0x08, 0, 2, b'a', b'#']),
        Err(CodecError::TopicNameInvalid(_))
    ));
    // Non-minimal property length.
    assert!(matches!(
        walk(Block::Ack, &[0x80, 0x00]),
        Err(CodecError::MalformedVariableInteger)
    ));
}
