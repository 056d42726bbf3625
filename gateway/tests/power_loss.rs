//! Power cuts under confirmed publish streams, through each door, with the
//! data directory on crashfs: every message the gateway confirmed (AMQP
//! publisher confirm, MQTT PUBACK, HTTP 200) is there after the reboot, on a
//! fresh data directory (a cut in the first seconds of the first start) and
//! on an existing one, whether directory operations are durable at once
//! (lenient) or only once their directory is fsynced (strict). A control with
//! `--sync never` must lose confirmed messages, so these tests can fail.
//!
//! `cargo test -p gateway --test power_loss -- --ignored --nocapture` runs the
//! longer campaign (10 rounds a door and mode) and prints its figures.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::power::Rig;
use common::{Process, post_as_guest, runtime};
use crashfs::{Dropped, Mode};
use futures::StreamExt;
use lapin::BasicProperties;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use rumqttc::Outgoing;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{ConnectProperties, Packet};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// Confirms to wait for before the cut (or `CUT_AFTER`, whichever is first).
const CUT_AT_CONFIRMS: usize = 1_000;
const CUT_AFTER: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, Debug)]
enum Door {
    Amqp,
    Mqtt,
    Http,
}

/// One power cut's outcome.
#[derive(Debug)]
struct Round {
    fresh: bool,
    confirmed: usize,
    lost: Vec<u64>,
    dropped: Dropped,
}

/// Publishers running against a gateway.
struct Stream {
    confirmed: Arc<Mutex<HashSet<u64>>>,
    tasks: Vec<JoinHandle<()>>,
}

/// `rounds` power cuts in a row over one data directory (the first on a
/// fresh one), each under a stream of publishes through `door`.
fn campaign(door: Door, mode: Mode, sync: &str, rounds: u64) -> Option<Vec<Round>> {
    let mut rig = Rig::new(mode)?;
    let rt = runtime();
    let mut gw = rig.start(sync);
    let mut out = Vec::new();
    for round in 0..rounds {
        rt.block_on(prepare(door, &gw));
        let stream = rt.block_on(stream(door, &gw, round * 100_000_000, 0));
        let start = Instant::now();
        while stream.confirmed.lock().unwrap().len() < CUT_AT_CONFIRMS
            && start.elapsed() < CUT_AFTER
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let dropped = rig.power_cut(gw);
        rt.block_on(async {
            for t in stream.tasks {
                let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
            }
        });
        let confirmed = stream.confirmed.lock().unwrap().clone();
        gw = rig.start(sync);
        let got = rt.block_on(drain(door, &gw));
        let mut lost: Vec<u64> = confirmed.difference(&got).copied().collect();
        lost.sort_unstable();
        let r = Round {
            fresh: round == 0,
            confirmed: confirmed.len(),
            lost,
            dropped,
        };
        eprintln!(
            "{door:?} {mode:?} --sync {sync} round {round} ({}): {} confirmed, {} lost; the cut dropped {} unsynced bytes in {} files and {} directory operations",
            if r.fresh { "fresh" } else { "existing" },
            r.confirmed,
            r.lost.len(),
            r.dropped.bytes,
            r.dropped.files,
            r.dropped.entries
        );
        out.push(r);
    }
    rig.finish(gw);
    Some(out)
}

fn assert_nothing_lost(door: Door) {
    for mode in [Mode::Strict, Mode::Lenient] {
        let Some(rounds) = campaign(door, mode, "always", 2) else {
            return;
        };
        for r in rounds {
            assert!(r.confirmed >= 50, "{door:?} {mode:?}: few confirms: {r:?}");
            assert!(
                r.lost.is_empty(),
                "{door:?} {mode:?} ({} data dir): {} of {} confirmed lost, e.g. {:?}",
                if r.fresh { "fresh" } else { "existing" },
                r.lost.len(),
                r.confirmed,
                &r.lost[..r.lost.len().min(10)]
            );
        }
    }
}

#[test]
fn amqp_confirmed_publishes_survive_power_cuts() {
    assert_nothing_lost(Door::Amqp);
}

#[test]
fn mqtt_pubacked_publishes_survive_power_cuts() {
    assert_nothing_lost(Door::Mqtt);
}

