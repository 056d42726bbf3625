//! Consuming: `GET …/groups/{group_id}/messages` (long poll) and
//! `GET …/groups/{group_id}/deadletters`.
//!
//! A consume pulls for the group with a lease of `ack_wait` seconds; an
//! unacked delivery goes back to the group when it passes (counting as a
//! failed consumption). The answer comes as soon as one message is there,
//! or empty after `time_wait`. Waiting polls are bounded by
//! `max_long_polls` (429 beyond); each holds a permit, a connection and a
//! small future, nothing per message.
//! Acks are in `ack.rs`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;

use crate::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use gw_core::{
    Access, DEFAULT_GROUP, DeadLetterTarget, Delivery, Engine, PullRequest, Queue, TagFilter,
};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::body::{self, BodyOut, MessageProperties};
use super::handler::Handler;
use super::resolve;
use crate::auth::User;
use crate::error::{ApiError, ApiResult, ErrorBody, code};
use crate::extract::Query;
use crate::server::{Conn, ConnCtx};
use crate::state::AppState;

/// Longest `ack_wait` in seconds (12 hours).
const MAX_ACK_WAIT: u64 = 43_200;

/// A consumed message.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageView<'a> {
    /// The body: JSON as sent, or a string (see `body_encoding`).
    #[schema(value_type = Value)]
    pub body: BodyOut<'a>,
    /// `base64` when the body is binary and was encoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_encoding: Option<&'static str>,
    /// The message's attributes (headers).
    #[schema(value_type = Object)]
    pub attributes: Map<String, Value>,
    /// The message's tags.
    pub tags: &'a [String],
    /// Extension: AMQP basic properties, when any is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub properties: Option<MessageProperties>,
    /// Extension: the FIFO group key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_group_id: Option<&'a str>,
    /// Extension: when it was published, ms since the epoch.
    pub publish_time: u64,
    /// Extension: deliveries of this message to this group, this one included.
    pub delivery_count: u32,
}

/// One entry of a consume answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsumedMessage<'a> {
    /// The message.
    pub message: MessageView<'a>,
    /// What to acknowledge it with.
    pub handler: String,
    /// Extension: the message id (beside `message`, not in it: the OTC SDK
    /// passes the `message` object's fields as keyword arguments beside its
    /// own `id`, so an `id` in there breaks its consume).
    pub message_id: String,
}

/// A consume request's query.
struct Pull {
    req: PullRequest,
    wait: Duration,
}

fn parse_pull(q: &mut Query, state: &AppState, tags: bool) -> ApiResult<Pull> {
    let cfg = state.config();
    let max = q
        .int(
            "max_msgs",
            1..=cfg.max_messages_per_consume as u64,
            code::MAX_MSGS,
        )?
        .unwrap_or(cfg.max_messages_per_consume as u64);
    let wait = q.int("time_wait", 1..=60, code::TIME_WAIT)?.unwrap_or(3);
    let ack_wait = q
        .int("ack_wait", 1..=MAX_ACK_WAIT, code::INVALID)?
        .unwrap_or(30);
    let mut filter = None;
    if tags {
        let tags = q.all("tag");
        let tag_type = q.one("tag_type")?;
        let match_all = match tag_type.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("or") => false,
            Some("and") => true,
            Some(other) => {
                return Err(ApiError::invalid(
                    "tag_type",
                    format!("'{other}' is not and or or"),
                ));
            }
        };
        if tags.len() > 3 {
            return Err(ApiError::invalid_with(
                code::BAD_TAG,
                "tag",
                format!("{} tags given; filter on at most 3", tags.len()),
            ));
        }
        for t in &tags {
            resolve::dms_tag("tag", t)?;
        }
        if !tags.is_empty() {
            filter = Some(TagFilter { tags, match_all });
        }
    }
    q.finish()?;
    Ok(Pull {
        req: PullRequest {
            max: usize::try_from(max).unwrap_or(usize::MAX),
            max_bytes: cfg.max_consume_bytes,
            lease_timeout: Some(Duration::from_secs(ack_wait)),
            no_ack: false,
            filter,
        },
        wait: Duration::from_secs(wait),
    })
}

