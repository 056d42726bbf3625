//! `GET /metrics` (OpenMetrics text, which Prometheus reads) and the message
//! rates the management overview shares with it. Only users tagged
//! `monitoring` or `administrator`, or a scraper with the metrics token, read
//! it; a `monitoring` user sees the series of its own tenants only.
//!
//! Rates are counter deltas over the time since the previous sample, taken
//! at most once a second whoever asks (a scrape, the overview), so several
//! readers do not shorten each other's window to nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::atomic::AtomicU64;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use gw_core::{Engine, Principal, Queue, QueueStats};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::error::{ApiError, ErrorBody};
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
/// A queue metric family: name, help, and how to read it.
type QueueFamily = (&'static str, &'static str, fn(&QueueStats) -> u64);
/// A group metric family: name, help, and how to read it.
type GroupFamily = (&'static str, &'static str, fn(&gw_core::GroupStats) -> u64);

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

/// Label pairs of one sample; values escaped with [`escaped`].
type Labels = Vec<(&'static str, String)>;

/// A label value as OpenMetrics text needs it. `prometheus-client` 0.24
/// writes label values as given (a queue name with a quote or a newline
/// would break the whole exposition; the unit test shows it), so they are
/// escaped here, once, before they reach it.
fn escaped(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One scrape's exposition: every family is registered with the values of
/// this moment, then encoded by `prometheus-client` (OpenMetrics text, label
/// values escaped, counters with their `_total` samples, `# EOF`).
#[derive(Default)]
struct Exposition {
    registry: Registry,
}

impl Exposition {
    fn gauge(&mut self, name: &str, help: &str, samples: impl IntoIterator<Item = (Labels, u64)>) {
        let family = Family::<Labels, Gauge>::default();
        for (labels, v) in samples {
            family
                .get_or_create(&labels)
                .set(i64::try_from(v).unwrap_or(i64::MAX));
        }
        self.registry.register(name, help_text(help), family);
    }

    fn gauge_f64(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels, f64)>,
    ) {
        let family = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        for (labels, v) in samples {
            family.get_or_create(&labels).set(v);
        }
        self.registry.register(name, help_text(help), family);
    }

    /// `name` without `_total` (the encoder adds it to each sample).
    fn counter(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels, u64)>,
    ) {
        let family = Family::<Labels, Counter>::default();
        for (labels, v) in samples {
            family.get_or_create(&labels).inc_by(v);
        }
        self.registry.register(name, help_text(help), family);
    }

    /// A gauge without labels.
    fn one(&mut self, name: &str, help: &str, v: u64) {
        let gauge = Gauge::<i64>::default();
        gauge.set(i64::try_from(v).unwrap_or(i64::MAX));
        self.registry.register(name, help_text(help), gauge);
    }

    /// A counter without labels.
    fn one_counter(&mut self, name: &str, help: &str, v: u64) {
        let counter = Counter::<u64>::default();
        counter.inc_by(v);
        self.registry.register(name, help_text(help), counter);
    }

    fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The encoder ends every help text with a period itself.
fn help_text(help: &str) -> &str {
    help.strip_suffix('.').unwrap_or(help)
}

/// Which tenants' series a scrape may see (node-wide series are in every one).
#[derive(Clone)]
pub enum Scope {
    /// Every tenant: administrators and the metrics token.
    All,
    /// Those the user has a permission on (a `monitoring` user).
    Of(Principal),
}

impl Scope {
    fn sees(&self, tenant: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Of(p) => p.may_use_tenant(tenant),
        }
    }
}

