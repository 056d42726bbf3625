//! `GET /metrics` (Prometheus text format 0.0.4) and the message rates the
//! management overview shares with it.
//!
//! Rates are counter deltas over the time since the previous sample, taken
//! at most once a second whoever asks (a scrape, the overview), so several
//! readers do not shorten each other's window to nothing.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use gw_core::{Engine, Queue, QueueStats};
use parking_lot::Mutex;

use crate::state::AppState;

/// A gauge family over the node alarms: name, help, the value of one alarm.
type AlarmFamily = (&'static str, &'static str, fn(&gw_core::NodeAlarm) -> u64);
/// One queue's stats, as read at one moment.
pub struct QueueSnapshot {
    /// Its tenant.
    pub tenant: String,
    /// The queue.
    pub queue: Arc<Queue>,
    /// Its stats.
    pub stats: QueueStats,
}

/// Every queue of every tenant.
pub fn snapshot(engine: &Engine) -> Vec<QueueSnapshot> {
    let mut out = Vec::new();
    for t in engine.tenants() {
        for q in t.queues() {
            let stats = q.stats();
            out.push(QueueSnapshot {
                tenant: t.name().to_owned(),
                queue: q,
                stats,
            });
        }
    }
    out
}

/// Per-second rates of one queue.
#[derive(Clone, Debug, Default)]
pub struct QueueRates {
    /// Messages published into it.
    pub publish: f64,
    /// Per group: (deliveries, acks) per second.
    pub groups: HashMap<String, (f64, f64)>,
}

