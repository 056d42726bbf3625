//! One MQTT connection over any byte stream (TCP, or WebSocket once the HTTP
//! door has upgraded it): the read and write buffers, the CONNECT handshake,
//! keep alive, and the single task loop that waits on the socket, the
//! engine's consumers, the store and the timers at once.
//!
//! Writes are batched: handlers and deliveries append to the client's `out`
//! buffer, which is written whenever the socket takes it. Reading stops while
//! the engine is under pressure, while too many replies wait for the store or
//! while the client does not read what we send, so a slow peer slows itself.
//! Buffers start small and shrink back when the connection goes quiet, so an
//! idle connection costs little memory.

mod io;
mod session;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use gw_core::{ConnectionInfo, Engine, now_millis};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::client::{Client, Keep};
use crate::codec::{self, CodecError, Packet, ProtocolVersion};
use crate::config::Config;
use crate::error::code;
use crate::handlers::connect::{self, Handshake};
use crate::handlers::disconnect::End;
use crate::registry::{CloseReason, ConnSignal, Registry};
use io::Io;
use session::serve;

/// Largest CONNECT accepted (before the client is authenticated).
const CONNECT_MAX: usize = 256 * 1024;
/// How long the final writes (DISCONNECT, pending acks) may take.
const CLOSE_FLUSH: Duration = Duration::from_secs(1);
/// How long a closing connection waits for the store to take the publishes
/// its acknowledgements wait for.
const SETTLE_WAIT: Duration = Duration::from_secs(5);
/// How long a connection over `max_connections` has to send the CONNECT
/// its refusal answers (short: it holds one of the door's few refusal slots).
const REFUSE_WAIT: Duration = Duration::from_secs(2);

/// Serves one connection until it ends; see [`crate::MqttDoor`].
///
/// Not an `async fn`: the set-up is done here, so the future (the task's
/// state for the connection's whole life) holds only what the connection
/// needs while it runs, not also the parameters it was made from. What only
/// the CONNECT needs goes to the handshake in a box, freed once it is done.
pub fn run<S>(
    stream: S,
    peer: SocketAddr,
    engine: Engine,
    registry: Arc<Registry>,
    config: Arc<Config>,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    registry.watch_shutdown(&shutdown);
    let identity = gw_listen::peer_identity(&stream);
    let conn_id = engine.next_connection_id();
    let signal = Arc::new(ConnSignal::default());
    let closer_signal = Arc::clone(&signal);
    let guard = engine.register_connection(
        ConnectionInfo {
            id: conn_id,
            protocol: "mqtt",
            peer: peer.to_string(),
            user: String::new(),
            tenant: String::new(),
            client: String::new(),
            connected_at: now_millis(),
        },
        Arc::new(move |_reason: &str| closer_signal.close(CloseReason::Administrative)),
    );
    let span = tracing::debug_span!("mqtt", conn = conn_id, %peer);
    let hs = Box::new(Handshake {
        engine,
        registry,
        config,
        peer,
        conn_id,
        signal: Arc::clone(&signal),
        shutdown,
        keep: Some(Keep { guard }),
        identity,
    });
    let mut io = Io::new(stream);
    // An `async` block, not a method taking `mut self`: that would keep the
    // connection twice in the task's state (the argument and its binding).
    async move {
        // The handshake and the close are boxed futures: the task's own
        // state, kept for the whole connection, is then the socket, the
        // signal and the session loop.
        if let Some(mut client) = Box::pin(handshake(&mut io, hs)).await {
            if let Some(keep) = &client.keep {
                keep.guard.update(|i| {
                    i.user = client.principal.user().to_owned();
                    i.tenant = client.tenant.name().to_owned();
                    i.client = client.client_id().to_owned();
                });
            }
            let end = serve(&mut io, &mut client, &signal).await;
            Box::pin(close(&mut io, client, end)).await;
        }
        drop(io);
        // Last: whoever waits to take this client id over may go on now.
        signal.finish();
    }
    .instrument(span)
}

