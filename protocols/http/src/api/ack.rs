//! `POST …/groups/{group_id}/ack` and `POST …/groups/{group_id}/deadletters/ack`.
//!
//! Acks are processed in order, as DMS does: at the first entry that fails
//! (status `fail`, or a handler that is unknown, expired or already used),
//! that entry and every later one count as failed, and the later ones are
//! returned to the group for redelivery at once.

use axum::extract::State;

use crate::extract::Path;
use gw_core::{Access, DEFAULT_GROUP, Engine, Queue};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::consume::dead_letters;
use super::handler::Handler;
use super::resolve;
use crate::auth::User;
use crate::error::{ApiError, ApiResult, ErrorBody, code};
use crate::extract::{JsonBody, Query};
use crate::server::Conn;
use crate::state::AppState;

/// How an ack entry settles its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AckStatus {
    /// Consumed: the group is done with it.
    Success,
    /// Not consumed: redeliver it (or dead-letter it past `max_consume_count`).
    Fail,
}

/// One ack entry.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckEntry {
    /// The handler the consume answered with.
    pub handler: String,
    /// success or fail.
    pub status: AckStatus,
}

/// `POST …/ack` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// The entries, in consumption order.
    pub message: Vec<AckEntry>,
}

/// Why an ack entry failed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AckFailure {
    /// Position in the request.
    pub index: u64,
    /// The error code.
    pub error_code: String,
    /// What happened.
    pub error_msg: String,
}

/// `POST …/ack` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AckResponse {
    /// Entries acknowledged.
    pub success: u64,
    /// Entries not acknowledged (status fail, refused, or after a failure).
    pub fail: u64,
    /// Extension: why entries failed (status `fail` entries are not listed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<AckFailure>,
}

/// Settles ack entries in order against `target`'s `group`.
fn settle(target: &Queue, group: &str, entries: &[(AckStatus, Handler)]) -> ApiResult<AckResponse> {
    let mut out = AckResponse {
        success: 0,
        fail: 0,
        errors: Vec::new(),
    };
    let mut stopped: Option<usize> = None;
    for (i, (status, h)) in entries.iter().enumerate() {
        let index = i as u64;
        if let Some(first) = stopped {
            // DMS: everything after the first failure fails; give it back now.
            let _ = target.nack(group, h.tag, true);
            out.fail += 1;
            out.errors.push(AckFailure {
                index,
                error_code: code::CONFLICT.to_owned(),
                error_msg: format!("not acknowledged: entry {first} failed before it"),
            });
            continue;
        }
        let r = match status {
            AckStatus::Success => target.ack(group, h.tag),
            AckStatus::Fail => target.nack(group, h.tag, true),
        };
        match (status, r) {
            (AckStatus::Success, Ok(())) => out.success += 1,
            (AckStatus::Fail, Ok(())) => {
                out.fail += 1;
                stopped = Some(i);
            }
            (_, Err(gw_core::Error::UnknownDelivery(_))) => {
                out.fail += 1;
                stopped = Some(i);
                out.errors.push(AckFailure {
                    index,
                    error_code: code::CONFLICT.to_owned(),
                    error_msg: "the handler is unknown, expired (ack_wait passed) or already used"
                        .to_owned(),
                });
            }
            (_, Err(e)) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// Decodes the handlers, refusing ones that belong elsewhere.
fn handlers(
    engine: &Engine,
    req: &AckRequest,
    q: &Queue,
    group: &str,
    dead_letter: bool,
) -> ApiResult<Vec<(AckStatus, Handler)>> {
    if req.message.is_empty() {
        return Err(ApiError::invalid("message", "names no message"));
    }
    req.message
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let field = format!("message[{i}].handler");
            let h = Handler::decode(&e.handler, engine)
                .ok_or_else(|| ApiError::invalid(&field, "not a handler this gateway issued"))?;
            if h.queue != q.id() || h.group != group {
                return Err(ApiError::invalid(
                    &field,
                    format!(
                        "belongs to another queue or group than '{}'/'{group}'",
                        q.name()
                    ),
                ));
            }
            if h.dead_letter != dead_letter {
                let (got, here) = if h.dead_letter {
                    ("a dead letter", "messages")
                } else {
                    ("a message", "dead letters")
                };
                return Err(ApiError::invalid(
                    &field,
                    format!("names {got}; this endpoint acknowledges {here}"),
                ));
            }
            Ok((e.status, h))
        })
        .collect()
}

/// Acknowledges consumed messages.
#[utoipa::path(
    post,
    path = "/v1.0/{tenant}/queues/{queue_id}/groups/{group_id}/ack",
    tag = "dms",
    params(
        ("tenant" = String, Path, description = "Tenant"),
        ("queue_id" = String, Path, description = "Queue id (`q-<n>`) or name"),
        ("group_id" = String, Path, description = "Group id (its name)"),
    ),
    request_body = AckRequest,
    responses(
        (status = 200, description = "Processed in order", body = AckResponse),
        (status = 400, description = "Invalid field or a handler of another queue or group", body = ErrorBody),
        (status = 401, description = "No or wrong credentials", body = ErrorBody),
        (status = 403, description = "No read permission on the queue", body = ErrorBody),
        (status = 404, description = "No such tenant, queue or group", body = ErrorBody),
    )
)]
pub async fn ack(
    State(state): State<AppState>,
    User(user): User,
    Conn(ctx): Conn,
    Path((tenant, queue, group)): Path<(String, String, String)>,
    query: Query,
    JsonBody(req): JsonBody<AckRequest>,
) -> ApiResult<axum::Json<AckResponse>> {
    query.finish()?;
    let tenant = resolve::tenant(&state, &user, &tenant, ctx.as_deref())?;
    let q = resolve::queue(&state, &tenant, &queue)?;
    let group = resolve::group(&q, &group)?;
    resolve::check(&user, &tenant, Access::Read, q.name())?;
    let entries = handlers(state.engine(), &req, &q, group, false)?;
    Ok(axum::Json(settle(&q, group, &entries)?))
}

