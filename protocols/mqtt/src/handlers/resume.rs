//! Resuming a stored session at CONNECT: its queue (recreated and rebound if
//! it went missing), subscriptions, share groups and QoS 2 state.

use gw_core::{BindingSpec, Destination, Headers};

use super::subscribe::shared_spec;
use crate::client::{Client, SharedSub};
use crate::session::SessionRecord;
use crate::topic::AMQP_TOPIC_EXCHANGE;

impl Client {
    /// Picks a stored session up again: its queue, subscriptions, share
    /// groups and QoS 2 state.
    pub fn restore(&mut self, rec: SessionRecord) -> gw_core::Result<()> {
        self.had_record = true;
        if let Some(name) = &rec.queue {
            match self.tenant.queue(name) {
                Ok(q) => self.queue = Some(q),
                Err(e) => {
                    tracing::warn!(queue = %name, cause = %e, "session queue is gone; recreating it")
                }
            }
        }
        let (shared, plain): (Vec<_>, Vec<_>) = rec
            .subscriptions
            .into_iter()
            .partition(|s| s.share.is_some());
        if !plain.is_empty() && self.queue.is_none() {
            self.ensure_queue()?;
            if let Some(q) = &self.queue {
                for sub in &plain {
                    self.tenant.bind(BindingSpec {
                        source: AMQP_TOPIC_EXCHANGE.into(),
                        destination: Destination::Queue(q.name().to_owned()),
                        routing_key: sub.binding.to_string(),
                        arguments: Headers::new(),
                    })?;
                }
            }
        }
        self.subs = plain;
        for sub in shared {
            let group = sub.share.clone().unwrap_or_default();
            let max_len = self.config.max_queued_messages;
            let queue =
                self.registry
                    .shared_queue(&self.tenant, &sub.filter, &group, max_len, false)?;
            let acks = sub.qos > 0;
            let spec = shared_spec(&self.key, acks, self.max_inflight, sub.tags.as_deref());
            let consumer = queue.consume(&group, spec)?;
            let uid = self.next_shared_uid;
            self.next_shared_uid += 1;
            self.shared.push(SharedSub {
                sub,
                queue,
                consumer,
                acks,
                uid,
            });
        }
        self.incoming_qos2 = rec.incoming_qos2.into_iter().collect();
        self.outgoing_pubrel = rec.outgoing_pubrel.into_iter().collect();
        self.has_no_local = self.subs.iter().any(|s| s.no_local);
        self.ensure_consumer()
    }
}
