//! SUBSCRIBE and UNSUBSCRIBE (§ 3.8, § 3.10): bindings of the session queue
//! to `amq.topic`, consumers in `$share` groups, retained messages on
//! subscribe, and the session's consumer.
//!
//! Permissions follow RabbitMQ's MQTT plugin: subscribing declares, binds and
//! consumes the queue (configure, write and read on it) and reads from
//! `amq.topic`.

use gw_core::{
    Access, BindingSpec, ConsumerSpec, DEFAULT_GROUP, Destination, Headers, QueueSpec, TagFilter,
};
use rumqttc::mqttbytes::{self as mqtt4, v4};
use rumqttc::v5::mqttbytes::{self as mqtt5, v5};

use crate::client::{Client, Reply, RetainedOut, SharedSub};
use crate::codec::Packet;
use crate::error::{self, code};
use crate::properties::{published_by, published_qos};
use crate::session::{
    self, Subscription, backstop_expiry_ms, queue_settings, session_queue_name, shared_queue_name,
};
use crate::topic::{self, AMQP_TOPIC_EXCHANGE};
use crate::{retain, tags};

/// One filter of a SUBSCRIBE with its options.
struct Request {
    path: String,
    qos: u8,
    no_local: bool,
    retain_as_published: bool,
    retain_handling: u8,
}

impl Client {
    /// A 3.1.1 SUBSCRIBE.
    pub fn subscribe_v4(&mut self, s: v4::Subscribe) {
        let requests = s.filters.into_iter().map(|f| Request {
            path: f.path,
            qos: f.qos as u8,
            no_local: false,
            retain_as_published: false,
            retain_handling: 0,
        });
        let (codes, retained, _) = self.subscribe(requests.collect(), None, None);
        let codes = codes
            .into_iter()
            .map(|c| match mqtt4::qos(c) {
                Ok(q) => v4::SubscribeReasonCode::Success(q),
                Err(_) => v4::SubscribeReasonCode::Failure,
            })
            .collect();
        let ticket = self.save_record();
        let packet = Packet::V4(v4::Packet::SubAck(v4::SubAck::new(s.pkid, codes)));
        self.reply(ticket, Reply::Packet(Box::new(packet), retained));
    }

    /// An MQTT 5 SUBSCRIBE (one Subscription Identifier for all its filters).
    pub fn subscribe_v5(&mut self, s: v5::Subscribe) {
        let id = s
            .properties
            .as_ref()
            .and_then(|p| p.id)
            .and_then(|i| u32::try_from(i).ok());
        let requests = s.filters.into_iter().map(|f| Request {
            path: f.path,
            qos: f.qos as u8,
            no_local: f.nolocal,
            retain_as_published: f.preserve_retain,
            retain_handling: match f.retain_forward_rule {
                v5::RetainForwardRule::OnEverySubscribe => 0,
                v5::RetainForwardRule::OnNewSubscribe => 1,
                v5::RetainForwardRule::Never => 2,
            },
        });
        let user_properties = s
            .properties
            .as_ref()
            .map_or(&[][..], |p| &p.user_properties);
        let (codes, retained, why) = match tags::from_user_properties(user_properties) {
            Ok(filter) => self.subscribe(requests.collect(), id, filter.map(Box::new)),
            Err(why) => {
                tracing::debug!(reason = %why, "subscription refused: bad tag filter");
                let refused = vec![code::IMPLEMENTATION_SPECIFIC; requests.len()];
                (refused, Vec::new(), Some(why))
            }
        };
        let return_codes = codes.into_iter().map(v5_suback_code).collect();
        let properties = why
            .and_then(|w| self.text(|| w))
            .map(|reason| v5::SubAckProperties {
                reason_string: Some(reason),
                user_properties: Vec::new(),
            });
        let ticket = self.save_record();
        let packet = v5::Packet::SubAck(v5::SubAck {
            pkid: s.pkid,
            return_codes,
            properties,
        });
        self.reply(ticket, Reply::Packet(Client::v5(packet), retained));
    }

