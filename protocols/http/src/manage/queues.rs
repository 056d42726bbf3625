//! `/api/queues`: every queue with its statistics and its groups', declared
//! AMQP-style (with a default group) or deleted and purged by operators.

use axum::Json;
use axum::extract::State;

use crate::extract::Path;
use axum::http::StatusCode;
use gw_core::{DeadLetterTarget, QueueKind, QueueSettings, QueueSpec};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{JsonBody, Query};
use crate::metrics::{QueueRates, QueueSnapshot};
use crate::state::AppState;

/// A consumer group's statistics.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GroupStatsView {
    /// Name.
    pub name: String,
    /// Messages it has yet to receive.
    pub ready: u64,
    /// Delivered, not yet settled.
    pub in_flight: u64,
    /// Consumers attached.
    pub consumers: u64,
    /// Deliveries.
    pub delivered: u64,
    /// Acknowledgements.
    pub acked: u64,
    /// Redeliveries.
    pub redelivered: u64,
    /// Dead-lettered (or dropped without a target).
    pub dead_lettered: u64,
    /// Skipped by its tag filter.
    pub filtered: u64,
    /// Expired before delivery.
    pub expired: u64,
    /// Age of its oldest unsettled message, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_age_ms: Option<u64>,
    /// Deliveries per second (last sample).
    pub deliver_rate: f64,
    /// Acks per second (last sample).
    pub ack_rate: f64,
}

/// A queue's statistics.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueueStatsView {
    /// Tenant.
    pub tenant: String,
    /// Name.
    pub name: String,
    /// DMS id (`q-<n>`).
    pub id: String,
    /// Survives restarts.
    pub durable: bool,
    /// Deleted when its last consumer leaves.
    pub auto_delete: bool,
    /// Owned by one connection.
    pub exclusive: bool,
    /// `standard` or `fifo`.
    pub kind: String,
    /// Retention of settled messages, ms (0: deleted once settled).
    pub retention_ms: u64,
    /// Redelivery after this long unacked, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_timeout_ms: Option<u64>,
    /// Deliveries before dead-lettering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_deliveries: Option<u32>,
    /// Where dead letters go (`exchange:<name>`, `queue:<name>`, `per-group`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<String>,
    /// Ready messages (RabbitMQ's count: the default or first group's).
    pub messages_ready: u64,
    /// Unacknowledged deliveries over all groups.
    pub messages_unacked: u64,
    /// Consumers over all groups.
    pub consumers: u64,
    /// Messages published into it.
    pub published: u64,
    /// Messages its log retains.
    pub retained: u64,
    /// Bytes its log retains.
    pub retained_bytes: u64,
    /// Messages waiting for their delivery time.
    pub delayed: u64,
    /// Messages published per second (last sample).
    pub publish_rate: f64,
    /// Its consumer groups.
    pub groups: Vec<GroupStatsView>,
}

/// `PUT /api/queues/{tenant}/{queue}` body (AMQP-style declaration).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PutQueue {
    /// Survives restarts (default true).
    pub durable: Option<bool>,
    /// Deleted when its last consumer leaves.
    pub auto_delete: bool,
    /// `classic` (default; deleted once acked, as RabbitMQ), `standard` (retained 72 h, 30 s ack timeout) or `fifo`.
    pub queue_type: Option<QueueType>,
    /// Message TTL, ms.
    pub message_ttl_ms: Option<u64>,
    /// Most ready messages.
    pub max_length: Option<u64>,
    /// Most ready bytes.
    pub max_bytes: Option<u64>,
    /// Deliveries before dead-lettering (RabbitMQ's delivery limit + 1).
    pub max_deliveries: Option<u32>,
    /// Dead-letter exchange.
    pub dead_letter_exchange: Option<String>,
    /// Dead-letter routing key.
    pub dead_letter_routing_key: Option<String>,
}

/// Queue types a management declaration offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    /// RabbitMQ classic: deleted once every group acked it, no ack timeout.
    Classic,
    /// Retained, with an ack timeout (the engine's defaults).
    Standard,
    /// Strict order.
    Fifo,
}

/// `DELETE …/contents` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Purged {
    /// Ready messages dropped (the default or first group's count).
    pub purged: u64,
}