/// Per group: (delivered, acked).
type GroupCounts = HashMap<String, (u64, u64)>;
/// A metric family: name, type, help, and how to read it.
type Family<T> = (&'static str, &'static str, &'static str, fn(&T) -> u64);

#[derive(Clone)]
struct Sample {
    at: Instant,
    /// Queue id → (published, per group counts).
    counters: HashMap<u64, (u64, GroupCounts)>,
}

/// The rate sampler.
#[derive(Default)]
pub struct Rates {
    state: Mutex<(Option<Sample>, HashMap<u64, QueueRates>)>,
}

impl Rates {
    /// Rates per queue id, refreshed when the last sample is a second old.
    pub fn update(&self, snaps: &[QueueSnapshot]) -> HashMap<u64, QueueRates> {
        let mut st = self.state.lock();
        let now = Instant::now();
        if let Some(prev) = &st.0
            && now.duration_since(prev.at) < Duration::from_secs(1)
        {
            return st.1.clone();
        }
        let cur = Sample {
            at: now,
            counters: snaps
                .iter()
                .map(|s| {
                    let groups = s
                        .stats
                        .groups
                        .iter()
                        .map(|g| (g.name.clone(), (g.counters.delivered, g.counters.acked)))
                        .collect();
                    (s.queue.id(), (s.stats.published, groups))
                })
                .collect(),
        };
        let mut rates = HashMap::new();
        if let Some(prev) = &st.0 {
            let dt = now.duration_since(prev.at).as_secs_f64();
            let per_s = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
            for (id, (published, groups)) in &cur.counters {
                let Some((p0, g0)) = prev.counters.get(id) else {
                    continue;
                };
                let mut r = QueueRates {
                    publish: per_s(*published, *p0),
                    groups: HashMap::new(),
                };
                for (name, (d, a)) in groups {
                    if let Some((d0, a0)) = g0.get(name) {
                        r.groups
                            .insert(name.clone(), (per_s(*d, *d0), per_s(*a, *a0)));
                    }
                }
                rates.insert(*id, r);
            }
        }
        st.0 = Some(cur);
        st.1.clone_from(&rates);
        rates
    }
}

/// Escapes a Prometheus label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders the metrics text.
pub fn render(state: &AppState) -> String {
    let engine = state.engine();
    let snaps = snapshot(engine);
    let rates = state.inner().rates.update(&snaps);
    let mut out = String::with_capacity(4096 + snaps.len() * 1024);
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };

    family(
        &mut out,
        "gateway_connections",
        "gauge",
        "Open client connections per protocol.",
    );
    let mut by_protocol: HashMap<&'static str, u64> = [("amqp", 0), ("mqtt", 0), ("http", 0)]
        .into_iter()
        .collect();
    for c in engine.connections() {
        *by_protocol.entry(c.protocol).or_default() += 1;
    }
    let mut protocols: Vec<_> = by_protocol.into_iter().collect();
    protocols.sort();
    for (p, n) in protocols {
        let _ = writeln!(out, "gateway_connections{{protocol=\"{p}\"}} {n}");
    }
    family(
        &mut out,
        "gateway_storage_bytes",
        "gauge",
        "Bytes the data directory takes.",
    );
    let _ = writeln!(out, "gateway_storage_bytes {}", engine.disk_bytes());
    family(
        &mut out,
        "gateway_delayed_messages",
        "gauge",
        "Messages waiting for their delivery time.",
    );
    let _ = writeln!(out, "gateway_delayed_messages {}", engine.delayed_count());
    family(
        &mut out,
        "gateway_storage_under_pressure",
        "gauge",
        "1 while writes pile up faster than the disk takes them.",
    );
    let _ = writeln!(
        out,
        "gateway_storage_under_pressure {}",
        u8::from(engine.under_pressure())
    );
    let store = engine.store_health();
    family(
        &mut out,
        "gateway_store_writable",
        "gauge",
        "1 while the store takes writes; 0 while it refuses them (it retries every 500 ms).",
    );
    let _ = writeln!(out, "gateway_store_writable {}", u8::from(store.writable));
    family(
        &mut out,
        "gateway_store_write_errors_total",
        "counter",
        "Write batches the store failed (their publishers were refused).",
    );
    let _ = writeln!(
        out,
        "gateway_store_write_errors_total {}",
        store.write_errors
    );
    if let Some(free) = engine.disk_free_bytes() {
        family(
            &mut out,
            "gateway_disk_free_bytes",
            "gauge",
            "Bytes free for the gateway on the data directory's filesystem.",
        );
        let _ = writeln!(out, "gateway_disk_free_bytes {free}");
    }
    let alarms = engine.alarms();
    let alarm_families: [AlarmFamily; 3] = [
        (
            "gateway_alarm_active",
            "1 while the node's disk or memory alarm is raised (publishers are blocked).",
            |a| u64::from(a.active),
        ),
        (
            "gateway_alarm_value_bytes",
            "The last reading of each alarm: free disk bytes, resident memory bytes.",
            |a| a.value,
        ),
        (
            "gateway_alarm_threshold_bytes",
            "Each alarm's mark in bytes (disk_free_min, memory_high_watermark; 0 when off).",
            |a| a.threshold,
        ),
    ];
    for (name, help, value) in alarm_families {
        family(&mut out, name, "gauge", help);
        for a in &alarms {
            let _ = writeln!(out, "{name}{{kind=\"{}\"}} {}", a.kind.name(), value(a));
        }
    }
    family(
        &mut out,
        "gateway_http_long_polls",
        "gauge",
        "HTTP long polls waiting now.",
    );
    let _ = writeln!(
        out,
        "gateway_http_long_polls {}",
        state.config().max_long_polls - state.inner().long_polls.available_permits()
    );

    let q_families: [Family<QueueStats>; 6] = [
        (
            "gateway_queue_messages_retained",
            "gauge",
            "Messages the queue's log retains.",
            |s| s.retained,
        ),
        (
            "gateway_queue_bytes_retained",
            "gauge",
            "Bytes the queue's log retains.",
            |s| s.retained_bytes,
        ),
        (
            "gateway_queue_messages_published_total",
            "counter",
            "Messages published into the queue.",
            |s| s.published,
        ),
        (
            "gateway_queue_messages_delayed",
            "gauge",
            "Messages waiting for their delivery time.",
            |s| s.delayed,
        ),
        (
            "gateway_queue_consumers",
            "gauge",
            "Consumers over all groups.",
            |s| s.consumers as u64,
        ),
        (
            "gateway_queue_messages_ready",
            "gauge",
            "Ready messages (the default or first group's).",
            QueueStats::ready,
        ),
    ];
    let qlabels = |s: &QueueSnapshot| {
        format!(
            "tenant=\"{}\",queue=\"{}\"",
            label(&s.tenant),
            label(s.queue.name())
        )
    };
    for (name, kind, help, f) in q_families {
        family(&mut out, name, kind, help);
        for s in &snaps {
            let _ = writeln!(out, "{name}{{{}}} {}", qlabels(s), f(&s.stats));
        }
    }
    family(
        &mut out,
        "gateway_queue_publish_rate",
        "gauge",
        "Messages per second published into the queue (last sample).",
    );
    for s in &snaps {
        let r = rates.get(&s.queue.id()).map_or(0.0, |r| r.publish);
        let _ = writeln!(out, "gateway_queue_publish_rate{{{}}} {r}", qlabels(s));
    }

    let g_families: [Family<gw_core::GroupStats>; 10] = [
        (
            "gateway_group_messages_ready",
            "gauge",
            "Messages the group has yet to receive.",
            |g| g.ready,
        ),
        (
            "gateway_group_messages_in_flight",
            "gauge",
            "Delivered, not yet settled.",
            |g| g.in_flight,
        ),
        (
            "gateway_group_consumers",
            "gauge",
            "Consumers attached to the group.",
            |g| g.consumers as u64,
        ),
        (
            "gateway_group_delivered_total",
            "counter",
            "Deliveries (first ones and redeliveries).",
            |g| g.counters.delivered,
        ),
        (
            "gateway_group_acked_total",
            "counter",
            "Messages acknowledged.",
            |g| g.counters.acked,
        ),
        (
            "gateway_group_redelivered_total",
            "counter",
            "Deliveries that were redeliveries.",
            |g| g.counters.redelivered,
        ),
        (
            "gateway_group_dead_lettered_total",
            "counter",
            "Messages the group dead-lettered or dropped.",
            |g| g.counters.dead_lettered,
        ),
        (
            "gateway_group_filtered_total",
            "counter",
            "Messages skipped by the group's tag filter.",
            |g| g.counters.filtered,
        ),
        (
            "gateway_group_expired_total",
            "counter",
            "Messages that expired before the group got them.",
            |g| g.counters.expired,
        ),
        (
            "gateway_group_oldest_age_milliseconds",
            "gauge",
            "Age of the oldest message the group has not settled.",
            |g| g.oldest_age_ms.unwrap_or(0),
        ),
    ];
    let glabels = |s: &QueueSnapshot, g: &gw_core::GroupStats| {
        format!("{},group=\"{}\"", qlabels(s), label(&g.name))
    };
    for (name, kind, help, f) in g_families {
        family(&mut out, name, kind, help);
        for s in &snaps {
            for g in &s.stats.groups {
                let _ = writeln!(out, "{name}{{{}}} {}", glabels(s, g), f(g));
            }
        }
    }
    for (name, help, ack) in [
        (
            "gateway_group_deliver_rate",
            "Deliveries per second (last sample).",
            false,
        ),
        (
            "gateway_group_ack_rate",
            "Acknowledgements per second (last sample).",
            true,
        ),
    ] {
        family(&mut out, name, "gauge", help);
        for s in &snaps {
            for g in &s.stats.groups {
                let r = rates
                    .get(&s.queue.id())
                    .and_then(|r| r.groups.get(&g.name))
                    .map_or(0.0, |(d, a)| if ack { *a } else { *d });
                let _ = writeln!(out, "{name}{{{}}} {r}", glabels(s, g));
            }
        }
    }
    out
}

/// Prometheus metrics (no credentials needed).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    security(()),
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String))
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let text = tokio::task::spawn_blocking(move || render(&state))
        .await
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
