//! A connected client's state: its session (queue, consumers, subscriptions),
//! the packets in flight in both directions and the replies waiting for the
//! store. No I/O: the connection loop ([`crate::connection`]) reads packets
//! into the handlers (`handlers/`), which work on this state and append what
//! to send to [`Client::out`]; [`crate::delivery`] moves engine deliveries there.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::BytesMut;
use gw_core::{
    Access, ConnectionGuard, Consumer, DeliveryTag, Engine, Message, Principal, Queue, Tenant,
    Ticket, TopicRules,
};
use rumqttc::v5::mqttbytes::v5;
use tokio_util::sync::CancellationToken;

use crate::codec::{AckKind, Packet, ProtocolVersion, write_ack};
use crate::config::Config;
use crate::error::MqttError;
use crate::registry::Registry;
use crate::session::{ClientKey, SESSION_NS, SessionRecord, Subscription, WillRecord};
use crate::topic::AMQP_TOPIC_EXCHANGE;

/// A future resolving when the store has written up to a ticket.
pub type DurableWait = Pin<Box<dyn Future<Output = gw_core::Result<()>> + Send>>;

/// Where an outgoing QoS 1/2 PUBLISH came from, i.e. what its acknowledgement settles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A delivery from the session queue.
    Session(DeliveryTag),
    /// A delivery from a shared subscription's group (by [`SharedSub::uid`]).
    Shared(u32, DeliveryTag),
    /// A retained message sent on subscribe: nothing to settle.
    Local,
    /// QoS 2 after PUBREC: the engine is settled, PUBREL sent, PUBCOMP awaited.
    Released,
}

/// One outgoing QoS 1/2 PUBLISH (or PUBREL) awaiting its acknowledgement.
#[derive(Clone, Copy, Debug)]
pub struct Inflight {
    /// What the acknowledgement settles.
    pub source: Source,
    /// The QoS it was sent with.
    pub qos: u8,
}

/// A shared subscription of this session: a consumer in the share group.
pub struct SharedSub {
    /// The subscription (its `share` is the group).
    pub sub: Subscription,
    /// The filter's shared queue.
    pub queue: Arc<Queue>,
    /// The consumer in the group.
    pub consumer: Consumer,
    /// Whether deliveries are leases to acknowledge (QoS > 0).
    pub acks: bool,
    /// Identifies it in [`Source::Shared`] (indices move on unsubscribe).
    pub uid: u32,
}

/// A retained message to send after a SUBACK.
#[derive(Debug)]
pub struct RetainedOut {
    /// Its topic.
    pub topic: String,
    /// The message.
    pub message: Arc<Message>,
    /// min(retained message QoS, subscription QoS).
    pub qos: u8,
    /// The subscription's identifier.
    pub sub_id: Option<u32>,
}

/// A reply that must wait until the store has what it acknowledges.
pub enum Reply {
    /// PUBACK, PUBREC, PUBREL or PUBCOMP.
    Ack {
        /// Which one.
        kind: AckKind,
        /// Packet id.
        pid: u16,
        /// MQTT 5 reason code.
        reason: u8,
        /// MQTT 5 reason string (only when problem information is wanted).
        text: Option<String>,
    },
    /// SUBACK (with the retained messages to send after it) or UNSUBACK.
    Packet(Box<Packet>, Vec<RetainedOut>),
}

/// Outgoing topic aliases (MQTT 5, server → client): routing key → alias.
#[derive(Default)]
pub struct AliasesOut {
    /// Alias by routing key.
    pub by_key: HashMap<String, u16>,
    /// Routing key by alias − 1, to replace the oldest when all are used.
    pub keys: Vec<String>,
    /// Next alias to replace once all are in use.
    pub next_victim: usize,
}

/// What a connection holds until it ends, besides its state: its entry in
/// the engine's list of connections. (Its place under `max_connections` is
/// the accept layer's permit, held beside the connection's future.)
pub struct Keep {
    /// Unregisters the connection from the engine when dropped.
    pub guard: ConnectionGuard,
}