    /// Subscribes each filter (with the packet's tag filter, if any); returns
    /// the granted QoS or reason code of each, the retained messages to send
    /// after the SUBACK, and why the last refusal happened.
    fn subscribe(
        &mut self,
        requests: Vec<Request>,
        id: Option<u32>,
        tags: Option<Box<TagFilter>>,
    ) -> (Vec<u8>, Vec<RetainedOut>, Option<String>) {
        let mut retained = Vec::new();
        let mut why = None;
        let mut codes = Vec::with_capacity(requests.len());
        for r in requests {
            // Topic permissions refuse a filter (SUBACK 0x87, 3.1.1 0x80)
            // before anything of it is made.
            let refused = |c: &Client, filter: &str| {
                c.check_topic(Access::Read, filter)
                    .map_err(|e| (code::NOT_AUTHORIZED, e.to_string()))
            };
            let result = match topic::parse_shared(&r.path) {
                Ok(Some(shared)) => refused(self, shared.filter).and_then(|()| {
                    self.subscribe_shared(shared.group, shared.filter, &r, id, tags.clone())
                }),
                Ok(None) => refused(self, &r.path)
                    .and_then(|()| self.subscribe_plain(&r, id, tags.clone(), &mut retained)),
                Err(e) => Err((code::TOPIC_FILTER_INVALID, e.to_string())),
            };
            match result {
                Ok(()) => codes.push(r.qos),
                Err((c, text)) => {
                    tracing::debug!(filter = %r.path, code = c, reason = %text, "subscription refused");
                    codes.push(c);
                    why = Some(text);
                }
            }
        }
        self.has_no_local = self.subs.iter().any(|s| s.no_local);
        if let Err(e) = self.ensure_consumer() {
            tracing::warn!(cause = %e, "cannot consume the session queue");
        }
        (codes, retained, why)
    }

    fn subscribe_plain(
        &mut self,
        r: &Request,
        id: Option<u32>,
        tags: Option<Box<TagFilter>>,
        retained: &mut Vec<RetainedOut>,
    ) -> Result<(), (u8, String)> {
        let invalid = |e: topic::TopicError| (code::TOPIC_FILTER_INVALID, e.to_string());
        let mut sub = session::subscription(
            &r.path,
            None,
            r.qos,
            r.no_local,
            r.retain_as_published,
            r.retain_handling,
            id,
        )
        .map_err(invalid)?;
        sub.tags = tags;
        let engine_err = |e: gw_core::Error| (error::suback_v5(&e), e.to_string());
        self.check_queue_access(&session_queue_name(self.client_id()))
            .map_err(engine_err)?;
        self.ensure_queue().map_err(engine_err)?;
        let existed = self.subs.iter().position(|s| s.filter == sub.filter);
        if !self.subs.iter().any(|s| s.binding == sub.binding)
            && let Some(q) = &self.queue
        {
            self.tenant
                .bind(BindingSpec {
                    source: AMQP_TOPIC_EXCHANGE.into(),
                    destination: Destination::Queue(q.name().to_owned()),
                    routing_key: sub.binding.to_string(),
                    arguments: Headers::new(),
                })
                .map_err(engine_err)?;
        }
        // [MQTT-3.3.1-9..11]: Retain Handling 0 sends retained messages on every
        // subscribe, 1 only for a new subscription, 2 never.
        let send_retained = match sub.retain_handling {
            0 => true,
            1 => existed.is_none(),
            _ => false,
        };
        if send_retained && self.config.retain_available {
            for (topic, message) in retain::matching(&self.tenant, &sub.binding) {
                if (sub.no_local && published_by(&message, self.client_id()))
                    || !sub.tags_admit(&message)
                {
                    continue;
                }
                let qos = published_qos(&message).min(sub.qos);
                retained.push(RetainedOut {
                    topic,
                    message,
                    qos,
                    sub_id: sub.id,
                });
            }
        }
        match existed {
            // [MQTT-3.8.4-3]: a subscription with the same filter is replaced.
            Some(i) => {
                if let Some(s) = self.subs.get_mut(i) {
                    *s = sub;
                }
            }
            None => {
                // Most sessions have one or two subscriptions: no spare room.
                self.subs.reserve_exact(1);
                self.subs.push(sub);
            }
        }
        Ok(())
    }

