//! Consumer groups: `POST/GET …/groups`, `DELETE …/groups/{group_id}`, and
//! our extension `POST …/groups/{group_id}/rewind`.
//!
//! Every group sees every message of its queue (that is how DMS fans out).
//! A new group starts at the oldest message the queue retains (the DMS FAQ
//! on this could not be read; retained messages are what a DMS group would
//! find on a queue whose messages live 72 hours either way).

use axum::Json;
use axum::extract::State;

use crate::extract::Path;
use axum::http::StatusCode;
use gw_core::{Access, Queue, StartPosition, Tenant};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::resolve::{self, queue_id};
use crate::auth::User;
use crate::error::{ApiError, ApiResult, ErrorBody, code};
use crate::extract::{JsonBody, Query};
use crate::server::Conn;
use crate::state::AppState;

/// One group to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    /// 1–32 characters of `[A-Za-z0-9_-]`.
    pub name: String,
}

/// `POST …/groups` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroups {
    /// The groups to create.
    pub groups: Vec<NewGroup>,
}

/// A created group.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedGroup {
    /// The group's id (its name).
    pub id: String,
    /// The group's name.
    pub name: String,
}

/// `POST …/groups` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedGroups {
    /// The groups, in the order asked.
    pub groups: Vec<CreatedGroup>,
}

/// A group as DMS lists it (counts unless `include_messages_num=false`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GroupView {
    /// The group's id (its name).
    pub id: String,
    /// Name.
    pub name: String,
    /// Messages sent to the queue since it was created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub produced_messages: Option<u64>,
    /// Messages this group acknowledged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumed_messages: Option<u64>,
    /// Messages this group has yet to receive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_messages: Option<u64>,
    /// Extension: delivered, awaiting ack.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inflight_messages: Option<u64>,
    /// Extension: deliveries that were redeliveries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redelivered_messages: Option<u64>,
    /// Messages this group moved to its dead letters (with `include_deadletter=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub produced_deadletters: Option<u64>,
    /// Dead letters waiting to be consumed (with `include_deadletter=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_deadletters: Option<u64>,
    /// Extension: the tags the group filters on (fixed by its first filtered consume).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag_filter: Option<Vec<String>>,
    /// Extension: `and` or `or` for `tag_filter`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag_type: Option<String>,
    /// Extension: creation time, ms since the epoch.
    pub created: u64,
}

/// `GET …/groups` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GroupList {
    /// The queue's id.
    pub queue_id: String,
    /// The queue's name.
    pub queue_name: String,
    /// enable or disable (with `include_deadletter=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redrive_policy: Option<String>,
    /// Extension: groups in all pages.
    pub total: u64,
    /// The groups (of the page asked for).
    pub groups: Vec<GroupView>,
}

/// `POST …/rewind` body: exactly one of the fields.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rewind {
    /// Re-read from the first message published at or after this time (RFC 3339).
    #[serde(default)]
    pub to_time: Option<String>,
    /// Re-read from this sequence number (clamped to what the queue retains).
    #[serde(default)]
    pub to_sequence: Option<u64>,
    /// `oldest` (everything retained) or `latest` (skip everything so far).
    #[serde(default)]
    pub to: Option<RewindEnd>,
}

/// The two ends of a queue.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RewindEnd {
    /// The oldest retained message.
    Oldest,
    /// After the newest message.
    Latest,
}

/// `POST …/rewind` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Rewound {
    /// The group.
    pub group: String,
    /// The sequence number it reads from now.
    pub sequence: u64,
}

