//! Shared helpers of the MQTT door's integration tests: an engine on a
//! temporary directory with the door served on 127.0.0.1:0 (by the
//! gateway's accept layer), rumqttc clients whose
//! events arrive on a channel, and a raw-socket client for byte-level tests.
#![allow(dead_code, unused_imports, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use gw_core::{Engine, EngineConfig};
use gw_mqtt::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long a test waits to be sure something does not happen.
pub const QUIET: Duration = Duration::from_millis(300);

/// An engine and the MQTT door serving it.
pub struct Server {
    pub addr: SocketAddr,
    pub engine: Engine,
    pub shutdown: CancellationToken,
    tracker: TaskTracker,
    server: tokio::task::JoinHandle<()>,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// A fresh engine in a temporary directory, default configuration.
    pub async fn start() -> Server {
        Self::start_with(Config::default()).await
    }

    /// A fresh engine in a temporary directory.
    pub async fn start_with(config: Config) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Self::start_in(dir.path(), config).await;
        s._dir = Some(dir);
        s
    }

    /// An engine on `dir` (reopened if it holds one).
    pub async fn start_in(dir: &Path, config: Config) -> Server {
        Self::start_engine(EngineConfig::new(dir), config).await
    }

    /// A fresh engine in a temporary directory, its configuration changed by `engine`.
    pub async fn start_with_engine(
        config: Config,
        engine: impl FnOnce(&mut EngineConfig),
    ) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut ec = EngineConfig::new(dir.path());
        engine(&mut ec);
        let mut s = Self::start_engine(ec, config).await;
        s._dir = Some(dir);
        s
    }

    async fn start_engine(ec: EngineConfig, config: Config) -> Server {
        let engine = Engine::open(ec).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let door = gw_mqtt::MqttDoor::new(engine.clone(), config, shutdown.clone());
        let server = tokio::spawn(gw_listen::serve_listener(
            listener,
            door.clone(),
            gw_listen::Permits::for_door(&door),
            shutdown.clone(),
            tracker.clone(),
        ));
        Server {
            addr,
            engine,
            shutdown,
            tracker,
            server,
            _dir: None,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Stops accepting, closes every connection, waits for them, closes the engine.
    pub async fn stop(self) -> Option<tempfile::TempDir> {
        self.shutdown.cancel();
        let _ = self.server.await;
        self.tracker.close();
        tokio::time::timeout(WAIT, self.tracker.wait())
            .await
            .expect("connections drain after shutdown");
        self.engine.close();
        self._dir
    }
}

/// Counts panics anywhere in the process (connection tasks included, whose
/// panics tokio would otherwise only log): call once at the start of a test,
/// then check [`panics`] at the end.
pub fn watch_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            default(info);
        }));
    });
}

static PANICS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Panics seen since [`watch_panics`].
pub fn panics() -> usize {
    PANICS.load(std::sync::atomic::Ordering::SeqCst)
}

/// Runs `f` until it returns Some, or fails after [`WAIT`].
pub async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub mod v4;
pub mod v5;

// ---------------------------------------------------------------- raw bytes

/// A raw client: bytes in, bytes out.
pub struct Raw {
    pub stream: TcpStream,
    pub buf: BytesMut,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        Raw {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads until `n` bytes are buffered (or the connection ends); returns them all.
    pub async fn read_at_least(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout(WAIT, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(k)) => self.buf.extend_from_slice(&chunk[..k]),
                Err(_) => panic!("no {n} bytes in time; have {:02x?}", &self.buf[..]),
            }
        }
        self.buf.split().to_vec()
    }

    /// Reads one whole packet (fixed header + remaining length).
    pub async fn packet(&mut self) -> Vec<u8> {
        loop {
            if let Some(total) = packet_len(&self.buf)
                && self.buf.len() >= total
            {
                return self.buf.split_to(total).to_vec();
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout(WAIT, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    panic!("closed before a packet; have {:02x?}", &self.buf[..])
                }
                Ok(Ok(k)) => self.buf.extend_from_slice(&chunk[..k]),
                Err(_) => panic!("no packet in time; have {:02x?}", &self.buf[..]),
            }
        }
    }

    /// True when the server closes the connection (after any bytes it sends,
    /// which are returned).
    pub async fn closed(&mut self) -> Vec<u8> {
        let mut seen = self.buf.split().to_vec();
        loop {
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout(WAIT, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return seen,
                Ok(Ok(k)) => seen.extend_from_slice(&chunk[..k]),
                Err(_) => panic!("connection still open; received {seen:02x?}"),
            }
        }
    }
}

/// Total length of the packet at the start of `b`, if its header is complete.
pub fn packet_len(b: &[u8]) -> Option<usize> {
    let mut value = 0usize;
    for i in 0..4 {
        let byte = *b.get(1 + i)?;
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(1 + i + 1 + value);
        }
    }
    None
}

/// A packet: first byte, then the body with its remaining length.
pub fn packet(byte1: u8, body: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_u8(byte1);
    let mut len = body.len();
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        out.put_u8(b);
        if len == 0 {
            break;
        }
    }
    out.put_slice(body);
    out.to_vec()
}

/// An MQTT string.
pub fn string(s: &[u8]) -> Vec<u8> {
    let mut v = (s.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(s);
    v
}

/// CONNECT at level 4 or 5 with a client id, clean start, keep alive 30 s and
/// (for 5) an empty or given property block.
pub fn connect(level: u8, client_id: &str, flags: u8, props: &[u8]) -> Vec<u8> {
    let mut body = string(b"MQTT");
    body.push(level);
    body.push(flags);
    body.extend_from_slice(&30u16.to_be_bytes());
    if level == 5 {
        body.push(props.len() as u8);
        body.extend_from_slice(props);
    }
    body.extend(string(client_id.as_bytes()));
    packet(0x10, &body)
}

/// SUBSCRIBE (3.1.1 or 5 with empty properties) of one filter.
pub fn subscribe(v5: bool, pid: u16, filter: &str, options: u8) -> Vec<u8> {
    let mut body = pid.to_be_bytes().to_vec();
    if v5 {
        body.push(0);
    }
    body.extend(string(filter.as_bytes()));
    body.push(options);
    packet(0x82, &body)
}

/// PUBLISH with the given flags (QoS bits included) and, for 5, properties.
pub fn publish(
    v5: bool,
    flags: u8,
    topic: &str,
    pid: Option<u16>,
    props: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut body = string(topic.as_bytes());
    if let Some(pid) = pid {
        body.extend_from_slice(&pid.to_be_bytes());
    }
    if v5 {
        body.push(props.len() as u8);
        body.extend_from_slice(props);
    }
    body.extend_from_slice(payload);
    packet(0x30 | flags, &body)
}

/// A raw client that has connected (CONNACK read) at `level`.
pub async fn raw_connected(
    addr: SocketAddr,
    level: u8,
    id: &str,
    flags: u8,
    props: &[u8],
) -> (Raw, Vec<u8>) {
    let mut raw = Raw::connect(addr).await;
    raw.send(&connect(level, id, flags, props)).await;
    let connack = raw.packet().await;
    (raw, connack)
}
