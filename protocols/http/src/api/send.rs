//! `POST /v1.0/{tenant}/queues/{queue_id}/messages`: sends a batch.
//!
//! The whole batch is validated first (a bad field is a 400 naming it and
//! nothing is stored), then every message is published as a persistent
//! message to the queue, and the answer waits until the batch is on disk
//! (`engine.wait_durable` on the last write: the store's writes become
//! durable in order). A message the engine refuses (queue full with
//! reject-publish overflow, queue deleted meanwhile, storage failure) gets
//! its own `state`/`error`/`error_code` without failing the others.

use axum::Json;
use axum::extract::State;

use crate::extract::Path;
use gw_core::{Access, Message, now_millis};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};
use utoipa::ToSchema;

use super::body::{self, MessageProperties};
use super::resolve;
use crate::auth::User;
use crate::error::{ApiError, ApiResult, ErrorBody, code};
use crate::extract::{JsonBody, Query};
use crate::server::Conn;
use crate::state::AppState;

/// DMS's longest delay: 7 days in ms.
const MAX_DELAY_MS: u64 = 604_800_000;

/// One message to send.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// Any JSON value (a string is sent as text, anything else as JSON).
    #[schema(value_type = Value)]
    pub body: Box<RawValue>,
    /// Name → value pairs carried as message headers.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Map<String, Value>>,
    /// Up to 3 tags of 1–64 characters `[A-Za-z0-9_-]`, for consumers' tag filters.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Delay before the message becomes visible, ms (0–604800000; a fraction
    /// is dropped). `delay_time` is DMS v2's name for it.
    #[serde(default, rename = "delayTime", alias = "delay_time")]
    #[schema(value_type = Option<f64>)]
    pub delay_time: Option<Number>,
    /// Extension: FIFO order is kept per value (FIFO queues).
    #[serde(default)]
    pub message_group_id: Option<String>,
    /// Extension: AMQP basic properties (correlation id, reply-to, expiration, …).
    #[serde(default)]
    pub properties: Option<MessageProperties>,
}

/// `POST …/messages` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// The messages (DMS: at most 10 and 512 KB together).
    pub messages: Vec<SendMessage>,
    /// Answer each message's id (`return_id` in DMS v2).
    #[serde(default, rename = "returnId", alias = "return_id")]
    pub return_id: bool,
}

/// The outcome of one message.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SendResult {
    /// 0 = stored; 1 = refused (see `error`).
    pub state: u8,
    /// The message id (with `returnId: true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The error code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
}

/// `POST …/messages` answer, one entry per message in order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SendResponse {
    /// Outcomes.
    pub messages: Vec<SendResult>,
}

