//! One channel: its state and the dispatch of its methods to `methods/`.
//!
//! The reader owns every [`Channel`]; what consumer tasks and the confirm task
//! need of it lives in [`ChannelShared`]. A channel error (404, 405, 406, 403)
//! closes only the channel: the connection sends `channel.close`, marks it
//! closing, and drops every frame on it until `channel.close-ok` (§ 4.2.7 of
//! the spec, RabbitMQ's `closing` state). Closing — either way — stops its
//! consumers first (so no delivery follows the close), then returns its
//! unacknowledged deliveries to their queues.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use amq_protocol::protocol::{AMQPClass, access, channel};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::assembler::Assembler;
use crate::confirms::Deferred;
use crate::error::{AmqpError, AmqpResult};
use crate::methods::{self, Answer};
use crate::session::Session;
use crate::tags::{ChannelShared, ConsumerRef, Settle, Unacked, settle};

/// What the reader passes to every method handler.
pub struct Ctx {
    /// The connection.
    pub session: Arc<Session>,
    /// Confirms and deferred replies produced while handling this read's frames.
    pub deferred: Vec<Deferred>,
    /// Ids for consumer tasks.
    pub next_consumer_id: u64,
    /// The engine asked publishers to slow down.
    pub blocked: bool,
    /// A publish arrived while blocked: the reader stops reading.
    pub publish_while_blocked: bool,
    /// `prefetch-size` of the `basic.qos` being handled (amq-protocol drops it).
    pub qos_prefetch_size: u32,
    /// Published bytes the store has not written yet (flow control).
    pub window: crate::window::Window,
}

/// A running consumer, as its channel knows it.
#[derive(Debug)]
pub struct ConsumerHandle {
    /// The task's id.
    pub id: u64,
    /// The engine consumer (shared with the task and the unacked deliveries).
    pub consumer: Arc<ConsumerRef>,
    /// Stops the task.
    pub stop: CancellationToken,
    /// The task.
    pub join: JoinHandle<()>,
}

impl ConsumerHandle {
    /// Stops the task and waits until it has written its last delivery.
    pub async fn stop(self) -> Arc<ConsumerRef> {
        self.consumer.stopped.store(true, Ordering::Release);
        self.stop.cancel();
        let _ = self.join.await;
        self.consumer
    }
}

/// Publishes and settlements a transaction holds until `tx.commit`.
#[derive(Debug, Default)]
pub struct Tx {
    /// Messages to route at commit, with their `mandatory` flag and what a
    /// `basic.return` would need.
    pub publishes: Vec<methods::basic::Publish>,
    /// Acks, nacks and rejects, already removed from the tag space.
    pub settles: Vec<(Vec<(u64, Unacked)>, Settle)>,
}

/// What the reader does with a channel after a method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    /// Keep it.
    Continue,
    /// The client closed it (close-ok sent): forget it.
    Closed,
}

/// One open channel.
#[derive(Debug)]
pub struct Channel {
    /// What consumer tasks share.
    pub shared: Arc<ChannelShared>,
    /// Publish + header + body → message.
    pub assembler: Assembler,
    /// We sent `channel.close` and wait for `close-ok`.
    pub closing: bool,
    /// Consumers by tag.
    pub consumers: HashMap<String, ConsumerHandle>,
    /// `basic.qos` (not global): window of consumers created from now on.
    pub prefetch_count: u32,
    /// `basic.qos` prefetch-size for new consumers (bytes, 0 = none).
    pub prefetch_bytes: u64,
    /// Publisher confirms on: the sequence number of the last publish.
    pub confirm_seq: Option<u64>,
    /// Transaction mode: what the open transaction holds.
    pub tx: Option<Tx>,
    /// The last queue declared on the channel (an empty queue name means it).
    pub last_queue: String,
    /// The direct reply-to pseudo queue of this channel, and its consumer tag.
    pub reply_to: Option<(String, String)>,
    /// Exchange the user may write to, checked under this principal epoch.
    pub write_ok: Option<(String, u64)>,
}

impl Channel {
    /// A channel just opened.
    pub fn new(id: u16, max_message_size: u64) -> Self {
        Channel {
            shared: Arc::new(ChannelShared::new(id)),
            assembler: Assembler::new(max_message_size),
            closing: false,
            consumers: HashMap::new(),
            prefetch_count: 0,
            prefetch_bytes: 0,
            confirm_seq: None,
            tx: None,
            last_queue: String::new(),
            reply_to: None,
            write_ok: None,
        }
    }

    /// The channel number.
    pub fn id(&self) -> u16 {
        self.shared.id
    }

