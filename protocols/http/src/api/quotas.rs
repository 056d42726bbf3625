//! `GET /v1.0/{tenant}/quotas/dms`: the tenant's limits and use, in DMS's shape.

use axum::Json;
use axum::extract::State;

use crate::extract::Path;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::resolve;
use crate::auth::User;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::Query;
use crate::server::Conn;
use crate::state::AppState;

/// One quota.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Quota {
    /// `queue` (per tenant) or `group` (per queue).
    #[serde(rename = "type")]
    pub kind: String,
    /// The limit.
    pub quota: u64,
    /// What is used: queues of the tenant, or the most groups any of its queues has.
    pub used: u64,
    /// Smallest value the limit may be configured to.
    pub min: u64,
    /// Largest value the limit may currently take (the configured one).
    pub max: u64,
}

/// The quota list.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Resources {
    /// The quotas.
    pub resources: Vec<Quota>,
}

/// `GET /quotas/dms` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Quotas {
    /// The quotas.
    pub quotas: Resources,
}

/// Shows the tenant's quotas and their use.
#[utoipa::path(
    get,
    path = "/v1.0/{tenant}/quotas/dms",
    tag = "dms",
    params(("tenant" = String, Path, description = "Tenant")),
    responses(
        (status = 200, description = "Limits and use", body = Quotas),
        (status = 401, description = "No or wrong credentials", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
    )
)]
pub async fn quotas(
    State(state): State<AppState>,
    User(user): User,
    Conn(ctx): Conn,
    Path(tenant): Path<String>,
    query: Query,
) -> ApiResult<Json<Quotas>> {
    query.finish()?;
    let tenant = resolve::tenant(&state, &user, &tenant, ctx.as_deref())?;
    let queues: Vec<_> = tenant
        .queues()
        .into_iter()
        .filter(|q| !gw_core::is_reserved(q.name()))
        .collect();
    let most_groups = queues
        .iter()
        .map(|q| q.group_names().len())
        .max()
        .unwrap_or(0);
    let cfg = state.config();
    let quota = |kind: &str, quota: usize, used: usize| Quota {
        kind: kind.to_owned(),
        quota: quota as u64,
        used: used as u64,
        min: 1,
        max: quota as u64,
    };
    Ok(Json(Quotas {
        quotas: Resources {
            resources: vec![
                quota("queue", cfg.max_queues_per_tenant, queues.len()),
                quota("group", cfg.max_groups_per_queue, most_groups),
            ],
        },
    }))
}
