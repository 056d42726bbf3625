//! CONNECT (§ 3.1) → CONNACK (§ 3.2): login, client id, will, session
//! takeover and the session itself (new, or resumed from its record).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::BytesMut;
use gw_core::{Access, Engine, Principal, TopicRules, now_millis};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;
use tokio_util::sync::CancellationToken;

use crate::client::{Client, Keep};
use crate::codec::{Packet, ProtocolVersion};
use crate::config::{Anonymous, Config};
use crate::error::{self, code};
use crate::properties::PropertiesError;
use crate::registry::{ConnSignal, Registry};
use crate::session::{ClientKey, LOCAL_PID_FIRST, WillRecord, max_client_id_len};
use crate::topic::AMQP_TOPIC_EXCHANGE;
use crate::will;

/// What the connection knows when the CONNECT arrives.
pub struct Handshake {
    /// The engine.
    pub engine: Engine,
    /// The door's shared state.
    pub registry: Arc<Registry>,
    /// Settings.
    pub config: Arc<Config>,
    /// The client's address.
    pub peer: SocketAddr,
    /// Engine connection id.
    pub conn_id: u64,
    /// This connection's signal (for takeover).
    pub signal: Arc<ConnSignal>,
    /// The door's shutdown (the registry closes live connections on it).
    pub shutdown: CancellationToken,
    /// Moves to the client once connected.
    pub keep: Option<Keep>,
    /// The verified client certificate's identity (TLS), if one was shown.
    pub identity: Option<gw_listen::PeerIdentity>,
}

/// A CONNECT of either version, in one shape.
struct Request {
    version: ProtocolVersion,
    client_id: String,
    clean_start: bool,
    keep_alive: u16,
    expiry: u32,
    receive_max: u16,
    max_packet: Option<u32>,
    alias_max: u16,
    problem_info: bool,
    auth_method: Option<String>,
    username: Option<String>,
    password: Option<String>,
    will: Option<Result<WillRecord, PropertiesError>>,
}

fn request_v4(c: v4::Connect) -> Request {
    Request {
        version: ProtocolVersion::V311,
        client_id: c.client_id,
        clean_start: c.clean_session,
        keep_alive: c.keep_alive,
        expiry: 0,
        receive_max: u16::MAX,
        max_packet: None,
        alias_max: 0,
        problem_info: true,
        auth_method: None,
        username: c.login.as_ref().map(|l| l.username.clone()),
        password: c.login.map(|l| l.password),
        will: c.last_will.as_ref().map(|w| Ok(will::from_v4(w))),
    }
}

fn request_v5(c: v5::Connect, w: Option<v5::LastWill>, login: Option<v5::Login>) -> Request {
    let p = c.properties.unwrap_or_default_props();
    Request {
        version: ProtocolVersion::V5,
        client_id: c.client_id,
        clean_start: c.clean_start,
        keep_alive: c.keep_alive,
        expiry: p.session_expiry_interval.unwrap_or(0),
        receive_max: p.receive_maximum.unwrap_or(u16::MAX),
        max_packet: p.max_packet_size,
        alias_max: p.topic_alias_max.unwrap_or(0),
        problem_info: p.request_problem_info != Some(0),
        auth_method: p.authentication_method,
        username: login.as_ref().map(|l| l.username.clone()),
        password: login.map(|l| l.password),
        will: w.as_ref().map(|w| will::from_v5(w, now_millis())),
    }
}

/// `Option<ConnectProperties>` with the defaults of absent properties.
trait PropsOrDefault {
    fn unwrap_or_default_props(self) -> v5::ConnectProperties;
}

impl PropsOrDefault for Option<v5::ConnectProperties> {
    fn unwrap_or_default_props(self) -> v5::ConnectProperties {
        self.unwrap_or(v5::ConnectProperties {
            session_expiry_interval: None,
            receive_maximum: None,
            max_packet_size: None,
            topic_alias_max: None,
            request_response_info: None,
            request_problem_info: None,
            user_properties: Vec::new(),
            authentication_method: None,
            authentication_data: None,
        })
    }
}

/// The CONNACK refusing a CONNECT (3.1.1: the nearest return code).
pub fn refusal(version: ProtocolVersion, reason: u8, text: Option<String>) -> Packet {
    match version {
        ProtocolVersion::V311 => Packet::V4(v4::Packet::ConnAck(v4::ConnAck::new(
            error::v4_connack_for(reason),
            false,
        ))),
        ProtocolVersion::V5 => Packet::V5(v5::Packet::ConnAck(v5::ConnAck {
            session_present: false,
            code: v5_connack_code(reason),
            properties: text.map(|t| v5::ConnAckProperties {
                reason_string: Some(t),
                ..empty_connack_props()
            }),
        })),
    }
}

