//! `/api/tenants`: list, show, create and delete tenants (AMQP vhosts).

use axum::Json;
use axum::extract::State;

use crate::extract::Path;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::Query;
use crate::state::AppState;

/// A tenant.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantView {
    /// Name.
    pub name: String,
    /// Creation time, ms since the epoch.
    pub created_at: u64,
    /// Queues (engine-internal ones included).
    pub queues: u64,
    /// Exchanges (the default one included).
    pub exchanges: u64,
    /// Open connections using it.
    pub connections: u64,
}

fn view(state: &AppState, t: &gw_core::Tenant) -> TenantView {
    TenantView {
        name: t.name().to_owned(),
        created_at: t.created_at(),
        queues: t.queues().len() as u64,
        exchanges: t.exchanges().len() as u64,
        connections: state
            .engine()
            .connections()
            .iter()
            .filter(|c| c.tenant == t.name())
            .count() as u64,
    }
}

/// Lists the tenants.
#[utoipa::path(get, path = "/api/tenants", tag = "management",
    responses(
        (status = 200, description = "The tenants", body = [TenantView]),
        (status = 401, description = "No or wrong credentials", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
    ))]
pub async fn list_tenants(
    State(state): State<AppState>,
    query: Query,
) -> ApiResult<Json<Vec<TenantView>>> {
    query.finish()?;
    Ok(Json(
        state
            .engine()
            .tenants()
            .iter()
            .map(|t| view(&state, t))
            .collect(),
    ))
}

/// Shows a tenant.
#[utoipa::path(get, path = "/api/tenants/{tenant}", tag = "management",
    params(("tenant" = String, Path, description = "Tenant; `%2F` for `/`")),
    responses(
        (status = 200, description = "The tenant", body = TenantView),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ))]
pub async fn show_tenant(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Query,
) -> ApiResult<Json<TenantView>> {
    query.finish()?;
    Ok(Json(view(&state, &super::tenant(&state, &name)?)))
}

/// Creates a tenant (201), or does nothing if it exists (204).
#[utoipa::path(put, path = "/api/tenants/{tenant}", tag = "management",
    params(("tenant" = String, Path, description = "Tenant")),
    responses(
        (status = 201, description = "Created"),
        (status = 204, description = "Existed already"),
        (status = 400, description = "Invalid name", body = ErrorBody),
    ))]
pub async fn put_tenant(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Query,
) -> ApiResult<StatusCode> {
    query.finish()?;
    let created = state.engine().create_tenant(&name)?;
    let undo = created.then(|| gw_core::Created::Tenant(name.clone()));
    crate::api::created(state.engine(), undo.into_iter().collect()).await?;
    Ok(if created {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    })
}

/// Deletes a tenant with its queues and exchanges.
#[utoipa::path(delete, path = "/api/tenants/{tenant}", tag = "management",
    params(("tenant" = String, Path, description = "Tenant")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ))]
pub async fn delete_tenant(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Query,
) -> ApiResult<StatusCode> {
    query.finish()?;
    state
        .engine()
        .delete_tenant(&name)
        .map_err(|_| ApiError::not_found("tenant", &name))?;
    state
        .inner()
        .queue_ids
        .write()
        .retain(|(t, _), _| *t != name);
    crate::api::barrier(state.engine()).await?;
    Ok(StatusCode::NO_CONTENT)
}
