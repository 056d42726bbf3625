//! The node's resource alarms, as RabbitMQ's `disk_free_limit` and
//! `vm_memory_high_watermark`: when the data directory's filesystem has less
//! free space than a minimum, or the process holds more memory than a mark,
//! an alarm is raised and publishers are held back (every door asks
//! [`crate::Engine::under_pressure`]) until it clears. Consumers keep
//! draining, which is what frees the space and the memory.
//!
//! A sampler thread reads free space and resident memory once a second, so
//! the check on the publish path is two atomic loads. An alarm clears a
//! little past its mark (5 %), so a value hovering at the mark does not
//! flap publishers between blocked and unblocked every second.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::message::{UnixMillis, now_millis};

/// How often free space and memory are read.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// How often while a reading is near its mark (within 20 %) or an alarm is
/// raised: a fast publisher can add hundreds of MiB in a second, and a
/// cleared alarm should let publishers go soon.
const SAMPLE_NEAR: Duration = Duration::from_millis(100);

/// A threshold: off, in bytes, or a fraction of a whole (the filesystem's
/// size for disk, the memory available to the process for memory).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Watermark {
    /// No alarm.
    Off,
    /// An absolute number of bytes.
    Bytes(u64),
    /// A fraction (0.0–1.0) of the whole.
    Fraction(f64),
}

impl Watermark {
    /// Parses `off`, a byte count (`1073741824`, `512MiB`, `2GB`, `1g`) or a
    /// fraction (`0.4`, `40%`).
    pub fn parse(text: &str) -> Result<Watermark, String> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("off") || t.eq_ignore_ascii_case("none") {
            return Ok(Watermark::Off);
        }
        if let Some(p) = t.strip_suffix('%') {
            let v: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("'{text}' is not a percentage"))?;
            return Watermark::fraction(v / 100.0, text);
        }
        if t.contains('.') {
            let v: f64 = t
                .parse()
                .map_err(|_| format!("'{text}' is not a fraction"))?;
            return Watermark::fraction(v, text);
        }
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("'{text}' is not a size (e.g. 1GiB, 512MB, 40%, 0.4)"))?;
        let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kib" => 1 << 10,
            "kb" => 1_000,
            "m" | "mib" => 1 << 20,
            "mb" => 1_000_000,
            "g" | "gib" => 1 << 30,
            "gb" => 1_000_000_000,
            "t" | "tib" => 1 << 40,
            "tb" => 1_000_000_000_000,
            other => return Err(format!("'{text}': unknown unit '{other}'")),
        };
        n.checked_mul(scale)
            .map(Watermark::Bytes)
            .ok_or_else(|| format!("'{text}' is too large"))
    }

    fn fraction(v: f64, text: &str) -> Result<Watermark, String> {
        if (0.0..=1.0).contains(&v) {
            Ok(Watermark::Fraction(v))
        } else {
            Err(format!("'{text}' must be between 0 and 100 %"))
        }
    }

    /// The threshold in bytes for a whole of `whole` bytes.
    fn bytes(self, whole: u64) -> Option<u64> {
        match self {
            Watermark::Off => None,
            Watermark::Bytes(b) => Some(b),
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            Watermark::Fraction(f) => Some((whole as f64 * f) as u64),
        }
    }
}

/// The two thresholds. Defaults as RabbitMQ's, adapted: free space at least
/// 1 GiB or 5 % of the filesystem, whichever is smaller (so small volumes
/// are usable); memory at most 40 % of what the process may use.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Watermarks {
    /// Least free space on the data directory's filesystem.
    pub disk_free_min: Option<Watermark>,
    /// Most resident memory.
    pub memory_high: Watermark,
}

impl Default for Watermarks {
    fn default() -> Self {
        Watermarks {
            disk_free_min: None,
            memory_high: Watermark::Fraction(0.4),
        }
    }
}

/// Which resource an alarm is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlarmKind {
    /// Free disk space under the minimum.
    Disk,
    /// Resident memory over the mark.
    Memory,
}

