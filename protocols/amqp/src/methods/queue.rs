//! Class `queue`: declare, bind, unbind, purge, delete.

use std::sync::Arc;

use amq_protocol::protocol::AMQPClass;
use amq_protocol::protocol::queue;
use amq_protocol::types::FieldTable;
use gw_core::{Access, BindingSpec, Created, DeadLetterTarget, Destination, QueueSpec};

use super::{Answer, check_exclusive, locked, random_suffix, reply_to};
use crate::args::{check_equivalent, queue_args};
use crate::channel::{Channel, Ctx};
use crate::codec::short_text;
use crate::error::{AmqpError, AmqpResult};
use crate::properties::headers_from_table;
use crate::session::Session;

/// Dispatches a `queue` method; returns the answer, to be sent once the
/// change is durable.
pub fn handle(ch: &mut Channel, ctx: &mut Ctx, m: queue::AMQPMethod) -> AmqpResult<Answer> {
    use queue::AMQPMethod as M;
    let s = Arc::clone(&ctx.session);
    let answer = |nowait: bool, ok: M| Answer::new((!nowait).then_some(AMQPClass::Queue(ok)));
    Ok(match m {
        M::Declare(d) => declare(ch, &s, d)?,
        M::Bind(b) => {
            let (queue, key) = shortcut(ch, b.queue.as_str(), b.routing_key.as_str())?;
            let dest = Destination::Queue(queue);
            let created = binding(&s, true, b.exchange.as_str(), dest, key, &b.arguments)?;
            answer(b.nowait, M::BindOk(queue::BindOk {})).creating(created)
        }
        M::Unbind(u) => {
            let (queue, key) = shortcut(ch, u.queue.as_str(), u.routing_key.as_str())?;
            let dest = Destination::Queue(queue);
            binding(&s, false, u.exchange.as_str(), dest, key, &u.arguments)?;
            answer(false, M::UnbindOk(queue::UnbindOk {}))
        }
        M::Purge(p) => {
            let name = ch.queue_name(p.queue.as_str())?;
            s.check(Access::Read, "queue", &name)?;
            let resource = s.resource("queue", &name);
            let q = s
                .tenant
                .queue(&name)
                .map_err(|_| AmqpError::not_found(format!("no {resource}")))?;
            check_exclusive(&q, s.conn_id, &resource)?;
            let n = q.purge().map_err(|e| AmqpError::engine(e, s.vhost()))?;
            let ok = queue::PurgeOk {
                message_count: u32::try_from(n).unwrap_or(u32::MAX),
            };
            answer(p.nowait, M::PurgeOk(ok))
        }
        M::Delete(d) => {
            let n = delete(ch, &s, &d)?;
            let ok = queue::DeleteOk {
                message_count: u32::try_from(n).unwrap_or(u32::MAX),
            };
            answer(d.nowait, M::DeleteOk(ok))
        }
        _ => return Err(AmqpError::command_invalid("unimplemented method")),
    })
}

/// RabbitMQ's shortcuts: an empty queue name is the last declared queue, and
/// then an empty routing key is that queue's name too.
fn shortcut(ch: &Channel, queue: &str, key: &str) -> AmqpResult<(String, String)> {
    let name = ch.queue_name(queue)?;
    let key = if queue.is_empty() && key.is_empty() {
        name.clone()
    } else {
        key.to_owned()
    };
    Ok((name, key))
}

fn declare(ch: &mut Channel, s: &Session, d: queue::Declare) -> AmqpResult<Answer> {
    let given = d.queue.as_str();
    if reply_to::is_reply_queue(given) {
        // All declares of the pseudo queues are passive (RabbitMQ): it exists
        // while its requester consumes, with that one consumer.
        s.tenant
            .queue(given)
            .map_err(|_| AmqpError::not_found(format!("no {}", s.resource("queue", given))))?;
        return declare_ok(ch, given, 0, 1, d.nowait);
    }
    if d.passive {
        let name = ch.queue_name(given)?;
        s.check_any("queue", &name)?;
        let resource = s.resource("queue", &name);
        let q = s
            .tenant
            .queue(&name)
            .map_err(|_| AmqpError::not_found(format!("no {resource}")))?;
        check_exclusive(&q, s.conn_id, &resource)?;
        let (messages, consumers) = (q.message_count(), q.consumer_count());
        return declare_ok(ch, &name, messages, consumers, d.nowait);
    }
    let name = if given.is_empty() {
        format!("amq.gen-{}", random_suffix())
    } else if given.starts_with("amq.") {
        return Err(AmqpError::access_refused(format!(
            "queue name '{given}' contains reserved prefix 'amq.*'"
        )));
    } else {
        given.to_owned()
    };
    s.check(Access::Configure, "queue", &name)?;
    let resource = s.resource("queue", &name);
    let args = queue_args(&d.arguments, &resource)?;
    // Exclusive queues die with their connection, so they are never durable.
    let durable = d.durable && !d.exclusive;
    let owner = d.exclusive.then_some(s.conn_id);
    match s.tenant.queue(&name) {
        Ok(q) => {
            if q.exclusive_owner() != owner {
                return Err(locked(&resource));
            }
            let field = |what: &str, want: bool, have: bool| {
                if want == have {
                    Ok(())
                } else {
                    Err(AmqpError::precondition(format!(
                        "inequivalent arg '{what}' for {resource}: received '{want}' but current is '{have}'"
                    )))
                }
            };
            field("durable", durable, q.is_durable())?;
            field("auto_delete", d.auto_delete, q.is_auto_delete())?;
            check_equivalent(q.arguments(), &args.arguments, &resource)?;
        }
        Err(_) => {
            if let Some(DeadLetterTarget::Exchange { exchange, .. }) = &args.settings.dead_letter {
                s.check(Access::Read, "queue", &name)?;
                s.check(Access::Write, "exchange", exchange)?;
            }
        }
    }
    let spec = QueueSpec {
        durable,
        exclusive_owner: owner,
        auto_delete: d.auto_delete,
        settings: args.settings,
        arguments: args.arguments,
        default_group: true,
    };
    let (q, created) = s
        .tenant
        .declare_queue(&name, spec)
        .map_err(|e| AmqpError::engine(e, s.vhost()))?;
    if created {
        let answer = declare_ok(ch, &name, 0, 0, d.nowait)?;
        let tenant = s.tenant.clone();
        return Ok(answer.creating(Some(Created::Queue { tenant, queue: q })));
    }
    declare_ok(ch, &name, q.message_count(), q.consumer_count(), d.nowait)
}

