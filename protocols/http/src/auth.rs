//! HTTP Basic authentication against the gateway's users, as a layer.
//!
//! The engine checks passwords with Argon2 (tens of milliseconds, run on the
//! blocking pool, at most two at a time so a password-guessing client cannot
//! take every core) and compiles the user's permission patterns. A short
//! cache keyed by a SHA-256 of the credentials keeps both off the hot path
//! of clients that send the same `Authorization` header with every request;
//! management changes to users or permissions clear it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use gw_core::{Engine, Principal};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::error::{ApiError, code};
use crate::server::ConnCtx;
use crate::state::AppState;

/// How long a verified login is reused without asking the engine again.
const CACHE_TTL: Duration = Duration::from_secs(2);
/// Above this many cached logins the cache starts afresh.
const CACHE_MAX: usize = 10_000;

/// Verified logins by credential digest.
pub struct AuthCache {
    entries: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
    verifying: Semaphore,
    failures: Mutex<FailureLog>,
}

impl Default for AuthCache {
    fn default() -> Self {
        AuthCache {
            entries: Mutex::new(HashMap::new()),
            verifying: Semaphore::new(2),
            failures: Mutex::new(FailureLog::default()),
        }
    }
}

/// At most one "login refused" warning this often; the next one says how
/// many were not logged (a password-guessing flood must not flood the log).
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(10);

/// Refused HTTP logins, logged rate-limited.
#[derive(Default)]
struct FailureLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl FailureLog {
    fn refused(&mut self, user: &str, peer: Option<IpAddr>) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|at| now.duration_since(at) < FAILURE_LOG_EVERY)
        {
            self.unlogged += 1;
            return;
        }
        let peer = peer.map(|p| p.to_string()).unwrap_or_default();
        tracing::warn!(
            user,
            %peer,
            unlogged_since_last = self.unlogged,
            "HTTP login refused (wrong user or password)"
        );
        self.last = Some(now);
        self.unlogged = 0;
    }
}

impl AuthCache {
    /// Forgets every cached login (a user or permission changed).
    pub fn clear(&self) {
        self.entries.lock().clear();
    }

    async fn principal(
        &self,
        engine: &Engine,
        user: &str,
        password: &str,
        peer: Option<IpAddr>,
    ) -> Result<Principal, ApiError> {
        // Loopback-only users (guest) pass from 127.0.0.1 and fail from
        // elsewhere, so where the request comes from is part of the key.
        let local = peer.is_none_or(|ip| ip.is_loopback());
        let mut h = Sha256::new();
        h.update(user.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        h.update([u8::from(local)]);
        let key: [u8; 32] = h.finalize().into();
        if let Some((p, at)) = self.entries.lock().get(&key)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(p.clone());
        }
        let _permit = self
            .verifying
            .acquire()
            .await
            .map_err(|_| ApiError::shutting_down())?;
        let principal = engine
            .authenticate_async(user, password.as_bytes(), peer)
            .await
            .map_err(|e| match e {
                gw_core::Error::AuthenticationFailed(_) => {
                    self.failures.lock().refused(user, peer);
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        code::BAD_CREDENTIALS,
                        format!("authentication failed for user '{user}'"),
                    )
                }
                other => ApiError::from(other),
            })?;
        let mut entries = self.entries.lock();
        if entries.len() >= CACHE_MAX {
            entries.clear();
        }
        entries.insert(key, (principal.clone(), Instant::now()));
        Ok(principal)
    }
}

/// Reads `Authorization: Basic …`; `Ok(None)` when absent.
pub fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = |why: &str| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            code::BAD_CREDENTIALS,
            format!("malformed Authorization header: {why}"),
        )
    };
    let value = value.to_str().map_err(|_| bad("not ASCII"))?;
    let (scheme, rest) = value
        .trim()
        .split_once(' ')
        .ok_or_else(|| bad("no scheme"))?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad("only the Basic scheme is supported"));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .map_err(|_| bad("not base64"))?;
    let text = String::from_utf8(decoded).map_err(|_| bad("not UTF-8"))?;
    let (user, password) = text
        .split_once(':')
        .ok_or_else(|| bad("no ':' between user and password"))?;
    Ok(Some((user.to_owned(), password.to_owned())))
}

/// Layer: authenticates the request and stores the [`Principal`] in its extensions.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let (user, password) = match basic_credentials(req.headers()) {
        Ok(Some(c)) => c,
        Ok(None) if req.extensions().get::<gw_listen::PeerIdentity>().is_some() => {
            return certificate_login(state, req, next, peer).await;
        }
        Ok(None) => {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                code::NO_CREDENTIALS,
                "credentials required (HTTP Basic)",
            )
            .into_response();
        }
        Err(e) => return e.into_response(),
    };
    match state
        .inner()
        .auth
        .principal(state.engine(), &user, &password, peer)
        .await
    {
        Ok(principal) => {
            if let Some(ctx) = req.extensions().get::<std::sync::Arc<ConnCtx>>() {
                ctx.set_user(principal.user());
            }
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// A request without Basic on an HTTPS connection whose client showed a
/// verified certificate: the certificate's user, without a password.
async fn certificate_login(
    state: AppState,
    mut req: Request,
    next: Next,
    peer: Option<std::net::IpAddr>,
) -> Response {
    let Some(identity) = req.extensions().get::<gw_listen::PeerIdentity>().cloned() else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            code::NO_CREDENTIALS,
            "credentials required (HTTP Basic)",
        )
        .into_response();
    };
    match state
        .engine()
        .authenticate_certificate(&identity.user, peer)
    {
        Ok(principal) => {
            if let Some(ctx) = req.extensions().get::<std::sync::Arc<ConnCtx>>() {
                ctx.set_user(principal.user());
            }
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Err(e) => {
            tracing::info!(user = identity.user, error = %e, "HTTPS client certificate login refused");
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                code::NO_CREDENTIALS,
                format!(
                    "the client certificate's user '{}' is not known here",
                    identity.user
                ),
            )
            .into_response()
        }
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
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            code::NO_CREDENTIALS,
            "credentials required (HTTP Basic)",
        )
        .into_response(),
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
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    code::NO_CREDENTIALS,
                    "credentials required (HTTP Basic)",
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn parses_basic_credentials() {
        let mut h = HeaderMap::new();
        assert_eq!(basic_credentials(&h).unwrap(), None);
        // "guest:gu:est" — the password may contain ':'.
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic Z3Vlc3Q6Z3U6ZXN0"),
        );
        assert_eq!(
            basic_credentials(&h).unwrap(),
            Some(("guest".into(), "gu:est".into()))
        );
        for bad in ["Bearer abc", "Basic !!!", "Basic Z3Vlc3Q=", "Basic"] {
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(bad));
            assert_eq!(
                basic_credentials(&h).unwrap_err().status,
                StatusCode::UNAUTHORIZED,
                "{bad}"
            );
        }
    }

    #[test]
    fn refused_logins_are_logged_once_per_interval_and_counted_between() {
        let mut log = FailureLog::default();
        log.refused("a", None);
        assert!(log.last.is_some());
        assert_eq!(log.unlogged, 0);
        for _ in 0..5 {
            log.refused("a", None);
        }
        assert_eq!(log.unlogged, 5);
        log.last = Some(Instant::now() - FAILURE_LOG_EVERY);
        log.refused("b", None);
        assert_eq!(log.unlogged, 0, "logged again, with the count");
    }
}
