//! Publishing: route, then append to every queue reached, storing a body
//! once when several durable queues keep it; a delayed message is routed now
//! and kept aside until it is due.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Instant;

use super::tenant::PublishReceipt;
use super::{EngineInner, instant_at};
use crate::delay::DelayedItem;
use crate::error::{Error, Result};
use crate::message::{Message, now_millis};
use crate::queue::{Appended, Persist, Queue};
use crate::store::Write;
use crate::tenant::TenantState;

impl EngineInner {
    pub(crate) fn publish(
        &self,
        tenant: &Arc<TenantState>,
        mut msg: Message,
        confirmed: bool,
    ) -> Result<PublishReceipt> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::ShuttingDown);
        }
        let queues = tenant.route(&msg)?;
        msg.id = self.next_id();
        msg.published_at = now_millis();
        let mut receipt = PublishReceipt {
            message_id: msg.id,
            ..PublishReceipt::default()
        };
        if queues.is_empty() {
            return Ok(receipt);
        }
        if msg.is_persistent()
            && !self.store().is_writable()
            && queues.iter().any(|q| q.is_durable())
        {
            return Err(self.store().not_writable().into());
        }
        if let Some(due) = msg.deliver_at.filter(|&d| d > msg.published_at) {
            let stored = msg.is_persistent() && queues.iter().any(|q| q.is_durable());
            let msg = Arc::new(msg);
            if stored {
                let ids = queues
                    .iter()
                    .filter(|q| q.is_durable())
                    .map(|q| q.id)
                    .collect();
                let write = Write::Delayed {
                    due,
                    id: msg.id,
                    tenant: Arc::clone(&tenant.name),
                    queues: ids,
                    message: Arc::clone(&msg),
                };
                receipt.ticket = Some(self.store().submit(write, true));
            }
            for q in &queues {
                q.delayed_changed(1);
            }
            let item = DelayedItem {
                queues: queues.iter().map(Arc::downgrade).collect(),
                size: msg.accounted_size(),
                message: Some(msg),
                stored,
            };
            if self.delays.insert(due, receipt.message_id, item) {
                self.arm_delays(instant_at(due));
            }
            receipt.routed = queues.len();
            receipt.delayed = true;
            return Ok(receipt);
        }
        let msg = Arc::new(msg);
        self.append_to(&queues, &msg, true, confirmed, &mut receipt);
        Ok(receipt)
    }

    /// Appends one message to several queues, storing its body once when more
    /// than one of them keeps it on disk. `confirmed`: its publisher waits
    /// for the receipt, so consumers see it only once it is stored.
    pub(super) fn append_to(
        &self,
        queues: &[Arc<Queue>],
        msg: &Arc<Message>,
        sync: bool,
        confirmed: bool,
        receipt: &mut PublishReceipt,
    ) {
        let durable = queues.iter().filter(|q| q.persist_for(msg)).count();
        let body = (durable > 1).then(|| {
            let id = self.next_id();
            let write = Write::Body {
                id,
                message: Arc::clone(msg),
            };
            self.store().submit(write, sync);
            id
        });
        let mut holders = Vec::new();
        for q in queues {
            let persist = match (q.persist_for(msg), body) {
                (false, _) => Persist::No,
                (true, Some(b)) => Persist::Shared(b),
                (true, None) => Persist::Inline,
            };
            match q.append(msg, persist, sync, confirmed) {
                Appended::Stored { seq, ticket } => {
                    receipt.routed += 1;
                    if ticket.is_some() {
                        receipt.ticket = receipt.ticket.max(ticket);
                    }
                    if matches!(persist, Persist::Shared(_)) {
                        holders.push((q.id, seq));
                    }
                }
                Appended::Rejected => receipt.rejected += 1,
                Appended::Gone => {}
            }
        }
        if let Some(b) = body {
            if holders.is_empty() {
                self.store().submit(Write::ForgetBody(b), false);
            } else {
                let write = Write::SharedRefs {
                    body: b,
                    holders: holders.clone(),
                };
                let t = self.store().submit(write, sync);
                receipt.ticket = receipt.ticket.max(Some(t));
                self.shared.lock().insert(b, holders);
            }
        }
    }

    /// A queue dropped its entry of a shared body; the last one deletes it.
    pub(crate) fn release_shared(&self, body: u64, queue: u64, seq: u64) {
        let mut shared = self.shared.lock();
        let Some(holders) = shared.get_mut(&body) else {
            return;
        };
        holders.retain(|&h| h != (queue, seq));
        // Submitted under the lock, so two queues releasing the same body
        // cannot write their lists in the wrong order.
        if holders.is_empty() {
            shared.remove(&body);
            self.store().submit_all(
                [Write::ForgetSharedRefs(body), Write::ForgetBody(body)],
                false,
            );
        } else {
            let write = Write::SharedRefs {
                body,
                holders: holders.clone(),
            };
            self.store().submit(write, false);
        }
    }

    /// Timer callback: appends due delayed messages to their queues.
    pub(super) fn run_delays(&self) -> Option<Instant> {
        let now = now_millis();
        for ((due, id), item) in self.delays.take_due(now) {
            let msg = match item.message {
                Some(m) => Some(m),
                None => match self.store().backend().get_delayed(due, id) {
                    Ok(Some(rec)) => Some(Arc::new(rec.message)),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::error!(cause = %e, "cannot read a delayed message");
                        None
                    }
                },
            };
            let queues: Vec<Arc<Queue>> = item.queues.iter().filter_map(Weak::upgrade).collect();
            for q in &queues {
                q.delayed_changed(-1);
            }
            if let Some(m) = msg {
                let mut receipt = PublishReceipt::default();
                self.append_to(&queues, &m, false, false, &mut receipt);
            }
            if item.stored {
                self.store().submit(Write::ForgetDelayed { due, id }, false);
            }
        }
        self.delays.next_due().map(instant_at)
    }
}
