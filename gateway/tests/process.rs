//! The gateway binary as a process: start-up errors, signals, logging.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Process, gateway, wait_for};

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
        "--amqps-listen",
        "--mqtts-listen",
        "--https-listen",
        "--tls-cert",
        "--tls-key",
        "--tls-client-ca",
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
fn an_unusable_tls_file_stops_start_up_with_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("server.key");
    std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nbroken\n").unwrap();
    let missing = dir.path().join("no-such-cert.pem");
    let (code, text) = run(&[
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
        "--tls-cert",
        missing.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--amqp-listen",
        "127.0.0.1:0",
        "--mqtt-listen",
        "off",
        "--http-listen",
        "off",
        "--amqps-listen",
        "127.0.0.1:0",
        "--mqtts-listen",
        "off",
        "--https-listen",
        "off",
    ]);
    assert_ne!(code, 0);
    let named: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(missing.to_str().unwrap()))
        .collect();
    assert_eq!(named.len(), 1, "{text}");
    assert!(named[0].contains("cannot read"), "{text}");
    assert!(!text.contains("listening on"), "{text}");
    // Asking for a TLS listener without a certificate is a configuration error.
    let (code, text) = run(&["--mqtts-listen", "127.0.0.1:0"]);
    assert_ne!(code, 0);
    assert!(
        text.contains("mqtts listen address") && text.lines().count() == 1,
        "{text}"
    );
}

#[test]
fn a_second_gateway_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = Process::start(dir.path());
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
    first.kill9();
}

#[cfg(unix)]
#[test]
fn sigterm_stops_gracefully_with_exit_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = Process::start(dir.path());
    let started = Instant::now();
    // SIGTERM through the kill command (std has no signal API).
    let status = Command::new("kill")
        .args(["-TERM", &gw.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for(&gw.logs, "store flushed and closed");
    let code = gw.child.wait().unwrap();
    assert!(code.success(), "exit status {code:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The data directory is usable again at once.
    Process::start(dir.path()).kill9();
}

#[test]
fn every_door_logs_its_address_and_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Process::start(dir.path());
    for addr in [gw.amqp, gw.mqtt, gw.http] {
        assert_ne!(addr.port(), 0);
        std::net::TcpStream::connect(addr).unwrap();
    }
    gw.kill9();
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
