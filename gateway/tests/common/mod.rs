//! Running the gateway binary as a child process, for tests that kill it.
#![allow(dead_code, clippy::unwrap_used)]

pub mod power;
pub mod tmpfs;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// The binary (`GATEWAY_TEST_BIN` runs another build), with the environment
/// cleared of settings that could change it.
pub fn gateway() -> Command {
    clean(Command::new(binary()))
}

/// The binary's path (`GATEWAY_TEST_BIN` runs another build).
pub fn binary() -> std::ffi::OsString {
    std::env::var_os("GATEWAY_TEST_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_gateway").into())
}

/// `c` without the environment settings that could change the gateway.
pub fn clean(mut c: Command) -> Command {
    c.env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("GATEWAY_") {
            c.env_remove(k);
        }
    }
    c
}

/// A running gateway process and the addresses its doors logged.
pub struct Process {
    pub child: Child,
    pub logs: Receiver<String>,
    pub amqp: SocketAddr,
    pub mqtt: SocketAddr,
    pub http: SocketAddr,
    /// Every line logged so far (also sent to `logs`).
    pub seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Process {
    /// Starts the binary on free ports over `data` and waits for every door.
    pub fn start(data: &std::path::Path) -> Process {
        Process::start_with(data, &[])
    }

    /// [`Process::start`] with more flags.
    pub fn start_with(data: &std::path::Path, flags: &[&str]) -> Process {
        Process::start_command(gateway(), data, flags)
    }

    /// [`Process::start_with`] through `command` (the binary, or a wrapper
    /// such as `prlimit` that runs it).
    pub fn start_command(mut command: Command, data: &std::path::Path, flags: &[&str]) -> Process {
        let mut child = command
            .args(["--data-dir", data.to_str().unwrap()])
            .args(flags)
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
        let (tx, logs) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = std::sync::Arc::clone(&seen);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                keep.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let addr = |door: &str| -> SocketAddr {
            let needle = format!("{door} listening on ");
            let line = wait_for(&logs, &needle);
            let rest = line.split(&needle).nth(1).unwrap();
            rest.split_whitespace().next().unwrap().parse().unwrap()
        };
        let (amqp, mqtt, http) = (addr("amqp"), addr("mqtt"), addr("http"));
        Process {
            child,
            logs,
            amqp,
            mqtt,
            http,
            seen,
        }
    }

    /// The lines logged so far that contain `needle`.
    pub fn logged(&self, needle: &str) -> Vec<String> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    /// SIGKILL: no shutdown work of any kind.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        self.send_sigterm();
        self.child.wait().unwrap()
    }

    /// Sends SIGTERM without waiting.
    pub fn send_sigterm(&self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
    }
}

impl Process {
    /// An AMQP connection as guest to the default vhost.
    pub async fn amqp_connection(&self) -> lapin::Connection {
        let uri = format!("amqp://guest:guest@{}/%2f", self.amqp);
        lapin::Connection::connect(&uri, lapin::ConnectionProperties::default())
            .await
            .unwrap()
    }

    /// The DMS API of the default tenant.
    pub fn dms_base(&self) -> String {
        format!("http://{}/v1.0/%2F", self.http)
    }
}

/// A JSON POST as guest; `None` if the request did not complete.
pub async fn post_as_guest(url: String, body: serde_json::Value) -> Option<reqwest::Response> {
    reqwest::Client::new()
        .post(url)
        .basic_auth("guest", Some("guest"))
        .json(&body)
        .send()
        .await
        .ok()
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The next log line containing `needle` (fails after 30 s, or when the
/// process exits first, with the last lines it logged).
pub fn wait_for(rx: &Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = std::collections::VecDeque::new();
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if line.contains(needle) {
            return line;
        }
        if seen.len() == 10 {
            seen.pop_front();
        }
        seen.push_back(line);
    }
    let seen: Vec<_> = seen.into();
    panic!(
        "no log line containing {needle:?}; last lines:\n{}",
        seen.join("\n")
    );
}

/// The runtime the binary tests drive their clients on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// An AMQP connection as guest to the default vhost at `addr`.
pub async fn amqp(addr: SocketAddr) -> lapin::Connection {
    let uri = format!("amqp://guest:guest@{addr}/%2f");
    lapin::Connection::connect(&uri, lapin::ConnectionProperties::default())
        .await
        .unwrap()
}
