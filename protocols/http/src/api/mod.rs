//! The DMS queue API v1.0, path for path and field for field, with the
//! tenant's name or project id as DMS's project id (`%2F` for a `/` in a
//! name, as in RabbitMQ's API), plus our extensions (message groups, rewind,
//! lookup). The same handlers answer under `/v2/{project_id}/…`, the paths
//! Huawei Cloud's `huaweicloudsdkdms` calls (quotas at `/v2/{project_id}/quotas`).
//!
//! - `queues.rs`: create, list, show, delete queues; `groups.rs`: consumer groups and rewind;
//! - `send.rs` and `body.rs`: sending, and the JSON ↔ [`gw_core::Message`] mapping;
//! - `consume.rs`, `ack.rs` and `handler.rs`: long-poll consumption, acks, dead letters;
//! - `lookup.rs`: where a message is; `quotas.rs`: the tenant's limits and use;
//! - `resolve.rs`: tenant, queue (`q-<id>` or name) and group lookup with permissions.

mod ack;
pub mod body;
mod consume;
mod groups;
pub mod handler;
pub mod lookup;
mod queue_spec;
mod queues;
mod quotas;
mod resolve;
mod send;

use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub use resolve::queue_id;

/// The DMS routes, behind HTTP Basic authentication.
pub fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(queues::create_queue, queues::list_queues))
        .routes(routes!(queues::show_queue, queues::delete_queue))
        .routes(routes!(groups::create_groups, groups::list_groups))
        .routes(routes!(groups::delete_group))
        .routes(routes!(groups::rewind))
        .routes(routes!(send::send_messages))
        .routes(routes!(lookup::lookup_message))
        .routes(routes!(consume::consume))
        .routes(routes!(ack::ack))
        .routes(routes!(consume::consume_dead_letters))
        .routes(routes!(ack::ack_dead_letters))
        .routes(routes!(quotas::quotas))
        .merge(v2_routes())
        .layer(from_fn_with_state(state.clone(), crate::auth::authenticate))
}

/// `/v2/{project_id}/…`: the v1.0 handlers at the v2 paths (documented
/// once, under v1.0, in the OpenAPI document).
fn v2_routes() -> OpenApiRouter<AppState> {
    const P: &str = "/v2/{project_id}";
    let at = |rest: &str| format!("{P}{rest}");
    OpenApiRouter::new()
        .route(
            &at("/queues"),
            post(queues::create_queue).get(queues::list_queues),
        )
        .route(
            &at("/queues/{queue_id}"),
            get(queues::show_queue).delete(queues::delete_queue),
        )
        .route(
            &at("/queues/{queue_id}/groups"),
            post(groups::create_groups).get(groups::list_groups),
        )
        .route(
            &at("/queues/{queue_id}/groups/{group_id}"),
            axum::routing::delete(groups::delete_group),
        )
        .route(
            &at("/queues/{queue_id}/messages"),
            post(send::send_messages),
        )
        .route(
            &at("/queues/{queue_id}/groups/{group_id}/messages"),
            get(consume::consume),
        )
        .route(
            &at("/queues/{queue_id}/groups/{group_id}/ack"),
            post(ack::ack),
        )
        .route(
            &at("/queues/{queue_id}/groups/{group_id}/deadletters"),
            get(consume::consume_dead_letters),
        )
        .route(
            &at("/queues/{queue_id}/groups/{group_id}/deadletters/ack"),
            post(ack::ack_dead_letters),
        )
        .route(&at("/quotas"), get(quotas::quotas))
}

/// Waits until everything submitted so far (a queue or group declaration,
/// whose records the engine writes at its next commit) is on disk, so an
/// answer never promises what a crash could take back.
pub(crate) async fn barrier(engine: &gw_core::Engine) -> crate::error::ApiResult<()> {
    engine.wait_durable(engine.barrier()).await?;
    Ok(())
}

/// [`barrier`] for a request that created something: if it cannot be
/// stored, it is taken back before the error is answered, so a failed
/// create leaves nothing in the listing.
pub(crate) async fn created(
    engine: &gw_core::Engine,
    created: Vec<gw_core::Created>,
) -> crate::error::ApiResult<()> {
    engine.durable_or_undo(created).await?;
    Ok(())
}
