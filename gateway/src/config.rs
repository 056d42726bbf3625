//! The gateway's configuration: built-in defaults, overridden by the TOML
//! file, overridden by `GATEWAY_*` variables and flags (clap merges those
//! two). Unknown keys and bad values are errors naming the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gw_core::{EncryptionKeys, SyncPolicy, Watermark, Watermarks};
use gw_listen::{IdentityFrom, MinVersion, TlsSettings};
use serde::Deserialize;

use crate::cli::Cli;
use crate::listeners::{self, ListenAddr, ListenSetting};

/// A configuration problem, reported as one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys or wrong types.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message (names the key and line).
        message: String,
    },
    /// An encryption key file cannot be used.
    #[error("{0}")]
    Key(#[from] gw_core::KeyFileError),
    /// A value is out of its domain.
    #[error("invalid {key} '{value}': {reason}")]
    Invalid {
        /// Which setting.
        key: &'static str,
        /// What was given.
        value: String,
        /// What is expected.
        reason: String,
    },
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// The file's shape. Every table refuses unknown keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    log_format: Option<LogFormat>,
    shutdown_grace_secs: Option<u64>,
    storage: StorageFile,
    limits: LimitsFile,
    tls: TlsFile,
    amqp: DoorFile,
    mqtt: DoorFile,
    http: DoorFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct StorageFile {
    sync: Option<String>,
    cache_mb: Option<u64>,
    queue_memory_mb: Option<u64>,
    encryption_key_file: Option<PathBuf>,
    old_keys: Vec<PathBuf>,
}

/// Node-wide resource limits (RabbitMQ's `disk_free_limit` and
/// `vm_memory_high_watermark`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct LimitsFile {
    disk_free_min: Option<String>,
    memory_high_watermark: Option<String>,
}

/// `[tls]`: the certificate every TLS listener serves, and client certificates.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TlsFile {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    require_client_cert: Option<bool>,
    min_version: Option<String>,
    identity_from: Option<String>,
    handshake_timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DoorFile {
    /// A string (a comma-separated list) or an array of strings.
    listen: Option<ListenSetting>,
    /// The TLS listeners (AMQPS, MQTTS, HTTPS), the same way.
    tls_listen: Option<ListenSetting>,
    /// The door's own settings, checked by the door.
    #[serde(flatten)]
    settings: toml::Table,
}

/// One door's listener and settings.
#[derive(Clone)]
pub struct DoorConfig {
    /// Where to listen, in order; empty: the door is off.
    pub listen: Vec<ListenAddr>,
    /// Where to listen with TLS; empty without `[tls]` or when "off".
    pub tls_listen: Vec<ListenAddr>,
    /// Door-specific settings from the file's table (each door parses its own).
    pub settings: toml::Table,
}

/// `--check-config` prints the configuration: a door setting that holds a
/// secret (a token, a password) is shown as `<redacted>`.
impl std::fmt::Debug for DoorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = |k: &str| {
            ["token", "password", "secret"]
                .iter()
                .any(|s| k.contains(s))
        };
        let settings: toml::Table = self
            .settings
            .iter()
            .map(|(k, v)| {
                let shown = if secret(k) {
                    toml::Value::String("<redacted>".into())
                } else {
                    v.clone()
                };
                (k.clone(), shown)
            })
            .collect();
        f.debug_struct("DoorConfig")
            .field("listen", &self.listen)
            .field("settings", &settings)
            .finish()
    }
}

/// The merged, validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the store lives.
    pub data_dir: PathBuf,
    /// Log format.
    pub log_format: LogFormat,
    /// Grace period for connections after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Sync policy for confirmed writes.
    pub sync: SyncPolicy,
    /// fjall block cache.
    pub cache_bytes: u64,
    /// Message bytes a queue keeps in memory.
    pub queue_memory_bytes: u64,
    /// When publishers are held back for lack of disk or memory.
    pub watermarks: Watermarks,
    /// The TLS certificate and client certificate rules (`[tls]`); None: no TLS listener.
    pub tls: Option<TlsSettings>,
    /// Encryption at rest: the keys read from `[storage] encryption_key_file`
    /// and `old_keys` (shown by their ids only).
    pub encryption: Option<Arc<EncryptionKeys>>,
    /// AMQP listener and settings.
    pub amqp: DoorConfig,
    /// MQTT listener and settings.
    pub mqtt: DoorConfig,
    /// HTTP listener and settings.
    pub http: DoorConfig,
}

