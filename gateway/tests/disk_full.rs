//! The real binary on a small tmpfs. A full disk: confirmed publishes go on
//! until the filesystem refuses them (nacked, never acked), writes resume
//! without a restart once space is freed, and after SIGKILL every acked
//! message is there and no nacked one is. The disk watermark: publishers get
//! `connection.blocked` before the disk is full and `connection.unblocked`
//! once space is back, and the publish held meanwhile is then confirmed.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::tmpfs::Tmpfs;
use common::{Process, runtime};
use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Event};

const QUEUE: &str = "full";
/// Each message's size: large enough to fill 64 MiB in a few thousand.
const PAYLOAD: usize = 16 << 10;
/// Space the full-disk test frees to let writes resume.
const BALLAST: usize = 16 << 20;
/// Longest wait for one confirm (a liveness bound, not a speed figure).
const CONFIRM_BOUND: Duration = Duration::from_secs(20);

async fn connect(gw: &Process) -> Connection {
    let uri = format!("amqp://guest:guest@{}/%2f", gw.amqp);
    Connection::connect(&uri, ConnectionProperties::default())
        .await
        .unwrap()
}

/// A channel with confirms on, the queue declared durable.
async fn confirming_channel(conn: &Connection) -> Channel {
    let ch = conn.create_channel().await.unwrap();
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(QUEUE.into(), durable, FieldTable::default())
        .await
        .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch
}

/// `id:` then pseudo-random filler up to [`PAYLOAD`] bytes (the store
/// compresses; a repeated byte would never fill the disk).
fn payload(id: &str) -> Vec<u8> {
    let mut body = format!("{id}:").into_bytes();
    let mut x: u64 = id.bytes().fold(0x9e37_79b9_7f4a_7c15, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    while body.len() < PAYLOAD {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        body.extend_from_slice(&x.to_le_bytes());
    }
    body.truncate(PAYLOAD);
    body
}

fn id_of(body: &[u8]) -> String {
    let end = body.iter().position(|&b| b == b':').unwrap();
    String::from_utf8_lossy(&body[..end]).into_owned()
}

/// What became of one confirmed publish.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Acked,
    /// `basic.nack`: the gateway says it did not store the message.
    Nacked,
    /// The channel or connection failed, or no answer within the bound:
    /// stored or not, nobody was told either way.
    Unknown,
}

async fn publish(ch: &Channel, id: &str) -> Outcome {
    let props = BasicProperties::default().with_delivery_mode(2);
    let attempt = async {
        let pending = ch
            .basic_publish(
                "".into(),
                QUEUE.into(),
                BasicPublishOptions::default(),
                &payload(id),
                props,
            )
            .await
            .ok()?;
        pending.await.ok()
    };
    match tokio::time::timeout(CONFIRM_BOUND, attempt).await {
        Ok(Some(c)) if c.is_ack() => Outcome::Acked,
        Ok(Some(c)) if c.is_nack() => Outcome::Nacked,
        _ => Outcome::Unknown,
    }
}

/// Every message in the queue, by id (consumed with auto-ack until the queue
/// has been quiet for 3 s).
async fn drain(gw: &Process) -> Vec<String> {
    let conn = connect(gw).await;
    let ch = confirming_channel(&conn).await;
    let mut consumer = ch
        .basic_consume(
            QUEUE.into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    while let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_secs(3), consumer.next()).await
    {
        got.push(id_of(&d.data));
    }
    got
}

#[derive(Default)]
struct Ledger {
    acked: HashSet<String>,
    nacked: HashSet<String>,
    unknown: HashSet<String>,
}

impl Ledger {
    fn record(&mut self, id: String, outcome: &Outcome) {
        match outcome {
            Outcome::Acked => self.acked.insert(id),
            Outcome::Nacked => self.nacked.insert(id),
            Outcome::Unknown => self.unknown.insert(id),
        };
    }
}

