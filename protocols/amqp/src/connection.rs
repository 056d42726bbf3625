//! One AMQP connection: the task that reads its socket and drives everything
//! else.
//!
//! ```text
//!  socket ──read──► reader task (this file) ──methods──► channels ──► engine
//!                      │  publishes ─► engine.publish ─► confirm task ─┐
//!                      │  basic.consume ─► consumer tasks ──────────────┤
//!                      └─ replies ──────────────────────────────────────┴─► outbox ─► writer task ─► socket
//! ```
//!
//! The reader decodes every complete frame it has before waiting again, so a
//! burst of publishes is handled in one go and its confirms leave as one
//! batch. It stops reading while the outbox is far behind (a client that does
//! not read its replies cannot make us buffer without bound), and, as RabbitMQ
//! does, once a publish arrives while the engine asks publishers to slow down
//! (then `connection.blocked` is sent to clients that understand it), or
//! while 16 MiB it published wait for the store (`window.rs`).
//!
//! Errors: a soft error closes its channel (`channel.close`, frames dropped
//! until `close-ok`); a hard one closes the connection (`connection.close`,
//! then a moment to answer). Each is logged once. Heartbeats: the writer sends
//! them; here a client silent for two intervals is disconnected.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use amq_protocol::protocol::{AMQPClass, channel, connection};
use gw_core::{ConnectionInfo, now_millis};
use gw_listen::Stream;
use parking_lot::Mutex;
use tokio::io::AsyncRead;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, Interval};
use tokio_util::sync::CancellationToken;

mod control;

use crate::Server;
use crate::assembler::Assembled;
use crate::channel::{After, Channel, Ctx};
use crate::codec::{Frame, peek_qos_prefetch_size};
use crate::confirms::{self, Deferred};
use crate::error::{AmqpError, AmqpResult, code};
use crate::handshake::{FRAME_MIN_SIZE, Opened, handshake};
use crate::io::{FrameReader, ReadError};
use crate::methods;
use crate::outbox::{HIGH_WATER, Outbox, Socket, StreamSocket, TcpSocket, run_writer};
use crate::session::{Event, Session, SessionInit};

/// The reader stops reading while this much output is waiting.
const READ_PAUSE: usize = 8 * HIGH_WATER;
/// How long a client gets to answer our `connection.close`.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// How long a closing connection waits for the store to decide the publishes
/// its confirms wait for (within the gateway's shutdown grace period, 10 s
/// by default; a shorter grace ends the wait first).
const SETTLE_WAIT: Duration = Duration::from_secs(5);

/// Serves one accepted connection until it closes; `over_limit` (the
/// door is full) refuses it at `connection.open` with 530, as RabbitMQ does.
///
/// A plain TCP socket is split so that producers can write to it directly
/// (see `outbox.rs`); any other stream is written by the writer task alone.
pub async fn serve_connection<S: Stream>(
    stream: S,
    peer: SocketAddr,
    server: Arc<Server>,
    over_limit: bool,
) {
    // A verified client certificate (TLS) may log in with SASL EXTERNAL.
    let identity = gw_listen::peer_identity(&stream);
    match gw_listen::into_tcp(stream) {
        Ok(tcp) => {
            let (read, write) = tcp.into_split();
            let socket = TcpSocket::new(write);
            let outbox = Arc::new(Outbox::new(Some(socket.direct())));
            serve_split(read, socket, outbox, peer, server, over_limit, identity).await;
        }
        Err(stream) => {
            let (read, write) = tokio::io::split(stream);
            let outbox = Arc::new(Outbox::new(None));
            let socket = StreamSocket(write);
            serve_split(read, socket, outbox, peer, server, over_limit, identity).await;
        }
    }
}

