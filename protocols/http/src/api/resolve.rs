//! Finding what a DMS path names, with the user's rights.
//!
//! - A tenant the user has no permission on is answered 404, exactly like a
//!   tenant that does not exist: users never learn of other tenants' objects.
//! - A queue is named by its id `q-<engine id>` (stable across restarts) or,
//!   our extension, by its name. Engine-internal queues (`amq.*`, such as
//!   per-group dead-letter queues) are not reachable through the DMS API.
//! - A group's id is its name.

use std::sync::Arc;

use gw_core::{Access, Principal, Queue, Tenant};

use crate::error::{ApiError, ApiResult, code};
use crate::server::ConnCtx;
use crate::state::AppState;

/// The DMS id of a queue.
pub fn queue_id(q: &Queue) -> String {
    format!("q-{}", q.id())
}

fn parse_queue_id(s: &str) -> Option<u64> {
    let digits = s.strip_prefix("q-")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The tenant a `{project_id}` segment names (its name or its project id),
/// if the user may use it. A token scoped to another project gets 403.
pub fn tenant(
    state: &AppState,
    user: &Principal,
    name_or_id: &str,
    ctx: Option<&ConnCtx>,
) -> ApiResult<Tenant> {
    let engine = state.engine();
    let name = engine.tenant_of_project(name_or_id);
    if let Some(scope) = user.scope()
        && name.as_deref() != Some(scope)
    {
        return Err(ApiError::forbidden(format!(
            "the token is scoped to project '{}', not to '{name_or_id}'",
            engine.project_id(scope).unwrap_or_else(|| scope.to_owned())
        )));
    }
    let name = name
        .filter(|n| user.may_use_tenant(n))
        .ok_or_else(|| ApiError::not_found("tenant", name_or_id))?;
    let t = engine
        .tenant(&name)
        .map_err(|_| ApiError::not_found("tenant", name_or_id))?;
    if let Some(ctx) = ctx {
        ctx.set_tenant(&name);
    }
    Ok(t)
}

/// The queue an id or name designates.
pub fn queue(state: &AppState, tenant: &Tenant, id_or_name: &str) -> ApiResult<Arc<Queue>> {
    let not_found = || ApiError::not_found("queue", id_or_name);
    if let Some(id) = parse_queue_id(id_or_name) {
        let key = (tenant.name().to_owned(), id);
        let cached = state.inner().queue_ids.read().get(&key).cloned();
        if let Some(name) = cached
            && let Ok(q) = tenant.queue(&name)
            && q.id() == id
        {
            return Ok(q);
        }
        if let Some(q) = tenant.queues().into_iter().find(|q| q.id() == id) {
            if gw_core::is_reserved(q.name()) {
                return Err(not_found());
            }
            state
                .inner()
                .queue_ids
                .write()
                .insert(key, q.name().to_owned());
            return Ok(q);
        }
    }
    if gw_core::is_reserved(id_or_name) {
        return Err(not_found());
    }
    tenant.queue(id_or_name).map_err(|_| not_found())
}

/// Checks the group exists (its id is its name) and returns its name.
pub fn group<'a>(queue: &Queue, group_id: &'a str) -> ApiResult<&'a str> {
    if !queue.group_names().iter().any(|g| g == group_id) {
        return Err(ApiError::not_found("consumer group", group_id));
    }
    Ok(group_id)
}

/// Checks an access, answering 403.
pub fn check(user: &Principal, tenant: &Tenant, access: Access, resource: &str) -> ApiResult<()> {
    user.check(tenant.name(), access, resource)
        .map_err(ApiError::from)
}

/// Checks a DMS name: `max` characters of `[A-Za-z0-9_-]`.
pub fn dms_name(field: &str, name: &str, max: usize, len_code: &'static str) -> ApiResult<()> {
    let n = name.chars().count();
    if n == 0 || n > max {
        return Err(ApiError::invalid_with(
            len_code,
            field,
            format!("must be 1 to {max} characters, got {n}"),
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(ApiError::invalid_with(
            code::NAME_CHARS,
            field,
            format!("'{c}' is not allowed; use letters, digits, '-' and '_'"),
        ));
    }
    Ok(())
}

/// Checks a DMS tag: 1–64 characters of `[A-Za-z0-9_-]`.
pub fn dms_tag(field: &str, tag: &str) -> ApiResult<()> {
    dms_name(field, tag, 64, code::BAD_TAG).map_err(|e| ApiError {
        code: code::BAD_TAG,
        ..e
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_ids_parse_strictly() {
        assert_eq!(parse_queue_id("q-17"), Some(17));
        assert_eq!(parse_queue_id("q-"), None);
        assert_eq!(parse_queue_id("q-1a"), None);
        assert_eq!(parse_queue_id("q-+1"), None);
        assert_eq!(parse_queue_id("orders"), None);
        assert_eq!(parse_queue_id("q-99999999999999999999999"), None);
    }

    #[test]
    fn dms_names_and_tags() {
        assert!(dms_name("name", "orders_1-a", 64, code::QUEUE_NAME_LEN).is_ok());
        assert_eq!(
            dms_name("name", "", 64, code::QUEUE_NAME_LEN)
                .unwrap_err()
                .code,
            code::QUEUE_NAME_LEN
        );
        assert_eq!(
            dms_name("name", &"a".repeat(65), 64, code::QUEUE_NAME_LEN)
                .unwrap_err()
                .code,
            code::QUEUE_NAME_LEN
        );
        assert_eq!(
            dms_name("name", "a.b", 64, code::QUEUE_NAME_LEN)
                .unwrap_err()
                .code,
            code::NAME_CHARS
        );
        assert_eq!(dms_tag("tags[0]", "a b").unwrap_err().code, code::BAD_TAG);
        assert!(dms_tag("tags[0]", "t-1").is_ok());
    }
}
