//! Keystone v3 tokens, as keystoneauth1's `password` plugin uses them:
//!
//! - `GET /v3`: the version document (discovery);
//! - `POST /v3/auth/tokens`: the `password` method (user by name, with any
//!   domain, or by id) or the `token` method, scoped to a project by id or
//!   name → 201, the token in `X-Subject-Token`, and a body whose catalog
//!   holds a `dms` endpoint (`{base}/v1.0/{project_id}`, interface public,
//!   region `region`) and an `identity` one;
//! - `GET`/`HEAD`/`DELETE /v3/auth/tokens`: validate or revoke the token in
//!   `X-Subject-Token` (yours, or anyone's for an administrator).
//!
//! Errors here are Keystone's `{"error":{"code","title","message"}}`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use gw_core::{Principal, TokenInfo};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::{DOMAIN_ID, DOMAIN_NAME, base_url, iso_time, user_named};
use crate::auth::{Peer, User};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::state::AppState;

/// The header a token is given and named in.
const SUBJECT_TOKEN: &str = "x-subject-token";

/// An error in Keystone's shape.
pub struct KeystoneError(ApiError);

impl From<ApiError> for KeystoneError {
    fn from(e: ApiError) -> Self {
        KeystoneError(e)
    }
}

impl KeystoneError {
    fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        let code = match status {
            StatusCode::UNAUTHORIZED => crate::error::code::BAD_CREDENTIALS,
            StatusCode::FORBIDDEN => crate::error::code::DENIED,
            StatusCode::NOT_FOUND => crate::error::code::NOT_FOUND,
            _ => crate::error::code::INVALID,
        };
        KeystoneError(ApiError::new(status, code, msg))
    }
}

impl IntoResponse for KeystoneError {
    fn into_response(self) -> Response {
        let e = self.0;
        let title = e.status.canonical_reason().unwrap_or("Error");
        let mut res = (
            e.status,
            Json(json!({"error": {"code": e.status.as_u16(), "title": title, "message": e.msg}})),
        )
            .into_response();
        if e.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Keystone uri=\"/v3\""),
            );
        }
        res
    }
}

type KResult<T> = Result<T, KeystoneError>;

/// The version document.
#[utoipa::path(get, path = "/v3", tag = "identity",
    responses((status = 200, description = "Keystone v3 version document", body = Object)))]
pub async fn version(State(state): State<AppState>, headers: HeaderMap) -> Json<Value> {
    let base = base_url(&state, &headers);
    Json(json!({"version": {
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{base}/v3/")}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}],
    }}))
}

/// `POST /v3/auth/tokens` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AuthRequest {
    /// Identity and scope.
    #[schema(value_type = Object)]
    pub auth: Auth,
}

/// `auth` of a token request.
#[derive(Debug, Deserialize)]
pub struct Auth {
    identity: Identity,
    #[serde(default)]
    scope: Option<Scope>,
}

#[derive(Debug, Deserialize)]
struct Identity {
    methods: Vec<String>,
    #[serde(default)]
    password: Option<PasswordMethod>,
    #[serde(default)]
    token: Option<TokenMethod>,
}

#[derive(Debug, Deserialize)]
struct PasswordMethod {
    user: PasswordUser,
}

#[derive(Debug, Deserialize)]
struct PasswordUser {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    password: String,
}

#[derive(Debug, Deserialize)]
struct TokenMethod {
    id: String,
}

#[derive(Debug, Deserialize)]
struct Scope {
    #[serde(default)]
    project: Option<ProjectRef>,
}

#[derive(Debug, Deserialize)]
struct ProjectRef {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

fn unauthorized(msg: impl Into<String>) -> KeystoneError {
    KeystoneError::new(StatusCode::UNAUTHORIZED, msg)
}

/// Issues a token.
#[utoipa::path(post, path = "/v3/auth/tokens", tag = "identity",
    request_body = AuthRequest,
    responses(
        (status = 201, description = "The token (in X-Subject-Token) and its catalog", body = Object),
        (status = 400, description = "Malformed request", body = Object),
        (status = 401, description = "Wrong credentials, or no permission on the project", body = Object),
    ))]
