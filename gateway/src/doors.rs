//! The protocol doors: each is bound to its listener and served by its own
//! crate. A door whose listen address is "off" is not started. MQTT over
//! WebSocket arrives through the HTTP door (`/mqtt`) and is handed to the MQTT
//! door's connection logic, so the two doors never import each other.

use std::net::SocketAddr;
use std::sync::Arc;

use gw_core::Engine;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::{Addresses, StartError};
use crate::config::Config;

/// Each door's own settings, parsed from its table of the config file.
pub(crate) struct DoorSettings {
    amqp: gw_amqp::Config,
    mqtt: Arc<gw_mqtt::Config>,
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
        mqtt: Arc::new(settings("mqtt", &config.mqtt.settings)?),
        http,
    })
}

fn settings<T: DeserializeOwned>(door: &'static str, table: &toml::Table) -> Result<T, StartError> {
    T::deserialize(toml::Value::Table(table.clone())).map_err(|e| StartError::DoorSettings {
        door,
        message: e.to_string().trim().to_owned(),
    })
}

/// Binds a door's listener and logs the address it got, one line per door
/// (scripts and tests read "… listening on ADDRESS").
async fn bind(
    door: &'static str,
    address: SocketAddr,
) -> Result<(TcpListener, SocketAddr), StartError> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Bind {
            door,
            address,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| StartError::Bind {
        door,
        address,
        source,
    })?;
    tracing::info!(door, address = %local, "{door} listening on {local}");
    Ok((listener, local))
}

/// Binds every configured door, then starts them.
pub(crate) async fn start(
    config: &Config,
    doors: DoorSettings,
    engine: &Engine,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<Addresses, StartError> {
    // Bind everything first: a port in use fails start-up before any door serves.
    let amqp = match config.amqp.listen {
        Some(a) => Some(bind("amqp", a).await?),
        None => None,
    };
    let mqtt = match config.mqtt.listen {
        Some(a) => Some(bind("mqtt", a).await?),
        None => None,
    };
    let http = match config.http.listen {
        Some(a) => Some(bind("http", a).await?),
        None => None,
    };
    let addresses = Addresses {
        amqp: amqp.as_ref().map(|(_, a)| *a),
        mqtt: mqtt.as_ref().map(|(_, a)| *a),
        http: http.as_ref().map(|(_, a)| *a),
    };
    if let Some((listener, _)) = amqp {
        tracker.spawn(gw_amqp::serve(
            listener,
            engine.clone(),
            doors.amqp,
            shutdown.clone(),
            tracker.clone(),
        ));
    }
    if let Some((listener, _)) = mqtt {
        let config = (*doors.mqtt).clone();
        tracker.spawn(gw_mqtt::serve(
            listener,
            engine.clone(),
            config,
            shutdown.clone(),
            tracker.clone(),
        ));
    }
    if let Some((listener, _)) = http {
        let (engine2, mqtt, stop) = (engine.clone(), Arc::clone(&doors.mqtt), shutdown.clone());
        let websocket: gw_http::StreamHandler = Arc::new(move |stream, peer| {
            Box::pin(gw_mqtt::serve_stream(
                stream,
                peer,
                engine2.clone(),
                Arc::clone(&mqtt),
                stop.clone(),
            ))
        });
        tracker.spawn(gw_http::serve(
            listener,
            engine.clone(),
            doors.http,
            shutdown.clone(),
            tracker.clone(),
            Some(websocket),
        ));
    }
    Ok(addresses)
}
