//! The protocol doors: each door's settings are parsed, its listeners bound
//! (`listeners.rs`), and every listener served through the accept layer
//! (`gw-listen`). A door whose listen setting is "off" is not started. MQTT
//! over WebSocket arrives through the HTTP door (`/mqtt`) and is handed to
//! the MQTT door through the same layer, so the two doors never import each
//! other and one `max_connections` counts both ways in.
//!
//! TLS listeners (AMQPS, MQTTS, HTTPS) serve the same door wrapped in
//! `gw_listen::TlsDoor` and share its permits: a door's `max_connections`
//! counts its plain and TLS connections (and TLS handshakes under way)
//! together. The certificate is reloaded on SIGHUP and when its files change.

use std::sync::Arc;

use gw_amqp::AmqpDoor;
use gw_core::Engine;
use gw_http::HttpDoor;
use gw_listen::{Alpn, Door, Permits, Tls, TlsDoor};
use gw_mqtt::MqttDoor;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::{Listening, StartError};
use crate::config::Config;
use crate::fd_limit::{self, Budget};
use crate::listeners;

/// Each door's own settings, parsed from its table of the config file.
pub(crate) struct DoorSettings {
    amqp: gw_amqp::Config,
    mqtt: gw_mqtt::Config,
    http: gw_http::Config,
    /// The certificate, loaded; None without `[tls]`.
    tls: Option<Arc<Tls>>,
}

/// How often the certificate files are checked for changes.
const TLS_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Parses every door's settings (before anything starts, so a typo is a start-up error).
pub(crate) fn parse(config: &Config) -> Result<DoorSettings, StartError> {
    let http: gw_http::Config = settings("http", &config.http.settings)?;
    http.validate().map_err(|e| StartError::DoorSettings {
        door: "http",
        message: e.to_string(),
    })?;
    // Loaded here, before the store opens: a bad file stops start-up at once.
    let tls = config.tls.clone().map(Tls::load).transpose()?;
    Ok(DoorSettings {
        amqp: settings("amqp", &config.amqp.settings)?,
        mqtt: settings("mqtt", &config.mqtt.settings)?,
        http,
        tls,
    })
}

fn settings<T: DeserializeOwned>(door: &'static str, table: &toml::Table) -> Result<T, StartError> {
    T::deserialize(toml::Value::Table(table.clone())).map_err(|e| StartError::DoorSettings {
        door,
        message: e.to_string().trim().to_owned(),
    })
}