fn view(s: &QueueSnapshot, rates: Option<&QueueRates>) -> QueueStatsView {
    let q = &s.queue;
    let set = q.settings();
    QueueStatsView {
        tenant: s.tenant.clone(),
        name: q.name().to_owned(),
        id: crate::api::queue_id(q),
        durable: q.is_durable(),
        auto_delete: q.is_auto_delete(),
        exclusive: q.exclusive_owner().is_some(),
        kind: match set.kind {
            QueueKind::Fifo => "fifo",
            QueueKind::Standard => "standard",
        }
        .to_owned(),
        retention_ms: set.retention_ms,
        ack_timeout_ms: set.ack_timeout_ms,
        max_deliveries: set.max_deliveries,
        dead_letter: set.dead_letter.as_ref().map(|d| match d {
            DeadLetterTarget::Exchange { exchange, .. } => format!("exchange:{exchange}"),
            DeadLetterTarget::Queue(q) => format!("queue:{q}"),
            DeadLetterTarget::PerGroup => "per-group".to_owned(),
        }),
        messages_ready: s.stats.ready(),
        messages_unacked: s.stats.groups.iter().map(|g| g.in_flight).sum(),
        consumers: s.stats.consumers as u64,
        published: s.stats.published,
        retained: s.stats.retained,
        retained_bytes: s.stats.retained_bytes,
        delayed: s.stats.delayed,
        publish_rate: rates.map_or(0.0, |r| r.publish),
        groups: s
            .stats
            .groups
            .iter()
            .map(|g| {
                let (deliver_rate, ack_rate) = rates
                    .and_then(|r| r.groups.get(&g.name).copied())
                    .unwrap_or((0.0, 0.0));
                GroupStatsView {
                    name: g.name.clone(),
                    ready: g.ready,
                    in_flight: g.in_flight,
                    consumers: g.consumers as u64,
                    delivered: g.counters.delivered,
                    acked: g.counters.acked,
                    redelivered: g.counters.redelivered,
                    dead_lettered: g.counters.dead_lettered,
                    filtered: g.counters.filtered,
                    expired: g.counters.expired,
                    oldest_age_ms: g.oldest_age_ms,
                    deliver_rate,
                    ack_rate,
                }
            })
            .collect(),
    }
}

fn views(state: &AppState, tenant: Option<&str>, name: Option<&str>) -> Vec<QueueStatsView> {
    let snaps = crate::metrics::snapshot(state.engine());
    let rates = state.inner().rates.update(&snaps);
    snaps
        .iter()
        .filter(|s| {
            tenant.is_none_or(|t| s.tenant == t) && name.is_none_or(|n| s.queue.name() == n)
        })
        .map(|s| view(s, rates.get(&s.queue.id())))
        .collect()
}

/// Lists every queue of every tenant.
#[utoipa::path(get, path = "/api/queues", tag = "management",
    responses((status = 200, description = "The queues", body = [QueueStatsView])))]
pub async fn list_all_queues(
    State(state): State<AppState>,
    query: Query,
) -> ApiResult<Json<Vec<QueueStatsView>>> {
    query.finish()?;
    Ok(Json(views(&state, None, None)))
}

/// Lists a tenant's queues.
#[utoipa::path(get, path = "/api/queues/{tenant}", tag = "management",
    params(("tenant" = String, Path, description = "Tenant")),
    responses(
        (status = 200, description = "The queues", body = [QueueStatsView]),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ))]
pub async fn list_queues(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    query: Query,
) -> ApiResult<Json<Vec<QueueStatsView>>> {
    query.finish()?;
    super::tenant(&state, &tenant)?;
    Ok(Json(views(&state, Some(&tenant), None)))
}

/// Shows a queue.
#[utoipa::path(get, path = "/api/queues/{tenant}/{queue}", tag = "management",
    params(("tenant" = String, Path, description = "Tenant"), ("queue" = String, Path, description = "Queue name")),
    responses(
        (status = 200, description = "The queue", body = QueueStatsView),
        (status = 404, description = "No such tenant or queue", body = ErrorBody),
    ))]
pub async fn show_queue(
    State(state): State<AppState>,
    Path((tenant, name)): Path<(String, String)>,
    query: Query,
) -> ApiResult<Json<QueueStatsView>> {
    query.finish()?;
    super::tenant(&state, &tenant)?.queue(&name)?;
    views(&state, Some(&tenant), Some(&name))
        .pop()
        .map(Json)
        .ok_or_else(|| ApiError::not_found("queue", &name))
}

