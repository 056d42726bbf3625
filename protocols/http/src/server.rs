//! The HTTP door as the accept layer (`gw-listen`) sees it: one task per
//! connection, and the 503 for connections over `max_connections`.
//!
//! We drive hyper's HTTP/1.1 connections ourselves (rather than `axum::serve`)
//! because every connection must be registered with the engine (so operators
//! can list and close it with the other doors' connections), closed
//! gracefully on shutdown or on an operator's request, tracked by the
//! gateway's `TaskTracker`, and counted against `max_connections`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use gw_core::{ConnectionGuard, ConnectionInfo, Engine, now_millis};
use gw_listen::{Door, Stream};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::config::{Config, ConfigError};
use crate::error::ApiError;
use crate::state::AppState;
use crate::ws::StreamHandler;

/// What a request knows of its connection: its registration with the engine
/// and the token an operator's close cancels.
pub struct ConnCtx {
    guard: ConnectionGuard,
    /// Cancelled by `engine.close_connection` (or shutdown): pending long polls end.
    pub closing: CancellationToken,
    user: Mutex<String>,
    tenant: Mutex<String>,
}

impl ConnCtx {
    /// Shows the authenticated user in the connection list (when it changes).
    pub fn set_user(&self, user: &str) {
        let mut cur = self.user.lock();
        if *cur != user {
            *cur = user.to_owned();
            self.guard.update(|i| i.user = user.to_owned());
        }
    }

    /// Shows the tenant last used in the connection list (when it changes).
    pub fn set_tenant(&self, tenant: &str) {
        let mut cur = self.tenant.lock();
        if *cur != tenant {
            *cur = tenant.to_owned();
            self.guard.update(|i| i.tenant = tenant.to_owned());
        }
    }
}

/// The connection a request arrived on; `None` when the router is driven
/// without our accept loop (tests calling it with `oneshot`).
pub struct Conn(pub Option<Arc<ConnCtx>>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Conn {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Conn(parts.extensions.get::<Arc<ConnCtx>>().cloned()))
    }
}

/// The HTTP door: the router and what its routes share.
#[derive(Clone)]
pub struct HttpDoor {
    app: Router,
    state: AppState,
}

impl HttpDoor {
    /// The door, with its settings checked; `mqtt_websocket` serves `/mqtt`
    /// upgrades (none: `/mqtt` answers 404).
    pub fn new(
        engine: Engine,
        config: Config,
        shutdown: CancellationToken,
        tracker: TaskTracker,
        mqtt_websocket: Option<StreamHandler>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let state = AppState::new(engine, config, shutdown, tracker, mqtt_websocket);
        let app = crate::router(state.clone());
        Ok(HttpDoor { app, state })
    }
}

impl Door for HttpDoor {
    const NAME: &'static str = "http";

    fn max_connections(&self) -> usize {
        self.state.config().max_connections
    }

    fn serve<S: Stream>(
        &self,
        stream: S,
        peer: SocketAddr,
    ) -> impl Future<Output = ()> + Send + 'static {
        connection(stream, peer, self.app.clone(), self.state.clone())
    }

    /// 503 with the JSON error body, `retry-after: 1`, then close.
    fn refuse<S: Stream>(
        &self,
        stream: S,
        _peer: SocketAddr,
    ) -> impl Future<Output = ()> + Send + 'static {
        refuse(stream)
    }
}

/// Serves one connection until it closes, the operator closes it or the gateway stops.
async fn connection<S: Stream>(stream: S, peer: SocketAddr, app: Router, state: AppState) {
    let engine = state.engine().clone();
    let closing = CancellationToken::new();
    let closer = {
        let c = closing.clone();
        Arc::new(move |reason: &str| {
            tracing::info!(%peer, reason, "closing HTTP connection on request");
            c.cancel();
        })
    };
    let guard = engine.register_connection(
        ConnectionInfo {
            id: engine.next_connection_id(),
            protocol: "http",
            peer: peer.to_string(),
            user: String::new(),
            tenant: String::new(),
            client: String::new(),
            connected_at: now_millis(),
        },
        closer,
    );
    // A verified client certificate (HTTPS) authenticates requests without Basic.
    let identity = gw_listen::peer_identity(&stream);
    let ctx = Arc::new(ConnCtx {
        guard,
        closing: closing.clone(),
        user: Mutex::new(String::new()),
        tenant: Mutex::new(String::new()),
    });
    let svc = {
        let ctx = Arc::clone(&ctx);
        hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req.extensions_mut().insert(Arc::clone(&ctx));
            if let Some(identity) = &identity {
                req.extensions_mut().insert(identity.clone());
            }
            app.clone().oneshot(req)
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(Duration::from_secs(
            state.config().header_read_timeout_secs.max(1),
        ));
    let conn = builder
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    tokio::pin!(conn);
    let stop = async {
        tokio::select! {
            () = state.shutdown().cancelled() => {}
            () = closing.cancelled() => {}
        }
    };
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, cause = %e, "HTTP connection ended with an error");
            }
        }
        () = stop => {
            // Finish the request in flight (long polls see the same signal and
            // answer at once), then close.
            closing.cancel();
            conn.as_mut().graceful_shutdown();
            if tokio::time::timeout(Duration::from_secs(5), conn.as_mut()).await.is_err() {
                tracing::debug!(%peer, "HTTP connection did not finish in time; dropped");
            }
        }
    }
}

/// Answers a connection over `max_connections` with 503 and closes it.
async fn refuse<S: Stream>(mut stream: S) {
    // Read what the client sent first: closing with unread data would reset
    // the connection and lose our answer.
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await;
    let body = serde_json::to_string(
        &ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            crate::error::code::LIMIT,
            "too many connections (max_connections reached)",
        )
        .body(),
    )
    .unwrap_or_default();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}