fn declare_ok(
    ch: &mut Channel,
    name: &str,
    messages: u64,
    consumers: usize,
    nowait: bool,
) -> AmqpResult<Answer> {
    ch.last_queue = name.to_owned();
    Ok(Answer::new((!nowait).then(|| {
        let ok = queue::DeclareOk {
            queue: short_text(name.to_owned()),
            message_count: u32::try_from(messages).unwrap_or(u32::MAX),
            consumer_count: u32::try_from(consumers).unwrap_or(u32::MAX),
        };
        AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok))
    })))
}

fn delete(ch: &Channel, s: &Session, d: &queue::Delete) -> AmqpResult<u64> {
    let name = ch.queue_name(d.queue.as_str())?;
    s.check(Access::Configure, "queue", &name)?;
    let resource = s.resource("queue", &name);
    // Deleting what does not exist succeeds (RabbitMQ answers delete-ok 0).
    let Ok(q) = s.tenant.queue(&name) else {
        return Ok(0);
    };
    check_exclusive(&q, s.conn_id, &resource)?;
    if d.if_unused && q.consumer_count() > 0 {
        return Err(AmqpError::precondition(format!("{resource} in use")));
    }
    if d.if_empty && q.message_count() > 0 {
        return Err(AmqpError::precondition(format!("{resource} not empty")));
    }
    match s.tenant.delete_queue(&name, d.if_unused, d.if_empty) {
        Ok(n) => Ok(n),
        Err(gw_core::Error::NotFound { .. }) => Ok(0),
        Err(e) => Err(AmqpError::engine(e, s.vhost())),
    }
}

/// Adds (`add`) or removes a binding from exchange `source` to `dest`, with
/// RabbitMQ's checks: write on the destination, read on the source, neither
/// the default exchange, both existing, the queue not another's exclusive one.
///
/// Removing is idempotent, as in RabbitMQ 3.x and later
/// (`rabbit_db_binding:delete`): a missing source, destination or binding
/// answers `unbind-ok`, so clean-up paths that run after an auto-delete queue
/// went away keep their channel. The exclusive-owner check then only applies
/// to a binding that exists.
///
/// Returns the binding when this added it.
pub fn binding(
    s: &Session,
    add: bool,
    source: &str,
    dest: Destination,
    routing_key: String,
    arguments: &FieldTable,
) -> AmqpResult<Option<Created>> {
    let (kind, dest_name) = match &dest {
        Destination::Queue(q) => ("queue", q.as_str()),
        Destination::Exchange(x) => ("exchange", x.as_str()),
    };
    if kind == "queue" && reply_to::is_reply_queue(dest_name) {
        return Err(AmqpError::access_refused(
            "cannot bind or unbind to a volatile (direct reply-to) queue",
        ));
    }
    s.check(Access::Write, kind, dest_name)?;
    if source.is_empty() || (kind == "exchange" && dest_name.is_empty()) {
        return Err(AmqpError::access_refused(
            "operation not permitted on the default exchange",
        ));
    }
    s.check(Access::Read, "exchange", source)?;
    if add {
        s.check_topic(Access::Read, source, &routing_key)?;
    }
    let dest_resource = s.resource(kind, dest_name);
    let queue = match &dest {
        Destination::Queue(q) => s.tenant.queue(q).ok(),
        Destination::Exchange(_) => None,
    };
    let dest_exists = match &dest {
        Destination::Queue(_) => queue.is_some(),
        Destination::Exchange(x) => s.tenant.exchange(x).is_ok(),
    };
    let source_exists = s.tenant.exchange(source).is_ok();
    let spec = BindingSpec {
        source: source.to_owned(),
        destination: dest,
        routing_key,
        arguments: headers_from_table(arguments),
    };
    if !add {
        if !(dest_exists && source_exists) {
            return Ok(None);
        }
        if let Some(q) = &queue
            && check_exclusive(q, s.conn_id, &dest_resource).is_err()
            && s.tenant.bindings().contains(&spec)
        {
            return Err(locked(&dest_resource));
        }
        return match s.tenant.unbind(&spec) {
            // Deleted meanwhile: as if it had been missing all along.
            Ok(_) | Err(gw_core::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(AmqpError::engine(e, s.vhost())),
        };
    }
    if !dest_exists {
        return Err(AmqpError::not_found(format!("no {dest_resource}")));
    }
    if let Some(q) = &queue {
        check_exclusive(q, s.conn_id, &dest_resource)?;
    }
    if !source_exists {
        return Err(AmqpError::not_found(format!(
            "no {}",
            s.resource("exchange", source)
        )));
    }
    let added = s
        .tenant
        .bind(spec.clone())
        .map_err(|e| AmqpError::engine(e, s.vhost()))?;
    Ok(added.then(|| Created::Binding {
        tenant: s.tenant.clone(),
        spec,
    }))
}