fn put_spec(req: PutQueue) -> QueueSpec {
    let kind = req.queue_type.unwrap_or(QueueType::Classic);
    let mut settings = match kind {
        QueueType::Classic => QueueSettings::classic(),
        QueueType::Standard => QueueSettings::default(),
        QueueType::Fifo => QueueSettings {
            kind: QueueKind::Fifo,
            ..QueueSettings::default()
        },
    };
    settings.message_ttl_ms = req.message_ttl_ms;
    settings.max_length = req.max_length;
    settings.max_bytes = req.max_bytes;
    settings.max_deliveries = req.max_deliveries;
    settings.dead_letter = req
        .dead_letter_exchange
        .map(|exchange| DeadLetterTarget::Exchange {
            exchange,
            routing_key: req.dead_letter_routing_key,
        });
    QueueSpec {
        durable: req.durable.unwrap_or(true),
        auto_delete: req.auto_delete,
        settings,
        default_group: true,
        ..QueueSpec::default()
    }
}

/// Declares a queue with a default group, as AMQP would (201 created, 204 an equivalent one existed).
#[utoipa::path(put, path = "/api/queues/{tenant}/{queue}", tag = "management",
    params(("tenant" = String, Path, description = "Tenant"), ("queue" = String, Path, description = "Queue name")),
    request_body = PutQueue,
    responses(
        (status = 201, description = "Created"),
        (status = 204, description = "Existed with the same declaration"),
        (status = 403, description = "Reserved name (`amq.`)", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 409, description = "Exists with another declaration", body = ErrorBody),
    ))]
pub async fn put_queue(
    State(state): State<AppState>,
    Path((tenant, name)): Path<(String, String)>,
    query: Query,
    JsonBody(req): JsonBody<PutQueue>,
) -> ApiResult<StatusCode> {
    query.finish()?;
    let t = super::tenant(&state, &tenant)?;
    if gw_core::is_reserved(&name) {
        return Err(ApiError::forbidden(format!(
            "queue name '{name}' contains reserved prefix 'amq.'"
        )));
    }
    let (q, created) = t.declare_queue(&name, put_spec(req))?;
    let undo = created.then(|| gw_core::Created::Queue {
        tenant: t.clone(),
        queue: q,
    });
    crate::api::created(state.engine(), undo.into_iter().collect()).await?;
    Ok(if created {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    })
}

/// Deletes a queue.
#[utoipa::path(delete, path = "/api/queues/{tenant}/{queue}", tag = "management",
    params(
        ("tenant" = String, Path, description = "Tenant"),
        ("queue" = String, Path, description = "Queue name"),
        ("if_unused" = Option<bool>, Query, description = "Refuse (409) while it has consumers"),
        ("if_empty" = Option<bool>, Query, description = "Refuse (409) while it has ready messages"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such tenant or queue", body = ErrorBody),
        (status = 409, description = "In use or not empty", body = ErrorBody),
    ))]
pub async fn delete_queue(
    State(state): State<AppState>,
    Path((tenant, name)): Path<(String, String)>,
    mut query: Query,
) -> ApiResult<StatusCode> {
    let if_unused = query.bool("if_unused")?.unwrap_or(false);
    let if_empty = query.bool("if_empty")?.unwrap_or(false);
    query.finish()?;
    let t = super::tenant(&state, &tenant)?;
    t.delete_queue(&name, if_unused, if_empty)?;
    crate::api::barrier(state.engine()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Drops every message not in flight, in every group.
#[utoipa::path(delete, path = "/api/queues/{tenant}/{queue}/contents", tag = "management",
    params(("tenant" = String, Path, description = "Tenant"), ("queue" = String, Path, description = "Queue name")),
    responses(
        (status = 200, description = "Purged", body = Purged),
        (status = 404, description = "No such tenant or queue", body = ErrorBody),
    ))]
pub async fn purge_queue(
    State(state): State<AppState>,
    Path((tenant, name)): Path<(String, String)>,
    query: Query,
) -> ApiResult<Json<Purged>> {
    query.finish()?;
    let q = super::tenant(&state, &tenant)?.queue(&name)?;
    let purged = q.purge()?;
    crate::api::barrier(state.engine()).await?;
    Ok(Json(Purged { purged }))
}