type Refused = (u8, String);

/// Handles a CONNECT: `Ok` is a client whose `out` holds the CONNACK (and any
/// PUBRELs owed by its resumed session); `Err` the refusal to send before closing.
pub async fn accept(packet: Packet, hs: &mut Handshake) -> Result<Box<Client>, Packet> {
    let req = match packet {
        Packet::V4(v4::Packet::Connect(c)) => request_v4(c),
        Packet::V5(v5::Packet::Connect(c, w, l)) => request_v5(c, w, l),
        other => {
            return Err(refusal(
                other.version(),
                code::PROTOCOL_ERROR,
                Some("first packet is not CONNECT".into()),
            ));
        }
    };
    let version = req.version;
    let problem_info = req.problem_info;
    let refuse = |(c, text): Refused| {
        tracing::debug!(code = c, reason = %text, "CONNECT refused");
        refusal(version, c, problem_info.then_some(text))
    };
    let checked = check(req, hs).await.map_err(refuse)?;
    start(checked, hs).await.map_err(refuse)
}

/// A CONNECT that passed every check that does not touch sessions.
struct Checked {
    req: Request,
    principal: Principal,
    key: ClientKey,
    assigned: bool,
    will: Option<WillRecord>,
    topic_rules: Option<Box<TopicRules>>,
}

/// Login, tenant, client id and will: everything refused before another
/// connection with the same client id is disturbed.
async fn check(mut req: Request, hs: &Handshake) -> Result<Checked, Refused> {
    if req.auth_method.is_some() {
        // No enhanced authentication methods are offered (§ 4.12).
        return Err((
            code::BAD_AUTHENTICATION_METHOD,
            "no authentication method is supported".into(),
        ));
    }
    let (tenant_name, principal) = login(&req, hs).await?;
    let tenant = hs
        .engine
        .tenant(&tenant_name)
        .map_err(|e| (error::connack_v5(&e), e.to_string()))?;
    if !principal.may_use_tenant(&tenant_name) {
        return Err((
            code::NOT_AUTHORIZED,
            format!("no access to tenant '{tenant_name}'"),
        ));
    }
    let mut assigned = false;
    if req.client_id.is_empty() {
        // [MQTT-3.1.3-8]: 3.1.1 needs clean session for a server-assigned id.
        if req.version == ProtocolVersion::V311 && !req.clean_start {
            return Err((code::CLIENT_ID_NOT_VALID, "empty client id".into()));
        }
        req.client_id = format!("gw-{:x}-{:x}", hs.conn_id, now_millis());
        assigned = true;
    }
    if req.client_id.len() > max_client_id_len() {
        return Err((
            code::CLIENT_ID_NOT_VALID,
            format!("client id longer than {} bytes", max_client_id_len()),
        ));
    }
    let topic_rules = principal
        .topic_rules(&tenant_name, &req.client_id)
        .map(Box::new);
    let will = match req.will.take() {
        None => None,
        Some(Err(e)) => return Err((e.v5_reason_code(), e.to_string())),
        Some(Ok(w)) => {
            principal
                .check(&tenant_name, Access::Write, AMQP_TOPIC_EXCHANGE)
                .map_err(|e| (code::NOT_AUTHORIZED, e.to_string()))?;
            // A will its topic permissions would refuse is refused with the
            // CONNECT, as Mosquitto does: it could never be published.
            if let Some(rules) = &topic_rules {
                let key = crate::topic::topic_to_routing_key(&w.topic);
                rules
                    .check(AMQP_TOPIC_EXCHANGE, Access::Write, &key)
                    .map_err(|e| (code::NOT_AUTHORIZED, e.to_string()))?;
            }
            Some(w)
        }
    };
    Ok(Checked {
        key: ClientKey::new(tenant.name(), &req.client_id),
        req,
        principal,
        assigned,
        will,
        topic_rules,
    })
}

