//! Engine deliveries → PUBLISH packets in the client's write buffer.
//!
//! Pull-driven, like every consumer of the engine: the connection task takes
//! what the client's window allows (Receive Maximum for QoS 1/2, the write
//! buffer's high-water mark for everything) and sleeps on the consumer when
//! nothing is there. One queue per session gets one copy of a message however
//! many of its subscriptions match; the delivery is then matched against the
//! subscriptions (MQTT 5 allows one PUBLISH carrying every matching
//! Subscription Identifier, § 3.3.4) for the delivered QoS (the publish QoS
//! capped by the highest matching subscription's), No Local and Retain As
//! Published.

use std::cell::RefCell;

use gw_core::{Delivery, DeliveryTag, Message, now_millis};

use crate::client::{AliasesOut, Client, Inflight, Source};
use crate::codec::{CodecError, OutPublish, ProtocolVersion, write_publish};
use crate::error::MqttError;
use crate::properties::{published_by, published_qos, published_retained, v5_publish_properties};
use crate::retain;
use crate::session::session_pid;
use crate::topic;

/// Most deliveries taken from the engine at once.
const BATCH: usize = 128;
/// Stop taking deliveries while this many bytes wait for the socket.
pub const OUT_HIGH_WATER: usize = 64 * 1024;

thread_local! {
    /// Scratch for `try_take`, so no connection keeps a batch-sized vector.
    static TAKEN: RefCell<Vec<Delivery>> = const { RefCell::new(Vec::new()) };
}

/// What became of one delivery.
enum Placed {
    /// Sent, or settled without sending (nothing matched, expired, too large).
    Done,
    /// Not now: its packet id is in use or the window is full. Keep it, in order.
    Busy,
}

/// How a delivery matched the session's subscriptions.
struct Matched {
    qos: u8,
    ids: Vec<usize>,
    retain_as_published: bool,
}

impl Client {
    /// Room for more QoS 1/2 deliveries in the client's window.
    fn window_room(&self) -> usize {
        usize::from(self.max_inflight).saturating_sub(self.inflight_len())
    }

    /// Moves what the window and the write buffer allow into `out`:
    /// retained messages first, then held-back deliveries, then new ones.
    pub fn pump(&mut self) -> Result<(), MqttError> {
        self.may_deliver = false;
        self.send_retained();
        if self.send_deferred() {
            self.take_session()?;
            self.take_shared()?;
        }
        self.flush_acks();
        Ok(())
    }

    fn take_session(&mut self) -> Result<(), MqttError> {
        loop {
            if self.out.len() >= OUT_HIGH_WATER || self.has_deferred() {
                return Ok(());
            }
            let Some(consumer) = &self.consumer else {
                return Ok(());
            };
            let room = if self.consumer_acks {
                self.window_room()
            } else {
                BATCH
            };
            if room == 0 {
                return Ok(());
            }
            let mut batch = TAKEN.with(|t| std::mem::take(&mut *t.borrow_mut()));
            let taken = consumer.try_take(room.min(BATCH), &mut batch);
            let n = match taken {
                Ok(n) => n,
                Err(e) => {
                    batch.clear();
                    TAKEN.with(|t| *t.borrow_mut() = batch);
                    return Err(e.into());
                }
            };
            for d in batch.drain(..) {
                self.deliver(d, None);
            }
            TAKEN.with(|t| *t.borrow_mut() = batch);
            self.flush_acks();
            if n == 0 {
                return Ok(());
            }
        }
    }

    fn take_shared(&mut self) -> Result<(), MqttError> {
        for i in 0..self.shared.len() {
            loop {
                if self.out.len() >= OUT_HIGH_WATER || self.has_deferred() {
                    return Ok(());
                }
                let Some(s) = self.shared.get(i) else {
                    return Ok(());
                };
                let room = if s.acks { self.window_room() } else { BATCH };
                if room == 0 {
                    return Ok(());
                }
                let uid = s.uid;
                let mut batch = TAKEN.with(|t| std::mem::take(&mut *t.borrow_mut()));
                let taken = s.consumer.try_take(room.min(BATCH), &mut batch);
                let n = match taken {
                    Ok(n) => n,
                    Err(e) => {
                        batch.clear();
                        TAKEN.with(|t| *t.borrow_mut() = batch);
                        return Err(e.into());
                    }
                };
                for d in batch.drain(..) {
                    self.deliver(d, Some(uid));
                }
                TAKEN.with(|t| *t.borrow_mut() = batch);
                if n == 0 {
                    break;
                }
            }
        }
        Ok(())
    }

    fn deliver(&mut self, d: Delivery, shared: Option<u32>) {
        if self.has_deferred() {
            self.traffic().deferred.push_back((d, shared));
            return;
        }
        if let Placed::Busy = self.try_deliver(&d, shared) {
            self.traffic().deferred.push_back((d, shared));
        }
    }

