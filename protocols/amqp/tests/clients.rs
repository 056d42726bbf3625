//! The same scenarios with pika (Python) and amqplib (Node): the scripts in
//! `tests/clients/` run against the door and must print "all ok".
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use common::Gateway;

/// Installs the client libraries once (the script is idempotent and locked)
/// and returns its `PYTHONPATH=` / `NODE_PATH=` lines as pairs.
fn client_env() -> &'static Vec<(String, String)> {
    static ENV: OnceLock<Vec<(String, String)>> = OnceLock::new();
    ENV.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let out = Command::new("bash")
            .arg(root.join("tests/clients/install.sh"))
            .output()
            .expect("run tests/clients/install.sh");
        assert!(
            out.status.success(),
            "install.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    })
}

async fn run_script(program: &str, script: &str) {
    let gw = Gateway::start().await;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(script);
    let port = gw.addr.port().to_string();
    let env = client_env().clone();
    let program = program.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(program)
            .arg(path)
            .arg(port)
            .envs(env)
            .output()
            .expect("start the client script")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("all ok"),
        "{script} failed ({:?})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    for scenario in [
        "hello_world",
        "work_queues",
        "publish_subscribe",
        "routing_and_topics",
        "rpc",
        "publisher_confirms",
        "extras",
        "errors",
        "rabbitmq_compat",
    ] {
        assert!(
            stdout.contains(&format!("ok {scenario}")),
            "{scenario} did not run: {stdout}"
        );
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pika_scenarios() {
    run_script("python3", "pika_scenarios.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqplib_scenarios() {
    run_script("node", "amqplib_scenarios.js").await;
}
