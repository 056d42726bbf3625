//! The `[http]` table of the gateway's TOML file (without `listen`).
//!
//! The DMS limits default to DMS's own (10 messages and 512 KiB per send,
//! 10 messages and 512 KiB per consume, 30 queues per project, 3 consumer
//! groups per queue); each can be raised here.

use serde::Deserialize;

/// DMS's largest message and send batch (`max_msg_size_byte`).
pub const DMS_MAX_BYTES: usize = 512 * 1024;

/// Settings of the HTTP door.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Most open HTTP connections; further ones are answered 503 and closed.
    /// Every long poll holds a connection, so this must exceed `max_long_polls`.
    pub max_connections: usize,
    /// Largest request body in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// Most messages in one send request (DMS: 10).
    pub max_messages_per_send: usize,
    /// Most bytes of bodies and attributes in one send request (DMS: 512 KiB).
    pub max_send_bytes: usize,
    /// Largest single message body in bytes (DMS: 512 KiB).
    pub max_message_bytes: usize,
    /// Upper bound of `max_msgs` in a consume request (DMS: 10).
    pub max_messages_per_consume: usize,
    /// Most body bytes one consume answer carries (DMS: 512 KiB; one message always fits).
    pub max_consume_bytes: u64,
    /// Long polls waiting at once; more get 429 until one ends.
    pub max_long_polls: usize,
    /// Queues a tenant may create through the DMS API (DMS: 30).
    pub max_queues_per_tenant: usize,
    /// Consumer groups a queue may have through the DMS API (DMS: 3).
    pub max_groups_per_queue: usize,
    /// Seconds a client may take to send a request's headers before it is disconnected.
    pub header_read_timeout_secs: u64,
    /// Seconds a request's body may take to arrive whole once its headers
    /// are in (a stalled or trickling body); a late one gets 408 and the
    /// connection is closed. With `max_body_bytes` this sets a minimum rate.
    pub body_timeout_secs: u64,
    /// Largest WebSocket message accepted on `/mqtt`.
    pub websocket_max_message_bytes: usize,
    /// A bearer token that lets a scraper read `/metrics` without a user
    /// (none by default: a user tagged `monitoring` or `administrator`).
    pub metrics_token: Option<Secret>,
}

/// A secret from the configuration: never shown (`Debug` prints its length
/// only), compared in constant time.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// A secret from its text.
    pub fn new(text: impl Into<String>) -> Self {
        Secret(text.into())
    }

    /// Whether `given` is the secret, in time independent of where they differ.
    pub fn matches(&self, given: &str) -> bool {
        use sha2::{Digest, Sha256};
        // Equal-length digests: the comparison takes the same time for
        // every wrong guess, whatever its length.
        let (a, b) = (
            Sha256::digest(self.0.as_bytes()),
            Sha256::digest(given.as_bytes()),
        );
        a.iter()
            .zip(b.iter())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(<{} characters>)", self.0.chars().count())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_connections: 20_000,
            max_body_bytes: 1024 * 1024,
            max_messages_per_send: 10,
            max_send_bytes: DMS_MAX_BYTES,
            max_message_bytes: DMS_MAX_BYTES,
            max_messages_per_consume: 10,
            max_consume_bytes: DMS_MAX_BYTES as u64,
            max_long_polls: 16_384,
            max_queues_per_tenant: 30,
            max_groups_per_queue: 3,
            header_read_timeout_secs: 30,
            body_timeout_secs: 30,
            websocket_max_message_bytes: 16 * 1024 * 1024,
            metrics_token: None,
        }
    }
}

/// A setting out of its domain.
#[derive(Debug, thiserror::Error)]
#[error("[http] {key}: {reason}")]
pub struct ConfigError {
    /// The setting.
    pub key: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl Config {
    /// Checks the settings agree with each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |key, reason: &str| {
            Err(ConfigError {
                key,
                reason: reason.to_owned(),
            })
        };
        let positive: [(&'static str, usize); 8] = [
            ("max_connections", self.max_connections),
            ("max_body_bytes", self.max_body_bytes),
            ("max_messages_per_send", self.max_messages_per_send),
            ("max_send_bytes", self.max_send_bytes),
            ("max_message_bytes", self.max_message_bytes),
            ("max_messages_per_consume", self.max_messages_per_consume),
            ("max_long_polls", self.max_long_polls),
            (
                "websocket_max_message_bytes",
                self.websocket_max_message_bytes,
            ),
        ];
        for (key, value) in positive {
            if value == 0 {
                return err(key, "must be at least 1");
            }
        }
        if self.max_body_bytes < self.max_send_bytes {
            // A send of max_send_bytes could not arrive in one body otherwise.
            return err(
                "max_body_bytes",
                "must be at least max_send_bytes (a full send must fit in one body)",
            );
        }
        if self.max_message_bytes > self.max_send_bytes {
            return err("max_message_bytes", "must not exceed max_send_bytes");
        }
        if self.max_long_polls >= self.max_connections {
            return err(
                "max_long_polls",
                "must be below max_connections (each long poll holds a connection)",
            );
        }
        if self.metrics_token.as_ref().is_some_and(|t| t.0.len() < 16) {
            return err(
                "metrics_token",
                "must be at least 16 characters (it lets a scraper read every tenant's metrics)",
            );
        }
        if self.max_consume_bytes == 0 {
            return err("max_consume_bytes", "must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_dms_limits_and_valid() {
        let c = Config::default();
        assert!(c.validate().is_ok());
        assert_eq!(c.max_messages_per_send, 10);
        assert_eq!(c.max_send_bytes, 524_288);
    }

    #[test]
    fn inconsistent_settings_are_refused() {
        let c = Config {
            max_body_bytes: 1000,
            ..Config::default()
        };
        assert_eq!(
            c.validate().map_err(|e| e.key).err(),
            Some("max_body_bytes")
        );
        let c = Config {
            max_long_polls: 30_000,
            ..Config::default()
        };
        assert_eq!(
            c.validate().map_err(|e| e.key).err(),
            Some("max_long_polls")
        );
        let parsed: Result<Config, _> = toml::from_str("max_mesages_per_send = 3");
        assert!(parsed.is_err(), "unknown keys are refused");
        let parsed: Config = toml::from_str("max_messages_per_send = 100").unwrap();
        assert_eq!(parsed.max_messages_per_send, 100);
    }
}