/// Checks one message and builds it for `queue`.
fn build(
    m: &SendMessage,
    i: usize,
    queue: &str,
    user: &str,
    max_bytes: usize,
    now: u64,
) -> ApiResult<(Message, usize)> {
    let field = |f: &str| format!("messages[{i}].{f}");
    let size = body::body_len(&m.body);
    if size > max_bytes {
        return Err(ApiError::invalid(
            &field("body"),
            format!("{size} bytes is more than max_message_bytes ({max_bytes})"),
        ));
    }
    let (bytes, content_type) = body::body_in(&m.body).map_err(|e| ApiError {
        msg: e
            .msg
            .replace("invalid body", &format!("invalid {}", field("body"))),
        ..e
    })?;
    let mut msg = Message::new(bytes);
    msg.routing_key = queue.to_owned();
    msg.properties.content_type = Some(content_type.to_owned());
    msg.properties.delivery_mode = Some(2);
    if let Some(p) = &m.properties {
        if p.correlation_id_base64.is_some() {
            return Err(ApiError::invalid(
                &field("properties.correlation_id_base64"),
                "is only given in answers; send correlation_id",
            ));
        }
        if let Some(u) = &p.user_id
            && u != user
        {
            return Err(ApiError::invalid(
                &field("properties.user_id"),
                format!("'{u}' is not the authenticated user '{user}'"),
            ));
        }
        p.apply(&mut msg.properties);
    }
    let mut extra = 0;
    if let Some(attrs) = &m.attributes {
        extra += serde_json::to_vec(attrs).map_or(0, |v| v.len());
        msg.headers = body::attributes_in(attrs);
    }
    if let Some(tags) = &m.tags {
        if tags.len() > 3 {
            return Err(ApiError::invalid_with(
                code::BAD_TAG,
                &field("tags"),
                format!("{} tags given; a message carries at most 3", tags.len()),
            ));
        }
        for (j, t) in tags.iter().enumerate() {
            resolve::dms_tag(&field(&format!("tags[{j}]")), t)?;
        }
        msg.tags.clone_from(tags);
    }
    if let Some(d) = &m.delay_time {
        let bad = || {
            ApiError::invalid(
                &field("delayTime"),
                format!("{d} is not a delay from 0 to {MAX_DELAY_MS} ms"),
            )
        };
        // DMS drops the fraction of a floating-point delay.
        let ms = match d.as_u64() {
            Some(v) => v,
            None => match d.as_f64() {
                Some(f) if (0.0..=MAX_DELAY_MS as f64).contains(&f) => f.trunc() as u64,
                _ => return Err(bad()),
            },
        };
        if ms > MAX_DELAY_MS {
            return Err(bad());
        }
        if ms > 0 {
            msg.deliver_at = Some(now + ms);
        }
    }
    if let Some(g) = &m.message_group_id {
        if g.is_empty() || g.len() > 255 || g.contains('\0') {
            return Err(ApiError::invalid(
                &field("message_group_id"),
                "must be 1 to 255 bytes without NUL",
            ));
        }
        msg.group_key = Some(g.clone());
    }
    Ok((msg, size + extra))
}

