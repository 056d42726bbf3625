//! A JSON body extractor: 415 unless the body is declared JSON, 413 over the
//! body limit, 400 naming the field (`messages[2].delayTime`) for wrong
//! types, unknown fields and malformed JSON.

use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, code};

/// A JSON request body of type `T`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code::MEDIA_TYPE,
                "the request body must be JSON (Content-Type: application/json)",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    code::TOO_LARGE,
                    "the request body is larger than the configured max_body_bytes",
                )
            } else {
                ApiError::invalid("request body", rejection.body_text())
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// True for `application/json` and `application/*+json`, with any parameters.
fn is_json(value: Option<&axum::http::HeaderValue>) -> bool {
    let Some(v) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = v
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses a JSON document into `T`, naming the path of the first error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() {
            let field = if path == "." {
                "request body".to_owned()
            } else {
                path
            };
            ApiError::invalid_with(code::BAD_JSON, &field, inner)
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                code::BAD_JSON,
                format!("malformed JSON in the request body: {inner}"),
            )
        }
    })?;
    de.end().map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            code::BAD_JSON,
            format!("malformed JSON in the request body: {e}"),
        )
    })?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        messages: Vec<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        #[serde(rename = "delayTime")]
        delay_time: Option<u64>,
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse_json::<Outer>(br#"{"messages":[{},{"delayTime":"soon"}]}"#).unwrap_err();
        assert!(e.msg.contains("messages[1].delayTime"), "{}", e.msg);
        let e = parse_json::<Outer>(br#"{"messages":[{"delaytime":1}]}"#).unwrap_err();
        assert!(
            e.msg.contains("messages[0]") && e.msg.contains("delaytime"),
            "{}",
            e.msg
        );
        let e = parse_json::<Outer>(br#"{"messages":["#).unwrap_err();
        assert!(e.msg.contains("malformed"), "{}", e.msg);
        let e = parse_json::<Outer>(br#"{"messages":[]} x"#).unwrap_err();
        assert!(e.msg.contains("malformed"), "{}", e.msg);
        assert!(parse_json::<Outer>(br#"{"messages":[{"delayTime":5}]}"#).is_ok());
    }

    #[test]
    fn json_content_types() {
        let v = |s: &'static str| axum::http::HeaderValue::from_static(s);
        assert!(is_json(Some(&v("application/json"))));
        assert!(is_json(Some(&v("Application/JSON; charset=utf-8"))));
        assert!(is_json(Some(&v("application/merge-patch+json"))));
        assert!(!is_json(Some(&v("text/plain"))));
        assert!(!is_json(None));
    }
}