impl Config {
    /// Defaults with every listener on port 0 and the given data directory: for tests.
    pub fn ephemeral(data_dir: impl Into<PathBuf>) -> Self {
        let any: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
        let door = || DoorConfig {
            listen: vec![ListenAddr::required(any)],
            tls_listen: Vec::new(),
            settings: toml::Table::new(),
        };
        Config {
            data_dir: data_dir.into(),
            log_format: LogFormat::Human,
            shutdown_grace: Duration::from_secs(2),
            sync: SyncPolicy::Always,
            cache_bytes: 32 << 20,
            queue_memory_bytes: 8 << 20,
            watermarks: Watermarks::default(),
            tls: None,
            encryption: None,
            amqp: door(),
            mqtt: door(),
            http: door(),
        }
    }

    /// Builds the configuration from the command line (with its environment
    /// fallbacks) and the file it names.
    pub fn load(cli: &Cli) -> Result<Self, ConfigError> {
        let file = match &cli.config {
            Some(path) => parse_file(path)?,
            None => FileConfig::default(),
        };
        let data_dir = cli
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("data"));
        let log_format = match cli.log_format.as_deref() {
            Some("human") => LogFormat::Human,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(invalid(
                    "log format",
                    other,
                    "expected \"human\" or \"json\"",
                ));
            }
            None => file.log_format.unwrap_or_default(),
        };
        let sync = match cli.sync.as_deref().or(file.storage.sync.as_deref()) {
            Some(s) => parse_sync(s)?,
            None => SyncPolicy::Always,
        };
        let mb = |v: Option<u64>, key: &'static str, default: u64| -> Result<u64, ConfigError> {
            match v {
                None => Ok(default << 20),
                Some(0) => Err(invalid(key, "0", "must be at least 1")),
                Some(n) if n > 1 << 20 => Err(invalid(key, &n.to_string(), "more than a TiB")),
                Some(n) => Ok(n << 20),
            }
        };
        let watermarks = watermarks(cli, &file.limits)?;
        let tls = tls(cli, &file.tls)?;
        let on = tls.is_some();
        let encryption = encryption_keys(cli, &file.storage)?;
        Ok(Config {
            data_dir,
            log_format,
            shutdown_grace: Duration::from_secs(
                cli.shutdown_grace
                    .or(file.shutdown_grace_secs)
                    .unwrap_or(10),
            ),
            sync,
            cache_bytes: mb(file.storage.cache_mb, "storage.cache_mb", 32)?,
            queue_memory_bytes: mb(file.storage.queue_memory_mb, "storage.queue_memory_mb", 8)?,
            watermarks,
            tls,
            encryption,
            amqp: door(
                ["amqp listen address", "amqps listen address"],
                [cli.amqp_listen.as_deref(), cli.amqps_listen.as_deref()],
                file.amqp,
                [5672, 5671],
                on,
            )?,
            mqtt: door(
                ["mqtt listen address", "mqtts listen address"],
                [cli.mqtt_listen.as_deref(), cli.mqtts_listen.as_deref()],
                file.mqtt,
                [1883, 8883],
                on,
            )?,
            http: door(
                ["http listen address", "https listen address"],
                [cli.http_listen.as_deref(), cli.https_listen.as_deref()],
                file.http,
                [8080, 8443],
                on,
            )?,
        })
    }
}

fn invalid(key: &'static str, value: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

fn parse_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e
            .to_string()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join(" "),
    })
}

