//! Encryption at rest through the binary (issue 12): a unique marker
//! published through each door (AMQP, MQTT retained and queued, the DMS
//! API) is nowhere in the data directory's files once the gateway has
//! stopped with `--encryption-key-file`, and it is there without one (so the
//! test can fail). The directory then opens only with its key, and what was
//! stored reads back.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Process, gateway, runtime};
use lapin::BasicProperties;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::json;

/// Publishes `marker` through every door; returns after each was confirmed.
async fn publish_everywhere(gw: &Process, marker: &str) {
    let conn = gw.amqp_connection().await;
    let ch = conn.create_channel().await.unwrap();
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare("sealed".into(), durable, FieldTable::default())
        .await
        .unwrap();
    ch.queue_bind(
        "sealed".into(),
        "amq.topic".into(),
        "enc.#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirm = ch
        .basic_publish(
            "".into(),
            "sealed".into(),
            BasicPublishOptions::default(),
            format!("amqp {marker}").as_bytes(),
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack());

    // MQTT: a retained message and one routed into the durable queue.
    let mut o = MqttOptions::new("enc-pub", gw.mqtt.ip().to_string(), gw.mqtt.port());
    o.set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = AsyncClient::new(o, 10);
    client
        .publish(
            "enc/retained",
            QoS::AtLeastOnce,
            true,
            format!("mqtt-retained {marker}"),
        )
        .await
        .unwrap();
    client
        .publish(
            "enc/queued",
            QoS::AtLeastOnce,
            false,
            format!("mqtt {marker}"),
        )
        .await
        .unwrap();
    let mut acks = 0;
    while acks < 2 {
        if let Event::Incoming(Packet::PubAck(_)) = events.poll().await.unwrap() {
            acks += 1;
        }
    }
    client.disconnect().await.unwrap();

    // DMS: a queue and a message.
    let http = reqwest::Client::new();
    let base = gw.dms_base();
    let r = http
        .post(format!("{base}/queues"))
        .basic_auth("guest", Some("guest"))
        .json(&json!({"name": "dms-sealed"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let r = http
        .post(format!("{base}/queues/dms-sealed/groups"))
        .basic_auth("guest", Some("guest"))
        .json(&json!({"groups": [{"name": "g"}]}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let r = http
        .post(format!("{base}/queues/dms-sealed/messages"))
        .basic_auth("guest", Some("guest"))
        .json(
            &json!({"messages": [{"body": format!("dms {marker}"), "attributes": {"k": marker}}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Files of `dir` (recursively) holding `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .unwrap_or_default()
                .windows(needle.len())
                .any(|w| w == needle)
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

/// Runs the binary to completion and returns (success, stderr).
fn run_to_exit(args: &[&str]) -> (bool, String) {
    let out = gateway().args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_door_s_messages_are_unreadable_on_disk_and_the_dir_opens_only_with_its_key() {
    let rt = runtime();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("store.key");
    let out = gateway()
        .args(["keygen", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(printed.starts_with("wrote encryption key "), "{printed}");
    let (ok, err) = run_to_exit(&["keygen", key.to_str().unwrap()]);
    assert!(
        !ok && err.contains("exists"),
        "keygen never replaces a key: {err}"
    );

    let marker = format!("enc-marker-{:x}", rand_suffix());
    // Without a key the marker is on disk: the search below can fail.
    let clear = tempfile::tempdir().unwrap();
    let gw = Process::start(clear.path());
    rt.block_on(publish_everywhere(&gw, &marker));
    assert!(gw.terminate().success());
    assert!(!files_holding(clear.path(), marker.as_bytes()).is_empty());

    let data = tempfile::tempdir().unwrap();
    let key_flag = ["--encryption-key-file", key.to_str().unwrap()];
    let gw = Process::start_with(data.path(), &key_flag);
    rt.block_on(publish_everywhere(&gw, &marker));
    assert!(gw.terminate().success());
    assert_eq!(
        files_holding(data.path(), marker.as_bytes()),
        Vec::<String>::new()
    );

    // No key, or another key: start-up stops with a line saying why.
    let dir = data.path().to_str().unwrap();
    let (ok, err) = run_to_exit(&[
        "--data-dir",
        dir,
        "--amqp-listen",
        "127.0.0.1:0",
        "--mqtt-listen",
        "off",
        "--http-listen",
        "off",
    ]);
    assert!(!ok && err.contains("is encrypted"), "{err}");
    let other = keys.path().join("other.key");
    assert!(
        gateway()
            .args(["keygen", other.to_str().unwrap()])
            .status()
            .unwrap()
            .success()
    );
    let (ok, err) = run_to_exit(&[
        "--data-dir",
        dir,
        "--encryption-key-file",
        other.to_str().unwrap(),
        "--amqp-listen",
        "127.0.0.1:0",
        "--mqtt-listen",
        "off",
        "--http-listen",
        "off",
    ]);
    assert!(!ok && err.contains("encrypted with key"), "{err}");
    // A clear directory with data is not turned half-encrypted.
    let (ok, err) = run_to_exit(&[
        "--data-dir",
        clear.path().to_str().unwrap(),
        "--encryption-key-file",
        key.to_str().unwrap(),
        "--amqp-listen",
        "127.0.0.1:0",
        "--mqtt-listen",
        "off",
        "--http-listen",
        "off",
    ]);
    assert!(!ok && err.contains("created without encryption"), "{err}");
    // A malformed key file is named.
    let bad = keys.path().join("bad.key");
    std::fs::write(&bad, "not a key").unwrap();
    let (ok, err) = run_to_exit(&[
        "--data-dir",
        dir,
        "--encryption-key-file",
        bad.to_str().unwrap(),
    ]);
    assert!(
        !ok && err.contains("bad.key") && err.contains("64 hex digits"),
        "{err}"
    );

    // With its key everything reads back.
    let gw = Process::start_with(data.path(), &key_flag);
    rt.block_on(async {
        let conn = gw.amqp_connection().await;
        let ch = conn.create_channel().await.unwrap();
        let mut bodies = Vec::new();
        while let Some(m) = ch
            .basic_get("sealed".into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            bodies.push(String::from_utf8_lossy(&m.delivery.data).into_owned());
        }
        bodies.sort();
        // Both MQTT publishes match the binding `enc.#`.
        assert_eq!(
            bodies,
            [
                format!("amqp {marker}"),
                format!("mqtt {marker}"),
                format!("mqtt-retained {marker}")
            ]
        );

        let mut o = MqttOptions::new("enc-sub", gw.mqtt.ip().to_string(), gw.mqtt.port());
        o.set_keep_alive(Duration::from_secs(5));
        let (client, mut events) = AsyncClient::new(o, 10);
        client
            .subscribe("enc/retained", QoS::AtLeastOnce)
            .await
            .unwrap();
        let retained = loop {
            if let Event::Incoming(Packet::Publish(p)) = events.poll().await.unwrap() {
                break String::from_utf8_lossy(&p.payload).into_owned();
            }
        };
        assert_eq!(retained, format!("mqtt-retained {marker}"));

        let r = reqwest::Client::new()
            .get(format!(
                "{}/queues/dms-sealed/groups/g/messages?max_msgs=10&time_wait=1",
                gw.dms_base()
            ))
            .basic_auth("guest", Some("guest"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        assert!(text.contains(&format!("dms {marker}")), "{text}");
    });
    assert!(gw.terminate().success());
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        ^ u64::from(std::process::id())
}
