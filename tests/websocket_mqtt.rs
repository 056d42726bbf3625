//! MQTT over WebSocket through the whole gateway: MQTT.js (the `mqtt` npm
//! package, installed by `tests/clients/install.sh`) runs the MQTT door's
//! scenarios against `ws://{http door}/mqtt`, while a Rust MQTT client on the
//! TCP door shows both transports reach one engine.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::PublishProperties;

use common::Suite;

/// NODE_PATH from install.sh.
fn node_path() -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("bash")
        .arg(root.join("tests/clients/install.sh"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "install.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("NODE_PATH="))
        .unwrap_or_else(|| panic!("no NODE_PATH in {text}"))
        .to_owned()
}

/// Runs node with `args`; returns stdout after asserting success.
async fn node(args: &[&str]) -> String {
    let node_path = tokio::task::spawn_blocking(node_path).await.unwrap();
    let child = tokio::process::Command::new("node")
        .args(args)
        .env("NODE_PATH", node_path)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), child)
        .await
        .expect("node finished in time")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "node {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_js_scenarios_over_websocket() {
    let suite = Suite::start().await;
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("protocols/mqtt/tests/clients/ws_mqtt.js");
    let url = format!("ws://{}/mqtt", suite.http);
    let stdout = node(&[script.to_str().unwrap(), &url]).await;
    for scenario in [
        "pubsub-311",
        "pubsub-5",
        "retained-311",
        "retained-5",
        "will-311",
        "will-5",
        "user-properties-5",
        "persistent-session-5",
    ] {
        assert!(
            stdout.lines().any(|l| l == format!("ok {scenario}")),
            "no 'ok {scenario}' in:\n{stdout}"
        );
    }
    suite.stop().await;
}

/// A WebSocket publisher (MQTT.js) reaches a subscriber on the TCP door.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_and_tcp_clients_share_the_engine() {
    let suite = Suite::start().await;
    let mut sub = suite.mqtt5("tcp-sub").await;
    sub.subscribe("ws/+/hello", QoS::AtLeastOnce).await;
    let url = format!("ws://{}/mqtt", suite.http);
    let publish = r#"
        const mqtt = require('mqtt');
        const c = mqtt.connect(process.argv[1], { username: 'guest', password: 'guest',
            protocolVersion: 5, reconnectPeriod: 0 });
        c.on('error', (e) => { console.error(e); process.exit(1); });
        c.on('connect', () => c.publish('ws/js/hello', 'from the browser side',
            { qos: 1, properties: { userProperties: { via: 'websocket' } } },
            (err) => { if (err) { console.error(err); process.exit(1); } c.end(); }));
    "#;
    node(&["-e", publish, &url]).await;
    let p = sub.next_publish().await;
    assert_eq!(p.topic.as_ref(), b"ws/js/hello");
    assert_eq!(p.payload.as_ref(), b"from the browser side");
    let props = p.properties.unwrap_or_else(PublishProperties::default);
    assert!(
        props
            .user_properties
            .contains(&("via".to_owned(), "websocket".to_owned())),
        "{props:?}"
    );
    sub.disconnect().await;
    suite.stop().await;
}
