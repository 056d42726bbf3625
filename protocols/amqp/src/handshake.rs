//! Opening a connection (AMQP 0-9-1 § 2.2.4, RabbitMQ's `rabbit_reader`):
//!
//! ```text
//! C: protocol header        S: connection.start (server properties, PLAIN AMQPLAIN)
//! C: connection.start-ok    S: connection.tune (channel-max, frame-max, heartbeat)
//! C: connection.tune-ok     (no reply)
//! C: connection.open vhost  S: connection.open-ok
//! ```
//!
//! Failures answer as RabbitMQ does: a wrong protocol header gets ours back and
//! the socket closes; a failed login gets `connection.close` 403 ACCESS_REFUSED
//! when the client announced `authentication_failure_close` (otherwise the
//! socket just closes); an unknown vhost or one the user may not use, a
//! tune-ok outside the offered limits, or the connection limit give 530
//! NOT_ALLOWED.
//!
//! SASL EXTERNAL (RabbitMQ's `rabbitmq_auth_mechanism_ssl`) is offered only
//! on a TLS connection whose client showed a verified certificate: the user
//! is the one the certificate names (`[tls] identity_from`), no password.

use std::net::SocketAddr;
use std::time::Duration;

use amq_protocol::protocol::{AMQPClass, connection};
use amq_protocol::types::parsing::parse_field_table;
use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use gw_core::{Principal, Tenant};
use tokio::io::AsyncRead;

use crate::Server;
use crate::codec::{CodecError, Frame, PROTOCOL_HEADER, encode_method};
use crate::error::{AmqpError, code};
use crate::io::{FrameReader, ReadError};
use crate::outbox::Outbox;
use crate::session::ClientCapabilities;
use crate::table::{Depth, check_depth};

/// Frames before tune-ok may be at most this large (the spec's frame-min-size).
pub const FRAME_MIN_SIZE: u32 = 4096;
/// Delay before closing after a failed login, so passwords cannot be tried fast.
const AUTH_FAILURE_DELAY: Duration = Duration::from_millis(1000);
/// How long a refused client gets to answer our `connection.close`.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// What a successful handshake settled.
pub struct Opened {
    /// The authenticated user.
    pub principal: Principal,
    /// When the token the client logged in with expires (ms since the
    /// epoch); `None` for a password login.
    pub token_expires_at: Option<u64>,
    /// The vhost opened.
    pub tenant: Tenant,
    /// Negotiated frame size.
    pub frame_max: u32,
    /// Negotiated channel limit.
    pub channel_max: u16,
    /// Negotiated heartbeat (seconds, 0 = none).
    pub heartbeat: u16,
    /// What the client understands.
    pub caps: ClientCapabilities,
    /// The client's `connection_name`, or its product name.
    pub client_name: String,
}

/// How a handshake that did not open ended (already answered and logged).
#[derive(Debug)]
pub struct NotOpened;

