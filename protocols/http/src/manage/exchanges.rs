//! `/api/exchanges/{tenant}` and `/api/bindings/{tenant}`: exchanges and the
//! bindings between exchanges and queues, as AMQP declares them.

use axum::Json;
use axum::extract::State;

use crate::extract::Path;
use axum::http::StatusCode;
use gw_core::{BindingSpec, Destination, ExchangeInfo, ExchangeKind, ExchangeSpec};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::api::body::{attributes_in, attributes_out};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{JsonBody, Query};
use crate::state::AppState;

/// Exchange kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Routing key equals binding key.
    Direct,
    /// Every binding.
    Fanout,
    /// `.`-separated patterns with `*` and `#`.
    Topic,
    /// Binding arguments matched against headers.
    Headers,
}

impl From<ExchangeKind> for Kind {
    fn from(k: ExchangeKind) -> Self {
        match k {
            ExchangeKind::Direct => Kind::Direct,
            ExchangeKind::Fanout => Kind::Fanout,
            ExchangeKind::Topic => Kind::Topic,
            _ => Kind::Headers,
        }
    }
}

impl From<Kind> for ExchangeKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Direct => ExchangeKind::Direct,
            Kind::Fanout => ExchangeKind::Fanout,
            Kind::Topic => ExchangeKind::Topic,
            Kind::Headers => ExchangeKind::Headers,
        }
    }
}

/// An exchange.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExchangeView {
    /// Name ("" is the default exchange).
    pub name: String,
    /// Kind.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// Survives restarts.
    pub durable: bool,
    /// Deleted with its last binding.
    pub auto_delete: bool,
    /// Clients may not publish to it.
    pub internal: bool,
    /// Where unroutable messages go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternate_exchange: Option<String>,
    /// Declaration arguments.
    #[schema(value_type = Object)]
    pub arguments: Map<String, Value>,
    /// Bindings with this exchange as source.
    pub bindings: u64,
}

/// `PUT /api/exchanges/{tenant}/{exchange}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutExchange {
    /// Kind.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// Survives restarts (default true).
    #[serde(default = "yes")]
    pub durable: bool,
    /// Deleted with its last binding (default false).
    #[serde(default)]
    pub auto_delete: bool,
    /// Clients may not publish to it (default false).
    #[serde(default)]
    pub internal: bool,
    /// Where unroutable messages go.
    #[serde(default)]
    pub alternate_exchange: Option<String>,
    /// Declaration arguments.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub arguments: Option<Map<String, Value>>,
}

fn yes() -> bool {
    true
}

/// A binding.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BindingView {
    /// Source exchange.
    pub source: String,
    /// Destination queue or exchange.
    pub destination: String,
    /// `queue` or `exchange`.
    pub destination_type: DestinationType,
    /// Binding key.
    #[serde(default)]
    pub routing_key: String,
    /// Binding arguments (the match table of headers exchanges).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub arguments: Map<String, Value>,
}

/// What a binding leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DestinationType {
    /// A queue.
    Queue,
    /// An exchange.
    Exchange,
}

fn exchange_view(x: &ExchangeInfo) -> ExchangeView {
    ExchangeView {
        name: x.name.clone(),
        kind: x.spec.kind.into(),
        durable: x.spec.durable,
        auto_delete: x.spec.auto_delete,
        internal: x.spec.internal,
        alternate_exchange: x.spec.alternate_exchange.clone(),
        arguments: attributes_out(&x.spec.arguments),
        bindings: x.bindings as u64,
    }
}

fn binding_view(b: &BindingSpec) -> BindingView {
    let (destination, destination_type) = match &b.destination {
        Destination::Queue(q) => (q.clone(), DestinationType::Queue),
        Destination::Exchange(x) => (x.clone(), DestinationType::Exchange),
    };
    BindingView {
        source: b.source.clone(),
        destination,
        destination_type,
        routing_key: b.routing_key.clone(),
        arguments: attributes_out(&b.arguments),
    }
}

fn binding_spec(b: BindingView) -> BindingSpec {
    BindingSpec {
        source: b.source,
        destination: match b.destination_type {
            DestinationType::Queue => Destination::Queue(b.destination),
            DestinationType::Exchange => Destination::Exchange(b.destination),
        },
        routing_key: b.routing_key,
        arguments: attributes_in(&b.arguments),
    }
}

/// Lists a tenant's exchanges.
#[utoipa::path(get, path = "/api/exchanges/{tenant}", tag = "management",
    params(("tenant" = String, Path, description = "Tenant")),
    responses(
        (status = 200, description = "The exchanges", body = [ExchangeView]),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ))]
pub async fn list_exchanges(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    query: Query,
) -> ApiResult<Json<Vec<ExchangeView>>> {
    query.finish()?;
    let t = super::tenant(&state, &tenant)?;
    Ok(Json(t.exchanges().iter().map(exchange_view).collect()))
}

/// Shows an exchange.
#[utoipa::path(get, path = "/api/exchanges/{tenant}/{exchange}", tag = "management",
    params(("tenant" = String, Path, description = "Tenant"), ("exchange" = String, Path, description = "Exchange")),
    responses(
        (status = 200, description = "The exchange", body = ExchangeView),
        (status = 404, description = "No such tenant or exchange", body = ErrorBody),
    ))]