/// Binds every configured door's listeners, then starts the doors: each
/// listener runs the accept layer's loop (`gw_listen::serve_listener`) with
/// its door's permits, shared by all the door's listeners.
pub(crate) async fn start(
    config: &Config,
    mut doors: DoorSettings,
    engine: &Engine,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<Listening, StartError> {
    // Bind everything first: a port in use fails start-up before any door serves.
    let mut skipped = Vec::new();
    let amqp = listeners::bind("amqp", &config.amqp.listen, &mut skipped).await?;
    let mqtt = listeners::bind("mqtt", &config.mqtt.listen, &mut skipped).await?;
    let http = listeners::bind("http", &config.http.listen, &mut skipped).await?;
    let amqps = listeners::bind("amqps", &config.amqp.tls_listen, &mut skipped).await?;
    let mqtts = listeners::bind("mqtts", &config.mqtt.tls_listen, &mut skipped).await?;
    let https = listeners::bind("https", &config.http.tls_listen, &mut skipped).await?;
    listeners::notice_skipped(&skipped);
    let listening_doors = [(&amqp, &amqps), (&mqtt, &mqtts), (&http, &https)]
        .iter()
        .filter(|(plain, tls)| !plain.listeners.is_empty() || !tls.listeners.is_empty())
        .count();
    let listening = Listening {
        amqp: amqp.addresses,
        mqtt: mqtt.addresses,
        http: http.addresses,
        amqps: amqps.addresses,
        mqtts: mqtts.addresses,
        https: https.addresses,
    };
    let tls = doors.tls.take();
    if let Some(tls) = &tls {
        watch_certificate(tls, shutdown, tracker);
    }
    let refusing = fit_to_descriptors(config, &mut doors, listening_doors);
    if !amqp.listeners.is_empty() || !amqps.listeners.is_empty() {
        let door = AmqpDoor::new(
            engine.clone(),
            doors.amqp,
            shutdown.clone(),
            tracker.clone(),
        );
        let permits = Permits::new(door.max_connections(), refusing);
        for listener in amqp.listeners {
            spawn_listener(listener, &door, &permits, shutdown, tracker);
        }
        spawn_tls_listeners(
            amqps.listeners,
            &door,
            &tls,
            Alpn::None,
            &permits,
            shutdown,
            tracker,
        );
    }
    // The MQTT door also serves the WebSocket connections the HTTP door
    // upgrades, through the same permits: `max_connections` counts both.
    let http_on = !http.listeners.is_empty() || !https.listeners.is_empty();
    let mqtt_on = !mqtt.listeners.is_empty() || !mqtts.listeners.is_empty();
    let mqtt_door = (mqtt_on || http_on).then(|| {
        let door = MqttDoor::new(engine.clone(), doors.mqtt, shutdown.clone());
        let permits = Permits::new(door.max_connections(), refusing);
        (door, permits)
    });
    if let Some((door, permits)) = &mqtt_door {
        for listener in mqtt.listeners {
            spawn_listener(listener, door, permits, shutdown, tracker);
        }
        spawn_tls_listeners(
            mqtts.listeners,
            door,
            &tls,
            Alpn::Mqtt,
            permits,
            shutdown,
            tracker,
        );
    }
    if http_on {
        let websocket = mqtt_door.map(|(mqtt, permits)| -> gw_http::StreamHandler {
            Arc::new(move |stream: gw_http::WsStream, peer| {
                // Over HTTPS with a verified certificate, the MQTT door sees
                // the certificate's identity as on MQTTS.
                match stream.identity().cloned() {
                    Some(id) => {
                        let stream = gw_listen::Identified::new(stream, id);
                        gw_listen::admit(&mqtt, &permits, stream, peer).boxed()
                    }
                    None => gw_listen::admit(&mqtt, &permits, stream, peer).boxed(),
                }
            })
        });
        let door = HttpDoor::new(
            engine.clone(),
            doors.http,
            shutdown.clone(),
            tracker.clone(),
            websocket,
        )
        .map_err(|e| StartError::DoorSettings {
            door: "http",
            message: e.to_string(),
        })?;
        let permits = Permits::new(door.max_connections(), refusing);
        for listener in http.listeners {
            spawn_listener(listener, &door, &permits, shutdown, tracker);
        }
        spawn_tls_listeners(
            https.listeners,
            &door,
            &tls,
            Alpn::Http1,
            &permits,
            shutdown,
            tracker,
        );
    }
    Ok(listening)
}

/// Lowers each door's `max_connections` to its share of the descriptor
/// limit (see `fd_limit.rs`), logs the caps once, and returns how many
/// refusals each door may have under way. Without a limit to read, the
/// configured caps stand.
fn fit_to_descriptors(config: &Config, doors: &mut DoorSettings, listening: usize) -> usize {
    let Some(limit) = fd_limit::current() else {
        return gw_listen::MAX_REFUSING;
    };
    let budget = Budget::new(limit, listening);
    let configured = |t: &toml::Table| t.contains_key("max_connections");
    doors.amqp.max_connections = fd_limit::cap(
        "amqp",
        doors.amqp.max_connections,
        configured(&config.amqp.settings),
        &budget,
    );
    // MQTT over WebSocket arrives on HTTP descriptors: the MQTT door's cap
    // is the same share whether or not it listens itself.
    doors.mqtt.max_connections = fd_limit::cap(
        "mqtt",
        doors.mqtt.max_connections,
        configured(&config.mqtt.settings),
        &budget,
    );
    let http = &mut doors.http;
    http.max_connections = fd_limit::cap(
        "http",
        http.max_connections,
        configured(&config.http.settings),
        &budget,
    );
    if http.max_long_polls >= http.max_connections {
        // Each long poll holds a connection: keep half the cap for the rest.
        let lowered = (http.max_connections / 2).max(1);
        if config.http.settings.contains_key("max_long_polls") {
            tracing::warn!(
                configured = http.max_long_polls,
                max_long_polls = lowered,
                "[http] max_long_polls {} lowered to {lowered}: it must stay below max_connections ({})",
                http.max_long_polls,
                http.max_connections
            );
        }
        http.max_long_polls = lowered;
    }
    let message = format!(
        "connection caps from the file descriptor limit {limit} ({} kept for the store and files, the rest shared by {listening} door(s)): amqp {}, mqtt {}, http {}; up to {} refusals under way per door",
        budget.reserve,
        doors.amqp.max_connections,
        doors.mqtt.max_connections,
        doors.http.max_connections,
        budget.max_refusing
    );
    if budget.is_starved() {
        tracing::warn!(
            fd_limit = limit,
            "{message}: raise the limit (ulimit -n, LimitNOFILE=)"
        );
    } else {
        tracing::info!(fd_limit = limit, "{message}");
    }
    budget.max_refusing
}

/// Serves each of a door's TLS listeners: the same door behind the
/// handshake, with the same permits.
fn spawn_tls_listeners<D: Door>(
    listeners: Vec<TcpListener>,
    door: &D,
    tls: &Option<Arc<Tls>>,
    alpn: Alpn,
    permits: &Permits,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) {
    // Config::load gives TLS listeners only with a certificate.
    let Some(tls) = tls else { return };
    let door = TlsDoor::new(door.clone(), Arc::clone(tls), alpn);
    for listener in listeners {
        spawn_listener(listener, &door, permits, shutdown, tracker);
    }
}

/// Reloads the certificate when its files change and on SIGHUP (as nginx
/// and Mosquitto do); each reload is logged, a failed one keeps the old
/// certificate.
fn watch_certificate(tls: &Arc<Tls>, shutdown: &CancellationToken, tracker: &TaskTracker) {
    tracker.spawn(Arc::clone(tls).watch_files(TLS_POLL, shutdown.clone()));
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut hangup) => {
                let (tls, shutdown) = (Arc::clone(tls), shutdown.clone());
                tracker.spawn(async move {
                    loop {
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            got = hangup.recv() => if got.is_none() { return },
                        }
                        tracing::info!("SIGHUP: reloading the TLS certificate");
                        // The outcome is logged by `reload`.
                        let _ = tls.reload();
                    }
                });
            }
            Err(e) => {
                tracing::warn!(cause = %e, "no SIGHUP handler; the TLS certificate reloads when its files change")
            }
        }
    }
}

fn spawn_listener<D: Door>(
    listener: TcpListener,
    door: &D,
    permits: &Permits,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) {
    tracker.spawn(gw_listen::serve_listener(
        listener,
        door.clone(),
        permits.clone(),
        shutdown.clone(),
        tracker.clone(),
    ));
}
