//! `GET /healthz` (the process answers) and `GET /readyz` (it takes work),
//! both without credentials, for load balancers and orchestrators.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// A health answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` or `ready`.
    pub status: String,
    /// `writable`, or `not writable` while the store refuses writes (a full
    /// disk, no file descriptors); it retries and becomes writable on its own.
    pub store: String,
    /// Batches the store failed to write since start.
    pub store_write_errors: u64,
    /// Why the store cannot write, while it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_error: Option<String>,
    /// The node alarms raised now (`disk`, `memory`): publishers are blocked
    /// until they clear.
    #[serde(default)]
    pub alarms: Vec<String>,
}

impl Health {
    fn of(status: &str, store: gw_core::StoreHealth, engine: &gw_core::Engine) -> Health {
        Health {
            alarms: engine
                .alarms()
                .into_iter()
                .filter(|a| a.active)
                .map(|a| a.kind.name().to_owned())
                .collect(),
            status: status.to_owned(),
            store: if store.writable {
                "writable"
            } else {
                "not writable"
            }
            .to_owned(),
            store_write_errors: store.write_errors,
            store_error: store.last_error,
        }
    }
}

/// Liveness: the process is up (200 even while the store cannot write: a
/// restart would not bring space back). The body says how the store is.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz(State(state): State<AppState>) -> Json<Health> {
    Json(Health::of(
        "ok",
        state.engine().store_health(),
        state.engine(),
    ))
}

/// Readiness: not shutting down, the store is open and takes writes, and no
/// disk or memory alarm holds publishers back.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()),
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Shutting down, the store is closed or cannot write (10240507), or a disk or memory alarm is raised (10240509)", body = ErrorBody),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    if state.shutdown().is_cancelled() || state.engine().is_closed() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            crate::error::code::SHUTTING_DOWN,
            "not ready: shutting down",
        ));
    }
    let store = state.engine().store_health();
    if !store.writable {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            crate::error::code::STORE_NOT_WRITABLE,
            format!(
                "not ready: the store cannot write ({})",
                store.last_error.as_deref().unwrap_or("unknown cause")
            ),
        ));
    }
    if let Some(alarm) = crate::pressure::raised_alarm(state.engine()) {
        return Err(ApiError {
            msg: format!("not ready: {}", alarm.msg),
            ..alarm
        });
    }
    Ok(Json(Health::of("ready", store, state.engine())))
}