pub async fn show_exchange(
    State(state): State<AppState>,
    Path((tenant, name)): Path<(String, String)>,
    query: Query,
) -> ApiResult<Json<ExchangeView>> {
    query.finish()?;
    let t = super::tenant(&state, &tenant)?;
    Ok(Json(exchange_view(&t.exchange(&name)?)))
}

/// Declares an exchange (201 created, 204 an equivalent one existed).
#[utoipa::path(put, path = "/api/exchanges/{tenant}/{exchange}", tag = "management",
    params(("tenant" = String, Path, description = "Tenant"), ("exchange" = String, Path, description = "Exchange")),
    request_body = PutExchange,
    responses(
        (status = 201, description = "Created"),
        (status = 204, description = "Existed with the same declaration"),
        (status = 403, description = "Reserved name (`amq.`)", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 409, description = "Exists with another declaration", body = ErrorBody),
    ))]
pub async fn put_exchange(
    State(state): State<AppState>,
    Path((tenant, name)): Path<(String, String)>,
    query: Query,
    JsonBody(req): JsonBody<PutExchange>,
) -> ApiResult<StatusCode> {
    query.finish()?;
    let t = super::tenant(&state, &tenant)?;
    let spec = ExchangeSpec {
        kind: req.kind.into(),
        durable: req.durable,
        auto_delete: req.auto_delete,
        internal: req.internal,
        alternate_exchange: req.alternate_exchange,
        arguments: req
            .arguments
            .as_ref()
            .map(attributes_in)
            .unwrap_or_default(),
    };
    let created = t.declare_exchange(&name, spec)?;
    let undo = created.then(|| gw_core::Created::Exchange {
        tenant: t.clone(),
        name: name.clone(),
    });
    crate::api::created(state.engine(), undo.into_iter().collect()).await?;
    Ok(if created {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    })
}

/// Deletes an exchange and its bindings.
#[utoipa::path(delete, path = "/api/exchanges/{tenant}/{exchange}", tag = "management",
    params(
        ("tenant" = String, Path, description = "Tenant"),
        ("exchange" = String, Path, description = "Exchange"),
        ("if_unused" = Option<bool>, Query, description = "Refuse (409) while it has bindings"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Predeclared or default exchange", body = ErrorBody),
        (status = 404, description = "No such tenant or exchange", body = ErrorBody),
        (status = 409, description = "In use (with if_unused)", body = ErrorBody),
    ))]
pub async fn delete_exchange(
    State(state): State<AppState>,
    Path((tenant, name)): Path<(String, String)>,
    mut query: Query,
) -> ApiResult<StatusCode> {
    let if_unused = query.bool("if_unused")?.unwrap_or(false);
    query.finish()?;
    let t = super::tenant(&state, &tenant)?;
    t.delete_exchange(&name, if_unused)?;
    crate::api::barrier(state.engine()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lists a tenant's bindings.
#[utoipa::path(get, path = "/api/bindings/{tenant}", tag = "management",
    params(("tenant" = String, Path, description = "Tenant")),
    responses(
        (status = 200, description = "The bindings", body = [BindingView]),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ))]
pub async fn list_bindings(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    query: Query,
) -> ApiResult<Json<Vec<BindingView>>> {
    query.finish()?;
    let t = super::tenant(&state, &tenant)?;
    Ok(Json(t.bindings().iter().map(binding_view).collect()))
}

/// Adds a binding (201 created, 204 existed).
#[utoipa::path(post, path = "/api/bindings/{tenant}", tag = "management",
    params(("tenant" = String, Path, description = "Tenant")),
    request_body = BindingView,
    responses(
        (status = 201, description = "Created"),
        (status = 204, description = "Existed"),
        (status = 403, description = "The default exchange cannot be bound", body = ErrorBody),
        (status = 404, description = "No such tenant, exchange or queue", body = ErrorBody),
    ))]
pub async fn bind(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    query: Query,
    JsonBody(req): JsonBody<BindingView>,
) -> ApiResult<StatusCode> {
    query.finish()?;
    let t = super::tenant(&state, &tenant)?;
    let spec = binding_spec(req);
    let created = t.bind(spec.clone())?;
    let undo = created.then(|| gw_core::Created::Binding {
        tenant: t.clone(),
        spec,
    });
    crate::api::created(state.engine(), undo.into_iter().collect()).await?;
    Ok(if created {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    })
}

/// Removes a binding (the body names it as listed).
#[utoipa::path(delete, path = "/api/bindings/{tenant}", tag = "management",
    params(("tenant" = String, Path, description = "Tenant")),
    request_body = BindingView,
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such tenant, exchange, queue or binding", body = ErrorBody),
    ))]
pub async fn unbind(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    query: Query,
    JsonBody(req): JsonBody<BindingView>,
) -> ApiResult<StatusCode> {
    query.finish()?;
    let t = super::tenant(&state, &tenant)?;
    if !t.unbind(&binding_spec(req))? {
        return Err(ApiError::not_found("binding", "as given"));
    }
    crate::api::barrier(state.engine()).await?;
    Ok(StatusCode::NO_CONTENT)
}