    /// Handles one method (not `basic.publish`, which arrives as content).
    pub async fn handle(&mut self, ctx: &mut Ctx, method: AMQPClass) -> AmqpResult<After> {
        match method {
            AMQPClass::Channel(m) => return self.channel_method(ctx, m).await,
            AMQPClass::Access(access::AMQPMethod::Request(_)) => {
                let ok = access::AMQPMethod::RequestOk(access::RequestOk {});
                ctx.session.send(self.id(), &AMQPClass::Access(ok));
            }
            AMQPClass::Exchange(m) => {
                let reply = methods::exchange::handle(ctx, m)?;
                self.reply_when_durable(ctx, reply).await?;
            }
            AMQPClass::Queue(m) => {
                let reply = methods::queue::handle(self, ctx, m)?;
                self.reply_when_durable(ctx, reply).await?;
            }
            AMQPClass::Basic(m) => methods::basic::handle(self, ctx, m).await?,
            AMQPClass::Confirm(m) => methods::confirm::handle(self, ctx, m)?,
            AMQPClass::Tx(m) => methods::tx::handle(self, ctx, m)?,
            AMQPClass::Connection(_) | AMQPClass::Access(_) => {
                return Err(AmqpError::command_invalid("unimplemented method"));
            }
        }
        Ok(After::Continue)
    }

    /// Declarations, bindings, deletions and purges change what the store
    /// keeps: their answer waits until that is on disk, so a crash cannot take
    /// back what was answered, and what could not be stored is taken back and
    /// answered with an error (even for `nowait`: the channel closes). The
    /// reader waits (these are rare), which keeps the answers in order.
    async fn reply_when_durable(&self, ctx: &Ctx, answer: Answer) -> AmqpResult {
        if answer.reply.is_none() && answer.created.is_none() {
            return Ok(());
        }
        ctx.session
            .engine
            .durable_or_undo(answer.created.into_iter().collect())
            .await
            .map_err(|e| AmqpError::engine(e, ctx.session.vhost()))?;
        if let Some(reply) = answer.reply {
            ctx.session.send(self.id(), &reply);
        }
        Ok(())
    }

    async fn channel_method(&mut self, ctx: &mut Ctx, m: channel::AMQPMethod) -> AmqpResult<After> {
        match m {
            channel::AMQPMethod::Open(_) => {
                Err(AmqpError::channel_error("second 'channel.open' seen"))
            }
            channel::AMQPMethod::Close(_) => {
                self.shutdown().await;
                let ok = channel::AMQPMethod::CloseOk(channel::CloseOk {});
                ctx.session.send(self.id(), &AMQPClass::Channel(ok));
                Ok(After::Closed)
            }
            channel::AMQPMethod::Flow(f) => {
                // RabbitMQ refuses active=false (540); pausing deliveries is
                // what the spec asks and costs nothing here, so it is honoured.
                self.shared.set_flow(f.active);
                let ok = channel::AMQPMethod::FlowOk(channel::FlowOk { active: f.active });
                ctx.session.send(self.id(), &AMQPClass::Channel(ok));
                Ok(After::Continue)
            }
            // Answers to what we never send, or a late close-ok: nothing to do.
            channel::AMQPMethod::CloseOk(_) | channel::AMQPMethod::FlowOk(_) => Ok(After::Continue),
            channel::AMQPMethod::OpenOk(_) => {
                Err(AmqpError::command_invalid("unimplemented method"))
            }
        }
    }

    /// Stops every consumer (each writes its last delivery first), drops the
    /// open transaction and returns every unacknowledged delivery to its queue.
    pub async fn shutdown(&mut self) {
        self.shared.close();
        self.assembler.reset();
        for (_, handle) in self.consumers.drain() {
            handle.stop().await;
        }
        self.tx = None;
        let unacked = self.shared.tags.lock().remove_all();
        settle(unacked, Settle::Nack { requeue: true });
    }

    /// The queue a method names, or the last one declared for an empty name
    /// (RabbitMQ's shortcut).
    pub fn queue_name(&self, name: &str) -> AmqpResult<String> {
        if !name.is_empty() {
            return Ok(name.to_owned());
        }
        if self.last_queue.is_empty() {
            return Err(AmqpError::not_found("no previously declared queue"));
        }
        Ok(self.last_queue.clone())
    }

    /// Checks write access to an exchange, remembering the last one allowed
    /// (publishers write to the same exchange over and over).
    pub fn check_write(&mut self, session: &Session, exchange: &str) -> AmqpResult {
        let epoch = session.principal_epoch();
        if let Some((name, e)) = &self.write_ok
            && name == exchange
            && *e == epoch
        {
            return Ok(());
        }
        session.check(gw_core::Access::Write, "exchange", exchange)?;
        self.write_ok = Some((exchange.to_owned(), epoch));
        Ok(())
    }
}