#[test]
fn http_sends_answered_200_survive_power_cuts() {
    assert_nothing_lost(Door::Http);
}

#[test]
fn without_fsync_a_power_cut_loses_confirmed_publishes() {
    let Some(rounds) = campaign(Door::Amqp, Mode::Lenient, "never", 1) else {
        return;
    };
    let r = &rounds[0];
    assert!(
        !r.lost.is_empty(),
        "--sync never confirms before any fsync: a power cut must lose some ({r:?})"
    );
}

#[test]
#[ignore = "a campaign of 10 rounds a door and mode (minutes); prints its figures"]
fn power_cut_campaign() {
    let mut table = Vec::new();
    for door in [Door::Amqp, Door::Mqtt, Door::Http] {
        for mode in [Mode::Strict, Mode::Lenient] {
            let Some(rounds) = campaign(door, mode, "always", 10) else {
                return;
            };
            table.push((door, mode, rounds));
        }
    }
    eprintln!("door  mode     data dir  rounds  confirmed  lost");
    for (door, mode, rounds) in &table {
        for fresh in [true, false] {
            let rs: Vec<_> = rounds.iter().filter(|r| r.fresh == fresh).collect();
            eprintln!(
                "{:<5} {:<8} {:<9} {:>6} {:>10} {:>5}",
                format!("{door:?}"),
                format!("{mode:?}"),
                if fresh { "fresh" } else { "existing" },
                rs.len(),
                rs.iter().map(|r| r.confirmed).sum::<usize>(),
                rs.iter().map(|r| r.lost.len()).sum::<usize>()
            );
        }
    }
    for (door, mode, rounds) in table {
        for r in rounds {
            assert!(r.lost.is_empty(), "{door:?} {mode:?}: {r:?}");
        }
    }
}

