//! A request body must arrive whole within `body_timeout_secs` (a stalled
//! or trickling body would otherwise hold a connection, and its buffers,
//! forever): it is read here, before any handler, and a late one is
//! answered 408 and the connection closed. A body over `max_body_bytes` is
//! 413 here too, so nothing past the limit is ever buffered.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::error::{ApiError, code};
use crate::state::AppState;

/// Reads the body within the deadline, then runs the handler on it.
pub(crate) async fn read_in_time(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if http_body::Body::is_end_stream(req.body()) {
        return next.run(req).await;
    }
    let limit = state.config().max_body_bytes;
    let wait = Duration::from_secs(state.config().body_timeout_secs.max(1));
    let (parts, body) = req.into_parts();
    match tokio::time::timeout(wait, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => {
            let req = Request::from_parts(parts, Body::from(collected.to_bytes()));
            next.run(req).await
        }
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            code::TOO_LARGE,
            "the request body is larger than the configured max_body_bytes",
        )
        .into_response(),
        Ok(Err(e)) => {
            ApiError::invalid("request body", format!("could not be read: {e}")).into_response()
        }
        Err(_) => {
            tracing::debug!(path = %parts.uri.path(), "request body not received in time; 408");
            let mut res = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                code::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} s (body_timeout_secs)",
                    wait.as_secs()
                ),
            )
            .into_response();
            // The rest of the body may still come: the connection cannot be reused.
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            res
        }
    }
}