impl AlarmKind {
    /// `disk`, `memory` (the metric label).
    pub fn name(self) -> &'static str {
        match self {
            AlarmKind::Disk => "disk",
            AlarmKind::Memory => "memory",
        }
    }
}

/// An alarm as seen from outside.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeAlarm {
    pub kind: AlarmKind,
    /// Raised now.
    pub active: bool,
    /// When it was last raised (0: never).
    pub since: UnixMillis,
    /// The last value read: free bytes (disk) or resident bytes (memory).
    pub value: u64,
    /// The mark in bytes (0 when off).
    pub threshold: u64,
}

#[derive(Default)]
struct State {
    active: AtomicBool,
    since: AtomicU64,
    value: AtomicU64,
    threshold: AtomicU64,
}

impl State {
    /// Raises (`over`) or clears; true when that changed something.
    fn set(&self, over: bool, clear: bool, value: u64, threshold: u64) -> bool {
        self.value.store(value, Ordering::Relaxed);
        self.threshold.store(threshold, Ordering::Relaxed);
        let was = self.active.load(Ordering::Relaxed);
        let now = if was { !clear } else { over };
        if now != was {
            if now {
                self.since.store(now_millis(), Ordering::Relaxed);
            }
            self.active.store(now, Ordering::Release);
        }
        now != was
    }

    fn view(&self, kind: AlarmKind) -> NodeAlarm {
        NodeAlarm {
            kind,
            active: self.active.load(Ordering::Acquire),
            since: self.since.load(Ordering::Relaxed),
            value: self.value.load(Ordering::Relaxed),
            threshold: self.threshold.load(Ordering::Relaxed),
        }
    }
}

/// The alarms' current state, shared by the sampler and the engine.
#[derive(Default)]
pub(crate) struct Alarms {
    disk: State,
    memory: State,
    /// The marks the sampler applies; an operator may change them while the
    /// node runs (as `rabbitmqctl set_disk_free_limit` and
    /// `set_vm_memory_high_watermark` do).
    marks: parking_lot::Mutex<Watermarks>,
}

impl Alarms {
    pub fn new(marks: Watermarks) -> Alarms {
        Alarms {
            marks: parking_lot::Mutex::new(marks),
            ..Alarms::default()
        }
    }

    /// The marks in force.
    pub fn marks(&self) -> Watermarks {
        *self.marks.lock()
    }

    /// New marks, applied from the next reading (within a second).
    pub fn set_marks(&self, marks: Watermarks) {
        *self.marks.lock() = marks;
    }

    /// True while either alarm is raised.
    pub fn any(&self) -> bool {
        self.disk.active.load(Ordering::Acquire) || self.memory.active.load(Ordering::Acquire)
    }

    pub fn list(&self) -> Vec<NodeAlarm> {
        vec![
            self.disk.view(AlarmKind::Disk),
            self.memory.view(AlarmKind::Memory),
        ]
    }

    /// An alarm is raised, or a last reading was within 20 % of its mark.
    fn near(&self) -> bool {
        let close = |st: &State, disk: bool| {
            let (v, t) = (
                st.value.load(Ordering::Relaxed),
                st.threshold.load(Ordering::Relaxed),
            );
            st.active.load(Ordering::Relaxed)
                || (t > 0 && if disk { v < t + t / 5 } else { v > t - t / 5 })
        };
        close(&self.disk, true) || close(&self.memory, false)
    }