/// Answers a connection the door has no room for: its CONNECT is read (for
/// the protocol version) and refused with CONNACK 0x97 Quota exceeded (5.0)
/// or 0x03 Server unavailable (3.1.1); a client that sends no CONNECT within
/// [`REFUSE_WAIT`] is closed without an answer.
pub async fn refuse<S>(stream: S, config: Arc<Config>, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut io = Io::new(stream);
    let wait = REFUSE_WAIT.min(Duration::from_millis(config.connect_timeout_ms));
    let unused = ConnSignal::default();
    let reply = match read_connect(&mut io, &config, wait, &shutdown, &unused).await {
        Ok(packet) => Some(connect::refusal(
            packet.version(),
            code::QUOTA_EXCEEDED,
            Some("too many connections (max_connections reached)".into()),
        )),
        Err(reply) => reply,
    };
    answer_and_close(&mut io, reply).await;
}

/// Reads the CONNECT and answers it; `None` when the connection is refused
/// (the refusal has been sent) or went away.
async fn handshake<S>(io: &mut Io<S>, mut hs: Box<Handshake>) -> Option<Box<Client>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let wait = Duration::from_millis(hs.config.connect_timeout_ms);
    let reply = match read_connect(io, &hs.config, wait, &hs.shutdown, &hs.signal).await {
        Ok(packet) => match connect::accept(packet, &mut hs).await {
            Ok(client) => return Some(client),
            Err(refusal) => Some(refusal),
        },
        Err(reply) => reply,
    };
    answer_and_close(io, reply).await;
    None
}

/// Sends the answer to a refused CONNECT (if any) and closes the stream.
async fn answer_and_close<S>(io: &mut Io<S>, reply: Option<Packet>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if let Some(reply) = reply {
        let mut out = BytesMut::new();
        if reply.write(&mut out, None).is_ok() {
            io.write_out(&mut out, CLOSE_FLUSH).await;
        }
    }
    let _ = tokio::time::timeout(CLOSE_FLUSH, io.stream.shutdown()).await;
}

/// Ends a connection: MQTT 5 gets a DISCONNECT saying why (when the server
/// ends it), what is buffered is flushed, the socket closed, and the session
/// parked or ended.
async fn close<S>(io: &mut Io<S>, mut client: Box<Client>, end: End)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if let End::Gone(Some(e)) = &end {
        tracing::debug!(cause = %e, "connection lost");
    }
    if end.server_closes() {
        // Acknowledge what was stored before saying goodbye (issue 16: a
        // client whose stored publish was never acknowledged republishes it).
        // Not after the client's DISCONNECT: it reads nothing more.
        client.settle_replies(SETTLE_WAIT).await;
    }
    if client.version == ProtocolVersion::V5
        && let Some(code) = end.disconnect_code()
    {
        let reason = v5::DisconnectReasonCode::try_from(code)
            .unwrap_or(v5::DisconnectReasonCode::UnspecifiedError);
        let text = match &end {
            End::Error(e) => client.text(|| e.to_string()),
            _ => None,
        };
        let packet = Packet::V5(v5::Packet::Disconnect(v5::Disconnect {
            reason_code: reason,
            properties: text.map(|t| v5::DisconnectProperties {
                session_expiry_interval: None,
                reason_string: Some(t),
                user_properties: Vec::new(),
                server_reference: None,
            }),
        }));
        let max = client.max_packet();
        if packet.write(&mut client.out, max).is_err() {
            // Too large with its reason string for this client: send it bare.
            let bare = Packet::V5(v5::Packet::Disconnect(v5::Disconnect::new(reason)));
            let _ = bare.write(&mut client.out, max);
        }
    }
    if !matches!(end, End::Gone(_)) {
        io.write_out(&mut client.out, CLOSE_FLUSH).await;
        let _ = tokio::time::timeout(CLOSE_FLUSH, io.stream.shutdown()).await;
        if end.server_closes() {
            // The client may still be sending (publishes after the ones just
            // acknowledged): let it see our close before the socket goes.
            io.discard_until_eof(CLOSE_FLUSH).await;
        }
    }
    client.finish(&end);
}