async fn serve_split<R: AsyncRead + Unpin + Send + 'static, W: Socket>(
    read: R,
    socket: W,
    outbox: Arc<Outbox>,
    peer: SocketAddr,
    server: Arc<Server>,
    over_limit: bool,
    identity: Option<gw_listen::PeerIdentity>,
) {
    let dead = CancellationToken::new();
    let mut writer = server
        .tracker
        .spawn(run_writer(Arc::clone(&outbox), socket, dead.clone()));
    let engine = server.engine.clone();
    let conn_id = engine.next_connection_id();
    let kill = CancellationToken::new();
    let reason = Arc::new(Mutex::new(String::new()));
    let closer = {
        let (kill, reason) = (kill.clone(), Arc::clone(&reason));
        Arc::new(move |why: &str| {
            *reason.lock() = why.to_owned();
            kill.cancel();
        })
    };
    let guard = engine.register_connection(
        ConnectionInfo {
            id: conn_id,
            protocol: "amqp",
            peer: peer.to_string(),
            user: String::new(),
            tenant: String::new(),
            client: String::new(),
            connected_at: now_millis(),
        },
        closer,
    );
    let mut io = FrameReader::new(read, FRAME_MIN_SIZE);
    let limit = Duration::from_secs(server.config.handshake_timeout_secs);
    let opened = tokio::select! {
        r = tokio::time::timeout(limit, handshake(&mut io, &outbox, &server, peer, over_limit, identity.as_ref())) => match r {
            Ok(r) => r.ok(),
            Err(_) => {
                tracing::info!(%peer, "AMQP handshake timed out");
                None
            }
        },
        () = server.shutdown.cancelled() => None,
        () = kill.cancelled() => None,
        () = dead.cancelled() => None,
    };
    if let Some(opened) = opened {
        guard.update(|info| {
            info.user = opened.principal.user().to_owned();
            info.tenant = opened.tenant.name().to_owned();
            info.client = opened.client_name.clone();
        });
        tracing::debug!(%peer, conn_id, user = opened.principal.user(), vhost = opened.tenant.name(), "AMQP connection opened");
        let tokens = Tokens { kill, reason, dead };
        let mut conn = Connection::new(
            Arc::clone(&server),
            io,
            Arc::clone(&outbox),
            opened,
            conn_id,
            peer,
            tokens,
        );
        conn.run().await;
        conn.finish().await;
    }
    outbox.close();
    // A client that stopped reading must not hold the connection open forever.
    if tokio::time::timeout(CLOSE_WAIT, &mut writer).await.is_err() {
        writer.abort();
    }
    drop(guard);
}

/// Ways the connection is told to stop.
struct Tokens {
    /// An operator closes it (the engine's closer).
    kill: CancellationToken,
    /// Why the operator closed it.
    reason: Arc<Mutex<String>>,
    /// The socket failed (set by the writer).
    dead: CancellationToken,
}

/// What a frame leaves to do.
enum Step {
    Continue,
    /// The connection is closed (the client's close was answered).
    End,
}

struct Connection<R> {
    server: Arc<Server>,
    session: Arc<Session>,
    io: FrameReader<R>,
    channels: HashMap<u16, Channel>,
    channel_max: u16,
    heartbeat: u16,
    ctx: Ctx,
    events: mpsc::UnboundedReceiver<Event>,
    confirms: Option<mpsc::UnboundedSender<Vec<Deferred>>>,
    confirm_task: Option<JoinHandle<()>>,
    pressure: watch::Receiver<bool>,
    sent_blocked: bool,
    tokens: Tokens,
    last_recv: Instant,
    peer: SocketAddr,
}

