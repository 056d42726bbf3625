//! Extension (message tracking): `GET …/queues/{queue_id}/messages/{message_id}`
//! shows a retained (or delayed) message and, per consumer group, where it
//! stands: `ready`, `delayed`, `in_flight` (with its delivery count), `acked`,
//! `dead_lettered` or `filtered` (the group's tag filter skips it). The engine
//! finds it by id (a scan of the queue's log, so lookups run one at a time).

use axum::Json;
use axum::extract::State;

use crate::extract::Path;
use axum::http::StatusCode;
use gw_core::{Access, Engine, Message, MessageState, Queue, Tenant};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::body::{self, BodyOut, MessageProperties};
use super::resolve::{self, queue_id};
use crate::auth::User;
use crate::error::{ApiError, ApiResult, ErrorBody, code};
use crate::extract::Query;
use crate::server::Conn;
use crate::state::AppState;

/// A stored message.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StoredMessage {
    /// The body as a consumer would receive it.
    pub body: Value,
    /// `base64` when the body is binary and was encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_encoding: Option<String>,
    /// Attributes (headers).
    #[schema(value_type = Object)]
    pub attributes: Map<String, Value>,
    /// Tags.
    pub tags: Vec<String>,
    /// The message id.
    pub id: String,
    /// AMQP basic properties, when any is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<MessageProperties>,
    /// The FIFO group key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_group_id: Option<String>,
    /// When it was published, ms since the epoch.
    pub publish_time: u64,
    /// Its sequence number in the queue (usable with `rewind`'s `to_sequence`;
    /// absent while the message waits for its delay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
}

/// Where the message stands in one group.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GroupState {
    /// The group.
    pub group: String,
    /// `ready`, `delayed`, `in_flight`, `acked`, `dead_lettered` or `filtered`.
    pub state: String,
    /// Deliveries to this group so far (ready and in-flight messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_count: Option<u32>,
}

/// `GET …/messages/{message_id}` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Lookup {
    /// The queue's id.
    pub queue_id: String,
    /// The queue's name.
    pub queue_name: String,
    /// The message (from the queue, or from a group's dead letters when only there).
    pub message: StoredMessage,
    /// Per consumer group.
    pub groups: Vec<GroupState>,
}

fn stored(m: &Message, seq: u64) -> StoredMessage {
    let b = BodyOut::of(m);
    StoredMessage {
        body_encoding: b.encoding().map(str::to_owned),
        body: serde_json::to_value(&b).unwrap_or(Value::Null),
        attributes: body::attributes_out(&m.headers),
        tags: m.tags.clone(),
        id: m.id.to_string(),
        properties: MessageProperties::of(&m.properties),
        message_group_id: m.group_key.clone(),
        publish_time: m.published_at,
        sequence: (seq != u64::MAX).then_some(seq),
    }
}

fn lookup(engine: &Engine, tenant: &Tenant, q: &Queue, id: u64) -> ApiResult<Lookup> {
    let trace = engine
        .trace_message(tenant.name(), q.name(), id)?
        .ok_or_else(|| ApiError::not_found("message", &id.to_string()))?;
    let groups = trace
        .groups
        .iter()
        .map(|(group, state)| {
            let (state, count) = match *state {
                MessageState::Ready { delivery_count } => ("ready", Some(delivery_count)),
                MessageState::Delayed => ("delayed", None),
                MessageState::InFlight { delivery_count } => ("in_flight", Some(delivery_count)),
                MessageState::Settled => ("acked", None),
                MessageState::DeadLettered => ("dead_lettered", None),
                MessageState::Filtered => ("filtered", None),
            };
            GroupState {
                group: group.clone(),
                state: state.into(),
                delivery_count: count,
            }
        })
        .collect();
    Ok(Lookup {
        queue_id: queue_id(q),
        queue_name: q.name().to_owned(),
        message: stored(&trace.message, trace.seq),
        groups,
    })
}

/// Extension: where a message is (see the module doc for what the states mean).
#[utoipa::path(
    get,
    path = "/v1.0/{tenant}/queues/{queue_id}/messages/{message_id}",
    tag = "extensions",
    params(
        ("tenant" = String, Path, description = "Tenant"),
        ("queue_id" = String, Path, description = "Queue id (`q-<n>`) or name"),
        ("message_id" = String, Path, description = "The message id a send (`returnId`) or consume gave"),
    ),
    responses(
        (status = 200, description = "The message and its state per group", body = Lookup),
        (status = 400, description = "Not a message id", body = ErrorBody),
        (status = 401, description = "No or wrong credentials", body = ErrorBody),
        (status = 403, description = "No read permission on the queue", body = ErrorBody),
        (status = 404, description = "No such tenant, queue or retained message", body = ErrorBody),
    )
)]
pub async fn lookup_message(
    State(state): State<AppState>,
    User(user): User,
    Conn(ctx): Conn,
    Path((tenant, queue, message)): Path<(String, String, String)>,
    query: Query,
) -> ApiResult<Json<Lookup>> {
    query.finish()?;
    let tenant = resolve::tenant(&state, &user, &tenant, ctx.as_deref())?;
    let q = resolve::queue(&state, &tenant, &queue)?;
    resolve::check(&user, &tenant, Access::Read, q.name())?;
    let id: u64 = message
        .parse()
        .map_err(|_| ApiError::invalid("message_id", format!("'{message}' is not a message id")))?;
    // One lookup at a time: each reads a log from its start.
    let _permit = state
        .inner()
        .lookups
        .acquire()
        .await
        .map_err(|_| ApiError::shutting_down())?;
    let st = state.clone();
    tokio::task::spawn_blocking(move || lookup(st.engine(), &tenant, &q, id))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                code::INTERNAL,
                e.to_string(),
            )
        })?
        .map(Json)
}