/// A door's plain and TLS listeners (each: flag or `GATEWAY_*`, else the
/// file, else both loopbacks on the usual port) and settings. The TLS ones
/// exist only with `[tls]` (`tls_on`); asking for them without is an error.
fn door(
    [key, tls_key]: [&'static str; 2],
    [flag, tls_flag]: [Option<&str>; 2],
    file: DoorFile,
    [usual_port, usual_tls_port]: [u16; 2],
    tls_on: bool,
) -> Result<DoorConfig, ConfigError> {
    let setting = |flag: Option<&str>, file: Option<ListenSetting>| {
        flag.map(|f| ListenSetting::One(f.to_owned())).or(file)
    };
    let listen = match setting(flag, file.listen) {
        Some(setting) => listeners::parse(key, &setting, usual_port)?,
        None => listeners::default_addresses(usual_port),
    };
    let tls_listen = match setting(tls_flag, file.tls_listen) {
        Some(setting) => {
            let addrs = listeners::parse(tls_key, &setting, usual_tls_port)?;
            if !tls_on && let Some(first) = addrs.first() {
                return Err(invalid(
                    tls_key,
                    &first.addr.to_string(),
                    "a TLS listener needs [tls] cert and key (or --tls-cert and --tls-key)",
                ));
            }
            addrs
        }
        None if tls_on => listeners::default_addresses(usual_tls_port),
        None => Vec::new(),
    };
    Ok(DoorConfig {
        listen,
        tls_listen,
        settings: file.settings,
    })
}

/// `[tls]` with its flags: None unless a certificate and key are given.
/// The files are read at start-up (`Tls::load`), not here, so
/// `--check-config` works where they are not readable.
fn tls(cli: &Cli, file: &TlsFile) -> Result<Option<TlsSettings>, ConfigError> {
    let cert = cli.tls_cert.clone().or_else(|| file.cert.clone());
    let key = cli.tls_key.clone().or_else(|| file.key.clone());
    let client_ca = cli.tls_client_ca.clone().or_else(|| file.client_ca.clone());
    let require_client_cert = cli
        .tls_require_client_cert
        .or(file.require_client_cert)
        .unwrap_or(false);
    let (cert, key) = match (cert, key) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) => {
            if let Some(ca) = client_ca {
                return Err(invalid(
                    "tls.client_ca",
                    &ca.display().to_string(),
                    "client certificates need TLS: set tls.cert and tls.key too",
                ));
            }
            return Ok(None);
        }
        (Some(cert), None) => {
            return Err(invalid(
                "tls.cert",
                &cert.display().to_string(),
                "set tls.key too (the certificate's private key)",
            ));
        }
        (None, Some(key)) => {
            return Err(invalid(
                "tls.key",
                &key.display().to_string(),
                "set tls.cert too (the key's certificate)",
            ));
        }
    };
    if require_client_cert && client_ca.is_none() {
        return Err(invalid(
            "tls.require_client_cert",
            "true",
            "needs tls.client_ca (the CA client certificates are verified against)",
        ));
    }
    let min_version = match cli
        .tls_min_version
        .as_deref()
        .or(file.min_version.as_deref())
    {
        None | Some("1.2") => MinVersion::Tls12,
        Some("1.3") => MinVersion::Tls13,
        Some(other) => {
            return Err(invalid(
                "tls.min_version",
                other,
                "expected \"1.2\" or \"1.3\"",
            ));
        }
    };
    let identity_from = match cli
        .tls_identity_from
        .as_deref()
        .or(file.identity_from.as_deref())
    {
        None | Some("cn") => IdentityFrom::Cn,
        Some("san_dns") => IdentityFrom::SanDns,
        Some("san_email") => IdentityFrom::SanEmail,
        Some(other) => {
            return Err(invalid(
                "tls.identity_from",
                other,
                "expected \"cn\", \"san_dns\" or \"san_email\"",
            ));
        }
    };
    let timeout = cli
        .tls_handshake_timeout
        .or(file.handshake_timeout_secs)
        .unwrap_or(10);
    if !(1..=300).contains(&timeout) {
        return Err(invalid(
            "tls.handshake_timeout_secs",
            &timeout.to_string(),
            "expected 1 to 300 seconds",
        ));
    }
    Ok(Some(TlsSettings {
        client_ca,
        require_client_cert,
        min_version,
        identity_from,
        handshake_timeout: Duration::from_secs(timeout),
        ..TlsSettings::new(cert, key)
    }))
}

