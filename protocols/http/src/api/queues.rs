//! `POST/GET /v1.0/{tenant}/queues`, `GET/DELETE /v1.0/{tenant}/queues/{queue_id}`.
//!
//! A DMS queue is an engine queue: durable, retaining messages for
//! `retention_hours` (72 by default, DMS's `reservation` of 4,320 minutes),
//! acked deliveries become redeliveries after the consumer's `ack_wait`, and
//! with `redrive_policy: enable` a message that failed `max_consume_count`
//! times moves to its group's own dead-letter queue. It has no default group:
//! DMS groups are created explicitly. AMQP and MQTT see the same queue.

use axum::Json;
use axum::extract::State;

use crate::extract::Path;
use axum::http::StatusCode;
use gw_core::{Access, HeaderValue, Queue, QueueKind};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::queue_spec::{ARG_DESCRIPTION, ARG_MODE, CreateQueue, HOUR_MS, spec};
use super::resolve::{self, queue_id};
use crate::auth::User;
use crate::error::{ApiError, ApiResult, ErrorBody, code};
use crate::extract::{JsonBody, Query};
use crate::server::Conn;
use crate::state::AppState;

/// Answer to a queue creation.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedQueue {
    /// The queue's id (`q-<n>`), usable wherever the name is.
    pub id: String,
    /// The queue's name.
    pub name: String,
}

/// A queue as DMS shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueueView {
    /// `q-<n>`.
    pub id: String,
    /// Name.
    pub name: String,
    /// Description ("" when none).
    pub description: String,
    /// NORMAL, FIFO, KAFKA_HA or KAFKA_HT.
    pub queue_mode: String,
    /// Retention in minutes (DMS: 4320).
    pub reservation: u64,
    /// Largest message in bytes.
    pub max_msg_size_byte: u64,
    /// Messages sent to the queue since it was created.
    pub produced_messages: u64,
    /// enable or disable.
    pub redrive_policy: String,
    /// Deliveries before a message is dead-lettered (0 when redrive is disabled).
    pub max_consume_count: u32,
    /// Consumer groups.
    pub group_count: u64,
    /// Creation time, ms since the epoch.
    pub created: u64,
    /// Extension: retention in hours.
    pub retention_hours: u64,
    /// Extension: messages retained (including those every group has settled, until retention ends).
    pub retained_messages: u64,
    /// Extension (with `include_deadletter=true`): dead letters waiting, over all groups.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_deadletters: Option<u64>,
}

/// `GET /v1.0/{tenant}/queues` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueueList {
    /// How many queues follow.
    pub total: u64,
    /// The queues, by name.
    pub queues: Vec<QueueView>,
}

/// A queue's DMS view.
pub fn view(
    state: &AppState,
    tenant: &gw_core::Tenant,
    q: &Queue,
    dead_letters: bool,
) -> QueueView {
    let s = q.settings();
    let stats = q.stats();
    let args = q.arguments();
    let text = |k: &str| args.get(k).and_then(HeaderValue::as_str).map(str::to_owned);
    let mode = text(ARG_MODE).unwrap_or_else(|| {
        match s.kind {
            QueueKind::Fifo => "FIFO",
            QueueKind::Standard => "NORMAL",
        }
        .to_owned()
    });
    let redrive = s.dead_letter.is_some() && s.max_deliveries.is_some();
    let groups: Vec<&gw_core::GroupStats> = stats.groups.iter().collect();
    let available_deadletters = dead_letters.then(|| {
        groups
            .iter()
            .filter_map(|g| {
                tenant
                    .queue(&gw_core::dead_letter_queue_name(q.id(), &g.name))
                    .ok()
            })
            .map(|d| {
                d.stats()
                    .groups
                    .iter()
                    .map(|g| g.ready + g.in_flight)
                    .sum::<u64>()
            })
            .sum()
    });
    QueueView {
        id: queue_id(q),
        name: q.name().to_owned(),
        description: text(ARG_DESCRIPTION).unwrap_or_default(),
        queue_mode: mode,
        reservation: s.retention_ms / 60_000,
        max_msg_size_byte: state.config().max_message_bytes as u64,
        produced_messages: stats.published,
        redrive_policy: if redrive { "enable" } else { "disable" }.to_owned(),
        max_consume_count: if redrive {
            s.max_deliveries.unwrap_or(0)
        } else {
            0
        },
        group_count: groups.len() as u64,
        created: q.created_at(),
        retention_hours: s.retention_ms / HOUR_MS,
        retained_messages: stats.retained,
        available_deadletters,
    }
}