    /// Sends held-back deliveries; false while some must still wait.
    fn send_deferred(&mut self) -> bool {
        while let Some((d, shared)) = self.traffic.as_mut().and_then(|t| t.deferred.pop_front()) {
            if let Placed::Busy = self.try_deliver(&d, shared) {
                self.traffic().deferred.push_front((d, shared));
                return false;
            }
        }
        true
    }

    fn try_deliver(&mut self, d: &Delivery, shared: Option<u32>) -> Placed {
        let msg = &d.message;
        let Some(m) = self.match_subscriptions(msg, shared) else {
            self.settle(d.tag, shared);
            return Placed::Done;
        };
        let qos = published_qos(msg).min(m.qos);
        let now = now_millis();
        if retain::expired(msg, now) || !valid_topic_key(&msg.routing_key) {
            self.settle(d.tag, shared);
            return Placed::Done;
        }
        let mut pid = 0;
        if qos > 0 {
            if self.window_room() == 0 {
                return Placed::Busy;
            }
            pid = match shared {
                None => session_pid(d.tag.seq),
                Some(_) => match self.local_pid() {
                    Some(p) => p,
                    None => return Placed::Busy,
                },
            };
            if self.in_flight(pid).is_some() {
                return Placed::Busy;
            }
        }
        let retain = m.retain_as_published && published_retained(msg);
        let elapsed = now.saturating_sub(msg.published_at);
        let written = self.write_message(
            msg,
            &msg.routing_key,
            qos,
            d.redelivered,
            retain,
            pid,
            m.ids,
            elapsed,
        );
        if let Err(e) = written {
            tracing::debug!(cause = %e, topic = %msg.routing_key, "delivery discarded");
            self.settle(d.tag, shared);
            return Placed::Done;
        }
        if qos == 0 {
            self.settle(d.tag, shared);
        } else {
            let source = match shared {
                None => Source::Session(d.tag),
                Some(uid) => Source::Shared(uid, d.tag),
            };
            self.traffic()
                .inflight
                .insert(pid, Inflight { source, qos });
        }
        Placed::Done
    }

    /// The subscriptions a delivery matches, or `None` when none does.
    fn match_subscriptions(&self, msg: &Message, shared: Option<u32>) -> Option<Matched> {
        if let Some(uid) = shared {
            let s = self.shared.iter().find(|s| s.uid == uid)?;
            return s.sub.admits(msg).then(|| Matched {
                qos: s.sub.qos,
                ids: s.sub.id.map(|i| i as usize).into_iter().collect(),
                retain_as_published: s.sub.retain_as_published,
            });
        }
        let mine = self.has_no_local && published_by(msg, self.client_id());
        let mut found: Option<Matched> = None;
        for sub in self.subs.iter().filter(|s| s.admits(msg)) {
            if sub.no_local && mine {
                continue;
            }
            let m = found.get_or_insert(Matched {
                qos: 0,
                ids: Vec::new(),
                retain_as_published: false,
            });
            m.qos = m.qos.max(sub.qos);
            m.retain_as_published |= sub.retain_as_published;
            if let Some(id) = sub.id
                && !m.ids.contains(&(id as usize))
            {
                m.ids.push(id as usize);
            }
        }
        found
    }

    /// Acknowledges to the engine what no longer needs the client (QoS 0
    /// sent, or discarded). Leases only exist on acknowledging consumers.
    fn settle(&mut self, tag: DeliveryTag, shared: Option<u32>) {
        match shared {
            None if self.consumer_acks => self.traffic().session_acks.push(tag),
            None => {}
            Some(uid) if self.shared.iter().any(|s| s.uid == uid && s.acks) => {
                self.traffic().shared_acks.push((uid, tag));
            }
            Some(_) => {}
        }
    }

    /// Settles an acknowledged outgoing PUBLISH with the engine.
    pub fn settle_source(&mut self, source: Source) {
        match source {
            Source::Session(tag) => self.traffic().session_acks.push(tag),
            Source::Shared(uid, tag) => self.traffic().shared_acks.push((uid, tag)),
            Source::Local | Source::Released => {}
        }
    }

    /// Sends the collected engine acknowledgements.
    pub fn flush_acks(&mut self) {
        let Some(t) = self.traffic.as_mut() else {
            return;
        };
        if !t.session_acks.is_empty() {
            if let Some(c) = &self.consumer
                && let Err(e) = c.ack_many(&t.session_acks)
            {
                tracing::debug!(cause = %e, "session ack");
            }
            t.session_acks.clear();
        }
        if !t.shared_acks.is_empty() {
            for (uid, tag) in std::mem::take(&mut t.shared_acks) {
                if let Some(s) = self.shared.iter().find(|s| s.uid == uid)
                    && let Err(e) = s.consumer.ack(tag)
                {
                    tracing::debug!(cause = %e, "shared ack");
                }
            }
        }
    }