/// Runs the handshake on a fresh connection.
pub async fn handshake<R: AsyncRead + Unpin>(
    io: &mut FrameReader<R>,
    outbox: &Outbox,
    server: &Server,
    peer: SocketAddr,
    over_limit: bool,
    identity: Option<&gw_listen::PeerIdentity>,
) -> Result<Opened, NotOpened> {
    let mut hs = Handshake { io, outbox, peer };
    match hs.io.protocol_header().await {
        Ok(()) => {}
        Err(ReadError::Codec(e @ CodecError::BadProtocolHeader { .. })) => {
            tracing::info!(%peer, error = %e, "AMQP connection refused: wrong protocol header");
            outbox.push(|b| b.extend_from_slice(PROTOCOL_HEADER));
            return Err(NotOpened);
        }
        Err(e) => {
            tracing::debug!(%peer, error = %e, "AMQP connection ended before its protocol header");
            return Err(NotOpened);
        }
    }
    hs.send(connection::AMQPMethod::Start(start(identity.is_some())));
    let start_ok = match hs.expect("starting").await? {
        connection::AMQPMethod::StartOk(s) => s,
        _ => return Err(hs.refuse(unexpected("starting"), false).await),
    };
    let caps = ClientCapabilities::from_client_properties(&start_ok.client_properties);
    let client_name = client_name(&start_ok.client_properties);
    let mechanism = start_ok.mechanism.as_str();
    let (user, login) = match (mechanism, identity) {
        (EXTERNAL, Some(identity)) => (
            identity.user.clone(),
            server
                .engine
                .authenticate_certificate(&identity.user, Some(peer.ip()))
                .map(|principal| gw_core::Login {
                    principal,
                    expires_at: None,
                }),
        ),
        _ => {
            let (user, password) = match credentials(mechanism, start_ok.response.as_bytes()) {
                Ok(c) => c,
                Err(e) => return Err(hs.refuse(e, false).await),
            };
            // The password may be one of the user's tokens (RabbitMQ's OAuth 2 way).
            let login = server
                .engine
                .login_async(&user, &password, Some(peer.ip()))
                .await;
            (user, login)
        }
    };
    let login = match login {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(%peer, user, mechanism, error = %e, "AMQP login refused");
            tokio::time::sleep(AUTH_FAILURE_DELAY).await;
            if caps.authentication_failure_close {
                let err = AmqpError::access_refused(format!(
                    "Login was refused using authentication mechanism {mechanism}. For details see the broker logfile."
                ));
                return Err(hs.refuse(err, true).await);
            }
            return Err(NotOpened);
        }
    };
    let principal = login.principal.clone();
    let cfg = &server.config;
    hs.send(connection::AMQPMethod::Tune(connection::Tune {
        channel_max: cfg.channel_max,
        frame_max: cfg.frame_max,
        heartbeat: cfg.heartbeat,
    }));
    let tune_ok = match hs.expect("tuning").await? {
        connection::AMQPMethod::TuneOk(t) => t,
        _ => return Err(hs.refuse(unexpected("tuning"), false).await),
    };
    let checked = negotiate(
        "frame_max",
        FRAME_MIN_SIZE.into(),
        cfg.frame_max.into(),
        tune_ok.frame_max.into(),
    )
    .and_then(|()| {
        negotiate(
            "channel_max",
            1,
            cfg.channel_max.into(),
            tune_ok.channel_max.into(),
        )
    });
    if let Err(e) = checked {
        return Err(hs.refuse(e.on_method(10, 31), false).await);
    }
    hs.io.frame_max = tune_ok.frame_max;
    outbox.set_heartbeat(tune_ok.heartbeat);
    let open = match hs.expect("opening").await? {
        connection::AMQPMethod::Open(o) => o,
        _ => return Err(hs.refuse(unexpected("opening"), false).await),
    };
    let vhost = open.virtual_host.as_str();
    if over_limit {
        let e = AmqpError::not_allowed(format!(
            "connection refused: node connection limit ({}) is reached",
            cfg.max_connections
        ));
        return Err(hs.refuse(e.on_method(10, 40), false).await);
    }
    let Ok(tenant) = server.engine.tenant(vhost) else {
        let e = AmqpError::not_allowed(format!("vhost {vhost} not found"));
        return Err(hs.refuse(e.on_method(10, 40), false).await);
    };
    if !principal.may_use_tenant(vhost) {
        let e = AmqpError::not_allowed(format!(
            "access to vhost '{vhost}' refused for user '{}'",
            principal.user()
        ));
        return Err(hs.refuse(e.on_method(10, 40), false).await);
    }
    hs.send(connection::AMQPMethod::OpenOk(connection::OpenOk {}));
    Ok(Opened {
        principal,
        token_expires_at: login.expires_at,
        tenant,
        frame_max: tune_ok.frame_max,
        channel_max: tune_ok.channel_max,
        heartbeat: tune_ok.heartbeat,
        caps,
        client_name,
    })
}

struct Handshake<'a, R> {
    io: &'a mut FrameReader<R>,
    outbox: &'a Outbox,
    peer: SocketAddr,
}

impl<R: AsyncRead + Unpin> Handshake<'_, R> {
    fn send(&self, m: connection::AMQPMethod) {
        let m = AMQPClass::Connection(m);
        self.outbox.push(|b| {
            if let Err(e) = encode_method(b, 0, &m) {
                tracing::error!(error = %e, "cannot encode a handshake method");
            }
        });
    }

    /// The next connection method on channel 0; heartbeats are skipped, a
    /// client's `connection.close` is answered.
    async fn expect(&mut self, state: &str) -> Result<connection::AMQPMethod, NotOpened> {
        loop {
            match self.io.next().await {
                Ok(Frame::Heartbeat) => {}
                Ok(Frame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Close(c)))) => {
                    tracing::debug!(peer = %self.peer, state, reply = %c.reply_text, "client closed during the handshake");
                    self.send(connection::AMQPMethod::CloseOk(connection::CloseOk {}));
                    return Err(NotOpened);
                }
                Ok(Frame::Method(0, AMQPClass::Connection(m))) => return Ok(m),
                Ok(Frame::Method(0, _)) => return Err(self.refuse(unexpected(state), false).await),
                Ok(other) => {
                    let e = AmqpError::new(
                        code::UNEXPECTED_FRAME,
                        format!(
                            "frame on channel {} before the connection opened",
                            other.channel()
                        ),
                    );
                    return Err(self.refuse(e, false).await);
                }
                Err(ReadError::Codec(e)) => return Err(self.refuse(e.into(), false).await),
                Err(e) => {
                    tracing::debug!(peer = %self.peer, state, error = %e, "AMQP handshake ended");
                    return Err(NotOpened);
                }
            }
        }
    }

    /// Sends `connection.close`, waits briefly for the answer, and gives up on
    /// the connection. `logged`: the caller already logged why.
    async fn refuse(&mut self, err: AmqpError, logged: bool) -> NotOpened {
        if !logged {
            tracing::info!(peer = %self.peer, code = err.code, reason = %err.text, "AMQP connection refused");
        }
        self.send(connection::AMQPMethod::Close(connection::Close {
            reply_code: err.code,
            reply_text: err.reply_text(),
            class_id: err.class_id,
            method_id: err.method_id,
        }));
        let wait = async {
            loop {
                match self.io.next().await {
                    Ok(Frame::Method(
                        0,
                        AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)),
                    ))
                    | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_WAIT, wait).await;
        NotOpened
    }
}