    /// One reading. `disk`: (free, filesystem size) where known.
    fn sample(&self, marks: &Watermarks, disk: Option<(u64, u64)>, memory: Option<(u64, u64)>) {
        if let Some((free, size)) = disk {
            let min = match marks.disk_free_min {
                Some(w) => w.bytes(size),
                None => Some((1u64 << 30).min(size / 20)),
            };
            // Off: never raised (and cleared if it was).
            let min = min.unwrap_or(0);
            let clear_at = min.saturating_add(min / 20);
            if self.disk.set(free < min, free >= clear_at, free, min) {
                log_change(
                    AlarmKind::Disk,
                    self.disk.active.load(Ordering::Relaxed),
                    free,
                    min,
                );
            }
        }
        if let Some((rss, total)) = memory {
            let (over, clear, high) = match marks.memory_high.bytes(total) {
                Some(high) => (rss > high, rss <= high - high / 20, high),
                None => (false, true, 0),
            };
            if self.memory.set(over, clear, rss, high) {
                log_change(
                    AlarmKind::Memory,
                    self.memory.active.load(Ordering::Relaxed),
                    rss,
                    high,
                );
            }
        }
    }
}

fn log_change(kind: AlarmKind, active: bool, value: u64, threshold: u64) {
    let (v, t) = (value >> 20, threshold >> 20);
    match (kind, active) {
        (AlarmKind::Disk, true) => tracing::warn!(
            "disk alarm raised: {v} MiB free, under disk_free_min {t} MiB; publishers are blocked"
        ),
        (AlarmKind::Disk, false) => {
            tracing::info!("disk alarm cleared: {v} MiB free (disk_free_min {t} MiB)");
        }
        (AlarmKind::Memory, true) => tracing::warn!(
            "memory alarm raised: {v} MiB resident, over memory_high_watermark {t} MiB; publishers are blocked"
        ),
        (AlarmKind::Memory, false) => {
            tracing::info!(
                "memory alarm cleared: {v} MiB resident (memory_high_watermark {t} MiB)"
            );
        }
    }
}