/// The user name and password, or the anonymous user where allowed; a user
/// name `tenant:user` selects a tenant (RabbitMQ's `vhost:user`). A client
/// with a verified certificate (TLS) that sends no password is the
/// certificate's user (Mosquitto's `use_identity_as_username`).
async fn login(req: &Request, hs: &Handshake) -> Result<(String, Principal), Refused> {
    let config = &hs.config;
    if let Some(identity) = &hs.identity
        && req.password.as_deref().is_none_or(str::is_empty)
    {
        return certificate_login(req, hs, &identity.user);
    }
    match req.username.as_deref().filter(|u| !u.is_empty()) {
        Some(name) => {
            let (tenant, user) = match name.split_once(':') {
                Some((t, u)) if !t.is_empty() && !u.is_empty() => (t.to_owned(), u),
                _ => (config.default_tenant.clone(), name),
            };
            let password = req.password.as_deref().unwrap_or_default();
            let checked = hs
                .engine
                .authenticate_async(user, password.as_bytes(), Some(hs.peer.ip()))
                .await
                .map_err(|e| (error::connack_v5(&e), e.to_string()))?;
            // The password was right: share the user's principal.
            let principal = hs
                .registry
                .principal(user, || Ok(checked))
                .map_err(|e| (error::connack_v5(&e), e.to_string()))?;
            Ok((tenant, principal))
        }
        None => {
            let allowed = match config.allow_anonymous {
                Anonymous::Always => true,
                Anonymous::Never => false,
                Anonymous::Loopback => is_loopback(hs.peer.ip()),
            };
            if !allowed {
                return Err((
                    code::NOT_AUTHORIZED,
                    "a user name and password are required".into(),
                ));
            }
            let user = &config.anonymous_user;
            let principal = hs
                .registry
                .principal(user, || hs.engine.principal(user))
                .map_err(|e| (code::NOT_AUTHORIZED, e.to_string()))?;
            Ok((config.default_tenant.clone(), principal))
        }
    }
}

/// The certificate's user; a user name, if sent, may only name that user
/// (or `tenant:user` to pick a tenant).
fn certificate_login(
    req: &Request,
    hs: &Handshake,
    user: &str,
) -> Result<(String, Principal), Refused> {
    let tenant = match req.username.as_deref().filter(|u| !u.is_empty()) {
        None => hs.config.default_tenant.clone(),
        Some(name) if name == user => hs.config.default_tenant.clone(),
        Some(name) => match name.split_once(':') {
            Some((t, u)) if !t.is_empty() && u == user => t.to_owned(),
            _ => {
                return Err((
                    code::BAD_USER_NAME_OR_PASSWORD,
                    format!("user name '{name}' is not the client certificate's user '{user}'"),
                ));
            }
        },
    };
    let checked = hs
        .engine
        .authenticate_certificate(user, Some(hs.peer.ip()))
        .map_err(|e| (error::connack_v5(&e), e.to_string()))?;
    let principal = hs
        .registry
        .principal(user, || Ok(checked))
        .map_err(|e| (error::connack_v5(&e), e.to_string()))?;
    Ok((tenant, principal))
}

/// Loopback, also as an IPv4-mapped IPv6 address (a dual-stack listener).
fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// Takes the session over and builds the connected client.
async fn start(c: Checked, hs: &mut Handshake) -> Result<Box<Client>, Refused> {
    let req = c.req;
    let config = &hs.config;
    let max_expiry = config.max_session_expiry_secs;
    let expiry = match req.version {
        ProtocolVersion::V311 if req.clean_start => 0,
        ProtocolVersion::V311 => max_expiry,
        ProtocolVersion::V5 => req.expiry.min(max_expiry),
    };
    let tenant = hs
        .engine
        .tenant(c.key.tenant())
        .map_err(|e| (error::connack_v5(&e), e.to_string()))?;
    let record = hs
        .registry
        .claim(
            &c.key,
            hs.conn_id,
            Arc::clone(&hs.signal),
            &hs.shutdown,
            req.clean_start,
        )
        .await;
    let keep_alive = config.keep_alive(req.keep_alive);
    let max_inflight = req
        .receive_max
        .min(config.max_inflight)
        .clamp(1, LOCAL_PID_FIRST - 1);
    let mut client = Box::new(Client {
        version: req.version,
        engine: hs.engine.clone(),
        registry: Arc::clone(&hs.registry),
        config: Arc::clone(config),
        tenant,
        principal: c.principal,
        topic_rules: c.topic_rules,
        key: c.key,
        conn_id: hs.conn_id,
        problem_info: req.problem_info,
        out: BytesMut::new(),
        expiry_secs: expiry,
        connect_expiry_secs: expiry,
        had_record: false,
        queue: None,
        consumer: None,
        consumer_acks: false,
        subs: Vec::new(),
        shared: Vec::new(),
        next_shared_uid: 1,
        traffic: None,
        max_inflight,
        client_max_packet: req.max_packet,
        client_alias_max: req.alias_max,
        aliases_out: None,
        next_local_pid: LOCAL_PID_FIRST,
        may_deliver: true,
        incoming_qos2: Default::default(),
        outgoing_pubrel: Default::default(),
        publish_allowed: None,
        has_no_local: false,
        publishes: false,
        will: None,
        keep_alive,
        shutdown: hs.shutdown.clone(),
        keep: hs.keep.take(),
    });
    let session_present = record.is_some();
    let original = record.clone();
    let resumed = match record {
        Some(rec) => client.restore(rec),
        None => Ok(()),
    };
    let mut will = c.will;
    if let Some(w) = &mut will {
        // The will goes at the latest when the session ends (§ 3.1.3.2.2).
        w.delay_secs = w.delay_secs.min(expiry);
    }
    client.will = will.map(Box::new);
    if let Err(e) = resumed.and_then(|()| {
        hs.signal.reason().map_or(Ok(()), |r| {
            Err(gw_core::Error::Invalid {
                field: "session",
                reason: format!("closed while connecting: {r:?}"),
            })
        })
    }) {
        client.abandon(original);
        return Err((code::SERVER_UNAVAILABLE, e.to_string()));
    }
    if let Some(ticket) = client.save_record()
        && let Err(e) = hs.engine.wait_durable(ticket).await
    {
        client.abandon(original);
        return Err((code::UNSPECIFIED, e.to_string()));
    }
    let connack = connack(
        &client,
        &req,
        expiry,
        keep_alive,
        session_present,
        c.assigned,
    );
    let max = client.max_packet();
    if let Err(e) = connack.write(&mut client.out, max) {
        tracing::debug!(cause = %e, "CONNACK");
    }
    client.resend_pubrels();
    tracing::debug!(
        client_id = client.client_id(),
        version = ?client.version,
        session_present,
        expiry,
        "connected"
    );
    Ok(client)
}

