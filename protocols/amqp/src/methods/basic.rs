//! Class `basic`: qos, consume, cancel, publish, get, ack, nack, reject, recover.

use std::sync::Arc;

use amq_protocol::protocol::AMQPClass;
use amq_protocol::protocol::basic::{self, AMQPProperties};
use amq_protocol::types::ShortString;
use gw_core::{
    Access, ConsumerSpec, DEFAULT_GROUP, Error as EngineError, Message, PullRequest, Queue, Ticket,
};
use tokio_util::sync::CancellationToken;

use super::{check_exclusive, random_suffix, reply_to};
use crate::args::{Offset, consume_args};
use crate::assembler::Content;
use crate::channel::{Channel, ConsumerHandle, Ctx};
use crate::codec::{encode_content, encode_get_ok, encode_method, short_text};
use crate::confirms::{Deferred, Outcome};
use crate::consumer::{ConsumerTask, encode_body};
use crate::error::{AmqpError, AmqpResult, code};
use crate::properties::message_from_publish;
use crate::tags::{ConsumerRef, Settle, Source, Unacked, settle};

/// A message ready to route: now, or at `tx.commit`.
#[derive(Debug)]
pub struct Publish {
    /// The engine message.
    pub message: Message,
    /// Return it (`basic.return`) when no queue takes it.
    pub mandatory: bool,
    /// The properties as published, for `basic.return`.
    pub properties: AMQPProperties,
}

/// Dispatches a `basic` method.
pub async fn handle(ch: &mut Channel, ctx: &mut Ctx, m: basic::AMQPMethod) -> AmqpResult {
    use basic::AMQPMethod as M;
    match m {
        M::Qos(q) => qos(ch, ctx, q),
        M::Consume(c) => consume(ch, ctx, c),
        M::Cancel(c) => cancel(ch, ctx, c).await,
        M::Get(g) => get(ch, ctx, g),
        M::Ack(a) => settle_tags(ch, a.delivery_tag, a.multiple, Settle::Ack),
        M::Nack(n) => settle_tags(
            ch,
            n.delivery_tag,
            n.multiple,
            Settle::Nack { requeue: n.requeue },
        ),
        M::Reject(r) => settle_tags(
            ch,
            r.delivery_tag,
            false,
            Settle::Nack { requeue: r.requeue },
        ),
        M::Recover(r) => {
            recover(ch, r.requeue)?;
            let ok = M::RecoverOk(basic::RecoverOk {});
            ctx.session.send(ch.id(), &AMQPClass::Basic(ok));
            Ok(())
        }
        M::RecoverAsync(r) => recover(ch, r.requeue),
        // The client answering a server-sent cancel.
        M::CancelOk(_) => Ok(()),
        _ => Err(AmqpError::command_invalid("unimplemented method")),
    }
}

fn qos(ch: &mut Channel, ctx: &mut Ctx, q: basic::Qos) -> AmqpResult {
    if q.global {
        // RabbitMQ 3.x: global = one window shared by the channel's consumers.
        ch.shared.set_global_prefetch(u32::from(q.prefetch_count));
    } else {
        // Applies to consumers created from now on, as in RabbitMQ.
        ch.prefetch_count = u32::from(q.prefetch_count);
        // RabbitMQ refuses prefetch-size ≠ 0 (540); the engine can honour it.
        ch.prefetch_bytes = u64::from(ctx.qos_prefetch_size);
    }
    ctx.session.send(
        ch.id(),
        &AMQPClass::Basic(basic::AMQPMethod::QosOk(basic::QosOk {})),
    );
    Ok(())
}