/// A connection's packets in flight and replies waiting: empty on an idle
/// connection, so kept apart ([`Client::traffic`]) and given back when the
/// connection goes quiet with none of it left.
#[derive(Default)]
pub struct Traffic {
    /// Outgoing QoS 1/2 by packet id.
    pub inflight: HashMap<u16, Inflight>,
    /// Deliveries taken from the engine but not yet sent (their packet id is
    /// still in use): (delivery, shared uid or `None` for the session queue).
    pub deferred: VecDeque<(gw_core::Delivery, Option<u32>)>,
    /// Retained messages to send.
    pub retained_out: VecDeque<RetainedOut>,
    /// Session-queue deliveries to acknowledge to the engine.
    pub session_acks: Vec<DeliveryTag>,
    /// Shared deliveries to acknowledge to the engine.
    pub shared_acks: Vec<(u32, DeliveryTag)>,
    /// Replies waiting for the store, in order, with the ticket each needs.
    pub replies: VecDeque<(Ticket, Reply)>,
    /// QoS 1 publishes whose PUBACK waits in `replies`.
    pub unacked_qos1: usize,
    /// The store wait in progress and the ticket it waits for.
    pub durable: Option<(Ticket, DurableWait)>,
    /// Incoming topic aliases (MQTT 5, client → server), by alias − 1; they
    /// last as long as the connection.
    pub aliases_in: Vec<Option<String>>,
}

impl Traffic {
    /// Nothing in flight, waiting or remembered.
    pub fn is_empty(&self) -> bool {
        self.inflight.is_empty()
            && self.deferred.is_empty()
            && self.retained_out.is_empty()
            && self.session_acks.is_empty()
            && self.shared_acks.is_empty()
            && self.replies.is_empty()
            && self.unacked_qos1 == 0
            && self.durable.is_none()
            && self.aliases_in.is_empty()
    }
}

/// Everything the server knows about one connected client.
pub struct Client {
    /// 3.1.1 or 5.0.
    pub version: ProtocolVersion,
    /// The engine.
    pub engine: Engine,
    /// The door's shared state.
    pub registry: Arc<Registry>,
    /// Settings.
    pub config: Arc<Config>,
    /// The client's tenant.
    pub tenant: Tenant,
    /// Who it logged in as.
    pub principal: Principal,
    /// Tenant and client id.
    pub key: ClientKey,
    /// Engine connection id (owner of the clean session's exclusive queue).
    pub conn_id: u64,
    /// MQTT 5 Request Problem Information: reason strings allowed on acks.
    pub problem_info: bool,
    /// Encoded packets waiting for the socket.
    pub out: BytesMut,

    /// Session Expiry Interval in seconds (0: the session ends with the connection).
    pub expiry_secs: u32,
    /// The expiry the CONNECT asked for (MQTT 5 forbids 0 → non-zero on DISCONNECT).
    pub connect_expiry_secs: u32,
    /// The session had a stored record (resumed, or created persistent).
    pub had_record: bool,
    /// The session queue, once a subscription created it.
    pub queue: Option<Arc<Queue>>,
    /// The consumer on it while there are subscriptions.
    pub consumer: Option<Consumer>,
    /// Whether that consumer's deliveries are leases (some subscription has QoS > 0).
    pub consumer_acks: bool,
    /// Plain subscriptions.
    pub subs: Vec<Subscription>,
    /// Shared subscriptions.
    pub shared: Vec<SharedSub>,
    /// Next [`SharedSub::uid`].
    pub next_shared_uid: u32,

    /// Packets in flight and replies waiting, while there are any.
    pub traffic: Option<Box<Traffic>>,
    /// Most outgoing QoS 1/2 in flight.
    pub max_inflight: u16,
    /// The client's Maximum Packet Size.
    /// (u32 as on the wire: the client state is kept small, see connection/mod.rs.)
    pub client_max_packet: Option<u32>,
    /// The client's Topic Alias Maximum.
    pub client_alias_max: u16,
    /// Aliases assigned so far.
    pub aliases_out: Option<Box<AliasesOut>>,
    /// Next packet id to try for shared and retained deliveries.
    pub next_local_pid: u16,
    /// Set when a consumer may have something (woken, or window room freed).
    pub may_deliver: bool,

    /// Incoming QoS 2 packet ids PUBREC'd, awaiting PUBREL.
    pub incoming_qos2: PidSet,
    /// Outgoing QoS 2 packet ids PUBREL'd, awaiting PUBCOMP.
    pub outgoing_pubrel: PidSet,
    /// Cached answer of the publish permission check.
    pub publish_allowed: Option<bool>,
    /// The user's topic permissions on `amq.topic`, compiled for this client
    /// (boxed: most users have none).
    pub topic_rules: Option<Box<TopicRules>>,
    /// Some subscription has No Local: mark our publishes with our client id.
    pub has_no_local: bool,
    /// The client has sent a PUBLISH: under pressure its socket is not read
    /// (RabbitMQ blocks publishing connections only; a subscriber's PUBACKs
    /// and pings keep flowing, so consumers keep draining).
    pub publishes: bool,