/// Renders the metrics text for `scope`.
pub fn render(state: &AppState, scope: &Scope) -> String {
    let engine = state.engine();
    let snaps: Vec<QueueSnapshot> = snapshot(engine)
        .into_iter()
        .filter(|s| scope.sees(&s.tenant))
        .collect();
    let rates = state.inner().rates.update(&snaps);
    let mut x = Exposition::default();

    let mut by_protocol: HashMap<&'static str, u64> = [("amqp", 0), ("mqtt", 0), ("http", 0)]
        .into_iter()
        .collect();
    for c in engine.connections() {
        *by_protocol.entry(c.protocol).or_default() += 1;
    }
    x.gauge(
        "gateway_connections",
        "Open client connections per protocol.",
        by_protocol
            .into_iter()
            .map(|(p, n)| (vec![("protocol", escaped(p))], n)),
    );
    x.one(
        "gateway_storage_bytes",
        "Bytes the data directory takes.",
        engine.disk_bytes(),
    );
    x.one(
        "gateway_delayed_messages",
        "Messages waiting for their delivery time.",
        engine.delayed_count() as u64,
    );
    x.one(
        "gateway_storage_under_pressure",
        "1 while writes pile up faster than the disk takes them.",
        u64::from(engine.under_pressure()),
    );
    let store = engine.store_health();
    x.one(
        "gateway_store_writable",
        "1 while the store takes writes; 0 while it refuses them (it retries every 500 ms).",
        u64::from(store.writable),
    );
    x.one_counter(
        "gateway_store_write_errors",
        "Write batches the store failed (their publishers were refused).",
        store.write_errors,
    );
    if let Some(free) = engine.disk_free_bytes() {
        x.one(
            "gateway_disk_free_bytes",
            "Bytes free for the gateway on the data directory's filesystem.",
            free,
        );
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
        x.gauge(
            name,
            help,
            alarms
                .iter()
                .map(|a| (vec![("kind", escaped(a.kind.name()))], value(a))),
        );
    }
    x.one(
        "gateway_http_long_polls",
        "HTTP long polls waiting now.",
        (state.config().max_long_polls - state.inner().long_polls.available_permits()) as u64,
    );

    let qlabels = |s: &QueueSnapshot| -> Labels {
        vec![
            ("tenant", escaped(&s.tenant)),
            ("queue", escaped(s.queue.name())),
        ]
    };
    let q_gauges: [QueueFamily; 5] = [
        (
            "gateway_queue_messages_retained",
            "Messages the queue's log retains.",
            |s| s.retained,
        ),
        (
            "gateway_queue_bytes_retained",
            "Bytes the queue's log retains.",
            |s| s.retained_bytes,
        ),
        (
            "gateway_queue_messages_delayed",
            "Messages waiting for their delivery time.",
            |s| s.delayed,
        ),
        (
            "gateway_queue_consumers",
            "Consumers over all groups.",
            |s| s.consumers as u64,
        ),
        (
            "gateway_queue_messages_ready",
            "Ready messages (the default or first group's).",
            QueueStats::ready,
        ),
    ];
    for (name, help, f) in q_gauges {
        x.gauge(name, help, snaps.iter().map(|s| (qlabels(s), f(&s.stats))));
    }
    x.counter(
        "gateway_queue_messages_published",
        "Messages published into the queue.",
        snaps.iter().map(|s| (qlabels(s), s.stats.published)),
    );
    x.gauge_f64(
        "gateway_queue_publish_rate",
        "Messages per second published into the queue (last sample).",
        snaps.iter().map(|s| {
            let r = rates.get(&s.queue.id()).map_or(0.0, |r| r.publish);
            (qlabels(s), r)
        }),
    );

    let groups = || {
        snaps
            .iter()
            .flat_map(|s| s.stats.groups.iter().map(move |g| (s, g)))
    };
    let glabels = |s: &QueueSnapshot, g: &gw_core::GroupStats| -> Labels {
        let mut l = qlabels(s);
        l.push(("group", escaped(&g.name)));
        l
    };
    let g_gauges: [GroupFamily; 4] = [
        (
            "gateway_group_messages_ready",
            "Messages the group has yet to receive.",
            |g| g.ready,
        ),
        (
            "gateway_group_messages_in_flight",
            "Delivered, not yet settled.",
            |g| g.in_flight,
        ),
        (
            "gateway_group_consumers",
            "Consumers attached to the group.",
            |g| g.consumers as u64,
        ),
        (
            "gateway_group_oldest_age_milliseconds",
            "Age of the oldest message the group has not settled.",
            |g| g.oldest_age_ms.unwrap_or(0),
        ),
    ];
    for (name, help, f) in g_gauges {
        x.gauge(name, help, groups().map(|(s, g)| (glabels(s, g), f(g))));
    }
    let g_counters: [GroupFamily; 6] = [
        (
            "gateway_group_delivered",
            "Deliveries (first ones and redeliveries).",
            |g| g.counters.delivered,
        ),
        ("gateway_group_acked", "Messages acknowledged.", |g| {
            g.counters.acked
        }),
        (
            "gateway_group_redelivered",
            "Deliveries that were redeliveries.",
            |g| g.counters.redelivered,
        ),
        (
            "gateway_group_dead_lettered",
            "Messages the group dead-lettered or dropped.",
            |g| g.counters.dead_lettered,
        ),
        (
            "gateway_group_filtered",
            "Messages skipped by the group's tag filter.",
            |g| g.counters.filtered,
        ),
        (
            "gateway_group_expired",
            "Messages that expired before the group got them.",
            |g| g.counters.expired,
        ),
    ];
    for (name, help, f) in g_counters {
        x.counter(name, help, groups().map(|(s, g)| (glabels(s, g), f(g))));
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
        x.gauge_f64(
            name,
            help,
            groups().map(|(s, g)| {
                let r = rates
                    .get(&s.queue.id())
                    .and_then(|r| r.groups.get(&g.name))
                    .map_or(0.0, |(d, a)| if ack { *a } else { *d });
                (glabels(s, g), r)
            }),
        );
    }
    x.encode()
}