impl<R: AsyncRead + Unpin> Connection<R> {
    fn new(
        server: Arc<Server>,
        io: FrameReader<R>,
        outbox: Arc<Outbox>,
        opened: Opened,
        conn_id: u64,
        peer: SocketAddr,
        tokens: Tokens,
    ) -> Self {
        let (events_tx, events) = mpsc::unbounded_channel();
        let session = Arc::new(Session::new(SessionInit {
            tenant: opened.tenant,
            principal: opened.principal,
            token_expires_at: opened.token_expires_at,
            conn_id,
            frame_max: opened.frame_max,
            max_message_size: server.config.max_message_size,
            outbox: Arc::clone(&outbox),
            caps: opened.caps,
            tracker: server.tracker.clone(),
            events: events_tx,
            engine: server.engine.clone(),
        }));
        let (confirms_tx, confirms_rx) = mpsc::unbounded_channel();
        let confirm_task =
            server
                .tracker
                .spawn(confirms::run(server.engine.clone(), outbox, confirms_rx));
        let pressure = server.pressure.clone();
        Connection {
            ctx: Ctx {
                session: Arc::clone(&session),
                deferred: Vec::new(),
                next_consumer_id: 0,
                blocked: false,
                publish_while_blocked: false,
                qos_prefetch_size: 0,
                window: Default::default(),
            },
            server,
            session,
            io,
            channels: HashMap::new(),
            channel_max: opened.channel_max,
            heartbeat: opened.heartbeat,
            events,
            confirms: Some(confirms_tx),
            confirm_task: Some(confirm_task),
            pressure,
            sent_blocked: false,
            tokens,
            last_recv: Instant::now(),
            peer,
        }
    }

