//! A DMS queue creation request and its translation into the engine's
//! declaration (see `queues.rs` for what a DMS queue is).

use gw_core::{DeadLetterTarget, HeaderValue, Headers, QueueKind, QueueSettings, QueueSpec};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::resolve;
use crate::error::{ApiError, ApiResult, code};

pub(super) const HOUR_MS: u64 = 3_600_000;
/// Where a DMS description is kept (the queue's declaration arguments survive restarts).
pub(super) const ARG_DESCRIPTION: &str = "x-dms-description";
/// The DMS mode asked for (KAFKA_HA/KAFKA_HT are standard queues here).
pub(super) const ARG_MODE: &str = "x-dms-queue-mode";

/// DMS queue modes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum QueueMode {
    /// Standard queue: parallel delivery, best-effort order.
    #[default]
    #[serde(rename = "NORMAL")]
    Normal,
    /// FIFO queue: strict order (per `message_group_id` when given).
    #[serde(rename = "FIFO")]
    Fifo,
    /// DMS's high-reliability Kafka queue; here a standard queue with `retention_hours`.
    #[serde(rename = "KAFKA_HA")]
    KafkaHa,
    /// DMS's high-throughput Kafka queue; here a standard queue with `retention_hours`.
    #[serde(rename = "KAFKA_HT")]
    KafkaHt,
}

impl QueueMode {
    fn as_str(self) -> &'static str {
        match self {
            QueueMode::Normal => "NORMAL",
            QueueMode::Fifo => "FIFO",
            QueueMode::KafkaHa => "KAFKA_HA",
            QueueMode::KafkaHt => "KAFKA_HT",
        }
    }
}

/// Whether failed messages go to dead letters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RedrivePolicy {
    /// After `max_consume_count` failed consumptions a message moves to its group's dead letters.
    Enable,
    /// Failed messages are redelivered without limit.
    #[default]
    Disable,
}

/// `POST /v1.0/{tenant}/queues` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateQueue {
    /// 1–64 characters of `[A-Za-z0-9_-]`.
    pub name: String,
    /// At most 160 characters, no `<` or `>`.
    #[serde(default)]
    pub description: Option<String>,
    /// NORMAL (default), FIFO, KAFKA_HA or KAFKA_HT.
    #[serde(default)]
    pub queue_mode: Option<QueueMode>,
    /// enable or disable (default).
    #[serde(default)]
    pub redrive_policy: Option<RedrivePolicy>,
    /// 1–100; required when `redrive_policy` is enable.
    #[serde(default)]
    pub max_consume_count: Option<i64>,
    /// 1–72 hours of retention (default 72; DMS accepts it for Kafka queues, we for all).
    #[serde(default)]
    pub retention_hours: Option<i64>,
}

/// Validates a creation request into the engine's declaration.
pub(super) fn spec(req: &CreateQueue) -> ApiResult<QueueSpec> {
    resolve::dms_name("name", &req.name, 64, code::QUEUE_NAME_LEN)?;
    let mut arguments = Headers::new();
    if let Some(d) = &req.description {
        let n = d.chars().count();
        if n > 160 {
            return Err(ApiError::invalid_with(
                code::DESCRIPTION_LEN,
                "description",
                format!("must be at most 160 characters, got {n}"),
            ));
        }
        if d.contains(['<', '>']) {
            return Err(ApiError::invalid_with(
                code::DESCRIPTION_CHARS,
                "description",
                "must not contain '<' or '>'",
            ));
        }
        arguments.push(ARG_DESCRIPTION, HeaderValue::string(d.clone()));
    }
    let mode = req.queue_mode.unwrap_or_default();
    arguments.push(ARG_MODE, HeaderValue::string(mode.as_str()));
    let retention_hours = match req.retention_hours {
        None => 72,
        Some(h @ 1..=72) => h as u64,
        Some(h) => {
            return Err(ApiError::invalid_with(
                code::RETENTION_HOURS,
                "retention_hours",
                format!("must be an integer from 1 to 72, got {h}"),
            ));
        }
    };
    let mut settings = QueueSettings {
        kind: if mode == QueueMode::Fifo {
            QueueKind::Fifo
        } else {
            QueueKind::Standard
        },
        retention_ms: retention_hours * HOUR_MS,
        ack_timeout_ms: Some(30_000),
        ..QueueSettings::default()
    };
    if req.redrive_policy == Some(RedrivePolicy::Enable) {
        if matches!(mode, QueueMode::KafkaHa | QueueMode::KafkaHt) {
            return Err(ApiError::invalid(
                "redrive_policy",
                "dead letters exist for NORMAL and FIFO queues only",
            ));
        }
        let count = match req.max_consume_count {
            Some(c @ 1..=100) => c as u32,
            Some(c) => {
                return Err(ApiError::invalid_with(
                    code::MAX_CONSUME_COUNT,
                    "max_consume_count",
                    format!("must be from 1 to 100, got {c}"),
                ));
            }
            None => {
                return Err(ApiError::invalid_with(
                    code::MAX_CONSUME_COUNT,
                    "max_consume_count",
                    "is required when redrive_policy is enable",
                ));
            }
        };
        settings.max_deliveries = Some(count);
        settings.dead_letter = Some(DeadLetterTarget::PerGroup);
    } else if let Some(c) = req.max_consume_count
        && !(1..=100).contains(&c)
    {
        return Err(ApiError::invalid_with(
            code::MAX_CONSUME_COUNT,
            "max_consume_count",
            format!("must be from 1 to 100, got {c}"),
        ));
    }
    Ok(QueueSpec {
        durable: true,
        settings,
        arguments,
        default_group: false,
        ..QueueSpec::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> CreateQueue {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn dms_fields_become_settings() {
        let s = spec(&req(
            r#"{"name":"q","queue_mode":"FIFO","redrive_policy":"enable","max_consume_count":3}"#,
        ))
        .unwrap();
        assert!(s.durable && !s.default_group);
        assert_eq!(s.settings.kind, QueueKind::Fifo);
        assert_eq!(s.settings.max_deliveries, Some(3));
        assert_eq!(s.settings.dead_letter, Some(DeadLetterTarget::PerGroup));
        assert_eq!(s.settings.retention_ms, 72 * HOUR_MS);
        let s = spec(&req(
            r#"{"name":"k","queue_mode":"KAFKA_HA","retention_hours":5}"#,
        ))
        .unwrap();
        assert_eq!(s.settings.kind, QueueKind::Standard);
        assert_eq!(s.settings.retention_ms, 5 * HOUR_MS);
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            (r#"{"name":"a b"}"#, code::NAME_CHARS),
            (r#"{"name":""}"#, code::QUEUE_NAME_LEN),
            (
                r#"{"name":"q","redrive_policy":"enable"}"#,
                code::MAX_CONSUME_COUNT,
            ),
            (
                r#"{"name":"q","redrive_policy":"enable","max_consume_count":101}"#,
                code::MAX_CONSUME_COUNT,
            ),
            (
                r#"{"name":"q","retention_hours":73}"#,
                code::RETENTION_HOURS,
            ),
            (
                r#"{"name":"q","description":"<b>"}"#,
                code::DESCRIPTION_CHARS,
            ),
        ];
        for (json, expected) in cases {
            assert_eq!(spec(&req(json)).unwrap_err().code, expected, "{json}");
        }
        let long = format!(r#"{{"name":"q","description":"{}"}}"#, "d".repeat(161));
        assert_eq!(spec(&req(&long)).unwrap_err().code, code::DESCRIPTION_LEN);
    }
}
