//! Command-line flags. Each flag can also come from a `GATEWAY_*` environment
//! variable; flags win over the environment, which wins over the config file.

use std::path::PathBuf;

use clap::Parser;

/// One engine, three doors: AMQP 0.9.1, MQTT 3.1.1/5.0 and HTTP.
///
/// Starts with embedded defaults: data in ./data, listeners on 127.0.0.1 and
/// [::1] (AMQP 5672, MQTT 1883, HTTP 8080), tenant "/" and user guest/guest
/// usable from loopback only. A port of 0 picks a free port; every address
/// bound is logged on its own line ("… listening on ADDRESS").
#[derive(Debug, Parser, Default)]
#[command(name = "gateway", version, about, long_about = None)]
pub struct Cli {
    /// TOML configuration file (see README.md for every key).
    #[arg(long, env = "GATEWAY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Directory holding the store (created if missing).
    #[arg(long, env = "GATEWAY_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// AMQP 0.9.1 listener addresses (IP:PORT, comma-separated), or "off".
    #[arg(long, env = "GATEWAY_AMQP_LISTEN", value_name = "ADDR[,ADDR...]")]
    pub amqp_listen: Option<String>,

    /// MQTT 3.1.1/5.0 listener addresses (IP:PORT, comma-separated), or "off".
    #[arg(long, env = "GATEWAY_MQTT_LISTEN", value_name = "ADDR[,ADDR...]")]
    pub mqtt_listen: Option<String>,

    /// HTTP listener addresses (REST API, metrics, MQTT over WebSocket;
    /// IP:PORT, comma-separated), or "off".
    #[arg(long, env = "GATEWAY_HTTP_LISTEN", value_name = "ADDR[,ADDR...]")]
    pub http_listen: Option<String>,

    /// AMQPS (AMQP over TLS) listener addresses, or "off" (default
    /// 127.0.0.1:5671 and [::1]:5671 once a TLS certificate and key are set).
    #[arg(long, env = "GATEWAY_AMQPS_LISTEN", value_name = "ADDR[,ADDR...]")]
    pub amqps_listen: Option<String>,

    /// MQTTS (MQTT over TLS) listener addresses, or "off" (default port 8883
    /// on both loopbacks once a TLS certificate and key are set).
    #[arg(long, env = "GATEWAY_MQTTS_LISTEN", value_name = "ADDR[,ADDR...]")]
    pub mqtts_listen: Option<String>,

    /// HTTPS listener addresses (with MQTT over secure WebSocket at /mqtt), or
    /// "off" (default port 8443 on both loopbacks once a TLS certificate and key are set).
    #[arg(long, env = "GATEWAY_HTTPS_LISTEN", value_name = "ADDR[,ADDR...]")]
    pub https_listen: Option<String>,

    /// The TLS certificate chain (PEM, leaf first); with --tls-key it turns TLS on.
    #[arg(long, env = "GATEWAY_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// The TLS private key (PEM).
    #[arg(long, env = "GATEWAY_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// CA certificates (PEM) that client certificates are verified against.
    #[arg(long, env = "GATEWAY_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,

    /// Refuse TLS clients without a verified certificate ("true"/"false").
    #[arg(long, env = "GATEWAY_TLS_REQUIRE_CLIENT_CERT", value_name = "BOOL")]
    pub tls_require_client_cert: Option<bool>,

    /// The lowest TLS version accepted: "1.2" or "1.3".
    #[arg(long, env = "GATEWAY_TLS_MIN_VERSION", value_name = "1.2|1.3")]
    pub tls_min_version: Option<String>,

    /// Which name of a client certificate is the user: "cn", "san_dns" or "san_email".
    #[arg(
        long,
        env = "GATEWAY_TLS_IDENTITY_FROM",
        value_name = "cn|san_dns|san_email"
    )]
    pub tls_identity_from: Option<String>,

    /// Seconds a TLS client has to finish the handshake.
    #[arg(long, env = "GATEWAY_TLS_HANDSHAKE_TIMEOUT", value_name = "SECONDS")]
    pub tls_handshake_timeout: Option<u64>,

    /// Log format: "human" or "json" (the level comes from RUST_LOG, default info).
    #[arg(long, env = "GATEWAY_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,

    /// When confirmed writes reach the disk: "always" (fsync before confirming,
    /// shared by concurrent writes), "batch:MS" (at most one fsync per MS
    /// milliseconds) or "never" (confirmed once written to the OS).
    #[arg(long, env = "GATEWAY_SYNC", value_name = "POLICY")]
    pub sync: Option<String>,

    /// Seconds to let connections finish after SIGTERM/Ctrl-C before closing them.
    #[arg(long, env = "GATEWAY_SHUTDOWN_GRACE", value_name = "SECONDS")]
    pub shutdown_grace: Option<u64>,

    /// Least free space on the data directory's filesystem before publishers
    /// are held back: a size ("1GiB", "512MB"), a fraction of the filesystem
    /// ("5%", "0.05") or "off" (default: min(1 GiB, 5 %)).
    #[arg(long, env = "GATEWAY_DISK_FREE_MIN", value_name = "SIZE|FRACTION|off")]
    pub disk_free_min: Option<String>,

    /// Most resident memory before publishers are held back: a size, a
    /// fraction of the memory available ("40%", "0.4") or "off" (default 40%).
    #[arg(
        long,
        env = "GATEWAY_MEMORY_HIGH_WATERMARK",
        value_name = "SIZE|FRACTION|off"
    )]
    pub memory_high_watermark: Option<String>,

    /// Encryption at rest: a file holding the key (32 bytes, or 64 hex digits
    /// as `gateway keygen` writes). A data directory is created encrypted or
    /// not, and then always opens with the same choice.
    #[arg(long, env = "GATEWAY_ENCRYPTION_KEY_FILE", value_name = "FILE")]
    pub encryption_key_file: Option<PathBuf>,

    /// Earlier keys (comma-separated files), still needed to read what was
    /// written under them after a key change.
    #[arg(
        long,
        env = "GATEWAY_ENCRYPTION_OLD_KEYS",
        value_name = "FILE[,FILE...]"
    )]
    pub encryption_old_keys: Option<String>,

    /// Check the configuration, print it and exit.
    #[arg(long)]
    pub check_config: bool,

    /// A tool instead of the gateway.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What the binary does besides running the gateway.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Writes a new random encryption key to FILE (readable by its owner
    /// only; an existing file is never replaced) and prints its id.
    Keygen {
        /// Where to write the key.
        file: PathBuf,
    },
}
