//! `/api/users` and `/api/permissions`: users (passwords hashed by the
//! engine, never shown) and their RabbitMQ-style permissions per tenant.

use axum::Json;
use axum::extract::State;

use crate::extract::Path;
use axum::http::StatusCode;
use gw_core::{Permission, UserInfo};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{JsonBody, Query};
use crate::state::AppState;

/// A permission: regular expressions matched against resource names ("" matches nothing).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PermissionView {
    /// The user.
    pub user: String,
    /// The tenant.
    pub tenant: String,
    /// Declare and delete resources.
    pub configure: String,
    /// Publish to exchanges (HTTP: send to queues).
    pub write: String,
    /// Consume from queues.
    pub read: String,
}

/// A user.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    /// Login name.
    pub name: String,
    /// Tags such as `administrator`.
    pub tags: Vec<String>,
    /// May only log in from loopback (the default `guest`).
    pub loopback_only: bool,
    /// Permissions per tenant.
    pub permissions: Vec<PermissionView>,
}

/// `PUT /api/users/{user}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutUser {
    /// The password (stored as an Argon2id hash).
    pub password: String,
    /// Tags; `administrator` grants management.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// `PUT /api/permissions/{tenant}/{user}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutPermission {
    /// Configure pattern.
    pub configure: String,
    /// Write pattern.
    pub write: String,
    /// Read pattern.
    pub read: String,
}

fn perm_view(user: &str, p: &Permission) -> PermissionView {
    PermissionView {
        user: user.to_owned(),
        tenant: p.tenant.clone(),
        configure: p.configure.clone(),
        write: p.write.clone(),
        read: p.read.clone(),
    }
}

fn user_view(u: &UserInfo) -> UserView {
    UserView {
        name: u.name.clone(),
        tags: u.tags.clone(),
        loopback_only: u.loopback_only,
        permissions: u
            .permissions
            .iter()
            .map(|p| perm_view(&u.name, p))
            .collect(),
    }
}

fn find(state: &AppState, name: &str) -> ApiResult<UserInfo> {
    state
        .engine()
        .users()
        .into_iter()
        .find(|u| u.name == name)
        .ok_or_else(|| ApiError::not_found("user", name))
}

/// Lists the users.
#[utoipa::path(get, path = "/api/users", tag = "management",
    responses((status = 200, description = "The users", body = [UserView])))]
pub async fn list_users(
    State(state): State<AppState>,
    query: Query,
) -> ApiResult<Json<Vec<UserView>>> {
    query.finish()?;
    Ok(Json(state.engine().users().iter().map(user_view).collect()))
}

/// Shows a user.
#[utoipa::path(get, path = "/api/users/{user}", tag = "management",
    params(("user" = String, Path, description = "User name")),
    responses(
        (status = 200, description = "The user", body = UserView),
        (status = 404, description = "No such user", body = ErrorBody),
    ))]
pub async fn show_user(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Query,
) -> ApiResult<Json<UserView>> {
    query.finish()?;
    Ok(Json(user_view(&find(&state, &name)?)))
}

/// Creates (201) or replaces (204) a user; permissions are kept on replace.
#[utoipa::path(put, path = "/api/users/{user}", tag = "management",
    params(("user" = String, Path, description = "User name")),
    request_body = PutUser,
    responses(
        (status = 201, description = "Created"),
        (status = 204, description = "Replaced"),
        (status = 400, description = "Invalid field", body = ErrorBody),
    ))]
pub async fn put_user(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Query,
    JsonBody(req): JsonBody<PutUser>,
) -> ApiResult<StatusCode> {
    query.finish()?;
    let existed = find(&state, &name).is_ok();
    let engine = state.engine().clone();
    let n = name.clone();
    // Hashing takes tens of milliseconds: keep it off the request workers.
    tokio::task::spawn_blocking(move || engine.put_user(&n, &req.password, req.tags))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                crate::error::code::INTERNAL,
                e.to_string(),
            )
        })??;
    state.inner().auth.clear();
    crate::api::barrier(state.engine()).await?;
    Ok(if existed {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::CREATED
    })
}

