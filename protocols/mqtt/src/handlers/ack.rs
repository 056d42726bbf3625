//! PUBACK, PUBREC, PUBREL and PUBCOMP from a client (§ 3.4–3.7, § 4.3).
//!
//! Outgoing QoS 1 ends at PUBACK (the engine lease is acknowledged). Outgoing
//! QoS 2 settles the engine at PUBREC: from then on only the PUBREL may be
//! re-sent, never the PUBLISH, so the packet id moves to `outgoing_pubrel`
//! (stored with a persistent session) until PUBCOMP. Incoming QoS 2 keeps its
//! packet id in `incoming_qos2` from PUBREC to PUBREL, so a re-sent PUBLISH is
//! not published twice.

use crate::client::{Client, Inflight, Source};
use crate::codec::{AckKind, write_ack};
use crate::error::code;
use crate::handlers::publish::ack;

impl Client {
    /// PUBACK: a QoS 1 delivery arrived.
    pub fn on_puback(&mut self, pid: u16) {
        match self.in_flight(pid) {
            Some(i) if i.qos == 1 => {
                let source = i.source;
                self.traffic().inflight.remove(&pid);
                self.settle_source(source);
                self.may_deliver = true;
            }
            // Unknown or not QoS 1: nothing to settle (a late duplicate).
            _ => tracing::debug!(pid, "PUBACK for no QoS 1 delivery"),
        }
    }

    /// PUBREC: a QoS 2 delivery arrived; settle it and release it.
    pub fn on_pubrec(&mut self, pid: u16, reason: u8) {
        let Some(i) = self.in_flight(pid) else {
            // Spec: PUBREL with "packet identifier not found" (5.0), or just PUBREL.
            write_ack(
                &mut self.out,
                self.version,
                AckKind::PubRel,
                pid,
                code::PACKET_ID_NOT_FOUND,
                None,
            );
            return;
        };
        if i.qos != 2 {
            tracing::debug!(pid, "PUBREC for a QoS 1 delivery");
            return;
        }
        if let Source::Released = i.source {
            // A repeated PUBREC: repeat the PUBREL.
            write_ack(
                &mut self.out,
                self.version,
                AckKind::PubRel,
                pid,
                code::SUCCESS,
                None,
            );
            return;
        }
        self.settle_source(i.source);
        if reason >= 0x80 {
            // The client refused the message (MQTT 5): the flow ends here.
            self.traffic().inflight.remove(&pid);
            self.may_deliver = true;
            return;
        }
        self.traffic().inflight.insert(
            pid,
            Inflight {
                source: Source::Released,
                qos: 2,
            },
        );
        self.outgoing_pubrel.insert(pid);
        // From now on only the PUBREL may be re-sent, never the PUBLISH: a
        // persistent session stores that before sending it, so a restart
        // re-sends the PUBREL of a message the engine has forgotten.
        let ticket = self.save_record();
        self.reply(ticket, ack(AckKind::PubRel, pid, code::SUCCESS, None));
    }

    /// PUBCOMP: a QoS 2 delivery is complete.
    pub fn on_pubcomp(&mut self, pid: u16) {
        if matches!(
            self.in_flight(pid).map(|i| i.source),
            Some(Source::Released)
        ) {
            self.traffic().inflight.remove(&pid);
            self.outgoing_pubrel.remove(&pid);
            self.save_record();
            self.may_deliver = true;
        }
    }

    /// PUBREL: the client releases an incoming QoS 2 publish.
    pub fn on_pubrel(&mut self, pid: u16) {
        if self.incoming_qos2.remove(&pid) {
            self.save_record();
            self.reply(None, ack(AckKind::PubComp, pid, code::SUCCESS, None));
        } else {
            // [MQTT-4.3.3-?]: answer anyway; MQTT 5 says which id was unknown.
            self.reply(
                None,
                ack(AckKind::PubComp, pid, code::PACKET_ID_NOT_FOUND, None),
            );
        }
    }

    /// After a reconnect: PUBRELs of QoS 2 deliveries still awaiting PUBCOMP
    /// are sent again first [MQTT-4.4.0-1].
    pub fn resend_pubrels(&mut self) {
        let pids: Vec<u16> = self.outgoing_pubrel.iter().copied().collect();
        for pid in pids {
            self.traffic().inflight.insert(
                pid,
                Inflight {
                    source: Source::Released,
                    qos: 2,
                },
            );
            write_ack(
                &mut self.out,
                self.version,
                AckKind::PubRel,
                pid,
                code::SUCCESS,
                None,
            );
        }
    }
}