fn consume(ch: &mut Channel, ctx: &mut Ctx, c: basic::Consume) -> AmqpResult {
    let s = Arc::clone(&ctx.session);
    let queue_name = ch.queue_name(c.queue.as_str())?;
    let given = c.consumer_tag.as_str();
    if !given.is_empty() && ch.consumers.contains_key(given) {
        return Err(AmqpError::not_allowed(format!(
            "attempt to reuse consumer tag '{given}'"
        )));
    }
    if queue_name == reply_to::QUEUE {
        return reply_to::consume(ch, ctx, c);
    }
    s.check(Access::Read, "queue", &queue_name)?;
    let tag = if given.is_empty() {
        ShortString::from(format!("amq.ctag-{}", random_suffix()))
    } else {
        c.consumer_tag.clone()
    };
    let resource = s.resource("queue", &queue_name);
    let queue = s
        .tenant
        .queue(&queue_name)
        .map_err(|_| AmqpError::not_found(format!("no {resource}")))?;
    check_exclusive(&queue, s.conn_id, &resource)?;
    let args = consume_args(&c.arguments, &resource)?;
    let group = args
        .group
        .clone()
        .unwrap_or_else(|| DEFAULT_GROUP.to_owned());
    prepare_group(&queue, &group, args.offset, &s)?;
    let spec = ConsumerSpec {
        tag: tag.as_str().to_owned(),
        prefetch_count: ch.prefetch_count,
        prefetch_bytes: ch.prefetch_bytes,
        no_ack: c.no_ack,
        exclusive: c.exclusive,
        lease_timeout: None,
        priority: args.priority,
        filter: args.filter,
    };
    let consumer = queue.consume(&group, spec).map_err(|e| match e {
        EngineError::AccessRefused(_) => {
            AmqpError::access_refused(format!("{resource} in exclusive use"))
        }
        other => AmqpError::engine(other, s.vhost()),
    })?;
    if !c.nowait {
        let ok = basic::ConsumeOk {
            consumer_tag: tag.clone(),
        };
        s.send(ch.id(), &AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(ok)));
    }
    start_consumer(ch, ctx, consumer, tag, c.no_ack);
    Ok(())
}

/// Creates a consumer group on first use, or rewinds an idle one, at the
/// position `x-stream-offset` gives. Without one, a new named group starts at
/// "next", as a RabbitMQ stream consumer does, and the queue's default group
/// (missing on queues made through the DMS API, which names its groups) at
/// the oldest message: a plain AMQP consumer gets what the queue holds.
fn prepare_group(
    queue: &Queue,
    group: &str,
    offset: Option<Offset>,
    s: &crate::session::Session,
) -> AmqpResult {
    let engine_err = |e| AmqpError::engine(e, s.vhost());
    let exists = queue.group_names().iter().any(|g| g == group);
    match (exists, offset) {
        (false, _) => {
            let default = if group == DEFAULT_GROUP {
                Offset::First
            } else {
                Offset::Next
            };
            let start = offset.unwrap_or(default).position(queue.bounds());
            queue.create_group(group, start, None).map_err(engine_err)?;
        }
        (true, Some(offset)) => {
            let idle = queue
                .stats()
                .groups
                .iter()
                .find(|g| g.name == group)
                .is_some_and(|g| g.consumers == 0);
            if idle {
                queue
                    .rewind(group, offset.position(queue.bounds()))
                    .map_err(engine_err)?;
            }
        }
        (true, None) => {}
    }
    Ok(())
}

/// Spawns the task that delivers for a new consumer.
pub fn start_consumer(
    ch: &mut Channel,
    ctx: &mut Ctx,
    consumer: gw_core::Consumer,
    tag: ShortString,
    no_ack: bool,
) {
    ctx.next_consumer_id += 1;
    let id = ctx.next_consumer_id;
    let consumer = Arc::new(ConsumerRef {
        consumer,
        stopped: Default::default(),
    });
    let stop = CancellationToken::new();
    let task = ConsumerTask {
        session: Arc::clone(&ctx.session),
        channel: Arc::clone(&ch.shared),
        consumer: Arc::clone(&consumer),
        tag: tag.clone(),
        no_ack,
        stop: stop.clone(),
        id,
    };
    let join = ctx.session.tracker.spawn(task.run());
    ch.consumers.insert(
        tag.as_str().to_owned(),
        ConsumerHandle {
            id,
            consumer,
            stop,
            join,
        },
    );
}

async fn cancel(ch: &mut Channel, ctx: &mut Ctx, c: basic::Cancel) -> AmqpResult {
    if let Some(handle) = ch.consumers.remove(c.consumer_tag.as_str()) {
        let consumer = handle.stop().await;
        // Its unacknowledged deliveries stay with the channel and may still be
        // acked (RabbitMQ allows it); the engine stops giving it anything.
        consumer.consumer.stop();
        if ch
            .reply_to
            .as_ref()
            .is_some_and(|(_, tag)| tag == c.consumer_tag.as_str())
        {
            ch.reply_to = None;
        }
    }
    // Cancelling an unknown tag is not an error (RabbitMQ answers cancel-ok).
    if !c.nowait {
        let ok = basic::CancelOk {
            consumer_tag: c.consumer_tag,
        };
        ctx.session
            .send(ch.id(), &AMQPClass::Basic(basic::AMQPMethod::CancelOk(ok)));
    }
    Ok(())
}

