//! The gateway's HTTP door: the DMS queue API v1.0 (Huawei Cloud / Open
//! Telekom Cloud) onto the engine's queues and consumer groups, management
//! (RabbitMQ-management-like, under `/api`), Prometheus metrics, health
//! checks, an OpenAPI 3.1 document generated from the code, and MQTT over
//! WebSocket handed to the MQTT door.
//!
//! # Layout
//! - `server.rs`: [`HttpDoor`], what the gateway's accept layer (`gw-listen`)
//!   hands connections to: one task per connection (registered with the
//!   engine, closed on shutdown or an operator's request), and the 503 for
//!   connections over `max_connections`.
//! - `state.rs`: what routes share; `config.rs`: the `[http]` settings.
//! - `error.rs`: [`ApiError`], the one error type, and the engine error mapping.
//! - `extract/`: strict JSON bodies and query strings; `auth.rs`: HTTP Basic.
//! - `api/`: the DMS routes; `manage/`: management; `metrics.rs`, `health.rs`,
//!   `openapi.rs`, `ws.rs` (the `/mqtt` upgrade and [`WsStream`]).
//!
//! Cross-cutting behaviour is tower layers: authentication (per sub-router),
//! the administrator check, the body limit, 503 while shutting down, and a
//! last-resort panic catcher.

mod api;
mod auth;
mod body_deadline;
mod config;
mod error;
mod extract;
mod health;
mod manage;
mod metrics;
mod openapi;
mod pressure;
mod server;
mod state;
mod ws;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use api::body::{JSON as JSON_CONTENT_TYPE, TEXT as TEXT_CONTENT_TYPE};
pub use api::handler::Handler;
pub use config::{Config, ConfigError, Secret};
pub use error::{ApiError, ErrorBody};
pub use server::HttpDoor;
pub use state::AppState;
pub use ws::{SUBPROTOCOL, StreamHandler, WsStream};

/// The whole HTTP API as an axum router (also usable with `oneshot` in tests).
pub fn router(state: AppState) -> Router {
    let (routes, doc) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(api::routes(&state))
        .merge(manage::routes(&state))
        .merge(
            OpenApiRouter::new()
                .routes(routes!(metrics::metrics))
                .layer(from_fn_with_state(state.clone(), metrics::authenticate)),
        )
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(ws::upgrade))
        .split_for_parts();
    let json = serde_json::to_vec(&openapi::finish(&doc)).unwrap_or_default();
    let _ = state.inner().openapi.set(Bytes::from(json));
    let body_limit = state.config().max_body_bytes;
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(
            state.clone(),
            body_deadline::read_in_time,
        ))
        .layer(from_fn_with_state(state.clone(), refuse_while_stopping))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(CatchPanicLayer::custom(panicked))
        .with_state(state)
}

/// The OpenAPI document the router serves at `/openapi.json`.
pub fn openapi_document(state: &AppState) -> Option<serde_json::Value> {
    state
        .inner()
        .openapi
        .get()
        .and_then(|b| serde_json::from_slice(b).ok())
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found("route", req.uri().path())
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        error::code::METHOD,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// New requests get 503 once shutdown began (liveness and metrics still answer).
async fn refuse_while_stopping(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if state.shutdown().is_cancelled() && !matches!(req.uri().path(), "/healthz" | "/metrics") {
        return ApiError::shutting_down().into_response();
    }
    next.run(req).await
}

fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked; answered 500");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        error::code::INTERNAL,
        "internal error",
    )
    .into_response()
}