/// The disk and memory watermarks: flag or `GATEWAY_*`, else `[limits]`,
/// else the engine's defaults (free space min(1 GiB, 5 %), memory 40 %).
fn watermarks(cli: &Cli, file: &LimitsFile) -> Result<Watermarks, ConfigError> {
    let defaults = Watermarks::default();
    let disk_free_min = match cli
        .disk_free_min
        .as_deref()
        .or(file.disk_free_min.as_deref())
    {
        Some(text) => Some(parse_watermark("limits.disk_free_min", text)?),
        None => defaults.disk_free_min,
    };
    let memory_high = match cli
        .memory_high_watermark
        .as_deref()
        .or(file.memory_high_watermark.as_deref())
    {
        Some(text) => parse_watermark("limits.memory_high_watermark", text)?,
        None => defaults.memory_high,
    };
    Ok(Watermarks {
        disk_free_min,
        memory_high,
    })
}

/// The keys of encryption at rest: the flag or `GATEWAY_ENCRYPTION_KEY_FILE`,
/// else `[storage] encryption_key_file`; old keys likewise. Old keys without
/// a current one are refused: they would be silently unused.
fn encryption_keys(
    cli: &Cli,
    file: &StorageFile,
) -> Result<Option<Arc<EncryptionKeys>>, ConfigError> {
    let old: Vec<PathBuf> = match &cli.encryption_old_keys {
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect(),
        None => file.old_keys.clone(),
    };
    let current = cli
        .encryption_key_file
        .as_ref()
        .or(file.encryption_key_file.as_ref());
    match current {
        Some(path) => Ok(Some(Arc::new(EncryptionKeys::from_files(path, &old)?))),
        None if old.is_empty() => Ok(None),
        None => Err(invalid(
            "storage.old_keys",
            &old[0].display().to_string(),
            "old keys need a current one (storage.encryption_key_file)",
        )),
    }
}

/// One watermark: `off`, a size (`1GiB`, `512MB`) or a fraction (`5%`, `0.05`).
fn parse_watermark(key: &'static str, text: &str) -> Result<Watermark, ConfigError> {
    Watermark::parse(text).map_err(|reason| invalid(key, text, &reason))
}