fn get(ch: &mut Channel, ctx: &mut Ctx, g: basic::Get) -> AmqpResult {
    let s = Arc::clone(&ctx.session);
    let name = ch.queue_name(g.queue.as_str())?;
    s.check(Access::Read, "queue", &name)?;
    let resource = s.resource("queue", &name);
    let queue = s
        .tenant
        .queue(&name)
        .map_err(|_| AmqpError::not_found(format!("no {resource}")))?;
    check_exclusive(&queue, s.conn_id, &resource)?;
    let req = PullRequest {
        max: 1,
        no_ack: g.no_ack,
        ..PullRequest::default()
    };
    // Only a queue made through the DMS API lacks its default group: make it
    // then, not on every get.
    let got = match queue.pull(DEFAULT_GROUP, &req) {
        Err(EngineError::NotFound { kind: "group", .. }) => {
            prepare_group(&queue, DEFAULT_GROUP, None, &s)?;
            queue.pull(DEFAULT_GROUP, &req)
        }
        other => other,
    }
    .map_err(|e| AmqpError::engine(e, s.vhost()))?;
    let Some(d) = got.into_iter().next() else {
        let empty = basic::AMQPMethod::GetEmpty(basic::GetEmpty {});
        s.send(ch.id(), &AMQPClass::Basic(empty));
        return Ok(());
    };
    let remaining = u32::try_from(queue.message_count()).unwrap_or(u32::MAX);
    let shared = Arc::clone(&ch.shared);
    let group: Arc<str> = DEFAULT_GROUP.into();
    s.outbox.push(|buf| {
        let mut tags = shared.tags.lock();
        let tag = tags.next_tag();
        if !g.no_ack {
            tags.insert(
                tag,
                Unacked {
                    source: Source::Pull {
                        queue: Arc::clone(&queue),
                        group,
                    },
                    tag: d.tag,
                },
            );
        }
        let at = buf.len();
        let m = &d.message;
        encode_get_ok(
            buf,
            shared.id,
            tag,
            d.redelivered,
            &m.exchange,
            &m.routing_key,
            remaining,
        );
        if let Err(e) = encode_body(buf, shared.id, &d, s.frame_max) {
            buf.truncate(at);
            tracing::error!(error = %e, "cannot encode a basic.get-ok");
        }
    });
    Ok(())
}

fn settle_tags(ch: &mut Channel, tag: u64, multiple: bool, how: Settle) -> AmqpResult {
    let removed = ch
        .shared
        .tags
        .lock()
        .remove(tag, multiple)
        .map_err(|t| AmqpError::precondition(format!("unknown delivery tag {t}")))?;
    if let Some(tx) = &mut ch.tx {
        tx.settles.push((removed, how));
        return Ok(());
    }
    settle(removed, how);
    ch.shared.freed();
    Ok(())
}

fn recover(ch: &mut Channel, requeue: bool) -> AmqpResult {
    if !requeue {
        return Err(AmqpError::not_implemented("requeue=false"));
    }
    let all = ch.shared.tags.lock().remove_all();
    settle(all, Settle::Nack { requeue: true });
    ch.shared.freed();
    Ok(())
}

/// `basic.publish` with its content: checks, then routes now or holds it
/// for `tx.commit`.
pub fn publish(ch: &mut Channel, ctx: &mut Ctx, content: Box<Content>) -> AmqpResult {
    let Content {
        publish,
        properties,
        body,
    } = *content;
    if publish.immediate {
        return Err(AmqpError::not_implemented("immediate=true"));
    }
    let s = Arc::clone(&ctx.session);
    let exchange = publish.exchange.as_str();
    ch.check_write(&s, exchange)?;
    if !exchange.is_empty() {
        match s.tenant.exchange(exchange) {
            Ok(x) if x.spec.internal => {
                return Err(AmqpError::access_refused(format!(
                    "cannot publish to internal {}",
                    s.resource("exchange", exchange)
                )));
            }
            Ok(_) => {}
            Err(_) => {
                return Err(AmqpError::not_found(format!(
                    "no {}",
                    s.resource("exchange", exchange)
                )));
            }
        }
        s.check_topic(Access::Write, exchange, publish.routing_key.as_str())?;
    }
    if let Some(exp) = properties.expiration() {
        check_expiration(exp.as_str())?;
    }
    if let Some(uid) = properties.user_id() {
        let user = s.user();
        if uid.as_str() != user {
            return Err(AmqpError::precondition(format!(
                "user_id property set to '{uid}' but authenticated user was '{user}'"
            )));
        }
    }
    let mut message = message_from_publish(&publish, &properties, body);
    reply_to::rewrite(ch, &mut message)?;
    if ctx.blocked {
        ctx.publish_while_blocked = true;
    }
    let p = Publish {
        message,
        mandatory: publish.mandatory,
        properties,
    };
    match &mut ch.tx {
        Some(tx) => {
            tx.publishes.push(p);
            Ok(())
        }
        None => route(ch, ctx, p).map(drop),
    }
}