/// The tag that lets a user read `/metrics` (RabbitMQ's).
pub const MONITORING: &str = "monitoring";

/// Prometheus metrics (OpenMetrics text). Needs a user tagged `monitoring`
/// (the tenants it has permissions on) or `administrator` (all), or the
/// `[http] metrics_token` as a bearer token (all).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    security(("basic" = []), ("metrics_token" = [])),
    responses(
        (status = 200, description = "OpenMetrics text 1.0.0", content_type = "application/openmetrics-text", body = String),
        (status = 403, description = "The user is tagged neither monitoring nor administrator", body = ErrorBody),
    )
)]
pub async fn metrics(State(state): State<AppState>, req: Request) -> Response {
    let scope = match req.extensions().get::<Scope>() {
        Some(Scope::All) => Scope::All,
        _ => match req.extensions().get::<Principal>() {
            Some(p) if p.is_administrator() => Scope::All,
            Some(p) if p.tags().iter().any(|t| t == MONITORING) => Scope::Of(p.clone()),
            Some(p) => {
                return ApiError::forbidden(format!(
                    "user '{}' is tagged neither monitoring nor administrator; /metrics needs one",
                    p.user()
                ))
                .into_response();
            }
            None => {
                return ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    crate::error::code::NO_CREDENTIALS,
                    "credentials required (HTTP Basic, or the metrics token)",
                )
                .into_response();
            }
        },
    };
    let text = tokio::task::spawn_blocking(move || render(&state, &scope))
        .await
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Layer of `/metrics`: the configured metrics token as a bearer token lets
/// a scraper in without a user; anything else is a login as on every route.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if let Some(token) = state.config().metrics_token.as_ref()
        && let Some(given) = bearer(req.headers())
    {
        if token.matches(given) {
            req.extensions_mut().insert(Scope::All);
            return next.run(req).await;
        }
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            crate::error::code::BAD_CREDENTIALS,
            "wrong metrics token",
        )
        .into_response();
    }
    crate::auth::authenticate(State(state), req, next).await
}

/// `Authorization: Bearer …`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_counters_get_their_total() {
        let mut x = Exposition::default();
        x.gauge(
            "g",
            "A gauge.",
            [(vec![("queue", escaped("a\"b\\c\nd"))], 3)],
        );
        x.one_counter("c", "A counter.", 7);
        x.one("plain", "No labels.", 5);
        let text = x.encode();
        assert!(text.contains("\nplain 5\n"), "{text}");
        assert!(text.contains(r#"g{queue="a\"b\\c\nd"} 3"#), "{text}");
        assert!(text.contains("# HELP g A gauge.\n"), "{text}");
        assert!(text.contains("# TYPE c counter\nc_total 7\n"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn bearer_tokens_are_read() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer abc ".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
