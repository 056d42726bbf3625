//! The same scenarios from other stacks: paho-mqtt (Python), the mosquitto
//! command-line clients, and MQTT.js (Node) over TCP and over WebSocket.
//!
//! The Python and Node libraries come from the repository's
//! `tests/clients/install.sh` (run once here). `mosquitto_tools.sh` installs
//! the `mosquitto-clients` package itself when it is missing (root, apt).
//! The WebSocket test puts a minimal `/mqtt` endpoint (axum, subprotocol
//! `mqtt`) in front of `serve_stream`, as the HTTP door does in the gateway.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_js_over_websocket() {
    let s = Server::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/mqtt", listener.local_addr().unwrap());
    let engine = s.engine.clone();
    let shutdown = s.shutdown.clone();
    let app = axum::Router::new().route(
        "/mqtt",
        axum::routing::get(
            move |ws: axum::extract::ws::WebSocketUpgrade,
                  axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<
                std::net::SocketAddr,
            >| {
                let engine = engine.clone();
                let shutdown = shutdown.clone();
                async move {
                    ws.protocols(["mqtt"])
                        .on_upgrade(move |socket| websocket_bridge(socket, peer, engine, shutdown))
                }
            },
        ),
    );
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap();
    });
    let script = script("ws_mqtt.js");
    run("node", &[script.to_str().unwrap(), &url], &MQTT_JS).await;
    server.abort();
    s.stop().await;
}

/// WebSocket binary messages ↔ the byte stream `serve_stream` reads.
async fn websocket_bridge(
    socket: axum::extract::ws::WebSocket,
    peer: std::net::SocketAddr,
    engine: gw_core::Engine,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use axum::extract::ws::Message;
    use futures::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let config = std::sync::Arc::new(gw_mqtt::Config::default());
    let mqtt = tokio::spawn(gw_mqtt::serve_stream(
        theirs, peer, engine, config, shutdown,
    ));
    let (mut rd, mut wr) = tokio::io::split(ours);
    let (mut tx, mut rx) = socket.split();
    let inbound = async {
        while let Some(Ok(msg)) = rx.next().await {
            match msg {
                Message::Binary(b) if wr.write_all(&b).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = wr.shutdown().await;
    };
    let outbound = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx
                        .send(Message::Binary(buf[..n].to_vec().into()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        let _ = tx.close().await;
    };
    tokio::join!(inbound, outbound);
    let _ = mqtt.await;
}
