//! `/api/topic-permissions`: RabbitMQ's topic permissions (per user, tenant
//! and topic exchange, a `write` and a `read` regular expression matched
//! against routing keys; `{username}`, `{vhost}`, `{client_id}`, `%u` and
//! `%c` stand for the connection's names). The engine checks them on every
//! door: AMQP publishes and binds, MQTT publishes and subscriptions.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use gw_core::TopicPermission;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{JsonBody, Path, Query};
use crate::state::AppState;

/// A topic permission.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TopicPermissionView {
    /// The user.
    pub user: String,
    /// The tenant (RabbitMQ's vhost).
    pub tenant: String,
    /// The topic exchange it governs (`amq.topic` for MQTT).
    pub exchange: String,
    /// Routing keys the user may publish with ("" allows none).
    pub write: String,
    /// Binding keys the user may bind or subscribe with ("" allows none).
    pub read: String,
}

/// `PUT /api/topic-permissions/{tenant}/{user}` body (RabbitMQ's).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutTopicPermission {
    /// The topic exchange.
    pub exchange: String,
    /// Write pattern.
    pub write: String,
    /// Read pattern.
    pub read: String,
}

fn view(user: &str, p: &TopicPermission) -> TopicPermissionView {
    TopicPermissionView {
        user: user.to_owned(),
        tenant: p.tenant.clone(),
        exchange: p.exchange.clone(),
        write: p.write.clone(),
        read: p.read.clone(),
    }
}

fn of(state: &AppState, tenant: &str, user: &str) -> Vec<TopicPermissionView> {
    state
        .engine()
        .topic_permissions()
        .iter()
        .filter(|(u, p)| u == user && p.tenant == tenant)
        .map(|(u, p)| view(u, p))
        .collect()
}

fn user_exists(state: &AppState, user: &str) -> ApiResult<()> {
    if state.engine().users().iter().any(|u| u.name == user) {
        Ok(())
    } else {
        Err(ApiError::not_found("user", user))
    }
}

/// Lists every topic permission.
#[utoipa::path(get, path = "/api/topic-permissions", tag = "management",
    responses((status = 200, description = "The topic permissions", body = [TopicPermissionView])))]
pub async fn list_topic_permissions(
    State(state): State<AppState>,
    query: Query,
) -> ApiResult<Json<Vec<TopicPermissionView>>> {
    query.finish()?;
    Ok(Json(
        state
            .engine()
            .topic_permissions()
            .iter()
            .map(|(u, p)| view(u, p))
            .collect(),
    ))
}

/// A user's topic permissions on a tenant (one per exchange).
#[utoipa::path(get, path = "/api/topic-permissions/{tenant}/{user}", tag = "management",
    params(("tenant" = String, Path, description = "Tenant"), ("user" = String, Path, description = "User name")),
    responses(
        (status = 200, description = "The topic permissions", body = [TopicPermissionView]),
        (status = 404, description = "No such user, tenant or topic permission", body = ErrorBody),
    ))]
pub async fn show_topic_permissions(
    State(state): State<AppState>,
    Path((tenant, user)): Path<(String, String)>,
    query: Query,
) -> ApiResult<Json<Vec<TopicPermissionView>>> {
    query.finish()?;
    super::tenant(&state, &tenant)?;
    user_exists(&state, &user)?;
    let found = of(&state, &tenant, &user);
    if found.is_empty() {
        return Err(ApiError::not_found(
            "topic permission",
            &format!("{user} on {tenant}"),
        ));
    }
    Ok(Json(found))
}

/// Sets a user's topic permission on one exchange of a tenant (201 new, 204 replaced).
#[utoipa::path(put, path = "/api/topic-permissions/{tenant}/{user}", tag = "management",
    params(("tenant" = String, Path, description = "Tenant"), ("user" = String, Path, description = "User name")),
    request_body = PutTopicPermission,
    responses(
        (status = 201, description = "Set"),
        (status = 204, description = "Replaced"),
        (status = 400, description = "A pattern is not a regular expression", body = ErrorBody),
        (status = 404, description = "No such user or tenant", body = ErrorBody),
    ))]
pub async fn put_topic_permission(
    State(state): State<AppState>,
    Path((tenant, user)): Path<(String, String)>,
    query: Query,
    JsonBody(req): JsonBody<PutTopicPermission>,
) -> ApiResult<StatusCode> {
    query.finish()?;
    super::tenant(&state, &tenant)?;
    user_exists(&state, &user)?;
    let existed = of(&state, &tenant, &user)
        .iter()
        .any(|p| p.exchange == req.exchange);
    state.engine().set_topic_permission(
        &user,
        TopicPermission {
            tenant,
            exchange: req.exchange,
            write: req.write,
            read: req.read,
        },
    )?;
    state.inner().auth.clear();
    crate::api::barrier(state.engine()).await?;
    Ok(if existed {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::CREATED
    })
}

/// Removes a user's topic permissions on a tenant: all of them, or the one
/// on `?exchange=` (as `rabbitmqctl clear_topic_permissions`).
#[utoipa::path(delete, path = "/api/topic-permissions/{tenant}/{user}", tag = "management",
    params(
        ("tenant" = String, Path, description = "Tenant"),
        ("user" = String, Path, description = "User name"),
        ("exchange" = Option<String>, Query, description = "Only the permission on this exchange"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such user, tenant or topic permission", body = ErrorBody),
    ))]
pub async fn delete_topic_permissions(
    State(state): State<AppState>,
    Path((tenant, user)): Path<(String, String)>,
    mut query: Query,
) -> ApiResult<StatusCode> {
    let exchange = query.one("exchange")?;
    query.finish()?;
    super::tenant(&state, &tenant)?;
    user_exists(&state, &user)?;
    let removed = state
        .engine()
        .clear_topic_permissions(&user, &tenant, exchange.as_deref())?;
    if removed == 0 {
        return Err(ApiError::not_found(
            "topic permission",
            &format!("{user} on {tenant}"),
        ));
    }
    state.inner().auth.clear();
    crate::api::barrier(state.engine()).await?;
    Ok(StatusCode::NO_CONTENT)
}
