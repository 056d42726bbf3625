//! Authentication of every request, as a layer, by whichever credentials
//! it carries:
//!
//! - `X-Auth-Token`: a Keystone-style token (`/v3/auth/tokens`); its
//!   principal may use the token's project only;
//! - `Authorization: SDK-HMAC-SHA256 …`: an access key's signature
//!   (`signature.rs`), checked over the whole request, body included;
//! - `Authorization: Basic …`: user and password (`basic.rs`).
//!
//! Each failure is a 401 whose message says what was wrong (unknown or
//! inactive AK, bad signature, stale `X-Sdk-Date`, expired token, …).

mod basic;
pub mod signature;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, OriginalUri, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use gw_core::{Principal, now_millis};

pub use basic::{AuthCache, basic_credentials};

use crate::error::{ApiError, code};
use crate::server::ConnCtx;
use crate::state::AppState;

/// The header a token comes in.
pub const AUTH_TOKEN: &str = "x-auth-token";

fn unauthorized(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code::BAD_CREDENTIALS, msg)
}

fn no_credentials() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        code::NO_CREDENTIALS,
        "credentials required (X-Auth-Token, an SDK-HMAC-SHA256 signature or HTTP Basic)",
    )
}

/// Maps the engine's refusal of a credential to a 401 that says why.
fn refused(e: gw_core::Error) -> ApiError {
    match e {
        gw_core::Error::AuthenticationFailed(why) => {
            unauthorized(format!("authentication failed: {why}"))
        }
        other => ApiError::from(other),
    }
}

/// How a request proved who it is.
enum Credentials {
    Token(String),
    Signed(signature::SignedAuth),
    Basic(String, String),
}

fn credentials(headers: &HeaderMap) -> Result<Option<Credentials>, ApiError> {
    if let Some(t) = headers.get(AUTH_TOKEN) {
        let t = t
            .to_str()
            .map_err(|_| unauthorized("X-Auth-Token is not ASCII"))?
            .trim();
        return Ok(Some(Credentials::Token(t.to_owned())));
    }
    if let Some(v) = headers.get(header::AUTHORIZATION)
        && let Ok(text) = v.to_str()
        && let Some(parsed) = signature::parse(text)
    {
        return parsed
            .map(|a| Some(Credentials::Signed(a)))
            .map_err(|e| unauthorized(e.to_string()));
    }
    Ok(basic_credentials(headers)?.map(|(u, p)| Credentials::Basic(u, p)))
}

/// Who sent a request, by its credentials; the request comes back (its
/// body was read to check a signature).
pub async fn principal_of(
    state: &AppState,
    req: Request,
) -> Result<(Principal, Request), ApiError> {
    let peer: Option<IpAddr> = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let engine = state.engine();
    let Some(credentials) = credentials(req.headers())? else {
        // No credentials on an HTTPS connection whose client showed a
        // verified certificate: the certificate's user, without a password.
        let Some(identity) = req.extensions().get::<gw_listen::PeerIdentity>().cloned() else {
            return Err(no_credentials());
        };
        let p = engine
            .authenticate_certificate(&identity.user, peer)
            .map_err(|e| {
                tracing::info!(user = identity.user, error = %e, "HTTPS client certificate login refused");
                unauthorized(format!(
                    "the client certificate's user '{}' is not known here",
                    identity.user
                ))
            })?;
        return Ok((p, req));
    };
    match credentials {
        Credentials::Token(token) => {
            let (p, _) = engine.validate_token(&token, peer).map_err(refused)?;
            Ok((p, req))
        }
        Credentials::Basic(user, password) => {
            let p = state
                .inner()
                .auth
                .principal(engine, &user, &password, peer)
                .await?;
            Ok((p, req))
        }
        Credentials::Signed(auth) => {
            let (p, secret) = engine
                .access_key_secret(&auth.access, peer)
                .map_err(refused)?;
            let (parts, body) = req.into_parts();
            // The body was already read whole (`body_deadline`); this takes it.
            let bytes = axum::body::to_bytes(body, usize::MAX)
                .await
                .map_err(|e| ApiError::invalid("request body", e))?;
            let uri = parts
                .extensions
                .get::<OriginalUri>()
                .map_or(&parts.uri, |o| &o.0);
            let signed = signature::Request {
                method: &parts.method,
                path: uri.path(),
                query: uri.query(),
                headers: &parts.headers,
                body: &bytes,
            };
            let now = i64::try_from(now_millis() / 1000).unwrap_or(i64::MAX);
            signature::verify(&auth, &signed, &secret, now)
                .map_err(|e| unauthorized(format!("access key '{}': {e}", auth.access)))?;
            Ok((p, Request::from_parts(parts, Body::from(bytes))))
        }
    }
}

/// Layer: authenticates the request and stores the [`Principal`] in its extensions.
pub async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match principal_of(&state, req).await {
        Ok((principal, mut req)) => {
            if let Some(ctx) = req.extensions().get::<Arc<ConnCtx>>() {
                ctx.set_user(principal.user());
            }
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// Layer: only users tagged `administrator` pass (management routes).
pub async fn require_administrator(req: Request, next: Next) -> Response {
    match req.extensions().get::<Principal>() {
        Some(p) if p.is_administrator() => next.run(req).await,
        Some(p) => ApiError::forbidden(format!(
            "user '{}' is not tagged administrator; management needs that tag",
            p.user()
        ))
        .into_response(),
        None => no_credentials().into_response(),
    }
}

/// The authenticated user of a request (routes behind [`authenticate`]).
#[derive(Clone, Debug)]
pub struct User(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(User)
            .ok_or_else(no_credentials)
    }
}

/// The client's address, when the request came through our accept loop.
pub struct Peer(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}
