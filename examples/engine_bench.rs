//! Benchmark of the engine through its public API (no network): prints a table,
//! or one JSON object with `--json`.
//!
//! ```text
//! cargo run --release --example engine_bench [-- --json] [--backlog N] [--quick] [--data-dir DIR]
//!     [--only backlog|transient|durable|fsync|fanout|compete|sessions]
//! ```
//!
//! - transient: 1 publisher, 1 consumer, 256 B, publish → deliver → ack (memory only);
//! - durable confirmed: 64 concurrent publishers, each publish awaited until synced;
//!   beside it the disk's own 4 KiB write+fsync rate (one writer), which bounds
//!   it: a confirm needs a sync, so rate ≤ syncs/s × writes per sync; then the
//!   same on a store with encryption at rest (every value sealed);
//! - fanout: one queue, 10 consumer groups, every group gets every message;
//! - compete: one queue, one group, 4 competing consumers share every message
//!   (each delivery once; prints how evenly they shared);
//! - backlog: N messages of 1 KiB stored while nobody consumes (peak RSS and disk
//!   sampled), then drained with acks; retention 0, so the disk shrinks again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gw_core::{
    ConsumerSpec, DEFAULT_GROUP, Engine, EngineConfig, Message, QueueSettings, QueueSpec,
    StartPosition, SyncPolicy, Tenant,
};

struct Args {
    json: bool,
    backlog: u64,
    transient: u64,
    durable: u64,
    fanout: u64,
    compete: u64,
    dir: Option<std::path::PathBuf>,
    only: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        json: false,
        backlog: 5_000_000,
        transient: 3_000_000,
        durable: 400_000,
        fanout: 300_000,
        compete: 2_000_000,
        dir: None,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--json" => a.json = true,
            "--quick" => {
                a.backlog = 200_000;
                a.transient = 300_000;
                a.durable = 50_000;
                a.fanout = 50_000;
                a.compete = 300_000;
            }
            "--backlog" => a.backlog = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.backlog),
            "--data-dir" => a.dir = it.next().map(Into::into),
            "--only" => a.only = it.next(),
            other => {
                eprintln!(
                    "unknown argument {other}; see the comment at the top of examples/engine_bench.rs"
                );
                std::process::exit(2);
            }
        }
    }
    a
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A body that does not compress (the store compresses blobs; a body of one
/// repeated byte would make the disk figures meaningless).
fn body(size: usize) -> Bytes {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut v = Vec::with_capacity(size);
    while v.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        v.extend_from_slice(&state.to_le_bytes());
    }
    v.truncate(size);
    Bytes::from(v)
}

fn message(queue: &str, size: usize, persistent: bool) -> Message {
    let mut m = Message::new(body(size));
    m.routing_key = queue.into();
    m.properties.delivery_mode = Some(if persistent { 2 } else { 1 });
    m
}

fn spec(durable: bool) -> QueueSpec {
    QueueSpec {
        durable,
        settings: QueueSettings::classic(),
        default_group: true,
        ..QueueSpec::default()
    }
}

/// 1 publisher thread, 1 consumer task acking in batches.
async fn transient(t: &Tenant, n: u64) -> f64 {
    let (q, _) = t
        .declare_queue("bench-transient", spec(false))
        .expect("declare");
    let consumer = q
        .consume(
            DEFAULT_GROUP,
            ConsumerSpec {
                prefetch_count: 2048,
                ..Default::default()
            },
        )
        .expect("consume");
    let start = Instant::now();
    let t2 = t.clone();
    let publisher = std::thread::spawn(move || {
        let proto = message("bench-transient", 256, false);
        for _ in 0..n {
            t2.publish(proto.clone()).expect("publish");
            // Keep the backlog bounded like a flow-controlled client would.
        }
    });
    let mut got = 0u64;
    let mut batch = Vec::with_capacity(512);
    let mut tags = Vec::with_capacity(512);
    while got < n {
        batch.clear();
        consumer.take(512, &mut batch).await.expect("take");
        tags.clear();
        tags.extend(batch.iter().map(|d| d.tag));
        consumer.ack_many(&tags).expect("ack");
        got += batch.len() as u64;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let _ = publisher.join();
    drop(consumer);
    let _ = t.delete_queue("bench-transient", false, false);
    rate
}

/// The disk's own rate of small synced writes (4 KiB, `fdatasync`, one
/// writer, for one second): what bounds the durable case, which can only
/// confirm a batch per sync. Returns (syncs per second, mean µs per sync).
fn disk_sync_rate(dir: &std::path::Path) -> (f64, f64) {
    use std::io::Write;
    std::fs::create_dir_all(dir).expect("bench dir");
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path).expect("probe file");
    let block = [0x5au8; 4096];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        f.write_all(&block).expect("probe write");
        f.sync_data().expect("probe sync");
        n += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(&path);
    (n as f64 / secs, secs * 1e6 / n.max(1) as f64)
}

