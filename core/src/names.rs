//! Validation of names and settings that arrive from clients.
//!
//! Names are AMQP short strings: 1–255 bytes of UTF-8. The engine refuses NUL
//! because names are parts of store keys and log lines.

use crate::error::{Error, Result};

/// Longest name the engine accepts (AMQP short string).
pub const MAX_NAME_LEN: usize = 255;

/// Checks a tenant, exchange, queue, group, user or tag name.
pub fn check_name(field: &'static str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::invalid(
            field,
            format!("{} bytes is longer than {MAX_NAME_LEN}", name.len()),
        ));
    }
    if name.contains('\0') {
        return Err(Error::invalid(field, "must not contain NUL"));
    }
    Ok(())
}

/// Longest routing key: an MQTT topic may have 65,535 bytes (AMQP's short
/// strings stop at 255, which its codec enforces).
pub const MAX_KEY_LEN: usize = 65_535;

/// Checks a routing key or binding key: may be empty, at most [`MAX_KEY_LEN`] bytes.
pub fn check_key(field: &'static str, key: &str) -> Result<()> {
    if key.len() > MAX_KEY_LEN {
        return Err(Error::invalid(
            field,
            format!("{} bytes is longer than {MAX_KEY_LEN}", key.len()),
        ));
    }
    Ok(())
}

/// True for names reserved to the server (`amq.` prefix), as AMQP 0-9-1 reserves them.
pub fn is_reserved(name: &str) -> bool {
    name.starts_with("amq.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("queue", "orders").is_ok());
        assert!(check_name("queue", "").is_err());
        assert!(check_name("queue", &"x".repeat(256)).is_err());
        assert!(check_name("queue", &"x".repeat(255)).is_ok());
        assert!(check_name("queue", "a\0b").is_err());
        assert!(check_key("routing key", "").is_ok());
        assert!(check_key("routing key", &"a".repeat(MAX_KEY_LEN)).is_ok());
        assert!(check_key("routing key", &"a".repeat(MAX_KEY_LEN + 1)).is_err());
        assert!(is_reserved("amq.topic"));
        assert!(!is_reserved("amqp"));
    }
}