    /// Retained messages owed after a SUBACK, as the window allows.
    fn send_retained(&mut self) {
        while let Some(r) = self.traffic.as_ref().and_then(|t| t.retained_out.front()) {
            if self.out.len() >= OUT_HIGH_WATER {
                return;
            }
            let mut pid = 0;
            if r.qos > 0 {
                if self.window_room() == 0 {
                    return;
                }
                match self.local_pid() {
                    Some(p) => pid = p,
                    None => return,
                }
            }
            let Some(r) = self
                .traffic
                .as_mut()
                .and_then(|t| t.retained_out.pop_front())
            else {
                return;
            };
            let now = now_millis();
            let key = topic::topic_to_routing_key(&r.topic);
            let ids = r.sub_id.map(|i| i as usize).into_iter().collect();
            let elapsed = now.saturating_sub(r.message.published_at);
            // [MQTT-3.3.1-8]: RETAIN is set on messages sent because of a subscription.
            match self.write_message(&r.message, &key, r.qos, false, true, pid, ids, elapsed) {
                Ok(()) if r.qos > 0 => {
                    self.traffic().inflight.insert(
                        pid,
                        Inflight {
                            source: Source::Local,
                            qos: r.qos,
                        },
                    );
                }
                Ok(()) => {}
                Err(e) => {
                    tracing::debug!(cause = %e, topic = %r.topic, "retained message not sent")
                }
            }
        }
    }

    /// Encodes one PUBLISH of `msg` under the topic of routing key `key`.
    #[allow(clippy::too_many_arguments)]
    fn write_message(
        &mut self,
        msg: &Message,
        key: &str,
        qos: u8,
        dup: bool,
        retain: bool,
        pid: u16,
        ids: Vec<usize>,
        elapsed_ms: u64,
    ) -> Result<(), CodecError> {
        let v5 = self.version == ProtocolVersion::V5;
        let alias = if v5 && self.client_alias_max > 0 {
            self.alias_for(key)
        } else {
            None
        };
        let props = if v5 {
            let mut props = v5_publish_properties(msg, elapsed_ms);
            if !ids.is_empty() || alias.is_some() {
                let p = props.get_or_insert_with(Default::default);
                p.subscription_identifiers = ids;
                p.topic_alias = alias.map(|(a, _)| a);
            }
            props
        } else {
            None
        };
        let known = alias.is_some_and(|(_, known)| known);
        let publish = OutPublish {
            topic: if known { "" } else { key },
            dots_to_slashes: true,
            qos,
            dup: dup && qos > 0,
            retain,
            pid,
            payload: &msg.body,
        };
        let limit = self.max_packet();
        write_publish(&mut self.out, self.version, &publish, props.as_ref(), limit)?;
        if let Some((a, false)) = alias {
            self.commit_alias(key, a);
        }
        Ok(())
    }

    /// The topic alias to send `key` with, and whether the client knows it
    /// already (then the topic is left out). A new alias is only recorded once
    /// its PUBLISH is written ([`Client::commit_alias`]).
    fn alias_for(&mut self, key: &str) -> Option<(u16, bool)> {
        let max = usize::from(self.client_alias_max);
        let a = self
            .aliases_out
            .get_or_insert_with(Box::<AliasesOut>::default);
        if let Some(&alias) = a.by_key.get(key) {
            return Some((alias, true));
        }
        if a.keys.len() < max {
            return u16::try_from(a.keys.len() + 1).ok().map(|n| (n, false));
        }
        // All in use: reuse them in turn (the client replaces its mapping).
        let victim = a.next_victim % max;
        u16::try_from(victim + 1).ok().map(|n| (n, false))
    }

    fn commit_alias(&mut self, key: &str, alias: u16) {
        let Some(a) = self.aliases_out.as_mut() else {
            return;
        };
        let i = usize::from(alias) - 1;
        if i < a.keys.len() {
            let old = std::mem::replace(&mut a.keys[i], key.to_owned());
            a.by_key.remove(&old);
            a.next_victim = i + 1;
        } else {
            a.keys.push(key.to_owned());
        }
        a.by_key.insert(key.to_owned(), alias);
    }

    /// Gives back memory a quiet connection does not need (buffers grown
    /// under load), so idle connections stay small.
    pub fn shrink_idle(&mut self) {
        if self.out.is_empty() && self.out.capacity() > 0 {
            self.out = bytes::BytesMut::new();
        }
        if self.traffic.as_ref().is_some_and(|t| t.is_empty()) {
            self.traffic = None;
        }
    }
}

/// A routing key that maps to a valid MQTT topic name (keys published over
/// AMQP may not: empty, or with `+`, `#`, U+0000); others are not delivered.
fn valid_topic_key(key: &str) -> bool {
    !key.is_empty() && !key.contains(['+', '#', '\0'])
}