/// What the durable case's store did: batches (one sync each) and their cost.
#[derive(Default)]
struct DurableStats {
    ops_per_sync: f64,
    sync_micros: f64,
}

/// 64 publishers, each awaiting its publish's durability before the next.
async fn durable(engine: &Engine, t: &Tenant, n: u64) -> (f64, DurableStats) {
    t.declare_queue("bench-durable", spec(true))
        .expect("declare");
    let per = n / 64;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (engine, t) = (engine.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            let proto = message("bench-durable", 256, true);
            for _ in 0..per {
                let r = t.publish(proto.clone()).expect("publish");
                if let Some(ticket) = r.ticket {
                    engine.wait_durable(ticket).await.expect("durable");
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("publisher");
    }
    let rate = (per * 64) as f64 / start.elapsed().as_secs_f64();
    let s = engine.store_stats();
    let stats = DurableStats {
        ops_per_sync: s.ops as f64 / s.syncs.max(1) as f64,
        sync_micros: s.sync_micros as f64 / s.syncs.max(1) as f64,
    };
    eprintln!(
        "durable: {} batches, {:.1} ops/batch, {} fsyncs of {:.0} µs on average, {:.0} µs applying per batch",
        s.batches,
        s.ops as f64 / s.batches.max(1) as f64,
        s.syncs,
        s.sync_micros as f64 / s.syncs.max(1) as f64,
        s.apply_micros as f64 / s.batches.max(1) as f64
    );
    let _ = t.delete_queue("bench-durable", false, false);
    (rate, stats)
}

/// One queue, 10 groups with a consumer each; counts deliveries.
async fn fanout(t: &Tenant, n: u64) -> f64 {
    let (q, _) = t
        .declare_queue(
            "bench-fanout",
            QueueSpec {
                default_group: false,
                ..spec(false)
            },
        )
        .expect("declare");
    let mut consumers = Vec::new();
    for g in 0..10 {
        let name = format!("g{g}");
        q.create_group(&name, StartPosition::Latest, None)
            .expect("group");
        consumers.push(
            q.consume(
                &name,
                ConsumerSpec {
                    prefetch_count: 2048,
                    ..Default::default()
                },
            )
            .expect("consume"),
        );
    }
    let start = Instant::now();
    let t2 = t.clone();
    let publisher = std::thread::spawn(move || {
        let proto = message("bench-fanout", 256, false);
        for _ in 0..n {
            t2.publish(proto.clone()).expect("publish");
        }
    });
    let mut tasks = Vec::new();
    for c in consumers {
        tasks.push(tokio::spawn(async move {
            let mut got = 0u64;
            let mut batch = Vec::with_capacity(512);
            let mut tags = Vec::with_capacity(512);
            while got < n {
                batch.clear();
                c.take(512, &mut batch).await.expect("take");
                tags.clear();
                tags.extend(batch.iter().map(|d| d.tag));
                c.ack_many(&tags).expect("ack");
                got += batch.len() as u64;
            }
        }));
    }
    for task in tasks {
        task.await.expect("consumer");
    }
    let rate = (n * 10) as f64 / start.elapsed().as_secs_f64();
    let _ = publisher.join();
    let _ = t.delete_queue("bench-fanout", false, false);
    rate
}

/// One queue, one group, 4 competing consumers (prefetch 256 each);
/// returns deliveries/s and the smallest consumer's share of the messages.
async fn compete(t: &Tenant, n: u64) -> (f64, f64) {
    let (q, _) = t
        .declare_queue("bench-compete", spec(false))
        .expect("declare");
    let consumers: Vec<_> = (0..4)
        .map(|_| {
            q.consume(
                DEFAULT_GROUP,
                ConsumerSpec {
                    prefetch_count: 256,
                    ..Default::default()
                },
            )
            .expect("consume")
        })
        .collect();
    let start = Instant::now();
    let t2 = t.clone();
    let publisher = std::thread::spawn(move || {
        let proto = message("bench-compete", 256, false);
        for _ in 0..n {
            t2.publish(proto.clone()).expect("publish");
        }
    });
    let total = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in consumers {
        let total = Arc::clone(&total);
        tasks.push(tokio::spawn(async move {
            let mut got = 0u64;
            let mut batch = Vec::with_capacity(256);
            let mut tags = Vec::with_capacity(256);
            while total.load(Ordering::Acquire) < n {
                batch.clear();
                tokio::select! {
                    r = c.take(256, &mut batch) => { r.expect("take"); }
                    () = tokio::time::sleep(Duration::from_millis(50)) => continue,
                }
                tags.clear();
                tags.extend(batch.iter().map(|d| d.tag));
                c.ack_many(&tags).expect("ack");
                got += batch.len() as u64;
                total.fetch_add(batch.len() as u64, Ordering::AcqRel);
            }
            got
        }));
    }
    let mut shares = Vec::new();
    for task in tasks {
        shares.push(task.await.expect("consumer"));
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let _ = publisher.join();
    let _ = t.delete_queue("bench-compete", false, false);
    let least = shares.iter().copied().min().unwrap_or(0) as f64 / n as f64;
    (rate, least)
}

#[derive(Default)]
struct Backlog {
    publish_rate: f64,
    drain_rate: f64,
    peak_rss_mib: f64,
    disk_full_mib: f64,
    disk_after_mib: f64,
}

/// Fills a durable queue with `n` × 1 KiB (group commit shared by 16
/// publishers), then drains it with acks.
async fn backlog(engine: &Engine, t: &Tenant, n: u64) -> Backlog {
    let (q, _) = t
        .declare_queue("bench-backlog", spec(true))
        .expect("declare");
    let peak = Arc::new(AtomicU64::new(rss_kib()));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (Arc::clone(&peak), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let start = Instant::now();
    let mut tasks = Vec::new();
    let per = n / 16;
    for _ in 0..16 {
        let (engine, t) = (engine.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            let proto = message("bench-backlog", 1024, true);
            let mut last = None;
            for i in 0..per {
                let r = t.publish(proto.clone()).expect("publish");
                last = r.ticket.or(last);
                // Confirm in windows of 256 like a client with publisher confirms.
                if i % 256 == 255
                    && let Some(ticket) = last.take()
                {
                    engine.wait_durable(ticket).await.expect("durable");
                }
                while engine.under_pressure() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            if let Some(ticket) = last {
                engine.wait_durable(ticket).await.expect("durable");
            }
        }));
    }
    for task in tasks {
        task.await.expect("publisher");
    }
    let total = per * 16;
    let publish_rate = total as f64 / start.elapsed().as_secs_f64();
    let disk_full_mib = engine.disk_bytes() as f64 / 1048576.0;
    eprintln!(
        "backlog: peak RSS while publishing {:.1} MiB",
        peak.load(Ordering::Relaxed) as f64 / 1024.0
    );
    let consumer = q
        .consume(
            DEFAULT_GROUP,
            ConsumerSpec {
                prefetch_count: 4096,
                ..Default::default()
            },
        )
        .expect("consume");
    let start = Instant::now();
    let mut got = 0;
    let mut batch = Vec::with_capacity(1024);
    let mut tags = Vec::with_capacity(1024);
    while got < total {
        batch.clear();
        consumer.take(1024, &mut batch).await.expect("take");
        tags.clear();
        tags.extend(batch.iter().map(|d| d.tag));
        consumer.ack_many(&tags).expect("ack");
        got += batch.len() as u64;
    }
    let drain_rate = total as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    drop(consumer);
    // Space comes back through compactions: the store's maintenance thread
    // runs a full one after a large trim, at most every 30 s. Wait for it
    // (up to 90 s) and say how long it took. What stays is the journals
    // (capped at 128 MiB) and the store's tables.
    let drained = Instant::now();
    let mut disk_after_mib = engine.disk_bytes() as f64 / 1048576.0;
    while disk_after_mib > disk_full_mib / 4.0 && drained.elapsed() < Duration::from_secs(90) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        disk_after_mib = engine.disk_bytes() as f64 / 1048576.0;
    }
    eprintln!(
        "backlog: disk {disk_full_mib:.0} MiB full, {disk_after_mib:.0} MiB {:.0} s after the drain",
        drained.elapsed().as_secs_f64()
    );
    Backlog {
        publish_rate,
        drain_rate,
        peak_rss_mib: peak.load(Ordering::Relaxed) as f64 / 1024.0,
        disk_full_mib,
        disk_after_mib,
    }
}

/// RSS per idle subscription: a queue bound to amq.topic with one consumer,
/// what an MQTT client session costs the engine.
async fn idle_sessions(t: &Tenant, n: usize) -> f64 {
    let before = rss_kib();
    let mut keep = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("session-{i}");
        let spec = QueueSpec {
            auto_delete: true,
            ..spec(false)
        };
        let (q, _) = t.declare_queue(&name, spec).expect("declare");
        t.bind(gw_core::BindingSpec {
            source: "amq.topic".into(),
            destination: gw_core::Destination::Queue(name.clone()),
            routing_key: format!("devices.{i}.commands"),
            arguments: Default::default(),
        })
        .expect("bind");
        let c = q
            .consume(
                DEFAULT_GROUP,
                ConsumerSpec {
                    prefetch_count: 10,
                    ..Default::default()
                },
            )
            .expect("consume");
        keep.push(c);
    }
    let per = (rss_kib().saturating_sub(before)) as f64 * 1024.0 / n as f64;
    drop(keep);
    per
}

fn open(dir: &std::path::Path, sync: SyncPolicy) -> Engine {
    let mut c = EngineConfig::new(dir);
    c.sync = sync;
    Engine::open(c).expect("engine opens")
}

/// The durable case again, on a store with encryption at rest.
async fn durable_encrypted(dir: &std::path::Path, n: u64) -> f64 {
    let mut key = [0u8; 32];
    rand::fill(&mut key);
    let c = EngineConfig {
        encryption: Some(Arc::new(gw_core::EncryptionKeys::new(&key, &[]))),
        ..EngineConfig::new(dir)
    };
    let e = Engine::open(c).expect("encrypted engine opens");
    let t = e.tenant("/").expect("tenant");
    let (rate, _) = durable(&e, &t, n).await;
    e.close();
    rate
}

/// Everything one run measured.
struct Figures {
    transient_rate: f64,
    durable_rate: f64,
    durable_stats: DurableStats,
    durable_encrypted_rate: f64,
    disk: (f64, f64),
    fanout_rate: f64,
    compete: (f64, f64),
    backlog: Backlog,
    session_bytes: f64,
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let tmp = tempfile::tempdir().expect("temp dir");
    let base = a.dir.clone().unwrap_or_else(|| tmp.path().to_owned());
    let results = rt.block_on(async {
        let dir = base.join("bench");
        let e = open(&dir, SyncPolicy::Always);
        let t = e.tenant("/").expect("tenant");
        let run = |case: &str| a.only.as_deref().is_none_or(|o| o == case);
        // The backlog runs first so that its peak RSS is its own, not what
        // earlier cases left in the allocator.
        let b = if run("backlog") {
            backlog(&e, &t, a.backlog).await
        } else {
            Backlog::default()
        };
        let transient_rate = if run("transient") {
            transient(&t, a.transient).await
        } else {
            0.0
        };
        let (durable_rate, durable_stats) = if run("durable") {
            durable(&e, &t, a.durable).await
        } else {
            (0.0, DurableStats::default())
        };
        let durable_encrypted_rate = if run("durable") {
            durable_encrypted(&base.join("bench-encrypted"), a.durable).await
        } else {
            0.0
        };
        let disk = if run("durable") || run("fsync") {
            disk_sync_rate(&dir)
        } else {
            (0.0, 0.0)
        };
        let fanout_rate = if run("fanout") {
            fanout(&t, a.fanout).await
        } else {
            0.0
        };
        let compete = if run("compete") {
            compete(&t, a.compete).await
        } else {
            (0.0, 0.0)
        };
        let session_bytes = if run("sessions") {
            idle_sessions(&t, 20_000).await
        } else {
            0.0
        };
        e.close();
        Figures {
            transient_rate,
            durable_rate,
            durable_stats,
            durable_encrypted_rate,
            disk,
            fanout_rate,
            compete,
            backlog: b,
            session_bytes,
        }
    });
    let Figures {
        transient_rate,
        durable_rate,
        durable_stats,
        durable_encrypted_rate,
        disk,
        fanout_rate,
        compete,
        backlog: b,
        session_bytes,
    } = results;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "transient_msgs_per_s": transient_rate.round(),
                "durable_confirmed_msgs_per_s": durable_rate.round(),
                "durable_ops_per_sync": (durable_stats.ops_per_sync * 10.0).round() / 10.0,
                "durable_sync_micros": durable_stats.sync_micros.round(),
                "durable_encrypted_confirmed_msgs_per_s": durable_encrypted_rate.round(),
                "disk_syncs_per_s": disk.0.round(),
                "disk_sync_micros": disk.1.round(),
                "fanout10_deliveries_per_s": fanout_rate.round(),
                "compete4_deliveries_per_s": compete.0.round(),
                "compete4_least_share": (compete.1 * 1000.0).round() / 1000.0,
                "backlog_messages": a.backlog,
                "backlog_publish_msgs_per_s": b.publish_rate.round(),
                "backlog_drain_msgs_per_s": b.drain_rate.round(),
                "backlog_rss_mib": (b.peak_rss_mib * 10.0).round() / 10.0,
                "backlog_disk_mib": b.disk_full_mib.round(),
                "backlog_disk_after_drain_mib": b.disk_after_mib.round(),
                "idle_session_bytes": session_bytes.round(),
            })
        );
    } else {
        println!("{:<44} {:>14}", "case", "figure");
        println!(
            "{:<44} {:>14.0}",
            "transient 1→1 256 B (msg/s)", transient_rate
        );
        println!(
            "{:<44} {:>14.0}",
            "durable confirmed, 64 publishers (msg/s)", durable_rate
        );
        println!(
            "{:<44} {:>14.1}",
            "  store writes per fsync", durable_stats.ops_per_sync
        );
        println!(
            "{:<44} {:>14.0}",
            "  store fsync under load (µs)", durable_stats.sync_micros
        );
        println!(
            "{:<44} {:>14.0}",
            "durable confirmed, encrypted at rest (msg/s)", durable_encrypted_rate
        );
        println!(
            "{:<44} {:>14.0}",
            "disk alone: 4 KiB write+fsync (per s)", disk.0
        );
        println!("{:<44} {:>14.0}", "disk alone: fsync (µs)", disk.1);
        println!(
            "{:<44} {:>14.0}",
            "fanout 10 groups (deliveries/s)", fanout_rate
        );
        println!(
            "{:<44} {:>14.0}",
            "compete 4 consumers, 1 group (deliveries/s)", compete.0
        );
        println!(
            "{:<44} {:>14.3}",
            "  smallest consumer's share (of 1)", compete.1
        );
        println!("{:<44} {:>14}", "backlog messages (1 KiB)", a.backlog);
        println!("{:<44} {:>14.0}", "backlog publish (msg/s)", b.publish_rate);
        println!(
            "{:<44} {:>14.0}",
            "backlog drain with acks (msg/s)", b.drain_rate
        );
        println!("{:<44} {:>14.1}", "backlog peak RSS (MiB)", b.peak_rss_mib);
        println!(
            "{:<44} {:>14.0}",
            "backlog disk when full (MiB)", b.disk_full_mib
        );
        println!(
            "{:<44} {:>14.0}",
            "backlog disk after drain (MiB)", b.disk_after_mib
        );
        println!(
            "{:<44} {:>14.0}",
            "idle session: queue+binding+consumer (B)", session_bytes
        );
    }
}
