//! `POST /api/exchanges/{tenant}/{exchange}/publish`: publish one message to
//! an exchange, as RabbitMQ's management API does. It is how an HTTP client
//! reaches MQTT subscribers (`amq.topic`) and any AMQP binding; the DMS send
//! API only reaches queues by name.

use axum::Json;
use axum::extract::State;
use base64::Engine as _;
use bytes::Bytes;
use gw_core::{Access, Message};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::api::body::{MessageProperties, attributes_in};
use crate::auth::User;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{JsonBody, Path, Query};
use crate::state::AppState;

/// `POST …/publish` body (RabbitMQ's shape).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// Routing key.
    #[serde(default)]
    pub routing_key: String,
    /// The body.
    pub payload: String,
    /// `string` (default) or `base64`.
    #[serde(default)]
    pub payload_encoding: Option<String>,
    /// Basic properties: those of DMS sends plus `delivery_mode` (1 or 2,
    /// default 2) and `headers` (an object; `x-delay`, `x-tags` and
    /// `x-group-id` there delay, tag and group the message as over AMQP).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub properties: Map<String, Value>,
}

/// `POST …/publish` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PublishAnswer {
    /// True when at least one queue took the message.
    pub routed: bool,
}

/// Publishes a message to an exchange; answered once it is stored (persistent messages).
#[utoipa::path(post, path = "/api/exchanges/{tenant}/{exchange}/publish", tag = "management",
    params(("tenant" = String, Path, description = "Tenant"), ("exchange" = String, Path, description = "Exchange (`amq.default` for the default one)")),
    request_body = PublishRequest,
    responses(
        (status = 200, description = "Published", body = PublishAnswer),
        (status = 400, description = "Bad payload or properties", body = ErrorBody),
        (status = 404, description = "No such tenant or exchange", body = ErrorBody),
        (status = 503, description = "A disk or memory alarm holds publishers back (error 10240509); nothing was published", body = ErrorBody),
    ))]
pub async fn publish(
    State(state): State<AppState>,
    User(user): User,
    Path((tenant, exchange)): Path<(String, String)>,
    query: Query,
    JsonBody(req): JsonBody<PublishRequest>,
) -> ApiResult<Json<PublishAnswer>> {
    query.finish()?;
    let t = super::tenant(&state, &tenant)?;
    let exchange = if exchange == "amq.default" {
        String::new()
    } else {
        exchange
    };
    user.check(t.name(), Access::Write, &exchange)?;
    // Topic permissions govern this door's publishes too.
    if let Some(rules) = user.topic_rules(t.name(), "")
        && t.exchange(&exchange)
            .is_ok_and(|x| x.spec.kind == gw_core::ExchangeKind::Topic)
    {
        rules.check(&exchange, Access::Write, &req.routing_key)?;
    }
    let body = match req.payload_encoding.as_deref() {
        None | Some("string") => Bytes::from(req.payload),
        Some("base64") => base64::engine::general_purpose::STANDARD
            .decode(req.payload.as_bytes())
            .map(Bytes::from)
            .map_err(|e| ApiError::invalid("payload", e))?,
        Some(other) => {
            return Err(ApiError::invalid(
                "payload_encoding",
                format!("'{other}' is not string or base64"),
            ));
        }
    };
    let mut props = req.properties;
    let headers = match props.remove("headers") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(h)) => h,
        Some(_) => return Err(ApiError::invalid("properties.headers", "must be an object")),
    };
    let delivery_mode = match props.remove("delivery_mode") {
        None | Some(Value::Null) => 2,
        Some(Value::Number(n)) if n.as_u64() == Some(1) || n.as_u64() == Some(2) => {
            n.as_u64().unwrap_or(2) as u8
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "properties.delivery_mode",
                "must be 1 or 2",
            ));
        }
    };
    let basic: MessageProperties = serde_json::from_value(Value::Object(props))
        .map_err(|e| ApiError::invalid("properties", e))?;
    if basic.user_id.as_deref().is_some_and(|u| u != user.user()) {
        return Err(ApiError::invalid(
            "properties.user_id",
            "must be the authenticated user",
        ));
    }
    let mut m = Message::new(body);
    m.exchange = exchange;
    m.routing_key = req.routing_key;
    basic.apply(&mut m.properties);
    m.properties.delivery_mode = Some(delivery_mode);
    m.headers = attributes_in(&headers);
    // `x-delay`, `x-tags` and `x-group-id` headers work as over AMQP and MQTT.
    m.apply_extension_headers(gw_core::now_millis());
    // Confirmed: visible to consumers only once stored (an answer that the
    // store failed must not leave a deliverable message behind).
    crate::pressure::admit_publish(state.engine()).await?;
    let receipt = t.publish_confirmed(m)?;
    if let Some(ticket) = receipt.ticket {
        state.engine().wait_durable(ticket).await?;
    }
    Ok(Json(PublishAnswer {
        routed: receipt.routed > 0,
    }))
}