/// Acknowledges consumed dead letters.
#[utoipa::path(
    post,
    path = "/v1.0/{tenant}/queues/{queue_id}/groups/{group_id}/deadletters/ack",
    tag = "dms",
    params(
        ("tenant" = String, Path, description = "Tenant"),
        ("queue_id" = String, Path, description = "Queue id (`q-<n>`) or name"),
        ("group_id" = String, Path, description = "Group id (its name)"),
    ),
    request_body = AckRequest,
    responses(
        (status = 200, description = "Processed in order", body = AckResponse),
        (status = 400, description = "Invalid field, a foreign handler, or no dead letters", body = ErrorBody),
        (status = 401, description = "No or wrong credentials", body = ErrorBody),
        (status = 403, description = "No read permission on the queue", body = ErrorBody),
        (status = 404, description = "No such tenant, queue or group", body = ErrorBody),
    )
)]
pub async fn ack_dead_letters(
    State(state): State<AppState>,
    User(user): User,
    Conn(ctx): Conn,
    Path((tenant, queue, group)): Path<(String, String, String)>,
    query: Query,
    JsonBody(req): JsonBody<AckRequest>,
) -> ApiResult<axum::Json<AckResponse>> {
    query.finish()?;
    let tenant = resolve::tenant(&state, &user, &tenant, ctx.as_deref())?;
    let q = resolve::queue(&state, &tenant, &queue)?;
    let group = resolve::group(&q, &group)?;
    resolve::check(&user, &tenant, Access::Read, q.name())?;
    let entries = handlers(state.engine(), &req, &q, group, true)?;
    let dlq = dead_letters(&state, &tenant, &q, group)?;
    Ok(axum::Json(settle(&dlq, DEFAULT_GROUP, &entries)?))
}
