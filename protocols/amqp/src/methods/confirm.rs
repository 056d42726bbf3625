//! Class `confirm`: publisher confirms (RabbitMQ's extension). Once selected,
//! every publish on the channel gets a sequence number (1, 2, …) and is
//! answered by `basic.ack` once its message is durable (or routed nowhere),
//! or by `basic.nack` when it was refused; see `confirms.rs`.

use amq_protocol::protocol::{AMQPClass, confirm};

use crate::channel::{Channel, Ctx};
use crate::error::{AmqpError, AmqpResult};

/// Dispatches a `confirm` method.
pub fn handle(ch: &mut Channel, ctx: &mut Ctx, m: confirm::AMQPMethod) -> AmqpResult {
    match m {
        confirm::AMQPMethod::Select(sel) => {
            if ch.tx.is_some() {
                return Err(AmqpError::precondition(
                    "cannot switch from tx to confirm mode",
                ));
            }
            if ch.confirm_seq.is_none() {
                ch.confirm_seq = Some(0);
            }
            if !sel.nowait {
                let ok = confirm::AMQPMethod::SelectOk(confirm::SelectOk {});
                ctx.session.send(ch.id(), &AMQPClass::Confirm(ok));
            }
            Ok(())
        }
        confirm::AMQPMethod::SelectOk(_) => Err(AmqpError::command_invalid("unimplemented method")),
    }
}