    /// The will, published when the connection ends uncleanly (boxed: a
    /// message is large and most clients have no will).
    pub will: Option<Box<WillRecord>>,
    /// Keep alive in seconds (0: none).
    pub keep_alive: u16,
    /// The door's shutdown.
    pub shutdown: CancellationToken,
    /// Held for the connection's life (in the client, not the task's state,
    /// which every idle connection keeps too).
    pub keep: Option<Keep>,
}

impl Client {
    /// The client id.
    pub fn client_id(&self) -> &str {
        self.key.client_id()
    }

    /// How long the client may stay silent: one and a half times its keep
    /// alive [MQTT-3.1.2-24] (`None` without one). Computed, not kept: the
    /// connection loop's state is in every idle connection.
    pub fn keep_alive_limit(&self) -> Option<std::time::Duration> {
        (self.keep_alive > 0)
            .then(|| std::time::Duration::from_millis(u64::from(self.keep_alive) * 1500))
    }

    /// Whether the session outlives the connection.
    pub fn persistent(&self) -> bool {
        self.expiry_secs > 0
    }

    /// The packets in flight and replies waiting, made on first use.
    pub fn traffic(&mut self) -> &mut Traffic {
        self.traffic.get_or_insert_with(Default::default)
    }

    /// Outgoing QoS 1/2 in flight.
    pub fn inflight_len(&self) -> usize {
        self.traffic.as_ref().map_or(0, |t| t.inflight.len())
    }

    /// The outgoing QoS 1/2 with this packet id, if one is in flight.
    pub fn in_flight(&self, pid: u16) -> Option<Inflight> {
        self.traffic.as_ref()?.inflight.get(&pid).copied()
    }

    /// Whether deliveries wait for a packet id or window room.
    pub fn has_deferred(&self) -> bool {
        self.traffic
            .as_ref()
            .is_some_and(|t| !t.deferred.is_empty())
    }

    /// Forgets held-back deliveries whose source (shared uid, `None` for the
    /// session queue) `gone` says went away.
    pub fn drop_deferred(&mut self, gone: impl Fn(Option<u32>) -> bool) {
        if let Some(t) = self.traffic.as_mut() {
            t.deferred.retain(|(_, source)| !gone(*source));
        }
    }

    /// Replies waiting for the store.
    pub fn replies_waiting(&self) -> usize {
        self.traffic.as_ref().map_or(0, |t| t.replies.len())
    }

    /// Queues a reply that needs `ticket` on disk first; replies go out in order.
    pub fn reply(&mut self, ticket: Option<Ticket>, reply: Reply) {
        if ticket.is_none() && self.replies_waiting() == 0 {
            self.encode_reply(reply);
        } else {
            let t = self.traffic();
            if let Reply::Ack {
                kind: AckKind::PubAck,
                ..
            } = reply
            {
                t.unacked_qos1 += 1;
            }
            // Kept non-decreasing, so the last entry's ticket covers all of them.
            let last = t.replies.back().map_or(0, |(t, _)| *t);
            t.replies.push_back((ticket.unwrap_or(0).max(last), reply));
        }
    }

    /// Writes a reply into `out`.
    pub fn encode_reply(&mut self, reply: Reply) {
        match reply {
            Reply::Ack {
                kind,
                pid,
                reason,
                text,
            } => {
                // [MQTT-3.1.2-25]: a reason string that would make the packet
                // larger than the client accepts is left out.
                let max = self.max_packet().unwrap_or(usize::MAX);
                let text = text
                    .as_deref()
                    .filter(|t| self.problem_info && t.len() + 12 <= max);
                write_ack(&mut self.out, self.version, kind, pid, reason, text);
            }
            Reply::Packet(mut packet, retained) => {
                let limit = self.max_packet();
                if packet.write(&mut self.out, limit).is_err() {
                    // Too large with its reason string: send it without.
                    strip_properties(&mut packet);
                    if let Err(e) = packet.write(&mut self.out, limit) {
                        tracing::debug!(cause = %e, "reply not sent");
                    }
                }
                if !retained.is_empty() {
                    self.traffic().retained_out.extend(retained);
                }
                self.may_deliver = true;
            }
        }
    }