/// RabbitMQ's check of the `expiration` property: a non-negative integer.
fn check_expiration(exp: &str) -> AmqpResult {
    match exp.parse::<i64>() {
        Ok(n) if n >= 0 => Ok(()),
        Ok(n) => Err(AmqpError::precondition(format!(
            "invalid expiration '{exp}': {{value_negative,{n}}}"
        ))),
        Err(_) => Err(AmqpError::precondition(format!(
            "invalid expiration '{exp}': no_integer"
        ))),
    }
}

/// Routes one message; answers `basic.return` when mandatory and unroutable,
/// and queues its confirm. Returns the ticket to wait for, if any.
pub fn route(ch: &mut Channel, ctx: &mut Ctx, p: Publish) -> AmqpResult<Option<Ticket>> {
    let Publish {
        message,
        mandatory,
        properties,
    } = p;
    let returnable = mandatory.then(|| {
        (
            message.exchange.clone(),
            message.routing_key.clone(),
            message.body.clone(),
        )
    });
    let seq = ch.confirm_seq.as_mut().map(|s| {
        *s += 1;
        *s
    });
    let s = &ctx.session;
    let mut ticket = None;
    let size = message.body.len();
    // On a confirm channel the message is visible to consumers only once
    // stored: one that is nacked because the store failed is never delivered.
    let published = if seq.is_some() {
        s.tenant.publish_confirmed(message)
    } else {
        s.tenant.publish(message)
    };
    let outcome = match published {
        Ok(receipt) => {
            if receipt.routed == 0
                && let Some((exchange, routing_key, body)) = returnable
            {
                send_return(ch, ctx, &exchange, &routing_key, &properties, &body);
            }
            ticket = receipt.ticket;
            if let Some(t) = receipt.ticket {
                ctx.window.published(size, t);
            }
            if receipt.rejected > 0 {
                Outcome::Nack
            } else if let Some(t) = receipt.ticket {
                Outcome::Durable(t)
            } else {
                Outcome::Ack
            }
        }
        Err(EngineError::Storage(e)) if seq.is_some() => {
            tracing::error!(error = %e, "a publish could not be stored; nacking it");
            Outcome::Nack
        }
        Err(e) => return Err(AmqpError::engine(e, s.vhost())),
    };
    if let Some(seq) = seq {
        ctx.deferred.push(Deferred::Confirm {
            channel: Arc::clone(&ch.shared),
            seq,
            outcome,
        });
    }
    Ok(ticket)
}

fn send_return(
    ch: &Channel,
    ctx: &Ctx,
    exchange: &str,
    routing_key: &str,
    properties: &AMQPProperties,
    body: &[u8],
) {
    let ret = basic::Return {
        reply_code: code::NO_ROUTE,
        reply_text: "NO_ROUTE".into(),
        exchange: short_text(exchange.to_owned()),
        routing_key: short_text(routing_key.to_owned()),
    };
    let method = AMQPClass::Basic(basic::AMQPMethod::Return(ret));
    let frame_max = ctx.session.frame_max;
    ctx.session.outbox.push(|buf| {
        let at = buf.len();
        let res = encode_method(buf, ch.id(), &method)
            .and_then(|()| encode_content(buf, ch.id(), 60, properties, body, frame_max));
        if let Err(e) = res {
            buf.truncate(at);
            tracing::error!(error = %e, "cannot encode a basic.return");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::check_expiration;

    #[test]
    fn expiration_must_be_a_non_negative_integer() {
        assert!(check_expiration("60000").is_ok());
        assert!(check_expiration("0").is_ok());
        assert_eq!(
            check_expiration("soon").unwrap_err().text,
            "PRECONDITION_FAILED - invalid expiration 'soon': no_integer"
        );
        assert!(
            check_expiration("-5")
                .unwrap_err()
                .text
                .contains("value_negative")
        );
    }
}