    /// `$share/{group}/{filter}`: a consumer in group `group` of the filter's
    /// shared queue. No retained messages are sent (§ 4.8.2).
    fn subscribe_shared(
        &mut self,
        group: &str,
        filter: &str,
        r: &Request,
        id: Option<u32>,
        tags: Option<Box<TagFilter>>,
    ) -> Result<(), (u8, String)> {
        if group.len() > gw_core::MAX_NAME_LEN {
            return Err((code::TOPIC_FILTER_INVALID, "share name too long".into()));
        }
        let mut sub = session::subscription(
            filter,
            Some(group),
            r.qos,
            false,
            r.retain_as_published,
            r.retain_handling,
            id,
        )
        .map_err(|e| (code::TOPIC_FILTER_INVALID, e.to_string()))?;
        sub.tags = tags;
        let engine_err = |e: gw_core::Error| (error::suback_v5(&e), e.to_string());
        self.check_queue_access(&shared_queue_name(filter))
            .map_err(engine_err)?;
        let acks = sub.qos > 0;
        let max_inflight = self.max_inflight;
        if let Some(s) = self
            .shared
            .iter_mut()
            .find(|s| s.sub.share == sub.share && s.sub.filter == sub.filter)
        {
            let upgrade = acks && !s.acks;
            if upgrade || s.sub.tags != sub.tags {
                // A QoS 0 consumer has no leases, so a QoS 1 one replaces it;
                // a new tag filter is the group's to accept (as for AMQP).
                let acks = acks || s.acks;
                let spec = shared_spec(&self.key, acks, max_inflight, sub.tags.as_deref());
                s.consumer = s.queue.consume(group, spec).map_err(engine_err)?;
                s.acks = acks;
            }
            s.sub = sub;
            self.may_deliver = true;
            return Ok(());
        }
        let max_len = self.config.max_queued_messages;
        let queue = self
            .registry
            .shared_queue(&self.tenant, filter, group, max_len, true)
            .map_err(engine_err)?;
        let spec = shared_spec(&self.key, acks, self.max_inflight, sub.tags.as_deref());
        let consumer = match queue.consume(group, spec) {
            Ok(c) => c,
            Err(e) => {
                self.registry.release_shared(&self.tenant, filter, group);
                return Err(engine_err(e));
            }
        };
        let uid = self.next_shared_uid;
        self.next_shared_uid = self.next_shared_uid.wrapping_add(1);
        self.shared.push(SharedSub {
            sub,
            queue,
            consumer,
            acks,
            uid,
        });
        self.may_deliver = true;
        Ok(())
    }

    /// Declaring, binding and consuming `queue`, and reading `amq.topic`.
    fn check_queue_access(&self, queue: &str) -> gw_core::Result<()> {
        let tenant = self.tenant.name();
        for access in [Access::Configure, Access::Write, Access::Read] {
            self.principal.check(tenant, access, queue)?;
        }
        self.principal
            .check(tenant, Access::Read, AMQP_TOPIC_EXCHANGE)
    }

    /// The session queue, declared on first use: durable for a persistent
    /// session, exclusive to this connection for a clean one.
    pub fn ensure_queue(&mut self) -> gw_core::Result<()> {
        if self.queue.is_some() {
            return Ok(());
        }
        let name = session_queue_name(self.client_id());
        let mut settings = queue_settings(self.config.max_queued_messages);
        let spec = if self.persistent() {
            settings.expires_ms = backstop_expiry_ms(self.config.max_session_expiry_secs);
            QueueSpec {
                durable: true,
                settings,
                default_group: true,
                ..QueueSpec::default()
            }
        } else {
            QueueSpec {
                exclusive_owner: Some(self.conn_id),
                settings,
                default_group: true,
                ..QueueSpec::default()
            }
        };
        let queue = match self.tenant.declare_queue(&name, spec.clone()) {
            Ok((q, _)) => q,
            Err(gw_core::Error::PreconditionFailed(_)) => {
                // Left over from a session whose record is gone (it was ended
                // or never stored): nobody owns it any more.
                tracing::info!(queue = %name, "replacing a session queue left over by an ended session");
                self.tenant.delete_queue(&name, false, false)?;
                self.tenant.declare_queue(&name, spec)?.0
            }
            Err(e) => return Err(e),
        };
        self.queue = Some(queue);
        Ok(())
    }

    /// Keeps one consumer on the session queue while there are subscriptions:
    /// acknowledging (leases) when some subscription has QoS > 0, otherwise
    /// taking without leases. It is only replaced when nothing of it is in flight.
    pub fn ensure_consumer(&mut self) -> gw_core::Result<()> {
        let Some(queue) = self.queue.clone() else {
            return Ok(());
        };
        let in_flight = self.traffic.as_ref().is_some_and(|t| {
            t.inflight
                .values()
                .any(|i| matches!(i.source, crate::client::Source::Session(_)))
        });
        if self.subs.is_empty() {
            if !in_flight {
                self.consumer = None;
                self.drop_deferred(|shared| shared.is_none());
            }
            return Ok(());
        }
        let acks = self.subs.iter().any(|s| s.qos > 0) || (self.consumer_acks && in_flight);
        if self.consumer.is_some() && acks == self.consumer_acks {
            return Ok(());
        }
        if in_flight {
            return Ok(());
        }
        self.consumer = None;
        self.drop_deferred(|shared| shared.is_none());
        let spec = ConsumerSpec {
            tag: self.client_id().to_owned(),
            prefetch_count: if acks {
                u32::from(self.max_inflight)
            } else {
                0
            },
            no_ack: !acks,
            ..ConsumerSpec::default()
        };
        self.consumer = Some(queue.consume(DEFAULT_GROUP, spec)?);
        self.consumer_acks = acks;
        self.may_deliver = true;
        Ok(())
    }

