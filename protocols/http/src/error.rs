//! One error type for every route: [`ApiError`] renders DMS's error body
//! `{"error_code","error_msg"}` with the right status. Engine errors are
//! mapped to statuses here and nowhere else.
//!
//! Codes are DMS's 8-digit strings: where DMS defines one for the situation
//! (queue exists, bad tag, time_wait out of range, …) it is used with DMS's
//! meaning; the others end with the HTTP status (`10240404`, `10240503`, …).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The JSON body of every error answer.
#[derive(Clone, Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// DMS-style error code, e.g. `10240017` (queue exists) or `10240404` (not found).
    pub error_code: String,
    /// What went wrong, naming the field or object at fault.
    pub error_msg: String,
}

/// Error codes (see the module doc).
pub mod code {
    /// The name contains invalid characters.
    pub const NAME_CHARS: &str = "10240007";
    /// The message body is not JSON or has invalid content.
    pub const BAD_JSON: &str = "10240009";
    /// The description contains invalid characters.
    pub const DESCRIPTION_CHARS: &str = "10240010";
    /// Queue name length.
    pub const QUEUE_NAME_LEN: &str = "10240011";
    /// Group name length.
    pub const GROUP_NAME_LEN: &str = "10240012";
    /// Description length.
    pub const DESCRIPTION_LEN: &str = "10240013";
    /// The tag name is invalid.
    pub const BAD_TAG: &str = "10240004";
    /// max_msgs out of range.
    pub const MAX_MSGS: &str = "10240014";
    /// The queue already exists.
    pub const QUEUE_EXISTS: &str = "10240017";
    /// The consumer group already exists.
    pub const GROUP_EXISTS: &str = "10240018";
    /// Too many consumer groups.
    pub const GROUP_QUOTA: &str = "10240019";
    /// The queue quota is used up.
    pub const QUEUE_QUOTA: &str = "10240020";
    /// time_wait out of range.
    pub const TIME_WAIT: &str = "10240021";
    /// max_consume_count out of range.
    pub const MAX_CONSUME_COUNT: &str = "10240022";
    /// retention_hours out of range.
    pub const RETENTION_HOURS: &str = "10240027";
    /// Any other invalid parameter.
    pub const INVALID: &str = "10240400";
    /// Credentials missing.
    pub const NO_CREDENTIALS: &str = "10240103";
    /// Credentials wrong.
    pub const BAD_CREDENTIALS: &str = "10240101";
    /// Access denied.
    pub const DENIED: &str = "10240309";
    /// No such object.
    pub const NOT_FOUND: &str = "10240404";
    /// Method not allowed on this path.
    pub const METHOD: &str = "10240405";
    /// State conflict (inequivalent declaration, fixed tag filter, locked queue, unknown handler).
    pub const CONFLICT: &str = "10240409";
    /// The request body did not arrive in time.
    pub const REQUEST_TIMEOUT: &str = "10240408";
    /// Body over the limit.
    pub const TOO_LARGE: &str = "10240413";
    /// Body is not declared as JSON.
    pub const MEDIA_TYPE: &str = "10240415";
    /// A limit or quota refused the request.
    pub const LIMIT: &str = "10240429";
    /// Storage or other server failure.
    pub const INTERNAL: &str = "10240500";
    /// The gateway is shutting down.
    pub const SHUTTING_DOWN: &str = "10240503";
    /// The store cannot write now (disk full, no file descriptors); retry later.
    pub const STORE_NOT_WRITABLE: &str = "10240507";
    /// A disk or memory alarm of the node holds publishers back; retry later.
    pub const RESOURCE_ALARM: &str = "10240509";
}

