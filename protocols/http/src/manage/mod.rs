//! Management, RabbitMQ-management-like under `/api/…`: overview, tenants,
//! users and permissions, exchanges and bindings, queues with their groups'
//! statistics, and the open connections of every door. Every route needs a
//! user tagged `administrator`.

mod connections;
mod exchanges;
mod overview;
mod publish;
mod queues;
mod tenants;
mod topic_permissions;
mod users;

use axum::middleware::{from_fn, from_fn_with_state};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The management routes, behind authentication and the administrator check.
pub fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(overview::overview))
        .routes(routes!(tenants::list_tenants))
        .routes(routes!(
            tenants::show_tenant,
            tenants::put_tenant,
            tenants::delete_tenant
        ))
        .routes(routes!(users::list_users))
        .routes(routes!(
            users::show_user,
            users::put_user,
            users::delete_user
        ))
        .routes(routes!(users::list_permissions))
        .routes(routes!(
            users::show_permission,
            users::put_permission,
            users::delete_permission
        ))
        .routes(routes!(topic_permissions::list_topic_permissions))
        .routes(routes!(
            topic_permissions::show_topic_permissions,
            topic_permissions::put_topic_permission,
            topic_permissions::delete_topic_permissions
        ))
        .routes(routes!(exchanges::list_exchanges))
        .routes(routes!(
            exchanges::show_exchange,
            exchanges::put_exchange,
            exchanges::delete_exchange
        ))
        .routes(routes!(publish::publish))
        .routes(routes!(
            exchanges::list_bindings,
            exchanges::bind,
            exchanges::unbind
        ))
        .routes(routes!(queues::list_all_queues))
        .routes(routes!(queues::list_queues))
        .routes(routes!(
            queues::show_queue,
            queues::put_queue,
            queues::delete_queue
        ))
        .routes(routes!(queues::purge_queue))
        .routes(routes!(connections::list_connections))
        .routes(routes!(
            connections::show_connection,
            connections::close_connection
        ))
        // Layers run outside in: authenticate first, then check the tag.
        .layer(from_fn(crate::auth::require_administrator))
        .layer(from_fn_with_state(state.clone(), crate::auth::authenticate))
}

/// A tenant by name (404 when absent).
pub(crate) fn tenant(state: &AppState, name: &str) -> ApiResult<gw_core::Tenant> {
    state
        .engine()
        .tenant(name)
        .map_err(|_| ApiError::not_found("tenant", name))
}
