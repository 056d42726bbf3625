//! The `[mqtt]` table of the gateway's configuration file.

use std::num::NonZeroU16;

use serde::Deserialize;

/// Who may connect without a user name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Anonymous {
    /// Only clients on a loopback address (Mosquitto 2's default: a fresh
    /// install works locally and is not open to the network).
    #[default]
    Loopback,
    /// Any client.
    Always,
    /// Nobody: a user name and password are required.
    Never,
}

/// Settings read from the `[mqtt]` table of the gateway's TOML file (without `listen`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Most concurrent MQTT connections (TCP and WebSocket together). Further
    /// clients are refused with CONNACK "server unavailable" (3.1.1) or
    /// "quota exceeded" (5.0). Default 100,000.
    pub max_connections: usize,
    /// Logins without a user name: `"loopback"` (default), `"always"`, `"never"`.
    pub allow_anonymous: Anonymous,
    /// The engine user anonymous clients act as (default `"guest"`, as
    /// RabbitMQ's MQTT plugin). Its permissions apply.
    pub anonymous_user: String,
    /// The tenant of clients whose user name has no `tenant:` prefix (default `"/"`).
    pub default_tenant: String,
    /// Largest packet a client may send, in bytes, fixed header included; also
    /// announced to MQTT 5 clients as Maximum Packet Size. Default 16 MiB.
    pub max_packet_size: u32,
    /// MQTT 5 Receive Maximum announced to clients: QoS 1 and 2 publishes a
    /// client may have unacknowledged at once (default 1024). A client that
    /// sends more is disconnected with 0x93.
    pub receive_maximum: u16,
    /// Most QoS 1 and 2 messages in flight to one client (the smaller of this
    /// and an MQTT 5 client's own Receive Maximum). Default 512.
    pub max_inflight: u16,
    /// MQTT 5 Topic Alias Maximum announced to clients (default 64; 0 = none).
    pub topic_alias_maximum: u16,
    /// Longest session expiry granted, in seconds (default 86,400, RabbitMQ's).
    /// 3.1.1 persistent sessions (clean session 0) get exactly this.
    pub max_session_expiry_secs: u32,
    /// Longest keep alive a client may use, in seconds (default: none, the
    /// client's own). A CONNECT asking for more, or for none (0), gets this
    /// value: MQTT 5 clients are told in CONNACK's Server Keep Alive
    /// [MQTT-3.2.2-21]; 3.1.1 clients, who cannot be told, are held to it
    /// (closed after one and a half times it without a packet).
    pub max_keepalive: Option<NonZeroU16>,
    /// Time a new connection has to send its CONNECT, in milliseconds (default 10,000).
    pub connect_timeout_ms: u64,
    /// Whether retained messages are supported (default true). When false, a
    /// PUBLISH with RETAIN set is refused (MQTT 5: DISCONNECT 0x9A).
    pub retain_available: bool,
    /// Most messages a session queue holds; older ones are dropped when more
    /// arrive (default: no limit, the engine spills to disk).
    pub max_queued_messages: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_connections: 100_000,
            allow_anonymous: Anonymous::Loopback,
            anonymous_user: "guest".into(),
            default_tenant: "/".into(),
            max_packet_size: 16 << 20,
            receive_maximum: 1024,
            max_inflight: 512,
            topic_alias_maximum: 64,
            max_session_expiry_secs: 86_400,
            max_keepalive: None,
            connect_timeout_ms: 10_000,
            retain_available: true,
            max_queued_messages: None,
        }
    }
}

impl Config {
    /// The limit on packets from a connected client, as a `usize`.
    pub(crate) fn max_packet(&self) -> usize {
        usize::try_from(self.max_packet_size).unwrap_or(usize::MAX)
    }

    /// The keep alive a client asking for `asked` seconds gets.
    pub(crate) fn keep_alive(&self, asked: u16) -> u16 {
        match self.max_keepalive {
            Some(cap) if asked == 0 || asked > cap.get() => cap.get(),
            _ => asked,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_table_and_refuses_unknown_keys() {
        let c: Config = serde_json::from_str(
            r#"{"allow_anonymous": "never", "max_connections": 5, "max_keepalive": 30}"#,
        )
        .unwrap();
        assert_eq!(c.allow_anonymous, Anonymous::Never);
        assert_eq!(c.max_connections, 5);
        assert_eq!(c.max_keepalive.map(NonZeroU16::get), Some(30));
        assert_eq!(c.anonymous_user, "guest");
        assert!(serde_json::from_str::<Config>(r#"{"listen": "x"}"#).is_err());
        assert!(serde_json::from_str::<Config>(r#"{"allow_anonymous": "sometimes"}"#).is_err());
        assert!(serde_json::from_str::<Config>(r#"{"max_keepalive": 0}"#).is_err());
    }

    #[test]
    fn keep_alive_is_capped_and_none_gets_the_cap() {
        let mut c = Config::default();
        assert_eq!((c.keep_alive(0), c.keep_alive(600)), (0, 600));
        c.max_keepalive = NonZeroU16::new(60);
        assert_eq!(c.keep_alive(30), 30);
        assert_eq!(c.keep_alive(60), 60);
        assert_eq!(c.keep_alive(61), 60);
        assert_eq!(c.keep_alive(0), 60);
    }
}