fn unexpected(state: &str) -> AmqpError {
    AmqpError::channel_error(format!("unexpected method in connection state {state}"))
}

/// RabbitMQ's rule: the client's value must lie between the minimum and what
/// the server offered (and 0, "no limit", is refused when the server has one).
fn negotiate(field: &str, min: u64, server: u64, client: u64) -> Result<(), AmqpError> {
    if client != 0 && client < min {
        return Err(AmqpError::not_allowed(format!(
            "negotiated {field} = {client} is lower than the minimum allowed value ({min})"
        )));
    }
    if server != 0 && (client == 0 || client > server) {
        return Err(AmqpError::not_allowed(format!(
            "negotiated {field} = {client} is higher than the maximum allowed value ({server})"
        )));
    }
    Ok(())
}

/// The SASL mechanism of a verified client certificate.
const EXTERNAL: &str = "EXTERNAL";

/// User and password from a SASL response.
fn credentials(mechanism: &str, response: &[u8]) -> Result<(String, Vec<u8>), AmqpError> {
    let invalid = || AmqpError::new(code::SYNTAX_ERROR, format!("{mechanism} response invalid"));
    match mechanism {
        // [authzid] NUL authcid NUL passwd (RFC 4616).
        "PLAIN" => {
            let mut parts = response.split(|&b| b == 0);
            let (_authz, user, pass) =
                match (parts.next(), parts.next(), parts.next(), parts.next()) {
                    (Some(a), Some(u), Some(p), None) => (a, u, p),
                    _ => return Err(invalid()),
                };
            let user = std::str::from_utf8(user).map_err(|_| invalid())?;
            Ok((user.to_owned(), pass.to_vec()))
        }
        // A field table without its length prefix, with LOGIN and PASSWORD.
        "AMQPLAIN" => {
            let mut framed = u32::try_from(response.len())
                .map_err(|_| invalid())?
                .to_be_bytes()
                .to_vec();
            framed.extend_from_slice(response);
            if check_depth(&framed) == Depth::TooDeep {
                return Err(invalid());
            }
            let table = match parse_field_table(framed.as_slice()) {
                Ok(([], t)) => t,
                _ => return Err(invalid()),
            };
            let field = |k: &str| match table.inner().get(k) {
                Some(AMQPValue::LongString(s)) => Some(s.as_bytes().to_vec()),
                Some(AMQPValue::ShortString(s)) => Some(s.as_str().as_bytes().to_vec()),
                _ => None,
            };
            let user = field("LOGIN").ok_or_else(invalid)?;
            let pass = field("PASSWORD").ok_or_else(invalid)?;
            let user = String::from_utf8(user).map_err(|_| invalid())?;
            Ok((user, pass))
        }
        other => Err(AmqpError::command_invalid(format!(
            "unknown authentication mechanism '{other}'"
        ))),
    }
}

fn client_name(props: &FieldTable) -> String {
    let text = |k: &str| match props.inner().get(k) {
        Some(AMQPValue::LongString(s)) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        Some(AMQPValue::ShortString(s)) => Some(s.as_str().to_owned()),
        _ => None,
    };
    text("connection_name")
        .or_else(|| text("product"))
        .unwrap_or_default()
}

/// What the door implements of RabbitMQ's protocol extensions, by the names
/// RabbitMQ announces them (`rabbit_reader:server_capabilities/1`). Each one
/// is true here: confirms (`confirm.select`), `exchange.bind`, `basic.nack`,
/// `basic.cancel` sent when a queue goes away, `connection.blocked`,
/// `x-priority` on consume, the 403 close on a failed login, per-consumer
/// `basic.qos`, and `amq.rabbitmq.reply-to`.
const CAPABILITIES: [&str; 9] = [
    "publisher_confirms",
    "exchange_exchange_bindings",
    "basic.nack",
    "consumer_cancel_notify",
    "connection.blocked",
    "consumer_priorities",
    "authentication_failure_close",
    "per_consumer_qos",
    "direct_reply_to",
];