/// Sends messages to a queue.
#[utoipa::path(
    post,
    path = "/v1.0/{tenant}/queues/{queue_id}/messages",
    tag = "dms",
    params(
        ("tenant" = String, Path, description = "Tenant"),
        ("queue_id" = String, Path, description = "Queue id (`q-<n>`) or name"),
    ),
    request_body = SendRequest,
    responses(
        (status = 200, description = "Stored (each message's state says how it went)", body = SendResponse),
        (status = 400, description = "Invalid field; nothing was stored", body = ErrorBody),
        (status = 401, description = "No or wrong credentials", body = ErrorBody),
        (status = 403, description = "No write permission on the queue", body = ErrorBody),
        (status = 404, description = "No such tenant or queue", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 415, description = "Body not JSON", body = ErrorBody),
        (status = 503, description = "Shutting down, or a disk or memory alarm holds publishers back (error 10240509); nothing was stored (retry after Retry-After)", body = ErrorBody),
        (status = 507, description = "The store cannot write now; nothing was stored (retry after Retry-After)", body = ErrorBody),
    )
)]
pub async fn send_messages(
    State(state): State<AppState>,
    User(user): User,
    Conn(ctx): Conn,
    Path((tenant, queue)): Path<(String, String)>,
    query: Query,
    JsonBody(req): JsonBody<SendRequest>,
) -> ApiResult<Json<SendResponse>> {
    query.finish()?;
    let tenant = resolve::tenant(&state, &user, &tenant, ctx.as_deref())?;
    let q = resolve::queue(&state, &tenant, &queue)?;
    resolve::check(&user, &tenant, Access::Write, q.name())?;
    let cfg = state.config();
    let n = req.messages.len();
    if n == 0 || n > cfg.max_messages_per_send {
        return Err(ApiError::invalid(
            "messages",
            format!(
                "{n} messages given; send 1 to {} (max_messages_per_send)",
                cfg.max_messages_per_send
            ),
        ));
    }
    let now = now_millis();
    let mut built = Vec::with_capacity(n);
    let mut total = 0;
    for (i, m) in req.messages.iter().enumerate() {
        let (msg, size) = build(m, i, q.name(), user.user(), cfg.max_message_bytes, now)?;
        total += size;
        built.push(msg);
    }
    if total > cfg.max_send_bytes {
        return Err(ApiError::invalid(
            "messages",
            format!(
                "{total} bytes together is more than max_send_bytes ({})",
                cfg.max_send_bytes
            ),
        ));
    }
    crate::pressure::admit_publish(state.engine()).await?;
    // Published as confirmed: consumers see each message only once it is
    // stored, so a message this request reports as failed is never delivered.
    let mut results = Vec::with_capacity(n);
    let mut tickets = Vec::with_capacity(n);
    for msg in built {
        let refused = |code: &'static str, error: String| SendResult {
            state: 1,
            id: None,
            error: Some(error),
            error_code: Some(code.to_owned()),
        };
        results.push(match tenant.publish_confirmed(msg) {
            Ok(r) if r.routed > 0 => {
                tickets.push((results.len(), r.ticket));
                SendResult {
                    state: 0,
                    id: req.return_id.then(|| r.message_id.to_string()),
                    error: None,
                    error_code: None,
                }
            }
            Ok(r) if r.rejected > 0 => refused(
                code::LIMIT,
                format!("queue '{}' is full (reject-publish overflow)", q.name()),
            ),
            Ok(_) => refused(code::NOT_FOUND, format!("queue '{}' was deleted", q.name())),
            Err(e) => {
                let e = ApiError::from(e);
                refused(e.code, e.msg)
            }
        });
    }
    // Tickets are decided in order, so waiting for each costs one wait.
    let mut store_failed = 0;
    let mut store_error = None;
    for (i, ticket) in tickets {
        let Some(ticket) = ticket else { continue };
        if let Err(e) = state.engine().wait_durable(ticket).await {
            if matches!(e, gw_core::Error::ShuttingDown) {
                return Err(ApiError::shutting_down());
            }
            let e = ApiError::from(e);
            store_failed += 1;
            results[i] = SendResult {
                state: 1,
                id: None,
                error: Some(e.msg.clone()),
                error_code: Some(e.code.to_owned()),
            };
            store_error.get_or_insert(e);
        }
    }
    if let Some(e) = store_error.filter(|_| store_failed == n) {
        // Nothing was stored: one error answer, in HTTP's terms.
        return Err(e);
    }
    Ok(Json(SendResponse { messages: results }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(json: &str) -> SendMessage {
        crate::extract::parse_json(json.as_bytes()).unwrap()
    }

    #[test]
    fn builds_persistent_messages() {
        let m = msg(
            r#"{"body":{"a":1},"attributes":{"k":"v"},"tags":["t1"],"delayTime":1500.9,"message_group_id":"g","properties":{"correlation_id":"c"}}"#,
        );
        let (built, size) = build(&m, 0, "orders", "guest", 1024, 1_000).unwrap();
        assert!(built.is_persistent());
        assert_eq!(built.routing_key, "orders");
        assert_eq!(built.deliver_at, Some(2_500));
        assert_eq!(built.group_key.as_deref(), Some("g"));
        assert_eq!(built.tags, vec!["t1"]);
        assert_eq!(built.properties.content_type.as_deref(), Some(body::JSON));
        assert_eq!(&built.properties.correlation_id.unwrap()[..], b"c");
        assert!(size > 7);
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            (
                r#"{"body":"x","tags":["a","b","c","d"]}"#,
                "messages[3].tags",
            ),
            (r#"{"body":"x","tags":["a","b c"]}"#, "messages[3].tags[1]"),
            (
                r#"{"body":"x","delayTime":604800001}"#,
                "messages[3].delayTime",
            ),
            (r#"{"body":"x","delayTime":-1}"#, "messages[3].delayTime"),
            (
                r#"{"body":"x","properties":{"user_id":"mallory"}}"#,
                "messages[3].properties.user_id",
            ),
            (
                r#"{"body":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#,
                "messages[3].body",
            ),
            (
                r#"{"body":"x","message_group_id":""}"#,
                "messages[3].message_group_id",
            ),
        ];
        for (json, field) in cases {
            let e = build(&msg(json), 3, "q", "guest", 32, 0).unwrap_err();
            assert!(e.msg.contains(field), "{json}: {}", e.msg);
        }
    }
}
