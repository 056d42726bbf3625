//! Looking at a queue without changing it: counters, finding a message by
//! id with its state in every group (message tracking), and browsing (peek).

use std::sync::Arc;

use super::{GroupStats, MessageTrace, Queue, QueueStats};
use crate::message::{Message, now_millis};

impl Queue {
    /// Counters and gauges.
    pub fn stats(&self) -> QueueStats {
        let st = self.state.lock();
        let now = now_millis();
        let groups = st
            .groups
            .iter()
            .map(|g| GroupStats {
                name: g.name.clone(),
                ready: g.ready_count(&st.log),
                in_flight: g.in_flight(),
                consumers: g.consumers.len(),
                consumer_tags: g.consumers.iter().map(|c| c.tag.clone()).collect(),
                filter: g.filter.as_deref().cloned(),
                counters: g.stats,
                oldest_age_ms: (g.floor() < st.log.next_seq)
                    .then(|| {
                        st.log
                            .in_memory(g.floor())
                            .map(|e| now.saturating_sub(e.msg.published_at))
                    })
                    .flatten(),
                created_at: g.created_at,
            })
            .collect();
        QueueStats {
            retained: st.log.len(),
            retained_bytes: st.log.retained_bytes,
            published: st.published,
            delayed: st.delayed,
            consumers: st.consumer_count(),
            groups,
        }
    }

    /// Messages ready in the default group (RabbitMQ's message count).
    pub fn message_count(&self) -> u64 {
        self.stats().ready()
    }

    /// Consumers over all groups.
    pub fn consumer_count(&self) -> usize {
        self.state.lock().consumer_count()
    }

    /// Finds a retained message by its id and says where it stands in every
    /// group (message tracking). Scans the log: meant for operators, not for
    /// hot paths. `None` when the queue no longer retains it.
    pub fn find_message(&self, id: crate::message::MessageId) -> Option<MessageTrace> {
        let (head, window_start, next) = {
            let st = self.state.lock();
            (st.log.head, st.log.window_start(), st.log.next_seq)
        };
        let mut found: Option<(u64, Arc<Message>)> = None;
        {
            let st = self.state.lock();
            for seq in window_start.max(head)..next {
                if let Some(e) = st.log.in_memory(seq).filter(|e| e.msg.id == id) {
                    found = Some((seq, Arc::clone(&e.msg)));
                    break;
                }
            }
        }
        let mut from = head;
        while found.is_none() && from < window_start {
            let Ok(messages) = self
                .store()
                .backend()
                .read_log(self.id, from, 1024, 8 << 20)
            else {
                break;
            };
            let Some(last) = messages.last().map(|(s, _)| *s) else {
                break;
            };
            for (seq, m) in messages {
                if seq >= window_start {
                    break;
                }
                if let Some(m) = m.filter(|m| m.id == id) {
                    found = Some((seq, m));
                    break;
                }
            }
            from = last + 1;
        }
        let (seq, message) = found?;
        let st = self.state.lock();
        let groups = st
            .groups
            .iter()
            .map(|g| (g.name.clone(), g.status_of(seq, &message.tags)))
            .collect();
        Some(MessageTrace {
            seq,
            message,
            groups,
        })
    }

    /// Browses up to `max` retained messages from sequence number `from` on
    /// (at most about `max_bytes` of bodies), each with its state in every
    /// group. Changes nothing: no lease, no delivery count, no cursor, so a
    /// peek is invisible to consumers (unlike RabbitMQ's get with requeue,
    /// which marks the message redelivered).
    pub fn browse(&self, from: u64, max: usize, max_bytes: u64) -> Vec<MessageTrace> {
        let (head, window_start, next) = {
            let st = self.state.lock();
            (st.log.head, st.log.window_start(), st.log.next_seq)
        };
        let mut found: Vec<(u64, Arc<Message>)> = Vec::new();
        let mut bytes = 0u64;
        let full = |found: &Vec<_>, bytes: u64| found.len() >= max || bytes >= max_bytes;
        // Behind the memory window the backend has the messages.
        let mut seq = from.max(head);
        while seq < window_start && !full(&found, bytes) {
            let Ok(read) =
                self.store()
                    .backend()
                    .read_log(self.id, seq, max - found.len(), max_bytes - bytes)
            else {
                break;
            };
            let Some(last) = read.last().map(|(s, _)| *s) else {
                break;
            };
            for (s, m) in read {
                if s >= window_start || full(&found, bytes) {
                    break;
                }
                if let Some(m) = m {
                    bytes += m.body.len() as u64;
                    found.push((s, m));
                }
            }
            seq = last + 1;
        }
        let st = self.state.lock();
        let mut seq = seq.max(window_start).max(st.log.head);
        while seq < next.min(st.log.next_seq) && !full(&found, bytes) {
            if let Some(e) = st.log.in_memory(seq) {
                bytes += e.msg.body.len() as u64;
                found.push((seq, Arc::clone(&e.msg)));
            }
            seq += 1;
        }
        found
            .into_iter()
            .map(|(seq, message)| MessageTrace {
                groups: st
                    .groups
                    .iter()
                    .map(|g| (g.name.clone(), g.status_of(seq, &message.tags)))
                    .collect(),
                seq,
                message,
            })
            .collect()
    }

    /// The sequence numbers `[head, next)` the queue retains.
    pub fn bounds(&self) -> (u64, u64) {
        let st = self.state.lock();
        (st.log.head, st.log.next_seq)
    }
}