/// `connection.start`: who we are and what we can do, in the shape of
/// RabbitMQ's server properties (all long strings, plus the capabilities
/// table). `product` names the gateway, not RabbitMQ: clients that branch on
/// the product see what they talk to.
/// `connection.start`; EXTERNAL is offered first when the client showed a
/// verified certificate (clients that can use it pick it).
fn start(certificate: bool) -> connection::Start {
    let mut caps = FieldTable::default();
    for cap in CAPABILITIES {
        caps.insert(cap.into(), AMQPValue::Boolean(true));
    }
    let mut props = FieldTable::default();
    let text = |s: &str| AMQPValue::LongString(LongString::from(s));
    props.insert("capabilities".into(), AMQPValue::FieldTable(caps));
    props.insert("product".into(), text("gateway"));
    props.insert("version".into(), text(env!("CARGO_PKG_VERSION")));
    props.insert("platform".into(), text("Rust"));
    props.insert(
        "copyright".into(),
        text("Copyright (c) the gateway's contributors"),
    );
    props.insert(
        "information".into(),
        text(concat!(
            "Licensed under the ",
            env!("CARGO_PKG_LICENSE"),
            " license. The AMQP 0-9-1 door of the message gateway"
        )),
    );
    connection::Start {
        version_major: 0,
        version_minor: 9,
        server_properties: props,
        mechanisms: if certificate {
            "EXTERNAL PLAIN AMQPLAIN".into()
        } else {
            "PLAIN AMQPLAIN".into()
        },
        locales: "en_US".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_amqplain_credentials() {
        assert_eq!(
            credentials("PLAIN", b"\0guest\0secret").unwrap(),
            ("guest".to_owned(), b"secret".to_vec())
        );
        assert_eq!(
            credentials("PLAIN", b"admin\0guest\0secret").unwrap().0,
            "guest"
        );
        assert_eq!(credentials("PLAIN", b"guest").unwrap_err().code, 502);
        assert_eq!(credentials("PLAIN", b"\0a\0b\0c").unwrap_err().code, 502);
        // LOGIN as a long string, PASSWORD as a long string.
        let mut t = Vec::new();
        for (k, v) in [("LOGIN", "guest"), ("PASSWORD", "pw")] {
            t.push(k.len() as u8);
            t.extend_from_slice(k.as_bytes());
            t.push(b'S');
            t.extend_from_slice(&(v.len() as u32).to_be_bytes());
            t.extend_from_slice(v.as_bytes());
        }
        assert_eq!(
            credentials("AMQPLAIN", &t).unwrap(),
            ("guest".to_owned(), b"pw".to_vec())
        );
        assert_eq!(credentials("AMQPLAIN", &t[..5]).unwrap_err().code, 502);
        let e = credentials("EXTERNAL", b"").unwrap_err();
        assert_eq!(e.code, 503);
        assert_eq!(
            e.text,
            "COMMAND_INVALID - unknown authentication mechanism 'EXTERNAL'"
        );
    }

    #[test]
    fn server_properties_have_rabbitmqs_shape() {
        let props = start(false).server_properties;
        for key in ["product", "version", "platform", "copyright", "information"] {
            match props.inner().get(key) {
                Some(AMQPValue::LongString(s)) => assert!(!s.as_bytes().is_empty(), "{key}"),
                other => panic!("{key}: {other:?}"),
            }
        }
        let Some(AMQPValue::FieldTable(caps)) = props.inner().get("capabilities") else {
            panic!("no capabilities table")
        };
        assert_eq!(caps.inner().len(), CAPABILITIES.len());
        assert!(
            caps.inner()
                .values()
                .all(|v| *v == AMQPValue::Boolean(true))
        );
    }

    #[test]
    fn tune_ok_is_checked_like_rabbitmq() {
        assert!(negotiate("frame_max", 4096, 131_072, 131_072).is_ok());
        assert!(negotiate("frame_max", 4096, 131_072, 8192).is_ok());
        assert_eq!(
            negotiate("frame_max", 4096, 131_072, 1024)
                .unwrap_err()
                .text,
            "NOT_ALLOWED - negotiated frame_max = 1024 is lower than the minimum allowed value (4096)"
        );
        assert_eq!(
            negotiate("channel_max", 1, 2047, 0).unwrap_err().text,
            "NOT_ALLOWED - negotiated channel_max = 0 is higher than the maximum allowed value (2047)"
        );
        assert!(negotiate("channel_max", 1, 2047, 4000).is_err());
    }
}
