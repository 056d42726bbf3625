//! `GET /api/overview`: totals and rates over the whole gateway.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiResult;
use crate::extract::Query;
use crate::state::AppState;

/// Open connections per protocol.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct ConnectionCounts {
    /// All.
    pub total: u64,
    /// AMQP 0.9.1.
    pub amqp: u64,
    /// MQTT.
    pub mqtt: u64,
    /// HTTP.
    pub http: u64,
}

/// Message totals.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct MessageTotals {
    /// Ready (each queue's default or first group).
    pub ready: u64,
    /// Delivered, unacknowledged (all groups).
    pub unacked: u64,
    /// Retained in logs.
    pub retained: u64,
    /// Waiting for their delivery time.
    pub delayed: u64,
}

/// Messages per second (last sample).
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct MessageRates {
    /// Published into queues.
    pub publish: f64,
    /// Delivered to consumers.
    pub deliver: f64,
    /// Acknowledged.
    pub ack: f64,
}

/// `GET /api/overview` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Overview {
    /// The gateway's version.
    pub version: String,
    /// Since the HTTP door started, ms.
    pub uptime_ms: u64,
    /// Tenants.
    pub tenants: u64,
    /// Queues.
    pub queues: u64,
    /// Exchanges.
    pub exchanges: u64,
    /// Consumers (push consumers of AMQP and MQTT).
    pub consumers: u64,
    /// Open connections.
    pub connections: ConnectionCounts,
    /// Message totals.
    pub messages: MessageTotals,
    /// Message rates.
    pub rates: MessageRates,
    /// Bytes the data directory takes.
    pub disk_bytes: u64,
    /// Publishers are held back: writes pile up faster than the disk takes
    /// them, or a node alarm is raised.
    pub under_pressure: bool,
    /// The node's disk and memory alarms, raised or not.
    pub alarms: Vec<NodeAlarmView>,
}

/// A node alarm (RabbitMQ's resource alarms).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeAlarmView {
    /// `disk` or `memory`.
    pub kind: String,
    /// Raised now (publishers are blocked).
    pub active: bool,
    /// When it was last raised (Unix ms; 0: never).
    pub since: u64,
    /// The last reading: free bytes (disk) or resident bytes (memory).
    pub value: u64,
    /// The mark in bytes (0 when off).
    pub threshold: u64,
}

/// Totals and rates.
#[utoipa::path(get, path = "/api/overview", tag = "management",
    responses((status = 200, description = "The overview", body = Overview)))]
pub async fn overview(State(state): State<AppState>, query: Query) -> ApiResult<Json<Overview>> {
    query.finish()?;
    let engine = state.engine();
    let snaps = crate::metrics::snapshot(engine);
    let rates = state.inner().rates.update(&snaps);
    let mut connections = ConnectionCounts::default();
    for c in engine.connections() {
        connections.total += 1;
        match c.protocol {
            "amqp" => connections.amqp += 1,
            "mqtt" => connections.mqtt += 1,
            "http" => connections.http += 1,
            _ => {}
        }
    }
    let mut messages = MessageTotals {
        delayed: engine.delayed_count() as u64,
        ..MessageTotals::default()
    };
    let mut r = MessageRates::default();
    for s in &snaps {
        messages.ready += s.stats.ready();
        messages.unacked += s.stats.groups.iter().map(|g| g.in_flight).sum::<u64>();
        messages.retained += s.stats.retained;
    }
    for q in rates.values() {
        r.publish += q.publish;
        for (d, a) in q.groups.values() {
            r.deliver += d;
            r.ack += a;
        }
    }
    let tenants = engine.tenants();
    Ok(Json(Overview {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_ms: state.inner().started.elapsed().as_millis() as u64,
        tenants: tenants.len() as u64,
        queues: snaps.len() as u64,
        exchanges: tenants.iter().map(|t| t.exchanges().len() as u64).sum(),
        consumers: snaps.iter().map(|s| s.stats.consumers as u64).sum(),
        connections,
        messages,
        rates: r,
        disk_bytes: engine.disk_bytes(),
        under_pressure: engine.under_pressure(),
        alarms: engine
            .alarms()
            .into_iter()
            .map(|a| NodeAlarmView {
                kind: a.kind.name().to_owned(),
                active: a.active,
                since: a.since,
                value: a.value,
                threshold: a.threshold,
            })
            .collect(),
    }))
}
