//! Dead letters: where a queue's dead letters go (an exchange, a queue, or a
//! per-group dead-letter queue, made on first use), and message tracking,
//! which looks into those queues too.

use std::sync::Arc;

use super::tenant::{PublishReceipt, QueueSpec};
use super::{DEAD_LETTER_TTL_MS, Engine, EngineInner};
use crate::deadletter;
use crate::error::Result;
use crate::group::{DeadLetter, MessageState};
use crate::message::{MessageId, now_millis};
use crate::queue::{
    DeadLetterTarget, MessageTrace, Queue, QueueKind, QueueSettings, StartPosition,
};
use crate::tenant::TenantState;

impl EngineInner {
    pub(crate) fn dead_letter(&self, from: &Arc<Queue>, dead: Vec<DeadLetter>) {
        let Some(target) = from.settings().dead_letter.clone() else {
            return;
        };
        let Some(tenant) = self.tenants.read().get(from.tenant()).cloned() else {
            return;
        };
        let now = now_millis();
        for d in dead {
            let mut m = deadletter::dead_lettered(&d.message, from.name(), d.reason, now);
            let queues = match &target {
                DeadLetterTarget::Exchange {
                    exchange,
                    routing_key,
                } => {
                    m.exchange = exchange.clone();
                    if let Some(rk) = routing_key {
                        m.routing_key = rk.clone();
                    }
                    match tenant.route(&m) {
                        Ok(qs) => qs,
                        Err(e) => {
                            tracing::debug!(queue = from.name(), cause = %e, "dead letter dropped");
                            continue;
                        }
                    }
                }
                DeadLetterTarget::Queue(name) => tenant
                    .queues
                    .read()
                    .get(name)
                    .cloned()
                    .into_iter()
                    .collect(),
                DeadLetterTarget::PerGroup => {
                    match self.group_dead_letters(&tenant, from, &d.group) {
                        Ok(q) => vec![q],
                        Err(e) => {
                            tracing::error!(queue = from.name(), cause = %e, "cannot create a dead-letter queue");
                            continue;
                        }
                    }
                }
            };
            let queues: Vec<Arc<Queue>> = queues
                .into_iter()
                .filter(|q| !deadletter::is_cycle(&d.message, q.name()))
                .collect();
            let mut receipt = PublishReceipt::default();
            self.append_to(&queues, &Arc::new(m), false, false, &mut receipt);
        }
    }

    /// The queue holding a group's dead letters (created on first use).
    fn group_dead_letters(
        &self,
        tenant: &Arc<TenantState>,
        from: &Queue,
        group: &str,
    ) -> Result<Arc<Queue>> {
        let name = dead_letter_queue_name(from.id, group);
        if let Some(q) = tenant.queues.read().get(&name) {
            return Ok(Arc::clone(q));
        }
        let settings = QueueSettings {
            kind: if from.settings().kind == QueueKind::Fifo {
                QueueKind::Fifo
            } else {
                QueueKind::Standard
            },
            retention_ms: 0,
            ack_timeout_ms: from.settings().ack_timeout_ms,
            message_ttl_ms: Some(DEAD_LETTER_TTL_MS),
            ..QueueSettings::default()
        };
        let spec = QueueSpec {
            durable: from.is_durable(),
            settings,
            default_group: true,
            ..QueueSpec::default()
        };
        self.create_queue(tenant, &name, spec, Some((from.id, group.to_owned())))
            .map(|(q, _)| q)
    }
}

/// The name of the queue that holds one group's dead letters (hidden from
/// AMQP clients by the reserved `amq.` prefix).
pub fn dead_letter_queue_name(queue_id: u64, group: &str) -> String {
    format!("amq.dlq.{queue_id}.{group}")
}

impl Engine {
    /// The queue holding a group's dead letters, creating it if needed.
    pub fn dead_letter_queue(&self, tenant: &str, queue: &str, group: &str) -> Result<Arc<Queue>> {
        let t = self.tenant(tenant)?;
        let q = t.queue(queue)?;
        self.inner.group_dead_letters(&t.inner, &q, group)
    }

    /// Finds a message of a queue by id and tells where it stands in every
    /// group: ready, delayed, in flight (with its delivery count), settled,
    /// dead-lettered or filtered.
    pub fn trace_message(
        &self,
        tenant: &str,
        queue: &str,
        id: MessageId,
    ) -> Result<Option<MessageTrace>> {
        let t = self.tenant(tenant)?;
        let q = t.queue(queue)?;
        if let Some(mut trace) = q.find_message(id) {
            for (group, state) in &mut trace.groups {
                if *state == MessageState::Settled {
                    let dlq = t
                        .inner
                        .queues
                        .read()
                        .get(&dead_letter_queue_name(q.id, group))
                        .cloned();
                    if dlq.is_some_and(|d| d.find_message(id).is_some()) {
                        *state = MessageState::DeadLettered;
                    }
                }
            }
            return Ok(Some(trace));
        }
        let Some((due, cached)) = self.inner.delays.find(id, &q) else {
            return Ok(None);
        };
        let message = match cached {
            Some(m) => m,
            None => match self.inner.services.store.backend().get_delayed(due, id)? {
                Some(rec) => Arc::new(rec.message),
                None => return Ok(None),
            },
        };
        let groups = q
            .group_names()
            .into_iter()
            .map(|g| (g, MessageState::Delayed))
            .collect();
        Ok(Some(MessageTrace {
            seq: u64::MAX,
            message,
            groups,
        }))
    }

    /// Lets a new group start at a position (convenience over [`Queue::create_group`]).
    pub fn create_group(
        &self,
        tenant: &str,
        queue: &str,
        group: &str,
        start: StartPosition,
    ) -> Result<bool> {
        self.tenant(tenant)?
            .queue(queue)?
            .create_group(group, start, None)
    }
}