#[test]
fn a_full_disk_nacks_then_recovers_in_place_and_keeps_every_acked_message() {
    let Some(fs) = Tmpfs::mount(64, "disk full") else {
        return;
    };
    // Space the test gives back later, written before the gateway starts.
    let ballast = fs.ballast("ballast", BALLAST);
    let data = fs.path().join("data");
    let rt = runtime();
    let mut ledger = Ledger::default();
    let gw = Process::start_with(&data, &["--disk-free-min", "off"]);
    rt.block_on(async {
        let mut conn = connect(&gw).await;
        let mut ch = confirming_channel(&conn).await;
        // Fill: publish until the store refuses (a nack, or a failed channel).
        let mut refused = None;
        for n in 0..20_000 {
            let id = format!("f{n}");
            let outcome = publish(&ch, &id).await;
            ledger.record(id, &outcome);
            if outcome != Outcome::Acked {
                refused = Some(outcome);
                break;
            }
        }
        let refused = refused.expect("64 MiB never filled");
        eprintln!(
            "disk full: {} publishes acked, then {refused:?}; {} bytes free",
            ledger.acked.len(),
            fs.free_bytes()
        );
        assert!(
            ledger.acked.len() >= 100,
            "only {} acked before the disk filled",
            ledger.acked.len()
        );
        // A second publish while full is refused too, not acked.
        if ch.status().connected() {
            let outcome = publish(&ch, "still-full").await;
            assert_ne!(outcome, Outcome::Acked, "acked with a full disk");
            ledger.record("still-full".into(), &outcome);
        }

        // Free space; writes must resume on the same process.
        std::fs::remove_file(&ballast).unwrap();
        let freed = Instant::now();
        let mut k = 0;
        let recovered = loop {
            assert!(
                freed.elapsed() < Duration::from_secs(45),
                "no publish acked within 45 s of freeing {BALLAST} bytes"
            );
            if !conn.status().connected() {
                conn = connect(&gw).await;
            }
            if !ch.status().connected() {
                ch = confirming_channel(&conn).await;
            }
            let id = format!("r{k}");
            k += 1;
            let outcome = publish(&ch, &id).await;
            let acked = outcome == Outcome::Acked;
            ledger.record(id, &outcome);
            if acked {
                break freed.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        eprintln!(
            "disk full: first publish acked {recovered:?} after {} MiB were freed ({k} attempts); {} bytes free",
            BALLAST >> 20,
            fs.free_bytes()
        );
        // And it keeps taking them (a few: the store's own catching up,
        // flushing what it held while full, takes much of the space freed).
        for n in 0..5 {
            let id = format!("after{n}");
            let outcome = publish(&ch, &id).await;
            assert_eq!(outcome, Outcome::Acked, "{id} after recovery");
            ledger.record(id, &outcome);
        }
    });
    gw.kill9();

    let gw = Process::start_with(&data, &["--disk-free-min", "off"]);
    let got = rt.block_on(drain(&gw));
    drop(gw);
    let delivered: HashSet<String> = got.iter().cloned().collect();
    assert_eq!(delivered.len(), got.len(), "duplicates after restart");
    let lost: Vec<_> = ledger.acked.difference(&delivered).take(10).collect();
    assert!(lost.is_empty(), "acked but lost: {lost:?}");
    let nacked_back: Vec<_> = ledger.nacked.intersection(&delivered).collect();
    assert!(
        nacked_back.is_empty(),
        "nacked but delivered: {nacked_back:?}"
    );
    let phantoms: Vec<_> = delivered
        .iter()
        .filter(|id| !ledger.acked.contains(*id) && !ledger.unknown.contains(*id))
        .collect();
    assert!(phantoms.is_empty(), "never published: {phantoms:?}");
    eprintln!(
        "disk full: after SIGKILL {} delivered = {} acked + {} of {} unanswered; {} nacked, none delivered",
        delivered.len(),
        ledger.acked.len(),
        delivered.len() - ledger.acked.len(),
        ledger.unknown.len(),
        ledger.nacked.len()
    );
}

/// The next blocked/unblocked event (`true`: blocked).
async fn next_flow_event(events: &mut (impl futures::Stream<Item = Event> + Unpin)) -> bool {
    let wait = async {
        while let Some(e) = events.next().await {
            match e {
                Event::ConnectionBlocked(_) => return true,
                Event::ConnectionUnblocked => return false,
                _ => {}
            }
        }
        panic!("the connection's events ended");
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .expect("no connection.blocked/unblocked within 20 s")
}

/// The `gateway_alarm_active` line for the disk.
async fn disk_alarm_metric(gw: &Process) -> String {
    let response = reqwest::Client::new()
        .get(format!("http://{}/metrics", gw.http))
        .basic_auth("guest", Some("guest"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "/metrics");
    let text = response.text().await.unwrap();
    text.lines()
        .find(|l| l.starts_with("gateway_alarm_active") && l.contains("disk"))
        .map(str::to_owned)
        .expect("gateway_alarm_active{kind=\"disk\"} in /metrics")
}

#[test]
fn the_disk_watermark_blocks_publishers_before_the_disk_is_full() {
    let Some(fs) = Tmpfs::mount(64, "disk watermark") else {
        return;
    };
    let data = fs.path().join("data");
    let rt = runtime();
    // The mark is half the filesystem; 40 MiB of ballast takes free space
    // under it while leaving room, so the disk itself is never full.
    let gw = Process::start_with(&data, &["--disk-free-min", "32MiB"]);
    rt.block_on(async {
        let conn = connect(&gw).await;
        let mut events = Box::pin(conn.events_listener());
        let ch = confirming_channel(&conn).await;
        assert_eq!(publish(&ch, "before").await, Outcome::Acked);

        let ballast = fs.ballast("ballast", 40 << 20);
        let free = fs.free_bytes();
        assert!(free < 32 << 20 && free > 8 << 20, "{free} bytes free");
        // The alarm is raised (and shown) before anything is published.
        let raised = Instant::now();
        while !disk_alarm_metric(&gw).await.trim_end().ends_with(" 1") {
            assert!(raised.elapsed() < Duration::from_secs(20), "no disk alarm");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The AMQP door looks at the engine's pressure every 100 ms.
        tokio::time::sleep(Duration::from_millis(300)).await;
        // As RabbitMQ does, a connection is blocked (and told so) once it
        // publishes under the alarm: that publish is taken, the next ones
        // are held, not confirmed.
        let first = {
            let ch = ch.clone();
            tokio::spawn(async move { publish(&ch, "first").await })
        };
        assert!(next_flow_event(&mut events).await, "expected blocked");
        eprintln!("disk watermark: connection.blocked with {free} bytes free (mark 32 MiB)");
        let held = {
            let ch = ch.clone();
            tokio::spawn(async move { publish(&ch, "held").await })
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!held.is_finished(), "a publish was answered while blocked");

        std::fs::remove_file(&ballast).unwrap();
        let freed = Instant::now();
        assert!(!next_flow_event(&mut events).await, "expected unblocked");
        eprintln!(
            "disk watermark: connection.unblocked {:?} after the ballast was deleted",
            freed.elapsed()
        );
        assert_eq!(first.await.unwrap(), Outcome::Acked, "the first publish");
        assert_eq!(held.await.unwrap(), Outcome::Acked, "the held publish");
        assert_eq!(publish(&ch, "after").await, Outcome::Acked);
        let line = disk_alarm_metric(&gw).await;
        assert!(line.trim_end().ends_with(" 0"), "{line}");
    });
    let got = rt.block_on(drain(&gw));
    assert_eq!(got, ["before", "first", "held", "after"]);
    drop(gw);
}