/// Deletes a user.
#[utoipa::path(delete, path = "/api/users/{user}", tag = "management",
    params(("user" = String, Path, description = "User name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such user", body = ErrorBody),
    ))]
pub async fn delete_user(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Query,
) -> ApiResult<StatusCode> {
    query.finish()?;
    state.engine().delete_user(&name)?;
    state.inner().auth.clear();
    crate::api::barrier(state.engine()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lists every permission.
#[utoipa::path(get, path = "/api/permissions", tag = "management",
    responses((status = 200, description = "The permissions", body = [PermissionView])))]
pub async fn list_permissions(
    State(state): State<AppState>,
    query: Query,
) -> ApiResult<Json<Vec<PermissionView>>> {
    query.finish()?;
    Ok(Json(
        state
            .engine()
            .users()
            .iter()
            .flat_map(|u| u.permissions.iter().map(|p| perm_view(&u.name, p)))
            .collect(),
    ))
}

/// Shows a user's permission on a tenant.
#[utoipa::path(get, path = "/api/permissions/{tenant}/{user}", tag = "management",
    params(("tenant" = String, Path, description = "Tenant"), ("user" = String, Path, description = "User name")),
    responses(
        (status = 200, description = "The permission", body = PermissionView),
        (status = 404, description = "No such user or permission", body = ErrorBody),
    ))]
pub async fn show_permission(
    State(state): State<AppState>,
    Path((tenant, user)): Path<(String, String)>,
    query: Query,
) -> ApiResult<Json<PermissionView>> {
    query.finish()?;
    let u = find(&state, &user)?;
    u.permissions
        .iter()
        .find(|p| p.tenant == tenant)
        .map(|p| Json(perm_view(&user, p)))
        .ok_or_else(|| ApiError::not_found("permission", &format!("{user} on {tenant}")))
}

/// Sets a user's permission on a tenant (201 new, 204 replaced).
#[utoipa::path(put, path = "/api/permissions/{tenant}/{user}", tag = "management",
    params(("tenant" = String, Path, description = "Tenant"), ("user" = String, Path, description = "User name")),
    request_body = PutPermission,
    responses(
        (status = 201, description = "Set"),
        (status = 204, description = "Replaced"),
        (status = 400, description = "A pattern is not a regular expression", body = ErrorBody),
        (status = 404, description = "No such user or tenant", body = ErrorBody),
    ))]
pub async fn put_permission(
    State(state): State<AppState>,
    Path((tenant, user)): Path<(String, String)>,
    query: Query,
    JsonBody(req): JsonBody<PutPermission>,
) -> ApiResult<StatusCode> {
    query.finish()?;
    super::tenant(&state, &tenant)?;
    let existed = find(&state, &user)?
        .permissions
        .iter()
        .any(|p| p.tenant == tenant);
    state.engine().set_permission(
        &user,
        Permission {
            tenant,
            configure: req.configure,
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

/// Removes a user's permission on a tenant.
#[utoipa::path(delete, path = "/api/permissions/{tenant}/{user}", tag = "management",
    params(("tenant" = String, Path, description = "Tenant"), ("user" = String, Path, description = "User name")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such user or permission", body = ErrorBody),
    ))]
pub async fn delete_permission(
    State(state): State<AppState>,
    Path((tenant, user)): Path<(String, String)>,
    query: Query,
) -> ApiResult<StatusCode> {
    query.finish()?;
    if !find(&state, &user)?
        .permissions
        .iter()
        .any(|p| p.tenant == tenant)
    {
        return Err(ApiError::not_found(
            "permission",
            &format!("{user} on {tenant}"),
        ));
    }
    state.engine().clear_permission(&user, &tenant)?;
    state.inner().auth.clear();
    crate::api::barrier(state.engine()).await?;
    Ok(StatusCode::NO_CONTENT)
}