/// Creates a queue.
#[utoipa::path(
    post,
    path = "/v1.0/{tenant}/queues",
    tag = "dms",
    params(("tenant" = String, Path, description = "Tenant (DMS project id); `%2F` for `/`")),
    request_body = CreateQueue,
    responses(
        (status = 200, description = "Created", body = CreatedQueue),
        (status = 400, description = "Invalid field, name taken (10240017) or queue quota used up (10240020)", body = ErrorBody),
        (status = 401, description = "No or wrong credentials", body = ErrorBody),
        (status = 403, description = "No configure permission on the name", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 415, description = "Body not JSON", body = ErrorBody),
    )
)]
pub async fn create_queue(
    State(state): State<AppState>,
    User(user): User,
    Conn(ctx): Conn,
    Path(tenant): Path<String>,
    query: Query,
    JsonBody(req): JsonBody<CreateQueue>,
) -> ApiResult<Json<CreatedQueue>> {
    query.finish()?;
    let tenant = resolve::tenant(&state, &user, &tenant, ctx.as_deref())?;
    let spec = spec(&req)?;
    resolve::check(&user, &tenant, Access::Configure, &req.name)?;
    let used = tenant
        .queues()
        .iter()
        .filter(|q| !gw_core::is_reserved(q.name()))
        .count();
    if tenant.queue(&req.name).is_err() && used >= state.config().max_queues_per_tenant {
        return Err(ApiError::invalid_with_msg(
            code::QUEUE_QUOTA,
            format!(
                "tenant '{}' has {used} queues, its quota (max_queues_per_tenant)",
                tenant.name()
            ),
        ));
    }
    let exists = || {
        ApiError::invalid_with_msg(
            code::QUEUE_EXISTS,
            format!("queue '{}' already exists", req.name),
        )
    };
    let q = match tenant.declare_queue(&req.name, spec) {
        Ok((q, true)) => q,
        Ok((_, false))
        | Err(gw_core::Error::PreconditionFailed(_) | gw_core::Error::ResourceLocked(_)) => {
            return Err(exists());
        }
        Err(e) => return Err(e.into()),
    };
    let tenant = tenant.clone();
    let queue = std::sync::Arc::clone(&q);
    super::created(
        state.engine(),
        vec![gw_core::Created::Queue { tenant, queue }],
    )
    .await?;
    Ok(Json(CreatedQueue {
        id: queue_id(&q),
        name: q.name().to_owned(),
    }))
}

/// Lists the tenant's queues.
#[utoipa::path(
    get,
    path = "/v1.0/{tenant}/queues",
    tag = "dms",
    params(
        ("tenant" = String, Path, description = "Tenant"),
        ("include_deadletter" = Option<bool>, Query, description = "Add dead-letter counts"),
        ("include_messages_num" = Option<bool>, Query, description = "Accepted for DMS compatibility; counts are always included"),
    ),
    responses(
        (status = 200, description = "The queues", body = QueueList),
        (status = 400, description = "Unknown or invalid query parameter", body = ErrorBody),
        (status = 401, description = "No or wrong credentials", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
    )
)]
pub async fn list_queues(
    State(state): State<AppState>,
    User(user): User,
    Conn(ctx): Conn,
    Path(tenant): Path<String>,
    mut query: Query,
) -> ApiResult<Json<QueueList>> {
    let dead = query.bool("include_deadletter")?.unwrap_or(false);
    query.bool("include_messages_num")?;
    query.finish()?;
    let tenant = resolve::tenant(&state, &user, &tenant, ctx.as_deref())?;
    let queues: Vec<QueueView> = tenant
        .queues()
        .iter()
        .filter(|q| !gw_core::is_reserved(q.name()))
        .map(|q| view(&state, &tenant, q, dead))
        .collect();
    Ok(Json(QueueList {
        total: queues.len() as u64,
        queues,
    }))
}

/// Shows one queue.
#[utoipa::path(
    get,
    path = "/v1.0/{tenant}/queues/{queue_id}",
    tag = "dms",
    params(
        ("tenant" = String, Path, description = "Tenant"),
        ("queue_id" = String, Path, description = "Queue id (`q-<n>`) or name"),
        ("include_deadletter" = Option<bool>, Query, description = "Add dead-letter counts"),
    ),
    responses(
        (status = 200, description = "The queue", body = QueueView),
        (status = 400, description = "Unknown or invalid query parameter", body = ErrorBody),
        (status = 401, description = "No or wrong credentials", body = ErrorBody),
        (status = 404, description = "No such tenant or queue", body = ErrorBody),
    )
)]
pub async fn show_queue(
    State(state): State<AppState>,
    User(user): User,
    Conn(ctx): Conn,
    Path((tenant, queue)): Path<(String, String)>,
    mut query: Query,
) -> ApiResult<Json<QueueView>> {
    let dead = query.bool("include_deadletter")?.unwrap_or(false);
    query.finish()?;
    let tenant = resolve::tenant(&state, &user, &tenant, ctx.as_deref())?;
    let q = resolve::queue(&state, &tenant, &queue)?;
    Ok(Json(view(&state, &tenant, &q, dead)))
}

/// Deletes a queue with its messages, groups and dead letters.
#[utoipa::path(
    delete,
    path = "/v1.0/{tenant}/queues/{queue_id}",
    tag = "dms",
    params(
        ("tenant" = String, Path, description = "Tenant"),
        ("queue_id" = String, Path, description = "Queue id (`q-<n>`) or name"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No or wrong credentials", body = ErrorBody),
        (status = 403, description = "No configure permission on the queue", body = ErrorBody),
        (status = 404, description = "No such tenant or queue", body = ErrorBody),
    )
)]
pub async fn delete_queue(
    State(state): State<AppState>,
    User(user): User,
    Conn(ctx): Conn,
    Path((tenant, queue)): Path<(String, String)>,
    query: Query,
) -> ApiResult<StatusCode> {
    query.finish()?;
    let tenant = resolve::tenant(&state, &user, &tenant, ctx.as_deref())?;
    let q = resolve::queue(&state, &tenant, &queue)?;
    resolve::check(&user, &tenant, Access::Configure, q.name())?;
    q.check_owner(None)?;
    tenant.delete_queue(q.name(), false, false)?;
    state
        .inner()
        .queue_ids
        .write()
        .remove(&(tenant.name().to_owned(), q.id()));
    super::barrier(state.engine()).await?;
    Ok(StatusCode::NO_CONTENT)
}
