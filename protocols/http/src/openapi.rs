//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! attributes and the types' `ToSchema` derives (registered together with the
//! routes, so no route goes undocumented), plus the answers every route may
//! give because of a layer (401/403 from authentication, 400 for a query
//! parameter it does not know, 413/415 for bodies, 500, 503 while stopping).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::ErrorBody;
use crate::state::AppState;

/// The document's fixed parts.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Message gateway HTTP API",
        description = "The DMS queue API v1.0 (tenant in place of project_id, `%2F` for `/`) with \
            extensions, management under /api, metrics and health. HTTP Basic with the gateway's users.",
    ),
    modifiers(&BasicAuth),
    security(("basic" = [])),
    components(schemas(ErrorBody)),
    tags(
        (name = "dms", description = "DMS queue API v1.0"),
        (name = "extensions", description = "Beyond DMS: rewind and message lookup"),
        (name = "management", description = "Tenants, users, permissions, exchanges, bindings, queues, connections (administrator tag)"),
        (name = "operations", description = "Metrics, health, this document, MQTT over WebSocket"),
    )
)]
pub struct ApiDoc;

struct BasicAuth;

impl Modify for BasicAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        if let Some(c) = doc.components.as_mut() {
            c.add_security_scheme(
                "basic",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
            );
            // `/metrics` also takes `[http] metrics_token` as a bearer token.
            c.add_security_scheme(
                "metrics_token",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
        }
    }
}

fn error(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    })
}

/// Adds the answers layers give to every operation that can get them.
pub fn finish(doc: &utoipa::openapi::OpenApi) -> Value {
    let mut v = serde_json::to_value(doc).unwrap_or(Value::Null);
    let Some(paths) = v.get_mut("paths").and_then(Value::as_object_mut) else {
        return v;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            if !matches!(method.as_str(), "get" | "put" | "post" | "delete" | "patch") {
                continue;
            }
            let public = op
                .get("security")
                .and_then(Value::as_array)
                .is_some_and(|s| {
                    s.iter()
                        .all(|r| r.as_object().is_some_and(|o| o.is_empty()))
                });
            let has_body = op.get("requestBody").is_some();
            let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                continue;
            };
            let mut add = |status: &str, what: &str| {
                responses
                    .entry(status.to_owned())
                    .or_insert_with(|| error(what));
            };
            add("400", "Unknown or invalid query parameter");
            add("500", "Server failure (storage)");
            if path != "/healthz" && path != "/metrics" {
                add("503", "Shutting down");
            }
            if !public {
                add("401", "No or wrong credentials");
                if path.starts_with("/api/") {
                    add("403", "Not tagged administrator");
                }
            }
            if method != "get" {
                // Every change waits for the store; one it cannot write is refused.
                add(
                    "507",
                    "The store cannot write now; nothing was changed (retry later)",
                );
            }
            if has_body {
                add("413", "Body over max_body_bytes");
                add("415", "Body not declared as JSON");
            }
        }
    }
    v
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", security(()),
    responses((status = 200, description = "OpenAPI 3.1", body = Object)))]
pub async fn openapi_json(State(state): State<AppState>) -> Response {
    let body = state.inner().openapi.get().cloned().unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}