pub async fn issue(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    JsonBody(req): JsonBody<AuthRequest>,
) -> KResult<Response> {
    let engine = state.engine();
    let id = &req.auth.identity;
    let (principal, method) = if id.methods.iter().any(|m| m == "password") {
        let pw = id.password.as_ref().ok_or_else(|| {
            KeystoneError::new(
                StatusCode::BAD_REQUEST,
                "identity.password is required for the password method",
            )
        })?;
        let name = match (&pw.user.name, &pw.user.id) {
            (Some(n), _) => n.clone(),
            (None, Some(uid)) => user_named(&state, uid)
                .ok_or_else(|| unauthorized("the request you have made requires authentication"))?,
            (None, None) => {
                return Err(KeystoneError::new(
                    StatusCode::BAD_REQUEST,
                    "identity.password.user needs a name or an id",
                ));
            }
        };
        let p = state
            .inner()
            .auth
            .principal(engine, &name, &pw.user.password, peer)
            .await
            .map_err(|_| unauthorized("the request you have made requires authentication"))?;
        (p, "password")
    } else if id.methods.iter().any(|m| m == "token") {
        let t = id.token.as_ref().ok_or_else(|| {
            KeystoneError::new(
                StatusCode::BAD_REQUEST,
                "identity.token is required for the token method",
            )
        })?;
        let (p, _) = engine
            .validate_token(&t.id, peer)
            .map_err(|e| unauthorized(e.to_string()))?;
        // A new scope is chosen below, not inherited.
        let unscoped = engine
            .principal(p.user())
            .map_err(|e| unauthorized(e.to_string()))?;
        (unscoped, "token")
    } else {
        return Err(KeystoneError::new(
            StatusCode::BAD_REQUEST,
            "identity.methods must name password or token",
        ));
    };
    let tenant = scope_tenant(&state, &principal, req.auth.scope.as_ref())?;
    let ttl = state.config().token_ttl_secs.saturating_mul(1000);
    let (token, info) = engine
        .issue_token(&principal, &tenant, method, ttl)
        .map_err(|e| unauthorized(e.to_string()))?;
    let body = token_body(&state, &headers, &principal, &info);
    let mut res = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&token) {
        res.headers_mut().insert(SUBJECT_TOKEN, v);
    }
    Ok(res)
}

/// The tenant a token is scoped to: the project named, or the user's one
/// tenant when none is named.
fn scope_tenant(state: &AppState, user: &Principal, scope: Option<&Scope>) -> KResult<String> {
    let engine = state.engine();
    match scope.and_then(|s| s.project.as_ref()) {
        Some(p) => {
            let named = p.id.as_deref().or(p.name.as_deref()).ok_or_else(|| {
                KeystoneError::new(
                    StatusCode::BAD_REQUEST,
                    "scope.project needs an id or a name",
                )
            })?;
            engine
                .tenant_of_project(named)
                .filter(|t| user.may_use_tenant(t))
                .ok_or_else(|| {
                    unauthorized(format!(
                        "user '{}' has no role on project '{named}'",
                        user.user()
                    ))
                })
        }
        None => {
            let mine: Vec<String> = engine
                .users()
                .into_iter()
                .find(|u| u.name == user.user())
                .map(|u| u.permissions.into_iter().map(|p| p.tenant).collect())
                .unwrap_or_default();
            match mine.as_slice() {
                [only] => Ok(only.clone()),
                _ => Err(KeystoneError::new(
                    StatusCode::BAD_REQUEST,
                    "scope.project is required (tokens are scoped to one project)",
                )),
            }
        }
    }
}