    /// The store decided everything up to `ticket`: sends the replies that
    /// waited for it. A reply whose own write failed (a batch can fail and a
    /// later one succeed) is never a success: MQTT 5 gets reason 0x80, and a
    /// 3.1.1 client, which has no way to hear it, loses the connection
    /// unacknowledged so that it republishes.
    pub fn durable_reached(&mut self, ticket: Ticket) -> Result<(), MqttError> {
        loop {
            let Some(t) = self.traffic.as_mut() else {
                return Ok(());
            };
            if t.replies.front().is_none_or(|(at, _)| *at > ticket) {
                return Ok(());
            }
            let Some((at, reply)) = t.replies.pop_front() else {
                return Ok(());
            };
            if let Reply::Ack {
                kind: AckKind::PubAck,
                ..
            } = reply
            {
                t.unacked_qos1 -= 1;
            }
            let reply = if at > 0 && self.engine.ticket_failed(at) {
                self.not_stored(reply)?
            } else {
                reply
            };
            self.encode_reply(reply);
        }
    }

    /// The answer to a publish whose write failed (see [`Client::durable_reached`]).
    fn not_stored(&mut self, reply: Reply) -> Result<Reply, MqttError> {
        let refused = || {
            MqttError::Engine(gw_core::Error::Storage(gw_core::StoreError::NotWritable(
                "a publish could not be stored".into(),
            )))
        };
        match reply {
            Reply::Ack {
                kind: kind @ (AckKind::PubAck | AckKind::PubRec),
                pid,
                ..
            } if self.version == ProtocolVersion::V5 => {
                if kind == AckKind::PubRec {
                    self.incoming_qos2.remove(&pid);
                }
                Ok(Reply::Ack {
                    kind,
                    pid,
                    reason: crate::error::code::UNSPECIFIED,
                    text: self
                        .text(|| "the store could not write the message; publish it again".into()),
                })
            }
            _ => Err(refused()),
        }
    }

