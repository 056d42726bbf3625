//! `/api/connections`: the open connections of every door; closing one asks
//! its door to close it in its protocol's terms.

use axum::Json;
use axum::extract::State;

use crate::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use gw_core::ConnectionInfo;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::Query;
use crate::state::AppState;

/// An open connection.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConnectionView {
    /// Engine-wide id.
    pub id: u64,
    /// `amqp`, `mqtt` or `http`.
    pub protocol: String,
    /// Client address.
    pub peer: String,
    /// Authenticated user ("" before the handshake or first request).
    pub user: String,
    /// Tenant in use ("" when none yet).
    pub tenant: String,
    /// The client's name for itself (MQTT client id, AMQP connection name).
    pub client: String,
    /// When it connected, ms since the epoch.
    pub connected_at: u64,
}

fn view(c: &ConnectionInfo) -> ConnectionView {
    ConnectionView {
        id: c.id,
        protocol: c.protocol.to_owned(),
        peer: c.peer.clone(),
        user: c.user.clone(),
        tenant: c.tenant.clone(),
        client: c.client.clone(),
        connected_at: c.connected_at,
    }
}

fn parse_id(id: &str) -> ApiResult<u64> {
    id.parse()
        .map_err(|_| ApiError::invalid("id", format!("'{id}' is not a connection id")))
}

/// Lists open connections.
#[utoipa::path(get, path = "/api/connections", tag = "management",
    responses((status = 200, description = "The connections", body = [ConnectionView])))]
pub async fn list_connections(
    State(state): State<AppState>,
    query: Query,
) -> ApiResult<Json<Vec<ConnectionView>>> {
    query.finish()?;
    Ok(Json(
        state.engine().connections().iter().map(view).collect(),
    ))
}

/// Shows a connection.
#[utoipa::path(get, path = "/api/connections/{id}", tag = "management",
    params(("id" = u64, Path, description = "Connection id")),
    responses(
        (status = 200, description = "The connection", body = ConnectionView),
        (status = 404, description = "No such connection", body = ErrorBody),
    ))]
pub async fn show_connection(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Query,
) -> ApiResult<Json<ConnectionView>> {
    query.finish()?;
    let id = parse_id(&id)?;
    state
        .engine()
        .connections()
        .iter()
        .find(|c| c.id == id)
        .map(|c| Json(view(c)))
        .ok_or_else(|| ApiError::not_found("connection", &id.to_string()))
}

/// Closes a connection (the reason comes from the `X-Reason` header, as in RabbitMQ).
#[utoipa::path(delete, path = "/api/connections/{id}", tag = "management",
    params(
        ("id" = u64, Path, description = "Connection id"),
        ("X-Reason" = Option<String>, Header, description = "Why, told to the client where its protocol can"),
    ),
    responses(
        (status = 204, description = "Asked to close"),
        (status = 404, description = "No such connection", body = ErrorBody),
    ))]
pub async fn close_connection(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Query,
) -> ApiResult<StatusCode> {
    query.finish()?;
    let id = parse_id(&id)?;
    let reason = headers
        .get("x-reason")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("closed by an operator");
    state.engine().close_connection(id, reason)?;
    Ok(StatusCode::NO_CONTENT)
}
