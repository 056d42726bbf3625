//! Direct reply-to (RabbitMQ's `amq.rabbitmq.reply-to`): RPC replies without
//! declaring a reply queue.
//!
//! A requester consumes from `amq.rabbitmq.reply-to` (no-ack only, as RabbitMQ
//! requires). That creates a pseudo queue for the channel: an engine queue named
//! `amq.rabbitmq.reply-to.<random>`, exclusive to the connection, auto-delete,
//! transient. A publish on that channel with `reply_to` set to
//! `amq.rabbitmq.reply-to` has it rewritten to the pseudo queue's name; the
//! server publishes its reply to the default exchange with that name as routing
//! key, and the default exchange routes by queue name, so the reply reaches the
//! consumer. The name carries 128 random bits, so it cannot be guessed.

use std::sync::Arc;

use amq_protocol::protocol::AMQPClass;
use amq_protocol::protocol::basic;
use amq_protocol::types::ShortString;
use gw_core::{ConsumerSpec, DEFAULT_GROUP, Message, QueueSettings, QueueSpec};

use super::basic::start_consumer;
use super::random_suffix;
use crate::channel::{Channel, Ctx};
use crate::error::{AmqpError, AmqpResult};

/// The pseudo queue requesters consume from and name in `reply_to`.
pub const QUEUE: &str = "amq.rabbitmq.reply-to";

/// True for the names of direct reply-to pseudo queues.
pub fn is_reply_queue(name: &str) -> bool {
    name.starts_with(QUEUE)
}

/// `basic.consume` on `amq.rabbitmq.reply-to`.
pub fn consume(ch: &mut Channel, ctx: &mut Ctx, c: basic::Consume) -> AmqpResult {
    if !c.no_ack {
        return Err(AmqpError::precondition("reply consumer cannot acknowledge"));
    }
    if ch.reply_to.is_some() {
        return Err(AmqpError::precondition("reply consumer already set"));
    }
    let s = Arc::clone(&ctx.session);
    let tag = if c.consumer_tag.as_str().is_empty() {
        ShortString::from(format!("amq.ctag-{}", random_suffix()))
    } else {
        c.consumer_tag.clone()
    };
    let name = format!("{QUEUE}.{}", random_suffix());
    let spec = QueueSpec {
        durable: false,
        exclusive_owner: Some(s.conn_id),
        auto_delete: true,
        settings: QueueSettings::classic(),
        default_group: true,
        ..QueueSpec::default()
    };
    let engine_err = |e| AmqpError::engine(e, s.vhost());
    let (queue, _) = s.tenant.declare_queue(&name, spec).map_err(engine_err)?;
    let consumer = queue
        .consume(
            DEFAULT_GROUP,
            ConsumerSpec {
                tag: tag.as_str().to_owned(),
                no_ack: true,
                ..ConsumerSpec::default()
            },
        )
        .map_err(engine_err)?;
    if !c.nowait {
        let ok = basic::ConsumeOk {
            consumer_tag: tag.clone(),
        };
        s.send(ch.id(), &AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(ok)));
    }
    ch.reply_to = Some((name, tag.as_str().to_owned()));
    start_consumer(ch, ctx, consumer, tag, true);
    Ok(())
}

/// Points `reply_to = amq.rabbitmq.reply-to` at this channel's pseudo queue.
pub fn rewrite(ch: &Channel, message: &mut Message) -> AmqpResult {
    if message.properties.reply_to.as_deref() != Some(QUEUE) {
        return Ok(());
    }
    match &ch.reply_to {
        Some((name, _)) => {
            message.properties.reply_to = Some(name.clone());
            Ok(())
        }
        None => Err(AmqpError::precondition(
            "fast reply consumer does not exist",
        )),
    }
}