/// Pulls, waiting up to `wait` for a first message.
async fn poll(
    state: &AppState,
    queue: Arc<Queue>,
    group: String,
    pull: Pull,
    ctx: Option<&ConnCtx>,
) -> ApiResult<Vec<Delivery>> {
    let now = queue.pull(&group, &pull.req)?;
    if !now.is_empty() {
        return Ok(now);
    }
    let permit = Arc::clone(&state.inner().long_polls)
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::limit(
                code::LIMIT,
                format!(
                    "{} long polls are waiting (max_long_polls); try again",
                    state.config().max_long_polls
                ),
            )
        })?;
    let closing = ctx.map(|c| c.closing.clone()).unwrap_or_default();
    // Dropped with the request when the client goes away (pull_wait is
    // cancel-safe); keeping the wait alive instead would lease a message to
    // nobody for ack_wait and count it as a failed delivery.
    let r = tokio::select! {
        r = queue.pull_wait(&group, &pull.req, pull.wait) => r.map_err(ApiError::from),
        () = state.shutdown().cancelled() => Ok(Vec::new()),
        // An operator closed the connection: answer now.
        () = closing.cancelled() => Ok(Vec::new()),
    };
    drop(permit);
    r
}

/// Serializes deliveries as DMS's bare JSON array.
fn answer(
    engine: &Engine,
    queue: &Queue,
    group: &str,
    dead_letter: bool,
    deliveries: &[Delivery],
) -> Response {
    let items: Vec<ConsumedMessage<'_>> = deliveries
        .iter()
        .map(|d| {
            let m = &*d.message;
            let body = BodyOut::of(m);
            ConsumedMessage {
                message: MessageView {
                    body_encoding: body.encoding(),
                    body,
                    attributes: body::attributes_out(&m.headers),
                    tags: &m.tags,
                    properties: MessageProperties::of(&m.properties),
                    message_group_id: m.group_key.as_deref(),
                    publish_time: m.published_at,
                    delivery_count: d.delivery_count(),
                },
                handler: Handler {
                    queue: queue.id(),
                    group: group.to_owned(),
                    dead_letter,
                    tag: d.tag,
                }
                .encode(engine),
                message_id: m.id.to_string(),
            }
        })
        .collect();
    match serde_json::to_vec(&items) {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            code::INTERNAL,
            e.to_string(),
        )
        .into_response(),
    }
}

/// The group's dead-letter queue (created on first use), if the queue has dead letters.
pub(super) fn dead_letters(
    state: &AppState,
    tenant: &gw_core::Tenant,
    q: &Queue,
    group: &str,
) -> ApiResult<Arc<Queue>> {
    if q.settings().dead_letter != Some(DeadLetterTarget::PerGroup) {
        return Err(ApiError::invalid(
            "queue_id",
            format!(
                "queue '{}' keeps no dead letters per group (redrive_policy is disable)",
                q.name()
            ),
        ));
    }
    Ok(state
        .engine()
        .dead_letter_queue(tenant.name(), q.name(), group)?)
}

