//! Channel 0 once the connection is open: the client's `connection.close`,
//! `connection.update-secret` (a token login's new token is checked; any
//! secret is accepted for password users, as RabbitMQ's internal backend
//! does), and the server's `connection.blocked` /
//! `unblocked` as the engine's backpressure flips.

use amq_protocol::protocol::{AMQPClass, connection};
use tokio::io::AsyncRead;

use super::{Connection, Step};
use crate::codec::Frame;
use crate::error::{AmqpError, AmqpResult, code};

impl<R: AsyncRead + Unpin> Connection<R> {
    pub(super) async fn channel_zero(&mut self, frame: Frame) -> AmqpResult<Step> {
        use connection::AMQPMethod as M;
        let m = match frame {
            Frame::Heartbeat => return Ok(Step::Continue),
            Frame::Method(_, AMQPClass::Connection(m)) => m,
            Frame::Method(..) => {
                return Err(AmqpError::channel_error(
                    "unexpected method in connection state running",
                ));
            }
            Frame::Header(..) | Frame::Body(..) => {
                return Err(AmqpError::new(
                    code::UNEXPECTED_FRAME,
                    "content frame on channel 0",
                ));
            }
        };
        match m {
            M::Close(c) => {
                tracing::debug!(peer = %self.peer, code = c.reply_code, reply = %c.reply_text, "client closed the AMQP connection");
                self.shutdown_channels().await;
                self.session.send(
                    0,
                    &AMQPClass::Connection(M::CloseOk(connection::CloseOk {})),
                );
                Ok(Step::End)
            }
            M::UpdateSecret(u) if self.session.token_expires_at().is_some() => {
                self.refresh_token(u.new_secret.as_bytes(), u.reason.as_str())?;
                let ok = M::UpdateSecretOk(connection::UpdateSecretOk {});
                self.session.send(0, &AMQPClass::Connection(ok));
                Ok(Step::Continue)
            }
            M::UpdateSecret(u) => {
                // RabbitMQ's internal (password) backend accepts any new
                // secret: the method exists to refresh expiring tokens (OAuth 2),
                // and a password was checked once, at login (a token login
                // has its new token checked, above).
                let user = self.session.user();
                // Permissions are read again, as RabbitMQ checks them live.
                if let Ok(p) = self.server.engine.principal(&user) {
                    self.session.set_principal(p);
                }
                tracing::info!(peer = %self.peer, user, reason = %u.reason, "AMQP connection updated its secret");
                let ok = M::UpdateSecretOk(connection::UpdateSecretOk {});
                self.session.send(0, &AMQPClass::Connection(ok));
                Ok(Step::Continue)
            }
            // Harmless from a client (it has nothing to block), and a late close-ok.
            M::Blocked(_) | M::Unblocked(_) | M::CloseOk(_) => Ok(Step::Continue),
            _ => Err(AmqpError::channel_error(
                "unexpected method in connection state running",
            )),
        }
    }

    /// A token login's `connection.update-secret`: the new secret must be a
    /// live token of the same user that still opens this vhost, else the
    /// connection ends with 403 (RabbitMQ: "Cannot update secret").
    fn refresh_token(&mut self, secret: &[u8], reason: &str) -> AmqpResult<()> {
        let user = self.session.user();
        let refused = |why: String| {
            AmqpError::access_refused(format!("Cannot update secret: {why}")).on_method(10, 70)
        };
        let token = std::str::from_utf8(secret)
            .map_err(|_| refused("the new token is not UTF-8".into()))?;
        let (principal, info) = self
            .server
            .engine
            .token_login(&user, token, Some(self.peer.ip()))
            .map_err(|e| refused(e.to_string()))?;
        if !principal.may_use_tenant(self.session.vhost()) {
            return Err(refused(format!(
                "the new token is scoped to project '{}', not to vhost '{}'",
                info.tenant,
                self.session.vhost()
            )));
        }
        self.session.set_token(principal, info.expires_at);
        tracing::info!(peer = %self.peer, user, reason, "AMQP connection refreshed its token");
        Ok(())
    }

    /// The engine started or stopped holding publishers back. A connection
    /// is blocked (and told so) only once it publishes, as RabbitMQ does:
    /// one that only consumes keeps working, and clients such as lapin hold
    /// every frame back while told "blocked".
    pub(super) fn pressure_changed(&mut self) {
        let now = *self.pressure.borrow_and_update();
        self.ctx.blocked = now;
        if !now {
            self.ctx.publish_while_blocked = false;
            if self.sent_blocked {
                let unblocked = connection::AMQPMethod::Unblocked(connection::Unblocked {});
                self.session.send(0, &AMQPClass::Connection(unblocked));
                self.sent_blocked = false;
            }
        }
    }

    /// Sends `connection.blocked` once a publish arrived under pressure (the
    /// reader stops reading this connection until it clears).
    pub(super) fn announce_blocked(&mut self) {
        if !self.ctx.publish_while_blocked
            || self.sent_blocked
            || !self.session.caps.connection_blocked
        {
            return;
        }
        // RabbitMQ's two reasons; a store that is only behind the
        // publishers is the disk not keeping up.
        let memory = self
            .server
            .engine
            .alarms()
            .iter()
            .any(|a| a.active && a.kind == gw_core::AlarmKind::Memory);
        let reason = if memory {
            "low on memory"
        } else {
            "low on disk"
        };
        let blocked = connection::AMQPMethod::Blocked(connection::Blocked {
            reason: reason.into(),
        });
        self.session.send(0, &AMQPClass::Connection(blocked));
        self.sent_blocked = true;
    }
}
