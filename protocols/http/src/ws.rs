//! MQTT over WebSocket: `GET /mqtt` with the `mqtt` subprotocol is upgraded
//! and handed, as a byte stream, to the handler the gateway injects (the MQTT
//! door, through the accept layer's `admit`, so its `max_connections` counts
//! these too), so this crate never depends on the MQTT one.
//!
//! [`WsStream`] turns the WebSocket's binary messages into `AsyncRead +
//! AsyncWrite`. MQTT packets may span or share WebSocket messages
//! (MQTT 3.1.1 § 6.0, [MQTT-6.0.0-2]), so reads just concatenate payloads.
//! A text message is a protocol error ([MQTT-6.0.0-1]): the read fails and a
//! close frame with code 1003 is sent. Each `poll_write` sends one binary
//! message; bytes reach the socket when the writer flushes (as with any
//! buffered writer) and are also pushed opportunistically after each write.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::Extension;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::{Buf, Bytes};
use futures::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::{ApiError, ErrorBody, code};
use crate::state::AppState;

/// What serves an upgraded MQTT-over-WebSocket connection (the gateway glues
/// the MQTT door in here).
pub type StreamHandler =
    Arc<dyn Fn(WsStream, SocketAddr) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The subprotocol MQTT clients ask for (MQTT 3.1.1 § 6.0, MQTT 5 § 6).
pub const SUBPROTOCOL: &str = "mqtt";

/// A WebSocket seen as a byte stream of its binary messages.
pub struct WsStream {
    ws: WebSocket,
    /// Unread rest of the last binary message.
    read: Bytes,
    eof: bool,
    /// A frame was queued and not yet flushed.
    unflushed: bool,
    /// The verified client certificate of the HTTPS connection it came on.
    identity: Option<gw_listen::PeerIdentity>,
}

impl WsStream {
    /// Wraps an upgraded WebSocket.
    pub fn new(ws: WebSocket) -> Self {
        WsStream {
            ws,
            read: Bytes::new(),
            eof: false,
            unflushed: false,
            identity: None,
        }
    }

    /// The verified client certificate's identity of the HTTPS connection
    /// the WebSocket came on: the MQTT door may log its client in with it.
    pub fn identity(&self) -> Option<&gw_listen::PeerIdentity> {
        self.identity.as_ref()
    }

    /// Best effort: tells the peer why we stop (a failure here changes nothing).
    fn send_close(&mut self, cx: &mut Context<'_>, code: u16, reason: &'static str) {
        if let Poll::Ready(Ok(())) = Pin::new(&mut self.ws).poll_ready(cx) {
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            let _ = Pin::new(&mut self.ws).start_send(Message::Close(Some(frame)));
            let _ = Pin::new(&mut self.ws).poll_flush(cx);
        }
    }
}

fn io_err(e: axum::Error) -> io::Error {
    io::Error::other(e)
}

impl AsyncRead for WsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.read.is_empty() {
                let n = this.read.len().min(buf.remaining());
                buf.put_slice(&this.read[..n]);
                this.read.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                None | Some(Ok(Message::Close(_))) => this.eof = true,
                Some(Err(e)) => return Poll::Ready(Err(io_err(e))),
                Some(Ok(Message::Binary(b))) => this.read = b,
                // Answered by the WebSocket layer itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Text(_))) => {
                    this.eof = true;
                    this.send_close(cx, 1003, "MQTT over WebSocket takes binary messages only");
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text WebSocket message on an MQTT connection [MQTT-6.0.0-1]",
                    )));
                }
            }
        }
    }
}

impl AsyncWrite for WsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(io_err)?;
        Pin::new(&mut this.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(io_err)?;
        this.unflushed = true;
        // Push it out now if the socket takes it; otherwise the next write or
        // flush finishes the job.
        match Pin::new(&mut this.ws).poll_flush(cx) {
            Poll::Ready(Ok(())) => this.unflushed = false,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(io_err(e))),
            Poll::Pending => {}
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.ws).poll_flush(cx)).map_err(io_err)?;
        this.unflushed = false;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.unflushed {
            ready!(Pin::new(&mut this.ws).poll_flush(cx)).map_err(io_err)?;
            this.unflushed = false;
        }
        // Sends a close frame and waits for the socket to take it.
        Pin::new(&mut this.ws).poll_close(cx).map_err(io_err)
    }
}

/// `GET /mqtt`: upgrades to a WebSocket with the `mqtt` subprotocol.
#[utoipa::path(
    get,
    path = "/mqtt",
    tag = "operations",
    security(()),
    description = "MQTT 3.1.1/5.0 over WebSocket. The upgrade request must offer the `mqtt` \
        subprotocol (Sec-WebSocket-Protocol), which is echoed back; binary messages carry the \
        MQTT byte stream.",
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Not a WebSocket upgrade, or the `mqtt` subprotocol was not offered", body = ErrorBody),
        (status = 404, description = "MQTT over WebSocket is not enabled", body = ErrorBody),
    )
)]
pub async fn upgrade(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    identity: Option<Extension<gw_listen::PeerIdentity>>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Some(handler) = state.inner().mqtt_websocket.clone() else {
        return ApiError::not_found("endpoint", "/mqtt (MQTT over WebSocket is not enabled)")
            .into_response();
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                code::INVALID,
                format!("not a WebSocket upgrade: {}", rejection.body_text()),
            )
            .into_response();
        }
    };
    let ws = ws.protocols([SUBPROTOCOL]);
    if ws.selected_protocol().is_none() {
        // Mosquitto and RabbitMQ refuse such upgrades too: a client that does
        // not say it speaks MQTT would get a stream it cannot parse.
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            code::INVALID,
            "the WebSocket subprotocol 'mqtt' is required (Sec-WebSocket-Protocol: mqtt)",
        )
        .into_response();
    }
    let peer = peer.map_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0.0);
    let max = state.config().websocket_max_message_bytes;
    let tracker = state.inner().tracker.clone();
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| {
            // Tracked, so the gateway's shutdown waits for the MQTT session.
            tracker.track_future(async move {
                let mut stream = WsStream::new(socket);
                stream.identity = identity.map(|Extension(id)| id);
                handler(stream, peer).await;
            })
        })
}