/// Parses `always`, `never` or `batch:MS`.
pub fn parse_sync(s: &str) -> Result<SyncPolicy, ConfigError> {
    match s {
        "always" => Ok(SyncPolicy::Always),
        "never" => Ok(SyncPolicy::Never),
        _ => match s
            .strip_prefix("batch:")
            .map(|ms| ms.trim_end_matches("ms").parse::<u64>())
        {
            Some(Ok(ms)) if (1..=10_000).contains(&ms) => {
                Ok(SyncPolicy::Batch(Duration::from_millis(ms)))
            }
            _ => Err(invalid(
                "sync policy",
                s,
                "expected \"always\", \"never\" or \"batch:MS\" with MS from 1 to 10000",
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli_with(file: &str) -> (tempfile::TempDir, Cli) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, file).unwrap();
        (
            dir,
            Cli {
                config: Some(path),
                ..Cli::default()
            },
        )
    }

    #[test]
    fn defaults_then_file_then_flags() {
        let c = Config::load(&Cli::default()).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("data"));
        assert_eq!(c.amqp.listen, listeners::default_addresses(5672));
        assert_eq!(c.mqtt.listen, listeners::default_addresses(1883));
        assert_eq!(c.http.listen, listeners::default_addresses(8080));
        assert_eq!(c.sync, SyncPolicy::Always);
        let (_d, mut cli) = cli_with(
            "data_dir = \"/tmp/x\"\n[amqp]\nlisten = \"127.0.0.1:5000\"\n[mqtt]\nlisten = \"off\"\n[storage]\nsync = \"batch:5\"\n",
        );
        let c = Config::load(&cli).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.amqp.listen, addrs(&["127.0.0.1:5000"]));
        assert!(c.mqtt.listen.is_empty());
        assert_eq!(c.sync, SyncPolicy::Batch(Duration::from_millis(5)));
        cli.amqp_listen = Some("127.0.0.1:0".into());
        cli.data_dir = Some("/tmp/y".into());
        let c = Config::load(&cli).unwrap();
        assert_eq!(c.amqp.listen, addrs(&["127.0.0.1:0"]));
        assert_eq!(c.data_dir, PathBuf::from("/tmp/y"));
    }

    fn addrs(list: &[&str]) -> Vec<ListenAddr> {
        list.iter()
            .map(|a| ListenAddr::required(a.parse().unwrap()))
            .collect()
    }

    #[test]
    fn listen_lists_from_flags_and_the_file() {
        let cli = Cli {
            amqp_listen: Some("127.0.0.1:5672,[::1]:5672".into()),
            mqtt_listen: Some("off".into()),
            ..Cli::default()
        };
        let c = Config::load(&cli).unwrap();
        assert_eq!(c.amqp.listen, addrs(&["127.0.0.1:5672", "[::1]:5672"]));
        assert!(c.mqtt.listen.is_empty());
        assert_eq!(c.http.listen, listeners::default_addresses(8080));
        let (_d, mut cli) = cli_with(
            "[amqp]\nlisten = [\"127.0.0.1:1\", \"[::1]:2\"]\n[mqtt]\nlisten = \"0.0.0.0:3, [::]:4\"\n[http]\nlisten = \"off\"\n",
        );
        let c = Config::load(&cli).unwrap();
        assert_eq!(c.amqp.listen, addrs(&["127.0.0.1:1", "[::1]:2"]));
        assert_eq!(c.mqtt.listen, addrs(&["0.0.0.0:3", "[::]:4"]));
        assert!(c.http.listen.is_empty());
        // A flag (or its GATEWAY_* variable: clap reads both into one field;
        // tests/process.rs runs the binary with one) wins over the file.
        cli.amqp_listen = Some("[::1]:9".into());
        assert_eq!(Config::load(&cli).unwrap().amqp.listen, addrs(&["[::1]:9"]));
        let (_d, cli) = cli_with("[amqp]\nlisten = [\"127.0.0.1:1\", \"nowhere\"]\n");
        let e = Config::load(&cli).unwrap_err().to_string();
        assert!(e.contains("amqp listen address 'nowhere'"), "{e}");
        let (_d, cli) = cli_with("[amqp]\nlisten = 5672\n");
        assert!(Config::load(&cli).is_err());
    }

    #[test]
    fn watermarks_from_defaults_the_file_and_flags() {
        let c = Config::load(&Cli::default()).unwrap();
        assert_eq!(c.watermarks, Watermarks::default());
        assert_eq!(c.watermarks.disk_free_min, None);
        assert_eq!(c.watermarks.memory_high, Watermark::Fraction(0.4));
        let (_d, mut cli) =
            cli_with("[limits]\ndisk_free_min = \"1GiB\"\nmemory_high_watermark = \"0.25\"\n");
        let c = Config::load(&cli).unwrap();
        assert_eq!(c.watermarks.disk_free_min, Some(Watermark::Bytes(1 << 30)));
        assert_eq!(c.watermarks.memory_high, Watermark::Fraction(0.25));
        cli.disk_free_min = Some("5%".into());
        cli.memory_high_watermark = Some("off".into());
        let c = Config::load(&cli).unwrap();
        assert_eq!(c.watermarks.disk_free_min, Some(Watermark::Fraction(0.05)));
        assert_eq!(c.watermarks.memory_high, Watermark::Off);
        cli.disk_free_min = Some("off".into());
        cli.memory_high_watermark = Some("512MB".into());
        let c = Config::load(&cli).unwrap();
        assert_eq!(c.watermarks.disk_free_min, Some(Watermark::Off));
        assert_eq!(c.watermarks.memory_high, Watermark::Bytes(512_000_000));
    }

    #[test]
    fn encryption_keys_from_the_file_and_flags() {
        let keys = tempfile::tempdir().unwrap();
        let (current, old) = (keys.path().join("new.key"), keys.path().join("old.key"));
        let new_id = gw_core::generate_key_file(&current).unwrap();
        gw_core::generate_key_file(&old).unwrap();
        assert!(Config::load(&Cli::default()).unwrap().encryption.is_none());
        let (_d, cli) = cli_with(&format!(
            "[storage]\nencryption_key_file = {:?}\nold_keys = [{:?}]\n",
            current, old
        ));
        let c = Config::load(&cli).unwrap();
        assert_eq!(c.encryption.as_ref().unwrap().current_id(), new_id);
        // What --check-config prints names the keys by id, never by value.
        let shown = format!("{c:?}");
        assert!(shown.contains(&new_id), "{shown}");
        let text = std::fs::read_to_string(&current).unwrap();
        assert!(!shown.contains(text.trim()), "{shown}");
        // Old keys alone would be silently unused.
        let cli = Cli {
            encryption_old_keys: Some(old.display().to_string()),
            ..Cli::default()
        };
        let e = Config::load(&cli).unwrap_err().to_string();
        assert!(e.contains("storage.old_keys"), "{e}");
        let cli = Cli {
            encryption_key_file: Some(keys.path().join("missing.key")),
            ..Cli::default()
        };
        let e = Config::load(&cli).unwrap_err().to_string();
        assert!(e.contains("missing.key"), "{e}");
    }

    #[test]
    fn secrets_in_door_settings_are_not_shown() {
        let (_d, cli) =
            cli_with("[http]\nmetrics_token = \"s3cr3t-scrape-token\"\nmax_connections = 7\n");
        let shown = format!("{:?}", Config::load(&cli).unwrap());
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(
            shown.contains("<redacted>") && shown.contains("max_connections"),
            "{shown}"
        );
    }

    #[test]
    fn bad_watermarks_are_named() {
        for (flag_disk, flag_memory, key) in [
            (Some("lots"), None, "limits.disk_free_min 'lots'"),
            (Some("150%"), None, "limits.disk_free_min '150%'"),
            (Some("5 parsecs"), None, "limits.disk_free_min '5 parsecs'"),
            (None, Some("1.5"), "limits.memory_high_watermark '1.5'"),
            (None, Some("-3"), "limits.memory_high_watermark '-3'"),
        ] {
            let cli = Cli {
                disk_free_min: flag_disk.map(Into::into),
                memory_high_watermark: flag_memory.map(Into::into),
                ..Cli::default()
            };
            let e = Config::load(&cli).unwrap_err().to_string();
            assert!(e.starts_with(&format!("invalid {key}:")), "{e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
        let (_d, cli) = cli_with("[limits]\nmemory_high_watermark = \"lots\"\n");
        let e = Config::load(&cli).unwrap_err().to_string();
        assert!(e.contains("limits.memory_high_watermark 'lots'"), "{e}");
        let (_d, cli) = cli_with("[limits]\ndisk_free = \"1GiB\"\n");
        let e = Config::load(&cli).unwrap_err().to_string();
        assert!(e.contains("disk_free"), "{e}");
    }

    #[test]
    fn tls_is_off_without_a_certificate_and_on_with_one() {
        let c = Config::load(&Cli::default()).unwrap();
        assert!(c.tls.is_none());
        assert!(c.amqp.tls_listen.is_empty() && c.http.tls_listen.is_empty());
        let (_d, mut cli) = cli_with(
            "[tls]\ncert = \"s.pem\"\nkey = \"s.key\"\nclient_ca = \"ca.pem\"\nrequire_client_cert = true\nmin_version = \"1.3\"\nidentity_from = \"san_email\"\nhandshake_timeout_secs = 3\n[mqtt]\ntls_listen = \"off\"\n",
        );
        let c = Config::load(&cli).unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.cert, PathBuf::from("s.pem"));
        assert_eq!(tls.client_ca, Some(PathBuf::from("ca.pem")));
        assert!(tls.require_client_cert);
        assert_eq!(tls.min_version, MinVersion::Tls13);
        assert_eq!(tls.identity_from, IdentityFrom::SanEmail);
        assert_eq!(tls.handshake_timeout, Duration::from_secs(3));
        assert_eq!(c.amqp.tls_listen, listeners::default_addresses(5671));
        assert!(c.mqtt.tls_listen.is_empty());
        assert_eq!(c.http.tls_listen, listeners::default_addresses(8443));
        // Flags (and so GATEWAY_* variables) win over the file.
        cli.https_listen = Some("127.0.0.1:0".into());
        cli.tls_min_version = Some("1.2".into());
        let c = Config::load(&cli).unwrap();
        assert_eq!(c.http.tls_listen, addrs(&["127.0.0.1:0"]));
        assert_eq!(c.tls.unwrap().min_version, MinVersion::Tls12);
    }

    #[test]
    fn tls_mistakes_are_named() {
        for (file, named) in [
            ("[tls]\ncert = \"s.pem\"\n", "tls.cert 's.pem'"),
            ("[tls]\nkey = \"s.key\"\n", "tls.key 's.key'"),
            ("[tls]\nclient_ca = \"ca.pem\"\n", "tls.client_ca"),
            (
                "[tls]\ncert = \"a\"\nkey = \"b\"\nrequire_client_cert = true\n",
                "tls.require_client_cert",
            ),
            (
                "[tls]\ncert = \"a\"\nkey = \"b\"\nmin_version = \"1.1\"\n",
                "tls.min_version '1.1'",
            ),
            (
                "[tls]\ncert = \"a\"\nkey = \"b\"\nidentity_from = \"uid\"\n",
                "tls.identity_from 'uid'",
            ),
            (
                "[tls]\ncert = \"a\"\nkey = \"b\"\nhandshake_timeout_secs = 0\n",
                "tls.handshake_timeout_secs",
            ),
            (
                "[amqp]\ntls_listen = \"127.0.0.1:5671\"\n",
                "amqps listen address",
            ),
        ] {
            let (_d, cli) = cli_with(file);
            let e = Config::load(&cli).unwrap_err().to_string();
            assert!(e.contains(named), "{file}: {e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
        let (_d, cli) = cli_with("[tls]\ncertificate = \"a\"\n");
        assert!(
            Config::load(&cli)
                .unwrap_err()
                .to_string()
                .contains("certificate")
        );
    }

    #[test]
    fn mistakes_are_named() {
        let (_d, cli) = cli_with("data_dri = \"x\"\n");
        let e = Config::load(&cli).unwrap_err().to_string();
        assert!(e.contains("data_dri"), "{e}");
        let (_d, cli) = cli_with("[storage]\nsink = \"always\"\n");
        assert!(Config::load(&cli).unwrap_err().to_string().contains("sink"));
        let cli = Cli {
            amqp_listen: Some("localhost:abc".into()),
            ..Cli::default()
        };
        assert!(
            Config::load(&cli)
                .unwrap_err()
                .to_string()
                .contains("amqp listen address")
        );
        let cli = Cli {
            sync: Some("sometimes".into()),
            ..Cli::default()
        };
        assert!(
            Config::load(&cli)
                .unwrap_err()
                .to_string()
                .contains("sync policy")
        );
        let cli = Cli {
            log_format: Some("xml".into()),
            ..Cli::default()
        };
        assert!(Config::load(&cli).is_err());
    }
}
