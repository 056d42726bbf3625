//! DISCONNECT from the client (§ 3.14), and what happens to the session and
//! the will when a connection ends, however it ends.

use gw_core::now_millis;
use rumqttc::v5::mqttbytes::v5;

use crate::client::Client;
use crate::error::{MqttError, code};
use crate::handlers::Flow;
use crate::session::{SESSION_NS, SessionRecord};
use crate::will;

/// How a connection ended.
#[derive(Debug)]
pub enum End {
    /// The client sent DISCONNECT (MQTT 5: `will` for reason 0x04).
    ClientDisconnect {
        /// Publish the will anyway.
        will: bool,
    },
    /// The network connection went away (EOF or an I/O error).
    Gone(Option<std::io::Error>),
    /// The server closed it because of the client (protocol error, bad
    /// packet, keep alive timeout, ...).
    Error(MqttError),
    /// Another connection took the client id over (0x8E).
    TakenOver,
    /// The gateway is stopping (0x8B).
    Shutdown,
    /// An operator closed it (0x98).
    Administrative,
    /// Refused during CONNECT.
    Refused,
}

impl End {
    /// Whether the will is published [MQTT-3.1.2-8]: on every end but a
    /// normal DISCONNECT and a refused CONNECT. Nor on a gateway shutdown: the
    /// server, not a failing client, ends those connections.
    pub fn publishes_will(&self) -> bool {
        !matches!(
            self,
            End::ClientDisconnect { will: false } | End::Shutdown | End::Refused
        )
    }

    /// Whether the server ends the connection while the client still
    /// listens (shutdown, takeover, an operator, an error it caused).
    pub fn server_closes(&self) -> bool {
        match self {
            End::ClientDisconnect { .. } | End::Gone(_) | End::Refused => false,
            End::Error(e) => !e.is_client_gone(),
            End::TakenOver | End::Shutdown | End::Administrative => true,
        }
    }

    /// The MQTT 5 DISCONNECT reason code the server sends before closing,
    /// when it sends one.
    pub fn disconnect_code(&self) -> Option<u8> {
        match self {
            End::ClientDisconnect { .. } | End::Gone(_) | End::Refused => None,
            End::Error(e) if e.is_client_gone() => None,
            End::Error(e) => Some(e.disconnect_code()),
            End::TakenOver => Some(code::SESSION_TAKEN_OVER),
            End::Shutdown => Some(code::SERVER_SHUTTING_DOWN),
            End::Administrative => Some(code::ADMINISTRATIVE_ACTION),
        }
    }
}

impl Client {
    /// MQTT 5 DISCONNECT: may change the session expiry, may ask for the will.
    pub fn on_disconnect_v5(&mut self, d: &v5::Disconnect) -> Result<Flow, MqttError> {
        let expiry = d
            .properties
            .as_ref()
            .and_then(|p| p.session_expiry_interval);
        if let Some(expiry) = expiry {
            // [MQTT-3.14.2-2]: a session created to end with its connection
            // cannot be extended at the last moment.
            if self.connect_expiry_secs == 0 && expiry != 0 {
                return Err(MqttError::Protocol(
                    "session expiry interval cannot change from 0 at DISCONNECT".into(),
                ));
            }
            self.expiry_secs = expiry.min(self.config.max_session_expiry_secs);
        }
        let will = d.reason_code == v5::DisconnectReasonCode::DisconnectWithWillMessage;
        Ok(Flow::Disconnect { will })
    }

    /// The connection is over: stop consuming (what was in flight goes back to
    /// the queues and is re-sent with DUP on the next connection), deal with
    /// the will, then park a persistent session or end a clean one.
    pub fn finish(mut self: Box<Self>, end: &End) {
        let publish_will = end.publishes_will();
        let now = now_millis();
        self.flush_acks();
        let mut record = self.record();
        self.consumer = None;
        let shared: Vec<_> = self.shared.drain(..).collect();
        drop(shared);
        let will = self.will.take().filter(|_| publish_will);
        let client_id = self.client_id().to_owned();
        tracing::debug!(client_id, ?end, "connection ended");
        if self.persistent() {
            record.disconnected_at = Some(now);
            record.will = None;
            if let Some(mut w) = will.map(|w| *w) {
                if w.delay_secs == 0 {
                    will::publish(&self.tenant, &w, &client_id);
                } else {
                    // Published by the registry when due, unless the client is back.
                    w.due_at = Some(now.saturating_add(u64::from(w.delay_secs) * 1000));
                    record.will = Some(w);
                }
            }
            record.expiry_secs = self.expiry_secs;
            self.engine
                .put_state(SESSION_NS, self.key.as_bytes(), &record.encode());
            self.registry.release(&self.key, self.conn_id, Some(record));
            return;
        }
        // A clean session (or one whose expiry became 0) ends now.
        if let Some(w) = will {
            will::publish(&self.tenant, &w, &client_id);
        }
        if let Some(q) = self.queue.take() {
            let _ = self.tenant.delete_queue(q.name(), false, false);
        }
        for sub in &record.subscriptions {
            if let Some(group) = &sub.share {
                self.registry
                    .release_shared(&self.tenant, &sub.filter, group);
            }
        }
        if self.had_record {
            self.engine.delete_state(SESSION_NS, self.key.as_bytes());
        }
        self.registry.release(&self.key, self.conn_id, None);
    }

    /// A client refused after its session was claimed: the session it
    /// resumed is put back as it was stored; a new one ends.
    pub fn abandon(mut self: Box<Self>, original: Option<SessionRecord>) {
        let Some(mut rec) = original else {
            self.finish(&End::Refused);
            return;
        };
        self.consumer = None;
        self.shared.clear();
        rec.disconnected_at = Some(now_millis());
        rec.will = None;
        self.registry.release(&self.key, self.conn_id, Some(rec));
    }
}
