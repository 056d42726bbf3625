//! Access keys as Huawei Cloud IAM manages them
//! (`/v3.0/OS-CREDENTIAL/credentials`): create (the SK is in that answer
//! only), list by user, show, activate/deactivate, delete. Users manage
//! their own keys; administrators anyone's. `user_id` is a user's id or,
//! our extension, its name.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use gw_core::{AccessKeyInfo, Principal};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{iso_time, user_named};
use crate::auth::User;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Path, Query};
use crate::state::AppState;

/// An access key as IAM shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Credential {
    /// The owner's user id.
    pub user_id: String,
    /// The AK.
    pub access: String,
    /// The SK: only in the answer to a creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// `active` or `inactive`.
    pub status: String,
    /// When it was created.
    pub create_time: String,
    /// Free text.
    pub description: String,
    /// Extension: the owner's name.
    pub user_name: String,
}

impl Credential {
    fn of(k: &AccessKeyInfo, secret: Option<String>) -> Self {
        Credential {
            user_id: gw_core::user_id(&k.user),
            access: k.access.clone(),
            secret,
            status: if k.active { "active" } else { "inactive" }.into(),
            create_time: iso_time(k.created_at),
            description: k.description.clone(),
            user_name: k.user.clone(),
        }
    }
}

/// `{"credential": …}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OneCredential {
    /// The key.
    pub credential: Credential,
}

/// `{"credentials": […]}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CredentialList {
    /// The keys.
    pub credentials: Vec<Credential>,
}

/// Creation request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCredential {
    /// Whose key.
    pub credential: NewCredential,
}

/// `credential` of a creation request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCredential {
    /// The owner: user id or name.
    pub user_id: String,
    /// Free text (≤ 255 characters).
    #[serde(default)]
    pub description: String,
}

/// Update request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCredential {
    /// What changes.
    pub credential: CredentialChange,
}

/// `credential` of an update request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialChange {
    /// `active` or `inactive`.
    #[serde(default)]
    pub status: Option<String>,
    /// A new description.
    #[serde(default)]
    pub description: Option<String>,
}

/// The user a `user_id` names, if the caller may manage its keys.
fn owner(state: &AppState, caller: &Principal, user_id: &str) -> ApiResult<String> {
    let user = user_named(state, user_id).ok_or_else(|| ApiError::not_found("user", user_id))?;
    if user != caller.user() && !caller.is_administrator() {
        return Err(ApiError::forbidden(format!(
            "user '{}' may manage only its own access keys",
            caller.user()
        )));
    }
    Ok(user)
}

/// The key an AK names, if the caller may manage it (others' keys are 404
/// to non-administrators: their AKs are not to be probed).
fn key(state: &AppState, caller: &Principal, access: &str) -> ApiResult<AccessKeyInfo> {
    state
        .engine()
        .access_key(access)
        .filter(|k| k.user == caller.user() || caller.is_administrator())
        .ok_or_else(|| ApiError::not_found("access key", access))
}

/// Creates an access key; the answer holds its SK, shown this once.
#[utoipa::path(post, path = "/v3.0/OS-CREDENTIAL/credentials", tag = "identity",
    request_body = CreateCredential,
    responses(
        (status = 201, description = "Created, with its secret", body = OneCredential),
        (status = 403, description = "Another user's key, and not an administrator"),
        (status = 404, description = "No such user"),
        (status = 429, description = "The user has 2 keys already"),
    ))]
pub async fn create_credential(
    State(state): State<AppState>,
    User(caller): User,
    query: Query,
    JsonBody(req): JsonBody<CreateCredential>,
) -> ApiResult<(StatusCode, Json<OneCredential>)> {
    query.finish()?;
    let user = owner(&state, &caller, &req.credential.user_id)?;
    let (info, secret) = state
        .engine()
        .create_access_key(&user, &req.credential.description)?;
    crate::api::barrier(state.engine()).await?;
    Ok((
        StatusCode::CREATED,
        Json(OneCredential {
            credential: Credential::of(&info, Some(secret)),
        }),
    ))
}

/// Lists access keys: the caller's, a user's (`user_id`), or everyone's for an administrator.
#[utoipa::path(get, path = "/v3.0/OS-CREDENTIAL/credentials", tag = "identity",
    params(("user_id" = Option<String>, Query, description = "Whose keys (id or name); default: the caller's")),
    responses((status = 200, description = "The keys", body = CredentialList)))]
pub async fn list_credentials(
    State(state): State<AppState>,
    User(caller): User,
    mut query: Query,
) -> ApiResult<Json<CredentialList>> {
    let user_id = query.one("user_id")?;
    query.finish()?;
    let user = match user_id {
        Some(id) => owner(&state, &caller, &id)?,
        None => caller.user().to_owned(),
    };
    let credentials = state
        .engine()
        .access_keys(Some(&user))
        .iter()
        .map(|k| Credential::of(k, None))
        .collect();
    Ok(Json(CredentialList { credentials }))
}

/// Shows one access key (never its SK).
#[utoipa::path(get, path = "/v3.0/OS-CREDENTIAL/credentials/{access}", tag = "identity",
    params(("access" = String, Path, description = "The AK")),
    responses((status = 200, description = "The key", body = OneCredential), (status = 404, description = "No such key")))]
pub async fn show_credential(
    State(state): State<AppState>,
    User(caller): User,
    Path(access): Path<String>,
    query: Query,
) -> ApiResult<Json<OneCredential>> {
    query.finish()?;
    let k = key(&state, &caller, &access)?;
    Ok(Json(OneCredential {
        credential: Credential::of(&k, None),
    }))
}

/// Activates or deactivates an access key, or changes its description.
#[utoipa::path(put, path = "/v3.0/OS-CREDENTIAL/credentials/{access}", tag = "identity",
    params(("access" = String, Path, description = "The AK")),
    request_body = UpdateCredential,
    responses((status = 200, description = "The key", body = OneCredential), (status = 400, description = "Bad status"), (status = 404, description = "No such key")))]
pub async fn update_credential(
    State(state): State<AppState>,
    User(caller): User,
    Path(access): Path<String>,
    query: Query,
    JsonBody(req): JsonBody<UpdateCredential>,
) -> ApiResult<Json<OneCredential>> {
    query.finish()?;
    key(&state, &caller, &access)?;
    let active = match req.credential.status.as_deref() {
        None => None,
        Some("active") => Some(true),
        Some("inactive") => Some(false),
        Some(other) => {
            return Err(ApiError::invalid(
                "credential.status",
                format!("'{other}' is not active or inactive"),
            ));
        }
    };
    let k =
        state
            .engine()
            .update_access_key(&access, active, req.credential.description.as_deref())?;
    crate::api::barrier(state.engine()).await?;
    Ok(Json(OneCredential {
        credential: Credential::of(&k, None),
    }))
}

/// Deletes an access key.
#[utoipa::path(delete, path = "/v3.0/OS-CREDENTIAL/credentials/{access}", tag = "identity",
    params(("access" = String, Path, description = "The AK")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "No such key")))]
pub async fn delete_credential(
    State(state): State<AppState>,
    User(caller): User,
    Path(access): Path<String>,
    query: Query,
) -> ApiResult<StatusCode> {
    query.finish()?;
    key(&state, &caller, &access)?;
    state.engine().delete_access_key(&access)?;
    crate::api::barrier(state.engine()).await?;
    Ok(StatusCode::NO_CONTENT)
}