/// An error answer: status, code and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// DMS-style code.
    pub code: &'static str,
    /// Human-readable reason.
    pub msg: String,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, msg: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            msg: msg.into(),
        }
    }

    /// 400 with the generic invalid-parameter code, naming the field.
    pub fn invalid(field: &str, reason: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            code::INVALID,
            format!("invalid {field}: {reason}"),
        )
    }

    /// 400 with a specific DMS code, naming the field.
    pub fn invalid_with(code: &'static str, field: &str, reason: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            code,
            format!("invalid {field}: {reason}"),
        )
    }

    /// 400 with a specific DMS code and a whole message: DMS answers 400 for
    /// a name already taken or a quota used up, with the code saying which.
    pub fn invalid_with_msg(code: &'static str, msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, msg)
    }

    /// 404 for a named object.
    pub fn not_found(kind: &str, name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            code::NOT_FOUND,
            format!("no {kind} '{name}'"),
        )
    }

    /// 409 with a message.
    pub fn conflict(code: &'static str, msg: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, msg)
    }

    /// 429 with a message.
    pub fn limit(code: &'static str, msg: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, code, msg)
    }

    /// 403 with a message.
    pub fn forbidden(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code::DENIED, msg)
    }

    /// 503 while the gateway shuts down.
    pub fn shutting_down() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            code::SHUTTING_DOWN,
            "the gateway is shutting down",
        )
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error_code: self.code.to_owned(),
            error_msg: self.msg.clone(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.msg)
    }
}

impl std::error::Error for ApiError {}

impl From<gw_core::Error> for ApiError {
    fn from(e: gw_core::Error) -> Self {
        use gw_core::Error as E;
        let msg = e.to_string();
        match e {
            E::NotFound { .. } | E::ConsumerCancelled(_) => {
                Self::new(StatusCode::NOT_FOUND, code::NOT_FOUND, msg)
            }
            E::PreconditionFailed(_) | E::ResourceLocked(_) | E::UnknownDelivery(_) => {
                Self::conflict(code::CONFLICT, msg)
            }
            E::Invalid { .. } => Self::new(StatusCode::BAD_REQUEST, code::INVALID, msg),
            E::AccessRefused(_) => Self::forbidden(msg),
            E::AuthenticationFailed(_) => {
                Self::new(StatusCode::UNAUTHORIZED, code::BAD_CREDENTIALS, msg)
            }
            E::LimitReached(_) => Self::limit(code::LIMIT, msg),
            E::ShuttingDown => Self::shutting_down(),
            E::Storage(gw_core::StoreError::NotWritable(_)) => {
                tracing::warn!(cause = %msg, "store not writable; answered 507");
                Self::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    code::STORE_NOT_WRITABLE,
                    msg,
                )
            }
            E::Storage(_) => {
                tracing::error!(cause = %msg, "storage failure answered with 500");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, code::INTERNAL, msg)
            }
            _ => Self::new(StatusCode::INTERNAL_SERVER_ERROR, code::INTERNAL, msg),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut res = (self.status, body).into_response();
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        match self.status {
            StatusCode::UNAUTHORIZED => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"gateway\""),
                );
            }
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            StatusCode::INSUFFICIENT_STORAGE => {
                // The store retries every half second; space takes longer.
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        res
    }
}

/// The route's result type.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_map_to_statuses() {
        let cases = [
            (
                gw_core::Error::NotFound {
                    kind: "queue",
                    name: "q".into(),
                },
                StatusCode::NOT_FOUND,
            ),
            (
                gw_core::Error::PreconditionFailed("x".into()),
                StatusCode::CONFLICT,
            ),
            (
                gw_core::Error::Invalid {
                    field: "tag",
                    reason: "bad".into(),
                },
                StatusCode::BAD_REQUEST,
            ),
            (
                gw_core::Error::AccessRefused("no".into()),
                StatusCode::FORBIDDEN,
            ),
            (
                gw_core::Error::AuthenticationFailed("u".into()),
                StatusCode::UNAUTHORIZED,
            ),
            (
                gw_core::Error::LimitReached("full".into()),
                StatusCode::TOO_MANY_REQUESTS,
            ),
            (
                gw_core::Error::ShuttingDown,
                StatusCode::SERVICE_UNAVAILABLE,
            ),
        ];
        for (e, status) in cases {
            assert_eq!(ApiError::from(e).status, status);
        }
    }

    #[test]
    fn renders_dms_error_body() {
        let res = ApiError::invalid("max_msgs", "must be 1 to 10").into_response();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            res.headers().get(header::CONTENT_TYPE).unwrap(),
            "application/json"
        );
        let res =
            ApiError::new(StatusCode::UNAUTHORIZED, code::NO_CREDENTIALS, "x").into_response();
        assert!(res.headers().contains_key(header::WWW_AUTHENTICATE));
    }
}