    async fn run(&mut self) {
        self.pressure_changed();
        let mut heartbeat_check: Option<Interval> = (self.heartbeat > 0)
            .then(|| tokio::time::interval(Duration::from_secs(u64::from(self.heartbeat))));
        loop {
            if let Some(end) = self.process_buffered().await {
                self.flush_deferred();
                if let Err(e) = end {
                    self.close_with(e).await;
                }
                return;
            }
            self.flush_deferred();
            self.announce_blocked();
            let engine = &self.server.engine;
            let window_full = self.ctx.window.wait_for(|t| engine.is_decided(t));
            let paused = self.ctx.publish_while_blocked || window_full.is_some();
            let reading = !paused && self.session.outbox.len() < READ_PAUSE;
            let outbox = Arc::clone(&self.session.outbox);
            // Built only while the window is full (the loop runs per read).
            let written = window_full.map(|t| {
                let engine = engine.clone();
                // Written or failed: either way it left memory.
                async move { drop(engine.wait_durable(t).await) }
            });
            let written = async move {
                match written {
                    Some(w) => w.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = self.server.shutdown.cancelled() => {
                    let e = AmqpError::new(code::CONNECTION_FORCED, "broker forced connection closure with reason 'shutdown'");
                    return self.close_with(e).await;
                }
                () = self.tokens.kill.cancelled() => {
                    let why = self.tokens.reason.lock().clone();
                    return self.close_with(AmqpError::new(code::CONNECTION_FORCED, why)).await;
                }
                () = self.tokens.dead.cancelled() => return,
                Some(ev) = self.events.recv() => self.event(ev),
                Ok(()) = self.pressure.changed() => self.pressure_changed(),
                () = written, if window_full.is_some() => self.ctx.window.emptied(),
                _ = tick(&mut heartbeat_check) => {
                    let limit = Duration::from_secs(2 * u64::from(self.heartbeat));
                    if !paused && self.last_recv.elapsed() >= limit {
                        tracing::info!(peer = %self.peer, timeout_s = self.heartbeat, "missed heartbeats from client; closing the connection");
                        return;
                    }
                }
                r = self.io.read_more(), if reading => match r {
                    Ok(_) => self.last_recv = Instant::now(),
                    Err(ReadError::Eof) => {
                        tracing::debug!(peer = %self.peer, "AMQP client closed the socket");
                        return;
                    }
                    Err(e) => {
                        tracing::info!(peer = %self.peer, error = %e, "AMQP connection lost");
                        return;
                    }
                },
                () = outbox.wait_below(READ_PAUSE), if !reading && !paused => {}
            }
        }
    }

    /// Handles every complete frame in the buffer. `Some` when the connection
    /// ends: `Ok` after the client's close, `Err` for a hard error to send.
    async fn process_buffered(&mut self) -> Option<AmqpResult> {
        while !self.ctx.publish_while_blocked {
            self.ctx.qos_prefetch_size = peek_qos_prefetch_size(&self.io.buf).unwrap_or(0);
            let frame = match self.io.decode() {
                Ok(Some(f)) => f,
                Ok(None) => return None,
                Err(e) => return Some(Err(e.into())),
            };
            match self.frame(frame).await {
                Ok(Step::Continue) => {}
                Ok(Step::End) => return Some(Ok(())),
                Err(e) => return Some(Err(e)),
            }
        }
        None
    }

    async fn frame(&mut self, frame: Frame) -> AmqpResult<Step> {
        // A token login ends at the first frame after its token expired
        // (as RabbitMQ's OAuth 2 backend); update-secret is the way on.
        if let Some(at) = self.session.token_expires_at()
            && at <= now_millis()
            && !matches!(
                frame,
                Frame::Heartbeat
                    | Frame::Method(
                        0,
                        AMQPClass::Connection(connection::AMQPMethod::UpdateSecret(_))
                    )
            )
        {
            return Err(AmqpError::access_refused(format!(
                "the token of user '{}' has expired; refresh it with connection.update-secret",
                self.session.user()
            )));
        }
        let id = frame.channel();
        if id == 0 {
            return self.channel_zero(frame).await;
        }
        let Some(ch) = self.channels.get_mut(&id) else {
            return self.open_channel(frame);
        };
        if ch.closing {
            // Everything but the close handshake is dropped (§ 4.2.7 of the spec).
            match frame {
                Frame::Method(_, AMQPClass::Channel(channel::AMQPMethod::CloseOk(_))) => {
                    self.channels.remove(&id);
                }
                Frame::Method(_, AMQPClass::Channel(channel::AMQPMethod::Close(_))) => {
                    let ok = channel::AMQPMethod::CloseOk(channel::CloseOk {});
                    self.session.send(id, &AMQPClass::Channel(ok));
                }
                _ => {}
            }
            return Ok(Step::Continue);
        }
        let result = match ch.assembler.push(frame) {
            Ok(None) => Ok(After::Continue),
            Ok(Some(Assembled::Method(m))) => {
                let (class, method) = (m.get_amqp_class_id(), m.get_amqp_method_id());
                ch.handle(&mut self.ctx, m)
                    .await
                    .map_err(|e| e.on_method(class, method))
            }
            Ok(Some(Assembled::Content(c))) => methods::basic::publish(ch, &mut self.ctx, c)
                .map(|()| After::Continue)
                .map_err(|e| e.on_method(60, 40)),
            Err(e) => Err(AmqpError::from(e)),
        };
        match result {
            Ok(After::Continue) => {}
            Ok(After::Closed) => {
                self.channels.remove(&id);
            }
            Err(e) if e.is_connection_error() => return Err(e),
            Err(e) => self.channel_error(id, e).await,
        }
        Ok(Step::Continue)
    }

    fn open_channel(&mut self, frame: Frame) -> AmqpResult<Step> {
        let Frame::Method(id, AMQPClass::Channel(channel::AMQPMethod::Open(_))) = frame else {
            return Err(AmqpError::channel_error("expected 'channel.open'"));
        };
        let max = usize::from(self.channel_max);
        if max != 0 && self.channels.len() >= max {
            return Err(AmqpError::not_allowed(format!(
                "number of channels opened ({}) has reached the negotiated channel_max ({max})",
                self.channels.len()
            ))
            .on_method(20, 10));
        }
        self.channels
            .insert(id, Channel::new(id, self.session.max_message_size));
        let ok = channel::AMQPMethod::OpenOk(channel::OpenOk {});
        self.session.send(id, &AMQPClass::Channel(ok));
        Ok(Step::Continue)
    }

    /// A soft error: close the channel, keep the connection.
    async fn channel_error(&mut self, id: u16, e: AmqpError) {
        tracing::info!(peer = %self.peer, channel = id, code = e.code, reason = %e.text, "AMQP channel error");
        if let Some(ch) = self.channels.get_mut(&id) {
            ch.shutdown().await;
            ch.closing = true;
        }
        let close = channel::AMQPMethod::Close(channel::Close {
            reply_code: e.code,
            reply_text: e.reply_text(),
            class_id: e.class_id,
            method_id: e.method_id,
        });
        self.session.send(id, &AMQPClass::Channel(close));
    }

    /// A hard error or a forced close: `connection.close`, then a moment for
    /// the client to answer.
    async fn close_with(&mut self, e: AmqpError) {
        if e.code == code::CONNECTION_FORCED {
            tracing::info!(peer = %self.peer, reason = %e.text, "closing AMQP connection");
        } else {
            tracing::warn!(peer = %self.peer, code = e.code, reason = %e.text, "AMQP connection error");
        }
        // Every publish already read gets its confirm before the close:
        // a client would republish (duplicate) a stored message it never
        // saw confirmed. Channels are shut after (a closed channel's
        // confirms are dropped).
        self.settle_confirms().await;
        self.shutdown_channels().await;
        let close = connection::AMQPMethod::Close(connection::Close {
            reply_code: e.code,
            reply_text: e.reply_text(),
            class_id: e.class_id,
            method_id: e.method_id,
        });
        self.session.send(0, &AMQPClass::Connection(close));
        let io = &mut self.io;
        let session = &self.session;
        let wait = async {
            loop {
                match io.next().await {
                    Ok(Frame::Method(
                        0,
                        AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)),
                    ))
                    | Err(_) => return,
                    Ok(Frame::Method(
                        0,
                        AMQPClass::Connection(connection::AMQPMethod::Close(_)),
                    )) => {
                        let ok = connection::AMQPMethod::CloseOk(connection::CloseOk {});
                        session.send(0, &AMQPClass::Connection(ok));
                        return;
                    }
                    Ok(_) => {}
                }
            }
        };
        tokio::select! {
            _ = tokio::time::timeout(CLOSE_WAIT, wait) => {}
            () = self.tokens.dead.cancelled() => {}
        }
    }

    /// Hands the confirm task what the reader deferred, lets it finish
    /// (it waits for the store, then writes each ack or nack in order) and
    /// stops it: nothing is confirmed after this. Bounded by [`SETTLE_WAIT`]
    /// and by the socket: a store that does not answer leaves those
    /// publishes unconfirmed (the client cannot tell them from lost ones and
    /// republishes), it does not hold the connection open.
    async fn settle_confirms(&mut self) {
        self.flush_deferred();
        // Dropping the sender ends the task once it has written what it has.
        self.confirms = None;
        let Some(mut task) = self.confirm_task.take() else {
            return;
        };
        let settled = tokio::select! {
            r = tokio::time::timeout(SETTLE_WAIT, &mut task) => r.is_ok(),
            () = self.tokens.dead.cancelled() => false,
        };
        if !settled {
            task.abort();
            if !self.tokens.dead.is_cancelled() {
                tracing::warn!(peer = %self.peer, "closing: the store did not answer in time; publishes left unconfirmed");
            }
        }
    }

    async fn shutdown_channels(&mut self) {
        for ch in self.channels.values_mut() {
            if !ch.closing {
                ch.shutdown().await;
                ch.closing = true;
            }
        }
    }

    /// After the loop: channels, confirms, exclusive queues.
    async fn finish(&mut self) {
        // Confirms first: shutting a channel drops the confirms still due on it.
        self.settle_confirms().await;
        self.shutdown_channels().await;
        self.channels.clear();
        self.session.tenant.connection_closed(self.session.conn_id);
        tracing::debug!(peer = %self.peer, conn_id = self.session.conn_id, "AMQP connection closed");
    }

    fn flush_deferred(&mut self) {
        if self.ctx.deferred.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.ctx.deferred);
        if let Some(tx) = &self.confirms {
            let _ = tx.send(batch);
        }
    }

    fn event(&mut self, ev: Event) {
        match ev {
            Event::ConsumerGone { channel, tag, id } => {
                if let Some(ch) = self.channels.get_mut(&channel)
                    && ch.consumers.get(&tag).is_some_and(|h| h.id == id)
                {
                    ch.consumers.remove(&tag);
                    if ch.reply_to.as_ref().is_some_and(|(_, t)| *t == tag) {
                        ch.reply_to = None;
                    }
                }
            }
        }
    }
}

/// Ticks an optional interval; pending forever without one.
async fn tick(interval: &mut Option<Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}