/// Reads free space and memory once a second into `alarms` until `stopped`
/// says so. `disk_dir`: the data directory (none for an in-memory store).
pub(crate) fn start_sampler(
    alarms: Arc<Alarms>,
    disk_dir: Option<PathBuf>,
    stopped: impl Fn() -> bool + Send + 'static,
) {
    let run = move || {
        let mut trimmer = crate::trim::Trimmer::new();
        while !stopped() {
            let disk = disk_dir.as_deref().and_then(disk_space);
            let memory = memory_use();
            alarms.sample(&alarms.marks(), disk, memory);
            if let Some((rss, _)) = memory {
                trimmer.after_sample(rss, || memory_use().map(|(rss, _)| rss));
            }
            std::thread::sleep(if alarms.near() {
                SAMPLE_NEAR
            } else {
                SAMPLE_EVERY
            });
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("gw-watermarks".into())
        .spawn(run)
    {
        tracing::error!(cause = %e, "cannot start the watermark sampler; resource alarms are off");
    }
}

/// (free for an unprivileged writer, size) of the filesystem holding `dir`.
pub(crate) fn disk_space(dir: &std::path::Path) -> Option<(u64, u64)> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    // The field types are the platform's (u64 here, u32 on some).
    #[allow(clippy::useless_conversion)]
    let unit = u64::from(st.fragment_size());
    #[allow(clippy::useless_conversion)]
    Some((
        u64::from(st.blocks_available()).saturating_mul(unit),
        u64::from(st.blocks()).saturating_mul(unit),
    ))
}

/// (resident bytes, bytes the process may use: RAM, or its cgroup's limit
/// when that is lower). Linux only; elsewhere the memory alarm stays off.
fn memory_use() -> Option<(u64, u64)> {
    let kib = |text: &str, key: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(key))?;
        line[key.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()
            .map(|k| k << 10)
    };
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let rss = kib(&status, "VmRSS:")?;
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let mut total = kib(&meminfo, "MemTotal:")?;
    if let Some(limit) = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
    {
        total = total.min(limit);
    }
    Some((rss, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_in_every_documented_form() {
        assert_eq!(Watermark::parse("off"), Ok(Watermark::Off));
        assert_eq!(
            Watermark::parse("1073741824"),
            Ok(Watermark::Bytes(1 << 30))
        );
        assert_eq!(Watermark::parse("512MiB"), Ok(Watermark::Bytes(512 << 20)));
        assert_eq!(Watermark::parse("2GB"), Ok(Watermark::Bytes(2_000_000_000)));
        assert_eq!(Watermark::parse("1g"), Ok(Watermark::Bytes(1 << 30)));
        assert_eq!(Watermark::parse("40%"), Ok(Watermark::Fraction(0.4)));
        assert_eq!(Watermark::parse("0.4"), Ok(Watermark::Fraction(0.4)));
        assert!(Watermark::parse("140%").is_err());
        assert!(Watermark::parse("1.5").is_err());
        assert!(Watermark::parse("12 parsecs").is_err());
        assert!(Watermark::parse("").is_err());
        assert!(Watermark::parse("99999999999999TiB").is_err());
    }

    #[test]
    fn alarms_raise_under_the_mark_and_clear_past_it() {
        let a = Alarms::default();
        let marks = Watermarks {
            disk_free_min: Some(Watermark::Bytes(1000)),
            memory_high: Watermark::Off,
        };
        a.sample(&marks, Some((2000, 10_000)), None);
        assert!(!a.any());
        a.sample(&marks, Some((999, 10_000)), None);
        assert!(a.any());
        // Back at the mark is not enough: 5 % past it clears.
        a.sample(&marks, Some((1020, 10_000)), None);
        assert!(a.any());
        a.sample(&marks, Some((1050, 10_000)), None);
        assert!(!a.any());
        let memory = Watermarks {
            disk_free_min: None,
            memory_high: Watermark::Fraction(0.5),
        };
        a.sample(&memory, None, Some((600, 1000)));
        assert!(a.any());
        assert_eq!(a.list()[1].threshold, 500);
        a.sample(&memory, None, Some((490, 1000)));
        assert!(a.any(), "5 % under the mark clears, not just under it");
        a.sample(&memory, None, Some((470, 1000)));
        assert!(!a.any());
    }

    #[test]
    fn the_default_disk_minimum_is_the_smaller_of_1_gib_and_5_percent() {
        let a = Alarms::default();
        let marks = Watermarks::default();
        a.sample(&marks, Some((40 << 20, 1 << 30)), None);
        assert!(a.any(), "40 MiB free of 1 GiB is under 5 %");
        assert_eq!(a.list()[0].threshold, (1u64 << 30) / 20);
        let b = Alarms::default();
        b.sample(&marks, Some((2 << 30, 1 << 40)), None);
        assert!(!b.any(), "2 GiB free of 1 TiB is over 1 GiB");
        assert_eq!(b.list()[0].threshold, 1 << 30);
    }

    #[test]
    fn a_mark_turned_off_while_its_alarm_is_raised_clears_it() {
        let tight = Watermarks {
            disk_free_min: Some(Watermark::Bytes(1000)),
            memory_high: Watermark::Bytes(100),
        };
        let a = Alarms::new(tight);
        a.sample(&a.marks(), Some((10, 10_000)), Some((500, 1000)));
        assert!(a.list().iter().all(|x| x.active));
        a.set_marks(Watermarks {
            disk_free_min: Some(Watermark::Off),
            memory_high: Watermark::Off,
        });
        a.sample(&a.marks(), Some((10, 10_000)), Some((500, 1000)));
        assert!(!a.any(), "{:?}", a.list());
        assert!(a.list().iter().all(|x| x.threshold == 0));
    }

    #[test]
    fn readings_near_a_mark_are_taken_more_often() {
        let a = Alarms::new(Watermarks {
            disk_free_min: Some(Watermark::Bytes(1000)),
            memory_high: Watermark::Bytes(1000),
        });
        a.sample(&a.marks(), Some((5000, 10_000)), Some((100, 10_000)));
        assert!(!a.near());
        a.sample(&a.marks(), Some((1100, 10_000)), Some((100, 10_000)));
        assert!(a.near(), "free space within 20 % of the minimum");
        a.sample(&a.marks(), Some((5000, 10_000)), Some((900, 10_000)));
        assert!(a.near(), "memory within 20 % of the mark");
    }
}