/// Reads the first packet, which must be a CONNECT, for up to `wait`. `Err`
/// carries the reply to send before closing, when the protocol has one.
async fn read_connect<S>(
    io: &mut Io<S>,
    config: &Config,
    wait: Duration,
    shutdown: &CancellationToken,
    signal: &ConnSignal,
) -> Result<Packet, Option<Packet>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = Instant::now() + wait;
    let max = CONNECT_MAX.min(config.max_packet());
    loop {
        match codec::peek_connect(&io.rbuf) {
            Err(e) => return Err(refusal(e, None)),
            Ok(Some(version)) => match Packet::read(&mut io.rbuf, version, max) {
                Ok(Some(p)) => return Ok(p),
                Ok(None) => {}
                Err(e) => return Err(refusal(e, Some(version))),
            },
            Ok(None) => {}
        }
        tokio::select! {
            r = io.read_more() => match r {
                Ok(0) | Err(_) => return Err(None),
                Ok(_) => {}
            },
            _ = tokio::time::sleep_until(deadline) => {
                tracing::debug!("no CONNECT in time");
                return Err(None);
            }
            _ = shutdown.cancelled() => return Err(None),
            _ = signal.closed() => return Err(None),
        }
    }
}

/// The CONNACK (if any) answering a CONNECT the codec refused.
fn refusal(e: CodecError, version: Option<ProtocolVersion>) -> Option<Packet> {
    tracing::debug!(cause = %e, "bad CONNECT");
    if let Some(p) = e.refusal_connack() {
        return Some(p);
    }
    match version? {
        ProtocolVersion::V5 => Some(connect::refusal(
            ProtocolVersion::V5,
            e.v5_reason_code(),
            Some(e.to_string()),
        )),
        ProtocolVersion::V311 => e
            .v4_connack_code()
            .map(|c| Packet::V4(v4::Packet::ConnAck(v4::ConnAck::new(c, false)))),
    }
}

#[cfg(test)]
mod tests {
    /// What every idle connection keeps: the task's future and the client.
    /// tokio allocates a task as one 128-byte-aligned cell of about 96 bytes
    /// plus the future, so a future of at most 536 bytes (with the task
    /// tracker's 8) fits a 640-byte cell; a few bytes more cost 128. Raising
    /// these bounds costs memory per connection.
    #[test]
    fn per_connection_state_stays_small() {
        let dir = tempfile::tempdir().unwrap();
        let engine = gw_core::Engine::open(gw_core::EngineConfig::new(dir.path())).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let _client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let (stream, peer) = listener.accept().await.unwrap();
            let shutdown = tokio_util::sync::CancellationToken::new();
            let config = std::sync::Arc::new(crate::Config::default());
            let registry = crate::registry::Registry::for_engine(&engine);
            let task = super::run(
                stream,
                peer,
                engine.clone(),
                registry,
                config,
                shutdown.clone(),
            );
            let size = std::mem::size_of_val(&task);
            assert!(size <= 536, "connection task state: {size} bytes");
            // As the accept layer spawns it: the same future and a permit.
            let door = crate::MqttDoor::new(engine.clone(), crate::Config::default(), shutdown);
            let permits = gw_listen::Permits::for_door(&door);
            let _second = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let (c, _) = listener.accept().await.unwrap();
            let gw_listen::Admission::Serve(admitted) = gw_listen::admit(&door, &permits, c, peer)
            else {
                panic!("not admitted");
            };
            let admitted = std::mem::size_of_val(&admitted);
            assert!(
                admitted <= size + 32,
                "admitted task state: {admitted} bytes"
            );
            let client = std::mem::size_of::<crate::client::Client>();
            assert!(client <= 400, "client state: {client} bytes");
        });
        engine.close();
    }
}