/// fjall writes a blob file at each flush of a key-value-separated keyspace
/// and never fsyncs the `blobs` folder; once the version that refers to the
/// file is written, recovery fails if the file's entry is gone. The store
/// is made in lenient mode (its folders durable), the cut comes in strict mode
/// right after the first flush's version is written. The bodies do not
/// compress, so the flush writes a whole memtable (16 MiB) and takes longer
/// than the store's watcher needs to sync the folder; a flush faster than
/// its poll would leave the window open (see `core/src/store/dir_sync.rs`).
#[test]
fn a_power_cut_right_after_a_blob_flush_leaves_an_openable_store() {
    let Some(mut rig) = Rig::new(Mode::Lenient) else {
        return;
    };
    let rt = runtime();
    let gw = rig.start("always");
    rt.block_on(prepare(Door::Amqp, &gw));
    assert!(gw.terminate().success());
    rig.remount(Mode::Strict);
    let gw = rig.start("always");
    let stream = rt.block_on(stream(Door::Amqp, &gw, 0, 4_000));
    let started = Instant::now();
    let mut first_blob = None;
    let flushed = loop {
        let (blob, versioned) = blob_flush_state(&rig.backing_data_dir());
        if blob && first_blob.is_none() {
            first_blob = Some(Instant::now());
        }
        if versioned {
            break true;
        }
        if started.elapsed() > Duration::from_secs(90) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    assert!(flushed, "no blob flush within 90 s");
    let flush_ms = first_blob.map_or(0, |t| t.elapsed().as_millis());
    let dropped = rig.power_cut(gw);
    rt.block_on(async {
        for t in stream.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    });
    let confirmed = stream.confirmed.lock().unwrap().clone();
    let gw = rig.start("always");
    let got = rt.block_on(drain(Door::Amqp, &gw));
    let lost = confirmed.difference(&got).count();
    eprintln!(
        "blob flush: cut {flush_ms} ms after the blob file appeared, once its version was written; {} confirmed, {lost} lost; the cut undid {} directory operations",
        confirmed.len(),
        dropped.entries
    );
    assert_eq!(lost, 0, "of {} confirmed", confirmed.len());
    rig.finish(gw);
}

/// (a blob file exists, a blob file is referred to by a version written after it).
fn blob_flush_state(data: &std::path::Path) -> (bool, bool) {
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let (mut any, mut versioned) = (false, false);
    for ks in std::fs::read_dir(data.join("keyspaces"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let current = modified(&ks.path().join("current"));
        for blob in std::fs::read_dir(ks.path().join("blobs"))
            .into_iter()
            .flatten()
            .flatten()
        {
            any = true;
            versioned |= current.is_some() && modified(&blob.path()) <= current;
        }
    }
    (any, versioned)
}

// ---- each door's setup, publishers and drain ----

const QUEUE: &str = "power";

async fn prepare(door: Door, gw: &Process) {
    match door {
        Door::Amqp => {
            let conn = gw.amqp_connection().await;
            let ch = conn.create_channel().await.unwrap();
            ch.queue_declare(QUEUE.into(), durable(), FieldTable::default())
                .await
                .unwrap();
            conn.close(200, "".into()).await.unwrap();
        }
        Door::Mqtt => {
            // The persistent session that collects the stream.
            let (sub, mut sub_loop) = AsyncClient::new(mqtt_options("sub", gw), 100);
            sub.subscribe("power/#", QoS::AtLeastOnce).await.unwrap();
            loop {
                if let Event::Incoming(Packet::SubAck(_)) = sub_loop.poll().await.unwrap() {
                    break;
                }
            }
            sub.disconnect().await.unwrap();
            while sub_loop.poll().await.is_ok() {}
        }
        Door::Http => {
            let base = gw.dms_base();
            let r = post_as_guest(format!("{base}/queues"), json!({"name": QUEUE}))
                .await
                .unwrap();
            assert!(r.status().is_success() || r.status() == 400, "{r:?}"); // 400: exists (DMS)
            let r = post_as_guest(
                format!("{base}/queues/{QUEUE}/groups"),
                json!({"groups": [{"name": "g"}]}),
            )
            .await
            .unwrap();
            assert!(r.status().is_success() || r.status() == 400, "{r:?}"); // 400: exists (DMS)
        }
    }
}

/// An AMQP body: the id, then bytes that do not compress up to `len`.
fn body(id: u64, len: usize) -> Vec<u8> {
    let mut out = format!("{id:>20}").into_bytes();
    let mut x = id.wrapping_mul(6364136223846793005) | 1;
    while out.len() < len {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        out.push(b'a' + (x >> 59) as u8);
    }
    out
}

fn id_of(body: &[u8]) -> u64 {
    String::from_utf8_lossy(&body[..20.min(body.len())])
        .trim()
        .parse()
        .unwrap()
}

/// Publishers through `door`; AMQP bodies are `body_bytes` long (at least the id).
async fn stream(door: Door, gw: &Process, base: u64, body_bytes: usize) -> Stream {
    let confirmed = Arc::new(Mutex::new(HashSet::new()));
    let mut tasks = Vec::new();
    match door {
        Door::Amqp => {
            let conn = Arc::new(gw.amqp_connection().await);
            for p in 0..4u64 {
                let ch = conn.create_channel().await.unwrap();
                ch.confirm_select(ConfirmSelectOptions::default())
                    .await
                    .unwrap();
                let (confirmed, conn) = (Arc::clone(&confirmed), Arc::clone(&conn));
                tasks.push(tokio::spawn(async move {
                    let _conn = conn;
                    let props = BasicProperties::default().with_delivery_mode(2);
                    for i in 0.. {
                        let id = base + p * 1_000_000 + i;
                        let Ok(pending) = ch
                            .basic_publish(
                                "".into(),
                                QUEUE.into(),
                                BasicPublishOptions::default(),
                                &body(id, body_bytes),
                                props.clone(),
                            )
                            .await
                        else {
                            return;
                        };
                        match pending.await {
                            Ok(c) if c.is_ack() => {
                                confirmed.lock().unwrap().insert(id);
                            }
                            _ => return,
                        }
                    }
                }));
            }
        }
        Door::Mqtt => {
            let (publisher, mut pub_loop) =
                AsyncClient::new(mqtt_options(&format!("pub-{base}"), gw), 1000);
            tasks.push(tokio::spawn(async move {
                for i in 0..1_000_000u64 {
                    let id = (base + i).to_string();
                    if publisher
                        .publish("power/data", QoS::AtLeastOnce, false, id)
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }));
            let confirmed = Arc::clone(&confirmed);
            tasks.push(tokio::spawn(async move {
                // Publishes go out in order; PUBACKs name their packet ids.
                let mut next = base;
                let mut in_flight = std::collections::HashMap::new();
                loop {
                    match pub_loop.poll().await {
                        Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                            in_flight.insert(pkid, next);
                            next += 1;
                        }
                        Ok(Event::Incoming(Packet::PubAck(ack))) => {
                            if let Some(i) = in_flight.remove(&ack.pkid) {
                                confirmed.lock().unwrap().insert(i);
                            }
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
            }));
        }
        Door::Http => {
            let url = format!("{}/queues/{QUEUE}/messages", gw.dms_base());
            for p in 0..4u64 {
                let (confirmed, url) = (Arc::clone(&confirmed), url.clone());
                tasks.push(tokio::spawn(async move {
                    for batch in 0.. {
                        let ids: Vec<u64> = (0..10)
                            .map(|i| base + p * 1_000_000 + batch * 10 + i)
                            .collect();
                        let msgs: Vec<Value> =
                            ids.iter().map(|i| json!({"body": i.to_string()})).collect();
                        match post_as_guest(url.clone(), json!({"messages": msgs})).await {
                            Some(r) if r.status() == 200 => confirmed.lock().unwrap().extend(ids),
                            _ => return,
                        }
                    }
                }));
            }
        }
    }
    Stream { confirmed, tasks }
}

/// Every message the restarted gateway delivers, until it has no more.
async fn drain(door: Door, gw: &Process) -> HashSet<u64> {
    let mut got = HashSet::new();
    match door {
        Door::Amqp => {
            let conn = gw.amqp_connection().await;
            let ch = conn.create_channel().await.unwrap();
            let no_ack = BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            };
            // A queue that did not survive holds nothing.
            let Ok(mut c) = ch
                .basic_consume(QUEUE.into(), "".into(), no_ack, FieldTable::default())
                .await
            else {
                return got;
            };
            while let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_secs(2), c.next()).await
            {
                got.insert(id_of(&d.data));
            }
            conn.close(200, "".into()).await.unwrap();
        }
        Door::Mqtt => {
            let (sub, mut sub_loop) = AsyncClient::new(mqtt_options("sub", gw), 100);
            while let Ok(event) =
                tokio::time::timeout(Duration::from_secs(3), sub_loop.poll()).await
            {
                if let Event::Incoming(Packet::Publish(p)) = event.unwrap() {
                    got.insert(String::from_utf8_lossy(&p.payload).parse().unwrap());
                }
            }
            let _ = sub.disconnect().await;
        }
        Door::Http => {
            let base = gw.dms_base();
            loop {
                let r = reqwest::Client::new()
                    .get(format!(
                        "{base}/queues/{QUEUE}/groups/g/messages?max_msgs=10&time_wait=1"
                    ))
                    .basic_auth("guest", Some("guest"))
                    .send()
                    .await
                    .unwrap();
                if r.status() == 404 {
                    break; // the queue or its group did not survive
                }
                let items: Vec<Value> = r.json().await.unwrap();
                if items.is_empty() {
                    break;
                }
                let mut acks = Vec::new();
                for it in &items {
                    let body = it["message"]["body"].as_str().unwrap();
                    got.insert(body.parse().unwrap());
                    acks.push(json!({"handler": it["handler"], "status": "success"}));
                }
                let r = post_as_guest(
                    format!("{base}/queues/{QUEUE}/groups/g/ack"),
                    json!({"message": acks}),
                )
                .await
                .unwrap();
                assert!(r.status().is_success());
            }
        }
    }
    got
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

fn mqtt_options(id: &str, gw: &Process) -> MqttOptions {
    let mut o = MqttOptions::new(id, gw.mqtt.ip().to_string(), gw.mqtt.port());
    o.set_clean_start(false);
    let mut props = ConnectProperties::new();
    props.session_expiry_interval = Some(3600);
    o.set_connect_properties(props);
    o.set_keep_alive(Duration::from_secs(5));
    o
}
