//! Publishing over HTTP while the engine holds publishers back.
//!
//! AMQP and MQTT publishers are slowed by not reading their sockets; an HTTP
//! request cannot be half read, so it is admitted or refused whole. A node
//! alarm (disk or memory past its mark, see `gw_core::Watermarks`) lasts
//! seconds to hours: the request is refused at once with 503 and
//! Retry-After, as a cloud queue service answers a throttled send, and
//! nothing of it is stored. A store that is only behind (writes piling up
//! faster than the disk takes them) usually catches up in milliseconds, so
//! the request waits for that, up to [`BACKLOG_WAIT`], before it is refused
//! the same way.

use std::time::Duration;

use axum::http::StatusCode;
use gw_core::Engine;

use crate::error::{ApiError, code};

/// How long a publishing request waits for a store that is behind.
const BACKLOG_WAIT: Duration = Duration::from_secs(5);
/// How often it looks again meanwhile.
const RECHECK: Duration = Duration::from_millis(10);

/// `Ok` when a request that publishes may go ahead now.
pub async fn admit_publish(engine: &Engine) -> Result<(), ApiError> {
    let started = tokio::time::Instant::now();
    while engine.under_pressure() {
        if let Some(alarm) = raised_alarm(engine) {
            return Err(alarm);
        }
        if started.elapsed() >= BACKLOG_WAIT {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                code::RESOURCE_ALARM,
                "publishing is held back: the store is behind; retry later",
            ));
        }
        tokio::time::sleep(RECHECK).await;
    }
    Ok(())
}

/// The error for the first raised node alarm, if one is raised: 503 with
/// what is over its mark, in the words of the gateway's log line.
pub fn raised_alarm(engine: &Engine) -> Option<ApiError> {
    let alarm = engine.alarms().into_iter().find(|a| a.active)?;
    let (value, mark) = (alarm.value >> 20, alarm.threshold >> 20);
    let what = match alarm.kind {
        gw_core::AlarmKind::Disk => {
            format!("disk alarm: {value} MiB free, under disk_free_min {mark} MiB")
        }
        gw_core::AlarmKind::Memory => {
            format!("memory alarm: {value} MiB resident, over memory_high_watermark {mark} MiB")
        }
    };
    Some(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        code::RESOURCE_ALARM,
        format!("publishing is blocked by a {what}; retry later"),
    ))
}
