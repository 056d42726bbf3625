//! Class `tx`: transactions as RabbitMQ implements them. In tx mode a
//! channel's publishes and acks / nacks / rejects are held until `tx.commit`,
//! which routes and settles them all and answers once the published messages
//! are durable; `tx.rollback` drops the publishes and puts the settlements back
//! (the deliveries are unacknowledged again).

use std::sync::Arc;

use amq_protocol::protocol::{AMQPClass, tx};

use super::basic::route;
use crate::channel::{Channel, Ctx, Tx};
use crate::confirms::Deferred;
use crate::error::{AmqpError, AmqpResult};
use crate::tags::settle;

/// Dispatches a `tx` method.
pub fn handle(ch: &mut Channel, ctx: &mut Ctx, m: tx::AMQPMethod) -> AmqpResult {
    match m {
        tx::AMQPMethod::Select(_) => {
            if ch.confirm_seq.is_some() {
                return Err(AmqpError::precondition(
                    "cannot switch from confirm to tx mode",
                ));
            }
            if ch.tx.is_none() {
                ch.tx = Some(Tx::default());
            }
            reply(ch, ctx, tx::AMQPMethod::SelectOk(tx::SelectOk {}));
            Ok(())
        }
        tx::AMQPMethod::Commit(_) => {
            let Some(open) = ch.tx.replace(Tx::default()) else {
                return Err(AmqpError::precondition("channel is not transactional"));
            };
            let mut last = None;
            for p in open.publishes {
                if let Some(t) = route(ch, ctx, p)? {
                    last = Some(last.map_or(t, |l: u64| l.max(t)));
                }
            }
            for (entries, how) in open.settles {
                settle(entries, how);
            }
            ch.shared.freed();
            // commit-ok only once what was published is on disk.
            ctx.deferred.push(Deferred::Reply {
                channel: Arc::clone(&ch.shared),
                method: AMQPClass::Tx(tx::AMQPMethod::CommitOk(tx::CommitOk {})),
                after: last,
            });
            Ok(())
        }
        tx::AMQPMethod::Rollback(_) => {
            let Some(open) = ch.tx.replace(Tx::default()) else {
                return Err(AmqpError::precondition("channel is not transactional"));
            };
            let mut tags = ch.shared.tags.lock();
            for (entries, _) in open.settles {
                tags.restore(entries);
            }
            drop(tags);
            reply(ch, ctx, tx::AMQPMethod::RollbackOk(tx::RollbackOk {}));
            Ok(())
        }
        _ => Err(AmqpError::command_invalid("unimplemented method")),
    }
}

fn reply(ch: &Channel, ctx: &Ctx, m: tx::AMQPMethod) {
    ctx.session.send(ch.id(), &AMQPClass::Tx(m));
}
