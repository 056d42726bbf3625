//! The flood of issue 16 against the real binary: one AMQP connection
//! publishing 10,000 persistent 64 KiB messages (625 MiB) without confirms
//! and nobody consuming. With a memory watermark of 256 MiB the process
//! stays under it from start to end of the flood (it used to reach 589 MB):
//! the queue keeps only its in-memory window of messages, the connection's
//! unwritten bytes are bounded, and the alarm would block the publisher if
//! anything else grew. Then a consumer drains everything and the memory is
//! measured again: what the drain freed is given back.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::Process;
use futures::StreamExt;
use lapin::BasicProperties;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;

/// Resident bytes of a process, from /proc.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

const MIB: u64 = 1 << 20;
/// Messages of 64 KiB: 10,000 of them are 625 MiB, far past the mark.
const BODY: usize = 64 << 10;
const FLOOD: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_flood_stays_under_the_memory_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let mark = 256 * MIB;
    let p = Process::start_with(
        dir.path(),
        &[
            "--memory-high-watermark",
            "256MiB",
            "--disk-free-min",
            "off",
        ],
    );
    let pid = p.child.id();
    let before = rss(pid);

    let conn = p.amqp_connection().await;
    let ch = conn.create_channel().await.unwrap();
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    ch.queue_declare("flood".into(), durable, FieldTable::default())
        .await
        .unwrap();

    let peak = Arc::new(AtomicU64::new(before));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (Arc::clone(&peak), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let flood = Instant::now();
    let publisher = {
        let ch = ch.clone();
        tokio::spawn(async move {
            // Pseudo-random bodies: the store compresses, and a repeated
            // byte would make the flood a few MiB on disk.
            let mut state = 0x9e37_79b9_7f4a_7c15_u64;
            let mut body = vec![0u8; BODY];
            let persistent = BasicProperties::default().with_delivery_mode(2);
            for _ in 0..FLOOD {
                for b in body.iter_mut() {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    *b = state as u8;
                }
                ch.basic_publish(
                    "".into(),
                    "flood".into(),
                    BasicPublishOptions::default(),
                    &body,
                    persistent.clone(),
                )
                .await
                .unwrap();
            }
        })
    };

    // What the gateway took (lapin buffers what it cannot send, so its own
    // count says nothing), asked over HTTP.
    let http = reqwest::Client::new();
    let url = format!("http://{}/api/queues/%2F/flood", p.http);
    let stored = || async {
        let r = http
            .get(&url)
            .basic_auth("guest", Some("guest"))
            .send()
            .await
            .unwrap();
        let v: serde_json::Value = r.json().await.unwrap();
        v["messages_ready"].as_u64().unwrap() + v["messages_unacked"].as_u64().unwrap()
    };
    while stored().await < FLOOD as u64 {
        assert!(
            flood.elapsed() < Duration::from_secs(120),
            "flood not stored in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let flood_took = flood.elapsed();
    publisher.await.unwrap();
    let peak_flood = peak.load(Ordering::Relaxed);
    assert!(
        peak_flood < mark,
        "peak {} MiB over the mark of {} MiB",
        peak_flood / MIB,
        mark / MIB
    );

    let consumer_conn = p.amqp_connection().await;
    let cch = consumer_conn.create_channel().await.unwrap();
    cch.basic_qos(500, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = cch
        .basic_consume(
            "flood".into(),
            "drain".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut got = 0;
    let drain = Instant::now();
    while got < FLOOD {
        let d = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .expect("deliveries keep coming")
            .unwrap()
            .unwrap();
        d.ack(BasicAckOptions::default()).await.unwrap();
        got += 1;
    }
    let drained_in = drain.elapsed();
    // The memory the drain freed goes back to the system (the allocator
    // kept it before: 187 MiB after the drain against a peak of 149).
    let settle = Instant::now();
    let mut after = rss(pid);
    while after >= peak_flood && settle.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        after = rss(pid);
    }
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let alarms = p.logged("memory alarm raised").len();
    eprintln!(
        "memory flood: {FLOOD} x 64 KiB stored in {:.1} s; RSS before {} MiB, peak {} MiB \
         (mark {} MiB, alarms raised {alarms}), drained in {:.1} s, after drain {} MiB",
        flood_took.as_secs_f64(),
        before / MIB,
        peak_flood / MIB,
        mark / MIB,
        drained_in.as_secs_f64(),
        after / MIB
    );
    assert!(
        after < peak_flood,
        "{} MiB after the drain, {} MiB at the peak",
        after / MIB,
        peak_flood / MIB
    );
}
