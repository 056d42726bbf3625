//! The same scenarios from other stacks: paho-mqtt (Python), the mosquitto
//! command-line clients, and MQTT.js (Node) over TCP. MQTT.js over WebSocket
//! runs against the whole gateway (its HTTP door serves `/mqtt`), in the
//! repository's `tests/websocket_mqtt.rs`.
//!
//! The Python and Node libraries come from the repository's
//! `tests/clients/install.sh` (run once here). `mosquitto_tools.sh` installs
//! the `mosquitto-clients` package itself when it is missing (root, apt).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use common::Server;

/// (PYTHONPATH, NODE_PATH) from install.sh.
fn client_paths() -> &'static (String, String) {
    static PATHS: OnceLock<(String, String)> = OnceLock::new();
    PATHS.get_or_init(|| {
        let script = repo().join("tests/clients/install.sh");
        let out = std::process::Command::new("bash")
            .arg(&script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "install.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap_or_else(|| panic!("no {k} in {text}"))
                .to_owned()
        };
        (get("PYTHONPATH="), get("NODE_PATH="))
    })
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(name)
}

/// Runs a client program; asserts it succeeded and printed every `expected` line.
async fn run(program: &str, args: &[&str], expected: &[&str]) {
    let (py, node) = client_paths();
    let child = tokio::process::Command::new(program)
        .args(args)
        .env("PYTHONPATH", py)
        .env("NODE_PATH", node)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), child)
        .await
        .expect("client finished in time")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{stdout}\n{stderr}"
    );
    for line in expected {
        assert!(
            stdout.lines().any(|l| l == format!("ok {line}")),
            "no 'ok {line}' in:\n{stdout}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_python() {
    let s = Server::start().await;
    let port = s.port().to_string();
    let script = script("paho_scenarios.py");
    run(
        "python3",
        &[script.to_str().unwrap(), &port],
        &[
            "pubsub-qos-311",
            "pubsub-qos-5",
            "wildcards-retained-311",
            "wildcards-retained-5",
            "persistent-session-311",
            "persistent-session-5",
            "will-on-sigkill-311",
            "will-on-sigkill-5",
            "properties-5",
            "subscription-options-5",
            "shared-5",
            "topic-alias-5",
            "tag-filters-5",
        ],
    )
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_command_line_clients() {
    let s = Server::start().await;
    let port = s.port().to_string();
    let script = script("mosquitto_tools.sh");
    run(
        "bash",
        &[script.to_str().unwrap(), &port],
        &[
            "pubsub-311",
            "retained-311",
            "session-311",
            "will-311",
            "pubsub-5",
            "retained-5",
            "session-5",
            "will-5",
            "user-properties-5",
        ],
    )
    .await;
    s.stop().await;
}

const MQTT_JS: [&str; 8] = [
    "pubsub-311",
    "pubsub-5",
    "retained-311",
    "retained-5",
    "will-311",
    "will-5",
    "user-properties-5",
    "persistent-session-5",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_js_over_tcp() {
    let s = Server::start().await;
    let url = format!("mqtt://127.0.0.1:{}", s.port());
    let script = script("ws_mqtt.js");
    run("node", &[script.to_str().unwrap(), &url], &MQTT_JS).await;
    s.stop().await;
}
