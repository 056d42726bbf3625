//! The gateway binary as a process: start-up errors, signals, logging.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn gateway() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gateway"));
    c.env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("GATEWAY_") {
            c.env_remove(k);
        }
    }
    c
}

/// Starts a gateway on free ports and waits for "engine open".
fn start(data: &std::path::Path) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut child = gateway()
        .args(["--data-dir", data.to_str().unwrap()])
        .args([
            "--amqp-listen",
            "127.0.0.1:0",
            "--mqtt-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    wait_for(&rx, "engine open");
    (child, rx)
}

fn wait_for(rx: &std::sync::mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if line.contains(needle) {
            return line;
        }
    }
    panic!("no log line containing {needle:?}");
}

fn run(args: &[&str]) -> (i32, String) {
    let out = gateway().args(args).output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn help_documents_every_option() {
    let (code, text) = run(&["--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--config",
        "--data-dir",
        "--amqp-listen",
        "--mqtt-listen",
        "--http-listen",
        "--log-format",
        "--sync",
        "--shutdown-grace",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
    }
}

#[test]
fn bad_configuration_is_one_clear_line_and_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    std::fs::write(&file, "[storage]\nsynk = \"always\"\n").unwrap();
    let (code, text) = run(&["--config", file.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(text.contains("synk") && text.lines().count() == 1, "{text}");

    let (code, text) = run(&["--amqp-listen", "nowhere:99999"]);
    assert_ne!(code, 0);
    assert!(
        text.contains("amqp listen address") && text.lines().count() == 1,
        "{text}"
    );

    let (code, text) = run(&["--sync", "sometimes"]);
    assert_ne!(code, 0);
    assert!(text.contains("sync policy"), "{text}");

    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, b"").unwrap();
    let data = not_a_dir.join("data");
    let (code, text) = run(&[
        "--data-dir",
        data.to_str().unwrap(),
        "--amqp-listen",
        "off",
        "--mqtt-listen",
        "off",
        "--http-listen",
        "off",
    ]);
    assert_ne!(code, 0);
    assert!(
        text.contains("data directory") && text.contains("not usable"),
        "{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
}

#[test]
fn a_second_gateway_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, _logs) = start(dir.path());
    let (code, text) = run(&[
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--amqp-listen",
        "off",
        "--mqtt-listen",
        "off",
        "--http-listen",
        "off",
    ]);
    assert_ne!(code, 0);
    assert!(text.contains("locked by another running gateway"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    first.kill().unwrap();
    let _ = first.wait();
}

#[cfg(unix)]
#[test]
fn sigterm_stops_gracefully_with_exit_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, logs) = start(dir.path());
    let started = Instant::now();
    // SIGTERM through the kill command (std has no signal API).
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for(&logs, "store flushed and closed");
    let code = child.wait().unwrap();
    assert!(code.success(), "exit status {code:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The data directory is usable again at once.
    let (mut again, _logs) = start(dir.path());
    again.kill().unwrap();
    let _ = again.wait();
}

#[test]
fn every_door_logs_its_address_and_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, logs) = start(dir.path());
    for door in ["amqp", "mqtt", "http"] {
        let line = wait_for(&logs, &format!("{door} listening on "));
        let addr = line
            .split(&format!("{door} listening on "))
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        let addr: std::net::SocketAddr = addr
            .trim_end_matches(|c: char| !c.is_ascii_digit())
            .parse()
            .unwrap();
        assert_ne!(addr.port(), 0);
        std::net::TcpStream::connect(addr).unwrap();
    }
    child.kill().unwrap();
    let _ = child.wait();
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = gateway()
        .args([
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--log-format",
            "json",
        ])
        .args([
            "--amqp-listen",
            "127.0.0.1:0",
            "--mqtt-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let first = lines.next().unwrap().unwrap();
    child.kill().unwrap();
    let _ = child.wait();
    assert!(first.starts_with('{') && first.ends_with('}'), "{first}");
    assert!(first.contains("\"level\""), "{first}");
}