/// A token's body, Keystone v3 style.
fn token_body(state: &AppState, headers: &HeaderMap, user: &Principal, info: &TokenInfo) -> Value {
    let engine = state.engine();
    let base = base_url(state, headers);
    let project_id = engine.project_id(&info.tenant).unwrap_or_default();
    let region = &state.config().region;
    let domain = json!({"id": DOMAIN_ID, "name": DOMAIN_NAME});
    let endpoint = |service: &str, url: String| {
        json!({
            "id": gw_core::user_id(&format!("{service}@{url}")),
            "interface": "public",
            "region": region,
            "region_id": region,
            "url": url,
        })
    };
    let mut roles = vec![json!({"id": gw_core::user_id("role:member"), "name": "member"})];
    if user.is_administrator() {
        roles.push(json!({"id": gw_core::user_id("role:admin"), "name": "admin"}));
    }
    json!({"token": {
        "methods": [info.method],
        "issued_at": iso_time(info.issued_at),
        "expires_at": iso_time(info.expires_at),
        "user": {"id": gw_core::user_id(&info.user), "name": info.user, "domain": domain, "password_expires_at": null},
        "project": {"id": project_id, "name": info.tenant, "domain": domain},
        "roles": roles,
        "catalog": [
            {"type": "dms", "name": "dms", "id": gw_core::user_id("service:dms"),
             "endpoints": [endpoint("dms", format!("{base}/v1.0/{project_id}"))]},
            {"type": "identity", "name": "keystone", "id": gw_core::user_id("service:identity"),
             "endpoints": [endpoint("identity", format!("{base}/v3"))]},
        ],
    }})
}

/// The token in `X-Subject-Token`, if the caller may see it.
fn subject(
    state: &AppState,
    caller: &Principal,
    headers: &HeaderMap,
) -> KResult<(String, Principal, TokenInfo)> {
    let token = headers
        .get(SUBJECT_TOKEN)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .ok_or_else(|| KeystoneError::new(StatusCode::BAD_REQUEST, "X-Subject-Token is required"))?
        .to_owned();
    let (p, info) = state
        .engine()
        .validate_token(&token, None)
        .map_err(|e| KeystoneError::new(StatusCode::NOT_FOUND, e.to_string()))?;
    if p.user() != caller.user() && !caller.is_administrator() {
        return Err(KeystoneError::new(
            StatusCode::FORBIDDEN,
            "only an administrator may see or revoke another user's token",
        ));
    }
    Ok((token, p, info))
}

/// Validates the token in `X-Subject-Token` (GET answers its body, HEAD only the status).
#[utoipa::path(get, path = "/v3/auth/tokens", tag = "identity",
    responses(
        (status = 200, description = "The token is valid; its body", body = Object),
        (status = 401, description = "The caller's credentials are wrong", body = Object),
        (status = 404, description = "The subject token is unknown, revoked or expired", body = Object),
    ))]
pub async fn validate(
    State(state): State<AppState>,
    User(caller): User,
    headers: HeaderMap,
) -> KResult<Response> {
    let (token, p, info) = subject(&state, &caller, &headers)?;
    let mut res = Json(token_body(&state, &headers, &p, &info)).into_response();
    if let Ok(v) = HeaderValue::from_str(&token) {
        res.headers_mut().insert(SUBJECT_TOKEN, v);
    }
    Ok(res)
}

/// Revokes the token in `X-Subject-Token`.
#[utoipa::path(delete, path = "/v3/auth/tokens", tag = "identity",
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "The subject token is unknown, revoked or expired", body = Object),
    ))]
pub async fn revoke(
    State(state): State<AppState>,
    User(caller): User,
    headers: HeaderMap,
) -> KResult<StatusCode> {
    let (token, _, _) = subject(&state, &caller, &headers)?;
    state
        .engine()
        .revoke_token(&token)
        .map_err(|e| KeystoneError::new(StatusCode::NOT_FOUND, e.to_string()))?;
    Ok(StatusCode::NO_CONTENT)
}