fn connack(
    client: &Client,
    req: &Request,
    expiry: u32,
    keep_alive: u16,
    session_present: bool,
    assigned: bool,
) -> Packet {
    let config = &client.config;
    match req.version {
        ProtocolVersion::V311 => Packet::V4(v4::Packet::ConnAck(v4::ConnAck::new(
            v4::ConnectReturnCode::Success,
            session_present,
        ))),
        ProtocolVersion::V5 => Packet::V5(v5::Packet::ConnAck(v5::ConnAck {
            session_present,
            code: v5::ConnectReturnCode::Success,
            properties: Some(v5::ConnAckProperties {
                session_expiry_interval: (expiry != req.expiry).then_some(expiry),
                receive_max: Some(config.receive_maximum),
                retain_available: (!config.retain_available).then_some(0),
                max_packet_size: Some(config.max_packet_size),
                assigned_client_identifier: assigned.then(|| client.client_id().to_owned()),
                topic_alias_max: (config.topic_alias_maximum > 0)
                    .then_some(config.topic_alias_maximum),
                server_keep_alive: (keep_alive != req.keep_alive).then_some(keep_alive),
                ..empty_connack_props()
            }),
        })),
    }
}

fn empty_connack_props() -> v5::ConnAckProperties {
    v5::ConnAckProperties {
        session_expiry_interval: None,
        receive_max: None,
        max_qos: None,
        retain_available: None,
        max_packet_size: None,
        assigned_client_identifier: None,
        topic_alias_max: None,
        reason_string: None,
        user_properties: Vec::new(),
        wildcard_subscription_available: None,
        subscription_identifiers_available: None,
        shared_subscription_available: None,
        server_keep_alive: None,
        response_information: None,
        server_reference: None,
        authentication_method: None,
        authentication_data: None,
    }
}

/// A CONNACK reason code as rumqttc's enum (whose 3.1.1-only variants it
/// cannot encode in 5.0: never produced here).
fn v5_connack_code(c: u8) -> v5::ConnectReturnCode {
    use v5::ConnectReturnCode as R;
    match c {
        0x81 => R::MalformedPacket,
        0x82 => R::ProtocolError,
        0x83 => R::ImplementationSpecificError,
        0x84 => R::UnsupportedProtocolVersion,
        0x85 => R::ClientIdentifierNotValid,
        0x86 => R::BadUserNamePassword,
        0x87 => R::NotAuthorized,
        0x88 => R::ServerUnavailable,
        0x89 => R::ServerBusy,
        0x8A => R::Banned,
        0x8C => R::BadAuthenticationMethod,
        0x90 => R::TopicNameInvalid,
        0x95 => R::PacketTooLarge,
        0x97 => R::QuotaExceeded,
        0x99 => R::PayloadFormatInvalid,
        0x9A => R::RetainNotSupported,
        0x9B => R::QoSNotSupported,
        0x9F => R::ConnectionRateExceeded,
        _ => R::UnspecifiedError,
    }
}