    /// A 3.1.1 UNSUBSCRIBE.
    pub fn unsubscribe_v4(&mut self, u: v4::Unsubscribe) {
        for filter in &u.topics {
            self.unsubscribe_one(filter);
        }
        self.after_unsubscribe();
        let ticket = self.save_record();
        let packet = Packet::V4(v4::Packet::UnsubAck(v4::UnsubAck::new(u.pkid)));
        self.reply(ticket, Reply::Packet(Box::new(packet), Vec::new()));
    }

    /// An MQTT 5 UNSUBSCRIBE.
    pub fn unsubscribe_v5(&mut self, u: v5::Unsubscribe) {
        let reasons = u
            .filters
            .iter()
            .map(|f| match self.unsubscribe_one(f) {
                true => v5::UnsubAckReason::Success,
                false => v5::UnsubAckReason::NoSubscriptionExisted,
            })
            .collect();
        self.after_unsubscribe();
        let ticket = self.save_record();
        let packet = v5::Packet::UnsubAck(v5::UnsubAck {
            pkid: u.pkid,
            reasons,
            properties: None,
        });
        self.reply(ticket, Reply::Packet(Client::v5(packet), Vec::new()));
    }

    /// Removes one subscription; false when there was none (§ 3.11.3).
    fn unsubscribe_one(&mut self, path: &str) -> bool {
        match topic::parse_shared(path) {
            Ok(Some(s)) => {
                let Some(i) = self.shared.iter().position(|x| {
                    x.sub.share.as_deref() == Some(s.group) && *x.sub.filter == *s.filter
                }) else {
                    return false;
                };
                let gone = self.shared.remove(i);
                self.drop_deferred(|uid| uid == Some(gone.uid));
                drop(gone.consumer);
                self.registry
                    .release_shared(&self.tenant, s.filter, s.group);
                true
            }
            Ok(None) => {
                let Some(i) = self.subs.iter().position(|x| *x.filter == *path) else {
                    return false;
                };
                let gone = self.subs.remove(i);
                self.unbind_unused(&gone);
                true
            }
            Err(_) => false,
        }
    }

    /// Unbinds a removed subscription's key unless another filter maps to it.
    fn unbind_unused(&self, gone: &Subscription) {
        if self.subs.iter().any(|s| s.binding == gone.binding) {
            return;
        }
        if let Some(q) = &self.queue {
            let spec = BindingSpec {
                source: AMQP_TOPIC_EXCHANGE.into(),
                destination: Destination::Queue(q.name().to_owned()),
                routing_key: gone.binding.to_string(),
                arguments: Headers::new(),
            };
            if let Err(e) = self.tenant.unbind(&spec) {
                tracing::debug!(cause = %e, "unbind");
            }
        }
    }

    fn after_unsubscribe(&mut self) {
        self.has_no_local = self.subs.iter().any(|s| s.no_local);
        if let Err(e) = self.ensure_consumer() {
            tracing::warn!(cause = %e, "cannot consume the session queue");
        }
    }
}

/// A shared subscription's consumer: its tag filter, if any, becomes (or must
/// equal) its group's, as an AMQP consumer's `x-tags` does.
pub(super) fn shared_spec(
    key: &session::ClientKey,
    acks: bool,
    max_inflight: u16,
    tags: Option<&TagFilter>,
) -> ConsumerSpec {
    ConsumerSpec {
        tag: key.client_id().to_owned(),
        prefetch_count: if acks { u32::from(max_inflight) } else { 0 },
        no_ack: !acks,
        filter: tags.cloned(),
        ..ConsumerSpec::default()
    }
}

/// A granted QoS (0–2) or an MQTT 5 reason code as rumqttc's SUBACK code.
fn v5_suback_code(c: u8) -> v5::SubscribeReasonCode {
    use v5::SubscribeReasonCode as R;
    match c {
        0 => R::Success(mqtt5::QoS::AtMostOnce),
        1 => R::Success(mqtt5::QoS::AtLeastOnce),
        2 => R::Success(mqtt5::QoS::ExactlyOnce),
        code::IMPLEMENTATION_SPECIFIC => R::ImplementationSpecific,
        code::NOT_AUTHORIZED => R::NotAuthorized,
        code::TOPIC_FILTER_INVALID => R::TopicFilterInvalid,
        code::QUOTA_EXCEEDED => R::QuotaExceeded,
        _ => R::Unspecified,
    }
}