fn group_view(
    tenant: &Tenant,
    q: &Queue,
    g: &gw_core::GroupStats,
    published: u64,
    counts: bool,
    dead: bool,
) -> GroupView {
    let dlq = || {
        tenant
            .queue(&gw_core::dead_letter_queue_name(q.id(), &g.name))
            .ok()
            .map_or(0, |d| {
                d.stats().groups.iter().map(|x| x.ready + x.in_flight).sum()
            })
    };
    GroupView {
        id: g.name.clone(),
        name: g.name.clone(),
        produced_messages: counts.then_some(published),
        consumed_messages: counts.then_some(g.counters.acked),
        available_messages: counts.then_some(g.ready),
        inflight_messages: counts.then_some(g.in_flight),
        redelivered_messages: counts.then_some(g.counters.redelivered),
        produced_deadletters: dead.then_some(g.counters.dead_lettered),
        available_deadletters: dead.then(dlq),
        tag_filter: g.filter.as_ref().map(|f| f.tags.clone()),
        tag_type: g
            .filter
            .as_ref()
            .map(|f| if f.match_all { "and" } else { "or" }.to_owned()),
        created: g.created_at,
    }
}

/// Creates consumer groups.
#[utoipa::path(
    post,
    path = "/v1.0/{tenant}/queues/{queue_id}/groups",
    tag = "dms",
    params(
        ("tenant" = String, Path, description = "Tenant"),
        ("queue_id" = String, Path, description = "Queue id (`q-<n>`) or name"),
    ),
    request_body = CreateGroups,
    responses(
        (status = 200, description = "Created", body = CreatedGroups),
        (status = 400, description = "Invalid field, group exists (10240018) or group quota used up (10240019)", body = ErrorBody),
        (status = 401, description = "No or wrong credentials", body = ErrorBody),
        (status = 403, description = "No configure permission on the queue", body = ErrorBody),
        (status = 404, description = "No such tenant or queue", body = ErrorBody),
    )
)]
pub async fn create_groups(
    State(state): State<AppState>,
    User(user): User,
    Conn(ctx): Conn,
    Path((tenant, queue)): Path<(String, String)>,
    query: Query,
    JsonBody(req): JsonBody<CreateGroups>,
) -> ApiResult<Json<CreatedGroups>> {
    query.finish()?;
    let tenant = resolve::tenant(&state, &user, &tenant, ctx.as_deref())?;
    let q = resolve::queue(&state, &tenant, &queue)?;
    resolve::check(&user, &tenant, Access::Configure, q.name())?;
    if req.groups.is_empty() {
        return Err(ApiError::invalid("groups", "names no group"));
    }
    let existing = q.group_names();
    for (i, g) in req.groups.iter().enumerate() {
        resolve::dms_name(
            &format!("groups[{i}].name"),
            &g.name,
            32,
            code::GROUP_NAME_LEN,
        )?;
        if existing.contains(&g.name) || req.groups[..i].iter().any(|o| o.name == g.name) {
            return Err(ApiError::invalid_with_msg(
                code::GROUP_EXISTS,
                format!("consumer group '{}' already exists", g.name),
            ));
        }
    }
    let max = state.config().max_groups_per_queue;
    let used = existing.len();
    if used + req.groups.len() > max {
        return Err(ApiError::invalid_with_msg(
            code::GROUP_QUOTA,
            format!(
                "queue '{}' has {used} groups; {} more would pass its quota of {max} (max_groups_per_queue)",
                q.name(),
                req.groups.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(req.groups.len());
    let mut created = Vec::with_capacity(req.groups.len());
    for g in &req.groups {
        if !q.create_group(&g.name, StartPosition::Oldest, None)? {
            return Err(ApiError::invalid_with_msg(
                code::GROUP_EXISTS,
                format!("consumer group '{}' already exists", g.name),
            ));
        }
        created.push(gw_core::Created::Group {
            queue: std::sync::Arc::clone(&q),
            name: g.name.clone(),
        });
        out.push(CreatedGroup {
            id: g.name.clone(),
            name: g.name.clone(),
        });
    }
    super::created(state.engine(), created).await?;
    Ok(Json(CreatedGroups { groups: out }))
}

/// Lists a queue's consumer groups.
#[utoipa::path(
    get,
    path = "/v1.0/{tenant}/queues/{queue_id}/groups",
    tag = "dms",
    params(
        ("tenant" = String, Path, description = "Tenant"),
        ("queue_id" = String, Path, description = "Queue id (`q-<n>`) or name"),
        ("include_deadletter" = Option<bool>, Query, description = "Add dead-letter counts and the redrive policy"),
        ("include_messages_num" = Option<bool>, Query, description = "Add message counts (default true)"),
        ("page_size" = Option<i64>, Query, description = "Groups per page (paging needs both values ≥ 1; otherwise all groups)"),
        ("current_page" = Option<i64>, Query, description = "Page number from 1"),
    ),
    responses(
        (status = 200, description = "The groups", body = GroupList),
        (status = 400, description = "Unknown or invalid query parameter", body = ErrorBody),
        (status = 401, description = "No or wrong credentials", body = ErrorBody),
        (status = 404, description = "No such tenant or queue", body = ErrorBody),
    )
)]
pub async fn list_groups(
    State(state): State<AppState>,
    User(user): User,
    Conn(ctx): Conn,
    Path((tenant, queue)): Path<(String, String)>,
    mut query: Query,
) -> ApiResult<Json<GroupList>> {
    let dead = query.bool("include_deadletter")?.unwrap_or(false);
    let counts = query.bool("include_messages_num")?.unwrap_or(true);
    let page_size = query.signed("page_size")?;
    let current_page = query.signed("current_page")?;
    query.finish()?;
    let tenant = resolve::tenant(&state, &user, &tenant, ctx.as_deref())?;
    let q = resolve::queue(&state, &tenant, &queue)?;
    let stats = q.stats();
    let mut groups: Vec<&gw_core::GroupStats> = stats.groups.iter().collect();
    groups.sort_by(|a, b| a.name.cmp(&b.name));
    let total = groups.len() as u64;
    // DMS pages only when both values are valid; otherwise it lists everything.
    if let (Some(size @ 1..), Some(page @ 1..)) = (page_size, current_page) {
        let start = usize::try_from((page - 1).saturating_mul(size)).unwrap_or(usize::MAX);
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        groups = groups.into_iter().skip(start).take(size).collect();
    }
    let s = q.settings();
    let redrive = s.dead_letter.is_some() && s.max_deliveries.is_some();
    Ok(Json(GroupList {
        queue_id: queue_id(&q),
        queue_name: q.name().to_owned(),
        redrive_policy: dead.then(|| if redrive { "enable" } else { "disable" }.to_owned()),
        total,
        groups: groups
            .into_iter()
            .map(|g| group_view(&tenant, &q, g, stats.published, counts, dead))
            .collect(),
    }))
}

/// Deletes a consumer group (and its dead letters).
#[utoipa::path(
    delete,
    path = "/v1.0/{tenant}/queues/{queue_id}/groups/{group_id}",
    tag = "dms",
    params(
        ("tenant" = String, Path, description = "Tenant"),
        ("queue_id" = String, Path, description = "Queue id (`q-<n>`) or name"),
        ("group_id" = String, Path, description = "Group id (its name)"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No or wrong credentials", body = ErrorBody),
        (status = 403, description = "No configure permission on the queue", body = ErrorBody),
        (status = 404, description = "No such tenant, queue or group", body = ErrorBody),
    )
)]
pub async fn delete_group(
    State(state): State<AppState>,
    User(user): User,
    Conn(ctx): Conn,
    Path((tenant, queue, group)): Path<(String, String, String)>,
    query: Query,
) -> ApiResult<StatusCode> {
    query.finish()?;
    let tenant = resolve::tenant(&state, &user, &tenant, ctx.as_deref())?;
    let q = resolve::queue(&state, &tenant, &queue)?;
    let group = resolve::group(&q, &group)?;
    resolve::check(&user, &tenant, Access::Configure, q.name())?;
    q.delete_group(group)?;
    // DMS keeps dead letters "unless the consumer group is deleted".
    let dlq = gw_core::dead_letter_queue_name(q.id(), group);
    if tenant.queue(&dlq).is_ok() {
        tenant.delete_queue(&dlq, false, false)?;
    }
    super::barrier(state.engine()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Where a rewind request points.
fn rewind_target(req: &Rewind) -> ApiResult<StartPosition> {
    let given = [
        req.to_time.is_some(),
        req.to_sequence.is_some(),
        req.to.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(ApiError::invalid(
            "request body",
            "give exactly one of to_time, to_sequence and to",
        ));
    }
    if let Some(t) = &req.to_time {
        let at = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .map_err(|e| {
                ApiError::invalid("to_time", format!("'{t}' is not an RFC 3339 time: {e}"))
            })?;
        let ms = at.unix_timestamp_nanos() / 1_000_000;
        return Ok(StartPosition::Time(u64::try_from(ms).unwrap_or(0)));
    }
    if let Some(s) = req.to_sequence {
        return Ok(StartPosition::Sequence(s));
    }
    Ok(match req.to {
        Some(RewindEnd::Latest) => StartPosition::Latest,
        _ => StartPosition::Oldest,
    })
}

/// Extension: moves a group back (or forward) so it reads again from a time,
/// a sequence number or either end. Deliveries in flight become unknown (their
/// acks are refused); messages before the new position count as consumed.
#[utoipa::path(
    post,
    path = "/v1.0/{tenant}/queues/{queue_id}/groups/{group_id}/rewind",
    tag = "extensions",
    params(
        ("tenant" = String, Path, description = "Tenant"),
        ("queue_id" = String, Path, description = "Queue id (`q-<n>`) or name"),
        ("group_id" = String, Path, description = "Group id (its name)"),
    ),
    request_body = Rewind,
    responses(
        (status = 200, description = "Rewound", body = Rewound),
        (status = 400, description = "Invalid field", body = ErrorBody),
        (status = 401, description = "No or wrong credentials", body = ErrorBody),
        (status = 403, description = "No read permission on the queue", body = ErrorBody),
        (status = 404, description = "No such tenant, queue or group", body = ErrorBody),
    )
)]
pub async fn rewind(
    State(state): State<AppState>,
    User(user): User,
    Conn(ctx): Conn,
    Path((tenant, queue, group)): Path<(String, String, String)>,
    query: Query,
    JsonBody(req): JsonBody<Rewind>,
) -> ApiResult<Json<Rewound>> {
    query.finish()?;
    let tenant = resolve::tenant(&state, &user, &tenant, ctx.as_deref())?;
    let q = resolve::queue(&state, &tenant, &queue)?;
    let group = resolve::group(&q, &group)?;
    resolve::check(&user, &tenant, Access::Read, q.name())?;
    let to = rewind_target(&req)?;
    let sequence = q.rewind(group, to)?;
    super::barrier(state.engine()).await?;
    Ok(Json(Rewound {
        group: group.to_owned(),
        sequence,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewind(json: &str) -> ApiResult<StartPosition> {
        rewind_target(&serde_json::from_str(json).unwrap())
    }

    #[test]
    fn rewind_targets() {
        assert_eq!(
            rewind(r#"{"to_time":"2026-01-02T03:04:05.250+01:00"}"#).unwrap(),
            StartPosition::Time(1_767_319_445_250)
        );
        assert_eq!(
            rewind(r#"{"to_sequence":7}"#).unwrap(),
            StartPosition::Sequence(7)
        );
        assert_eq!(rewind(r#"{"to":"latest"}"#).unwrap(), StartPosition::Latest);
        assert!(rewind(r#"{}"#).is_err());
        assert!(rewind(r#"{"to_sequence":1,"to":"oldest"}"#).is_err());
        let e = rewind(r#"{"to_time":"yesterday"}"#).unwrap_err();
        assert!(e.msg.contains("to_time"));
    }
}
