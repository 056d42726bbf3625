//! The connected client's loop: handle input, move deliveries out, then wait
//! for the first of the socket, a consumer, the store, the keep-alive timer
//! or a close request (shutdown included).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

use super::io::Io;
use crate::client::Client;
use crate::codec::Packet;
use crate::delivery::OUT_HIGH_WATER;
use crate::error::MqttError;
use crate::handlers::Flow;
use crate::handlers::disconnect::End;
use crate::registry::{CloseReason, ConnSignal};

/// Stop reading while this many replies wait for the store.
const MAX_WAITING_REPLIES: usize = 4096;
/// Quiet this long, a connection gives back the buffers it grew.
const QUIET_AFTER: Duration = Duration::from_secs(1);
/// While the engine is under pressure, look again this often.
const PRESSURE_RECHECK: Duration = Duration::from_millis(20);
/// Without a keep alive, a shrunk connection's timer still fires this rarely.
const IDLE_TICK: Duration = Duration::from_secs(86_400);

/// What woke the connection's task.
enum Event {
    Input,
    Eof,
    Failed(std::io::Error),
    Wrote,
    Deliverable,
    /// The store reached the awaited ticket (boxed error: the event is in
    /// every idle connection's state).
    Durable(Result<(), Box<gw_core::Error>>),
    Timer,
    Signal(CloseReason),
}