    /// Before the server closes the connection (shutdown, takeover, an
    /// operator, an error): waits until the store holds what the queued
    /// replies wait for and writes them (PUBACK, PUBREC, …) into `out`, so a
    /// client is never left to republish a message that was stored. Bounded
    /// by `wait`; what the store could not write stays unacknowledged (the
    /// client's republish is then no duplicate).
    pub async fn settle_replies(&mut self, wait: std::time::Duration) {
        let Some(t) = self.traffic.as_mut() else {
            return;
        };
        let Some(&(ticket, _)) = t.replies.back() else {
            return;
        };
        t.durable = None;
        let waiting = t.replies.len();
        match tokio::time::timeout(wait, self.engine.wait_durable(ticket)).await {
            Ok(Ok(())) => {
                if let Err(e) = self.durable_reached(ticket) {
                    tracing::warn!(cause = %e, "closing: publishes not stored are left unacknowledged");
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(cause = %e, waiting, "closing: publishes not stored are left unacknowledged");
            }
            Err(_) => {
                tracing::warn!(
                    waiting,
                    "closing: the store did not answer in time; publishes left unacknowledged"
                );
            }
        }
    }

    /// Starts waiting for the newest ticket a queued reply needs, unless a
    /// wait is running (one wait at a time: tickets are ordered, so the
    /// newest covers all before it).
    pub fn start_durable_wait(&mut self) {
        let Some(t) = self.traffic.as_mut() else {
            return;
        };
        if t.durable.is_some() {
            return;
        }
        let Some(&(ticket, _)) = t.replies.back() else {
            return;
        };
        let engine = self.engine.clone();
        t.durable = Some((
            ticket,
            Box::pin(async move { engine.wait_durable(ticket).await }),
        ));
    }

    /// QoS 1/2 publishes from the client not yet fully acknowledged (what
    /// its Receive Maximum counts).
    pub fn inbound_in_flight(&self) -> usize {
        self.traffic.as_ref().map_or(0, |t| t.unacked_qos1) + self.incoming_qos2.len()
    }

    /// Whether publishing to `amq.topic` is allowed (checked once per connection,
    /// as RabbitMQ caches it).
    pub fn may_publish(&mut self) -> bool {
        *self.publish_allowed.get_or_insert_with(|| {
            self.principal
                .check(self.tenant.name(), Access::Write, AMQP_TOPIC_EXCHANGE)
                .is_ok()
        })
    }

    /// The client's Maximum Packet Size, as a length.
    pub fn max_packet(&self) -> Option<usize> {
        self.client_max_packet.and_then(|m| usize::try_from(m).ok())
    }

    /// Topic authorisation of a topic (`Write`: publish) or a filter
    /// (`Read`: subscribe), in its routing-key form, on `amq.topic`.
    pub fn check_topic(&self, access: Access, topic: &str) -> gw_core::Result<()> {
        match &self.topic_rules {
            None => Ok(()),
            Some(rules) => {
                let key = match access {
                    Access::Read => crate::topic::filter_to_binding_key(topic)
                        .unwrap_or_else(|_| crate::topic::topic_to_routing_key(topic)),
                    _ => crate::topic::topic_to_routing_key(topic),
                };
                rules.check(AMQP_TOPIC_EXCHANGE, access, &key)
            }
        }
    }

    /// The session as stored.
    pub fn record(&self) -> SessionRecord {
        let mut rec = SessionRecord::new(self.tenant.name(), self.client_id(), self.expiry_secs);
        rec.queue = self.queue.as_ref().map(|q| q.name().to_owned());
        rec.subscriptions = self.subs.clone();
        rec.subscriptions
            .extend(self.shared.iter().map(|s| s.sub.clone()));
        rec.incoming_qos2 = self.incoming_qos2.0.clone();
        rec.outgoing_pubrel = self.outgoing_pubrel.0.clone();
        rec.will = self.will.as_deref().cloned();
        rec
    }

    /// Stores the session record of a persistent session; the ticket says
    /// when it is on disk.
    pub fn save_record(&mut self) -> Option<Ticket> {
        if !self.persistent() {
            return None;
        }
        self.had_record = true;
        let rec = self.record();
        Some(
            self.engine
                .put_state(SESSION_NS, self.key.as_bytes(), &rec.encode()),
        )
    }

    /// A packet id for a delivery that is not from the session queue, from the
    /// upper range, skipping ids in use; `None` when all are taken.
    pub fn local_pid(&mut self) -> Option<u16> {
        let first = crate::session::LOCAL_PID_FIRST;
        for _ in first..=u16::MAX {
            let pid = self.next_local_pid.max(first);
            self.next_local_pid = if pid == u16::MAX { first } else { pid + 1 };
            if self.in_flight(pid).is_none() {
                return Some(pid);
            }
        }
        None
    }

    /// MQTT 5 reason string for a reply, when problem information is wanted.
    pub fn text(&self, s: impl FnOnce() -> String) -> Option<String> {
        (self.version == ProtocolVersion::V5 && self.problem_info).then(s)
    }

    /// A v5 packet wrapper.
    pub fn v5(packet: v5::Packet) -> Box<Packet> {
        Box::new(Packet::V5(packet))
    }
}

/// Drops the optional properties (reason string, user properties) of a
/// SUBACK or UNSUBACK.
fn strip_properties(packet: &mut Packet) {
    match packet {
        Packet::V5(v5::Packet::SubAck(a)) => a.properties = None,
        Packet::V5(v5::Packet::UnsubAck(a)) => a.properties = None,
        _ => {}
    }
}

/// A small sorted set of packet ids (QoS 2 state; usually empty, so a
/// vector costs less than a hash set on every idle connection).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PidSet(pub Vec<u16>);

impl PidSet {
    /// Adds `pid`; false when present.
    pub fn insert(&mut self, pid: u16) -> bool {
        match self.0.binary_search(&pid) {
            Ok(_) => false,
            Err(i) => {
                self.0.insert(i, pid);
                true
            }
        }
    }

    /// Removes `pid`; false when absent.
    pub fn remove(&mut self, pid: &u16) -> bool {
        match self.0.binary_search(pid) {
            Ok(i) => {
                self.0.remove(i);
                true
            }
            Err(_) => false,
        }
    }

    /// Whether `pid` is in.
    pub fn contains(&self, pid: &u16) -> bool {
        self.0.binary_search(pid).is_ok()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// In ascending order.
    pub fn iter(&self) -> impl Iterator<Item = &u16> {
        self.0.iter()
    }
}

impl FromIterator<u16> for PidSet {
    fn from_iter<I: IntoIterator<Item = u16>>(iter: I) -> Self {
        let mut v: Vec<u16> = iter.into_iter().collect();
        v.sort_unstable();
        v.dedup();
        PidSet(v)
    }
}
