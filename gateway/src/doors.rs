//! The protocol doors: each door's settings are parsed, its listeners bound
//! (`listeners.rs`), and every listener served through the accept layer
//! (`gw-listen`). A door whose listen setting is "off" is not started. MQTT
//! over WebSocket arrives through the HTTP door (`/mqtt`) and is handed to
//! the MQTT door through the same layer, so the two doors never import each
//! other and one `max_connections` counts both ways in.

use std::sync::Arc;

use gw_amqp::AmqpDoor;
use gw_core::Engine;
use gw_http::HttpDoor;
use gw_listen::{Door, Permits};
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
}

/// Parses every door's settings (before anything starts, so a typo is a start-up error).
pub(crate) fn parse(config: &Config) -> Result<DoorSettings, StartError> {
    let http: gw_http::Config = settings("http", &config.http.settings)?;
    http.validate().map_err(|e| StartError::DoorSettings {
        door: "http",
        message: e.to_string(),
    })?;
    Ok(DoorSettings {
        amqp: settings("amqp", &config.amqp.settings)?,
        mqtt: settings("mqtt", &config.mqtt.settings)?,
        http,
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
    listeners::notice_skipped(&skipped);
    let listening_doors = [&amqp, &mqtt, &http]
        .iter()
        .filter(|d| !d.listeners.is_empty())
        .count();
    let listening = Listening {
        amqp: amqp.addresses,
        mqtt: mqtt.addresses,
        http: http.addresses,
    };
    let refusing = fit_to_descriptors(config, &mut doors, listening_doors);
    if !amqp.listeners.is_empty() {
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
    }
    // The MQTT door also serves the WebSocket connections the HTTP door
    // upgrades, through the same permits: `max_connections` counts both.
    let mqtt_door = (!mqtt.listeners.is_empty() || !http.listeners.is_empty()).then(|| {
        let door = MqttDoor::new(engine.clone(), doors.mqtt, shutdown.clone());
        let permits = Permits::new(door.max_connections(), refusing);
        (door, permits)
    });
    if let Some((door, permits)) = &mqtt_door {
        for listener in mqtt.listeners {
            spawn_listener(listener, door, permits, shutdown, tracker);
        }
    }
    if !http.listeners.is_empty() {
        let websocket = mqtt_door.map(|(mqtt, permits)| -> gw_http::StreamHandler {
            Arc::new(move |stream, peer| gw_listen::admit(&mqtt, &permits, stream, peer).boxed())
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