/// Consumes messages (long poll).
#[utoipa::path(
    get,
    path = "/v1.0/{tenant}/queues/{queue_id}/groups/{group_id}/messages",
    tag = "dms",
    params(
        ("tenant" = String, Path, description = "Tenant"),
        ("queue_id" = String, Path, description = "Queue id (`q-<n>`) or name"),
        ("group_id" = String, Path, description = "Group id (its name)"),
        ("max_msgs" = Option<u64>, Query, description = "1–10 (default 10; the upper bound is max_messages_per_consume)"),
        ("time_wait" = Option<u64>, Query, description = "Seconds to wait for a first message, 1–60 (default 3)"),
        ("ack_wait" = Option<u64>, Query, description = "Seconds before an unacked delivery is redelivered, 1–43200 (default 30)"),
        ("tag" = Option<Vec<String>>, Query, description = "Up to 3 tags to filter on (repeat the parameter); a group keeps the filter it first used"),
        ("tag_type" = Option<String>, Query, description = "and (all tags) or or (any tag, default)"),
    ),
    responses(
        (status = 200, description = "The messages (possibly none)", body = [ConsumedMessage]),
        (status = 400, description = "Unknown or invalid query parameter", body = ErrorBody),
        (status = 401, description = "No or wrong credentials", body = ErrorBody),
        (status = 403, description = "No read permission on the queue", body = ErrorBody),
        (status = 404, description = "No such tenant, queue or group", body = ErrorBody),
        (status = 409, description = "The group filters on other tags, or the queue is another connection's", body = ErrorBody),
        (status = 429, description = "Too many long polls", body = ErrorBody),
    )
)]
pub async fn consume(
    State(state): State<AppState>,
    User(user): User,
    Conn(ctx): Conn,
    Path((tenant, queue, group)): Path<(String, String, String)>,
    mut query: Query,
) -> ApiResult<Response> {
    let pull = parse_pull(&mut query, &state, true)?;
    let tenant = resolve::tenant(&state, &user, &tenant, ctx.as_deref())?;
    let q = resolve::queue(&state, &tenant, &queue)?;
    let group = resolve::group(&q, &group)?.to_owned();
    resolve::check(&user, &tenant, Access::Read, q.name())?;
    q.check_owner(None)?;
    let got = poll(&state, Arc::clone(&q), group.clone(), pull, ctx.as_deref()).await?;
    Ok(answer(state.engine(), &q, &group, false, &got))
}

/// Consumes the group's dead letters (long poll).
#[utoipa::path(
    get,
    path = "/v1.0/{tenant}/queues/{queue_id}/groups/{group_id}/deadletters",
    tag = "dms",
    params(
        ("tenant" = String, Path, description = "Tenant"),
        ("queue_id" = String, Path, description = "Queue id (`q-<n>`) or name"),
        ("group_id" = String, Path, description = "Group id (its name)"),
        ("max_msgs" = Option<u64>, Query, description = "1–10 (default 10)"),
        ("time_wait" = Option<u64>, Query, description = "Seconds to wait, 1–60 (default 3)"),
        ("ack_wait" = Option<u64>, Query, description = "Seconds before redelivery, 1–43200 (default 30)"),
    ),
    responses(
        (status = 200, description = "The dead letters (possibly none)", body = [ConsumedMessage]),
        (status = 400, description = "Invalid query parameter, or the queue has no dead letters", body = ErrorBody),
        (status = 401, description = "No or wrong credentials", body = ErrorBody),
        (status = 403, description = "No read permission on the queue", body = ErrorBody),
        (status = 404, description = "No such tenant, queue or group", body = ErrorBody),
        (status = 429, description = "Too many long polls", body = ErrorBody),
    )
)]
pub async fn consume_dead_letters(
    State(state): State<AppState>,
    User(user): User,
    Conn(ctx): Conn,
    Path((tenant, queue, group)): Path<(String, String, String)>,
    mut query: Query,
) -> ApiResult<Response> {
    let pull = parse_pull(&mut query, &state, false)?;
    let tenant = resolve::tenant(&state, &user, &tenant, ctx.as_deref())?;
    let q = resolve::queue(&state, &tenant, &queue)?;
    let group = resolve::group(&q, &group)?.to_owned();
    resolve::check(&user, &tenant, Access::Read, q.name())?;
    let dlq = dead_letters(&state, &tenant, &q, &group)?;
    let got = poll(&state, dlq, DEFAULT_GROUP.to_owned(), pull, ctx.as_deref()).await?;
    Ok(answer(state.engine(), &q, &group, true, &got))
}