/// The connected client's loop: handle input, move deliveries out, wait.
///
/// Its state is what every idle connection holds, so it is kept to the
/// timer and a few instants: shutdown and close requests wake the task
/// through the connection's [`ConnSignal`] (the registry closes live
/// connections on shutdown), not through futures held here.
// Not an `async fn` (see the body), whatever clippy prefers.
#[allow(clippy::manual_async_fn)]
pub(super) fn serve<'a, S>(
    io: &'a mut Io<S>,
    client: &'a mut Client,
    signal: &'a ConnSignal,
) -> impl Future<Output = End> + 'a
where
    S: AsyncRead + AsyncWrite + Unpin + 'a,
{
    // A function returning an `async` block rather than an `async fn`: the
    // block borrows its arguments instead of keeping a second copy of them.
    async move {
        let mut last_packet = Instant::now();
        // Buffers grown under load are given back once the connection has been
        // quiet for QUIET_AFTER (not after every burst: that would reallocate
        // them all the time). The one timer serves this, keep alive and the
        // pressure re-check.
        let mut last_activity = last_packet;
        let mut shrunk = false;
        let timer = tokio::time::sleep(QUIET_AFTER);
        tokio::pin!(timer);
        loop {
            match process_input(io, client, &mut last_packet) {
                Ok(None) => {}
                Ok(Some(end)) => return end,
                Err(e) => return End::Error(e),
            }
            io.release_read_buffer();
            client.flush_acks();
            client.start_durable_wait();
            if let Err(e) = client.pump() {
                return End::Error(e);
            }
            // Only publishers wait (what they send is what grows); one that
            // starts publishing under pressure is paused after that packet.
            let paused = client.publishes && client.engine.under_pressure();
            let reading = !paused
                && client.out.len() < OUT_HIGH_WATER
                && client.replies_waiting() < MAX_WAITING_REPLIES;
            if paused {
                timer.as_mut().reset(Instant::now() + PRESSURE_RECHECK);
            }
            if client.shutdown.is_cancelled() {
                return End::Shutdown;
            }
            // Wait for the first of: input, output written, a delivery, the
            // store, the timer or a close request, writing what `out` holds
            // meanwhile. (Inline, not a nested future: its state would be kept
            // beside this one's.)
            let event = {
                let wants = client.out.len() < OUT_HIGH_WATER
                    && !client.has_deferred()
                    && client.inflight_len() < usize::from(client.max_inflight);
                let Client {
                    out,
                    traffic,
                    consumer,
                    shared,
                    ..
                } = &mut *client;
                let mut durable = traffic.as_mut().map(|t| &mut t.durable);
                let ready = consumer.as_ref().filter(|_| wants).map(|c| c.ready());
                tokio::pin!(ready);
                let mut shared_ready: Vec<Pin<Box<dyn Future<Output = ()> + Send + '_>>> = if wants
                {
                    shared
                        .iter()
                        .map(|s| {
                            Box::pin(s.consumer.ready()) as Pin<Box<dyn Future<Output = ()> + Send>>
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                std::future::poll_fn(|cx| {
                    poll_sources(
                        cx,
                        io,
                        out,
                        reading,
                        ready.as_mut().as_pin_mut(),
                        &mut shared_ready,
                        durable.as_deref_mut(),
                        timer.as_mut(),
                        signal,
                    )
                })
                .await
            };
            if !matches!(event, Event::Timer) {
                last_activity = Instant::now();
                if shrunk {
                    shrunk = false;
                    if timer.deadline() > last_activity + QUIET_AFTER {
                        timer.as_mut().reset(last_activity + QUIET_AFTER);
                    }
                }
            }
            match event {
                Event::Input | Event::Wrote => {}
                Event::Deliverable => client.may_deliver = true,
                Event::Eof => return End::Gone(None),
                Event::Failed(e) => return End::Gone(Some(e)),
                Event::Durable(result) => {
                    let Some((ticket, _)) = client.traffic.as_mut().and_then(|t| t.durable.take())
                    else {
                        continue;
                    };
                    let decided = match result {
                        Ok(()) => client.durable_reached(ticket),
                        // Decided but failed: each reply learns whether its
                        // own write was among the failed ones.
                        Err(e) if !matches!(*e, gw_core::Error::ShuttingDown) => {
                            client.durable_reached(ticket)
                        }
                        Err(e) => Err((*e).into()),
                    };
                    if let Err(e) = decided {
                        return End::Error(e);
                    }
                }
                Event::Timer => {
                    let now = Instant::now();
                    let keep_alive = client.keep_alive_limit();
                    if paused {
                        // Not reading: the client's pings wait in the socket.
                        last_packet = now;
                    }
                    if let Some(ka) = keep_alive
                        && now >= last_packet + ka
                    {
                        return End::Error(MqttError::KeepAliveTimeout);
                    }
                    let quiet = now >= last_activity + QUIET_AFTER;
                    if !shrunk
                        && quiet
                        && client.out.is_empty()
                        && client.inflight_len() == 0
                        && !client.has_deferred()
                    {
                        client.shrink_idle();
                        io.shrink_idle();
                        shrunk = true;
                    }
                    let mut next = last_packet + keep_alive.unwrap_or(IDLE_TICK);
                    if !shrunk {
                        // Quiet but still holding something (unacknowledged
                        // deliveries): look again later, not at once.
                        let check = if quiet { now } else { last_activity };
                        next = next.min(check + QUIET_AFTER);
                    }
                    timer.as_mut().reset(next);
                }
                Event::Signal(CloseReason::TakenOver) => return End::TakenOver,
                Event::Signal(CloseReason::Shutdown) => return End::Shutdown,
                Event::Signal(CloseReason::Administrative) => return End::Administrative,
            }
        }
    }
}

/// Decodes and handles every complete packet in the read buffer.
fn process_input<S>(
    io: &mut Io<S>,
    client: &mut Client,
    last_packet: &mut Instant,
) -> Result<Option<End>, MqttError> {
    let max = client.config.max_packet();
    let mut any = false;
    while client.out.len() < 4 * OUT_HIGH_WATER {
        let Some(packet) = Packet::read(&mut io.rbuf, client.version, max)? else {
            break;
        };
        any = true;
        if let Flow::Disconnect { will } = client.handle(packet)? {
            return Ok(Some(End::ClientDisconnect { will }));
        }
    }
    if any {
        *last_packet = Instant::now();
    }
    Ok(None)
}

/// One look at everything a waiting connection waits for, in order: a close
/// request, writing `out` (the client may be waiting for our acks to send
/// more), reading, the consumers, the store, the timer.
#[allow(clippy::too_many_arguments)]
fn poll_sources<S>(
    cx: &mut Context<'_>,
    io: &mut Io<S>,
    out: &mut bytes::BytesMut,
    reading: bool,
    ready: Option<Pin<&mut impl Future<Output = ()>>>,
    shared_ready: &mut [Pin<Box<dyn Future<Output = ()> + Send + '_>>],
    durable: Option<&mut Option<(gw_core::Ticket, crate::client::DurableWait)>>,
    mut timer: Pin<&mut Sleep>,
    signal: &ConnSignal,
) -> Poll<Event>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if let Poll::Ready(reason) = signal.poll_closed(cx) {
        return Poll::Ready(Event::Signal(reason));
    }
    let had_output = !out.is_empty();
    while !out.is_empty() {
        match Pin::new(&mut io.stream).poll_write(cx, out) {
            Poll::Ready(Ok(0)) => {
                return Poll::Ready(Event::Failed(std::io::ErrorKind::WriteZero.into()));
            }
            Poll::Ready(Ok(n)) => {
                out.advance(n);
                io.needs_flush = true;
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Event::Failed(e)),
            Poll::Pending => break,
        }
    }
    if out.is_empty() && io.needs_flush {
        match Pin::new(&mut io.stream).poll_flush(cx) {
            Poll::Ready(Ok(())) => io.needs_flush = false,
            Poll::Ready(Err(e)) => return Poll::Ready(Event::Failed(e)),
            Poll::Pending => {}
        }
    }
    if had_output && out.is_empty() {
        return Poll::Ready(Event::Wrote);
    }
    if reading {
        match io.poll_read(cx) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Event::Eof),
            Poll::Ready(Ok(_)) => return Poll::Ready(Event::Input),
            Poll::Ready(Err(e)) => return Poll::Ready(Event::Failed(e)),
            Poll::Pending => {}
        }
    }
    if let Some(r) = ready
        && r.poll(cx).is_ready()
    {
        return Poll::Ready(Event::Deliverable);
    }
    for r in shared_ready {
        if r.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Event::Deliverable);
        }
    }
    if let Some((_, d)) = durable.and_then(Option::as_mut)
        && let Poll::Ready(result) = d.as_mut().poll(cx)
    {
        return Poll::Ready(Event::Durable(result.map_err(Box::new)));
    }
    if timer.as_mut().poll(cx).is_ready() {
        return Poll::Ready(Event::Timer);
    }
    Poll::Pending
}
