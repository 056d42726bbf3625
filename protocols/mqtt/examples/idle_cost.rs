//! What one idle MQTT connection costs the gateway: N clients (CONNECT with
//! clean session, one QoS 1 subscription each, as `mqbench mqtt-connections`
//! does) are opened over real sockets, then the heap bytes held per connection
//! are reported (a counting allocator), with RSS beside them.
//!
//! ```sh
//! cargo run --release -p gw-mqtt --example idle_cost -- 5000
//! BUCKETS=1 cargo run ...   # also: heap bytes per connection by allocation size
//! TRACE=1 cargo run ...     # one connection: every allocation it still holds
//!                           # once quiet, with where it was made
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gw_core::{Engine, EngineConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The system allocator, counting live bytes (and tracing when asked).
struct Counting;
static TRACE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
thread_local! { static IN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) }; }
/// Allocations made while tracing and not freed yet: address → (size, where).
static TRACED: std::sync::Mutex<Vec<(usize, usize, String)>> = std::sync::Mutex::new(Vec::new());
fn trace(ptr: *mut u8, size: usize) {
    if !TRACE.load(Ordering::Relaxed) || IN.with(|i| i.replace(true)) {
        return;
    }
    let bt = std::backtrace::Backtrace::force_capture().to_string();
    let frames: Vec<String> = bt
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("at "))
        .filter(|f| {
            f.contains("gw_mqtt::") || f.contains("gw_core::") || f.contains("tokio::runtime::task")
        })
        .map(|f| f.chars().take(150).collect())
        .take(2)
        .collect();
    if let Ok(mut t) = TRACED.lock() {
        t.push((ptr as usize, size, frames.join("\n      <- ")));
    }
    IN.with(|i| i.set(false));
}
fn untrace(ptr: *mut u8) {
    if !TRACE.load(Ordering::Relaxed) || IN.with(|i| i.replace(true)) {
        return;
    }
    if let Ok(mut t) = TRACED.lock() {
        t.retain(|(p, _, _)| *p != ptr as usize);
    }
    IN.with(|i| i.set(false));
}

static LIVE: AtomicUsize = AtomicUsize::new(0);
static BUCKETS: [AtomicUsize; 32] = [const { AtomicUsize::new(0) }; 32];
fn bucket(size: usize) -> usize {
    (usize::BITS - size.leading_zeros()) as usize % 32
}

#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        BUCKETS[bucket(l.size())].fetch_add(l.size(), Ordering::Relaxed);
        let p = unsafe { System.alloc(l) };
        trace(p, l.size());
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        BUCKETS[bucket(l.size())].fetch_sub(l.size(), Ordering::Relaxed);
        untrace(p);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, Ordering::Relaxed);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        BUCKETS[bucket(new)].fetch_add(new, Ordering::Relaxed);
        BUCKETS[bucket(l.size())].fetch_sub(l.size(), Ordering::Relaxed);
        untrace(p);
        let q = unsafe { System.realloc(p, l, new) };
        trace(q, new);
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn rss_kb() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn connect_packet(id: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60];
    body.extend_from_slice(&(id.len() as u16).to_be_bytes());
    body.extend_from_slice(id.as_bytes());
    let mut p = vec![0x10, body.len() as u8];
    p.extend(body);
    p
}

fn subscribe_packet(topic: &str) -> Vec<u8> {
    let mut body = vec![0, 1];
    body.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    body.extend_from_slice(topic.as_bytes());
    body.push(1);
    let mut p = vec![0x82, body.len() as u8];
    p.extend(body);
    p
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args().nth(1).map_or(Ok(2000), |a| a.parse())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    let engine = Engine::open(EngineConfig::new(dir.path()))?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let door = rt.block_on(async {
        gw_mqtt::MqttDoor::new(engine.clone(), gw_mqtt::Config::default(), shutdown.clone())
    });
    rt.spawn(gw_listen::serve_listener(
        listener,
        door.clone(),
        gw_listen::Permits::for_door(&door),
        shutdown.clone(),
        tracker.clone(),
    ));
    let mut socks = Vec::with_capacity(n);
    // Warm up (first connection creates the registry, thread-locals, ...).
    let mut warm = std::net::TcpStream::connect(addr)?;
    warm.write_all(&connect_packet("warm"))?;
    let mut buf = [0u8; 64];
    let _ = warm.read(&mut buf)?;
    std::thread::sleep(Duration::from_millis(200));
    let (heap0, rss0) = (LIVE.load(Ordering::Relaxed), rss_kb());
    let b0: Vec<usize> = BUCKETS.iter().map(|b| b.load(Ordering::Relaxed)).collect();
    if std::env::var("TRACE").is_ok() {
        TRACE.store(true, Ordering::Relaxed);
        let mut s = std::net::TcpStream::connect(addr)?;
        s.write_all(&connect_packet("traced"))?;
        s.write_all(&subscribe_packet("traced/topic"))?;
        let mut got = 0;
        while got < 9 {
            got += s.read(&mut buf[got..])?;
        }
        // What is still allocated once the connection is quiet.
        std::thread::sleep(Duration::from_millis(1500));
        TRACE.store(false, Ordering::Relaxed);
        let live = TRACED.lock().map(|t| t.clone()).unwrap_or_default();
        let total: usize = live.iter().map(|(_, s, _)| s).sum();
        for (_, size, at) in &live {
            println!("{size:6} {at}");
        }
        println!("{total} bytes still allocated for one idle connection");
        drop(s);
        return Ok(());
    }
    for i in 0..n {
        let mut s = std::net::TcpStream::connect(addr)?;
        s.write_all(&connect_packet(&format!("idle-client-{i:08}")))?;
        s.write_all(&subscribe_packet(&format!("mqbench/0000abcd/c/{i}")))?;
        let mut got = 0;
        while got < 9 {
            got += s.read(&mut buf[got..])?;
        }
        socks.push(s);
    }
    // Connections give back grown buffers after a second of quiet.
    std::thread::sleep(Duration::from_millis(1500));
    let (heap1, rss1) = (LIVE.load(Ordering::Relaxed), rss_kb());
    let per_heap = (heap1 - heap0) as f64 / n as f64;
    let per_rss = (rss1 - rss0) as f64 / n as f64;
    if std::env::var("BUCKETS").is_ok() {
        for (i, b) in BUCKETS.iter().enumerate() {
            let d = b.load(Ordering::Relaxed) as i64 - b0[i] as i64;
            if d.abs() > n as i64 * 8 {
                println!(
                    "  allocations of {}..{} bytes: {} bytes per connection",
                    1usize << i.saturating_sub(1),
                    1usize << i,
                    d / n as i64
                );
            }
        }
    }
    println!(
        "{n} idle connections: {per_heap:.0} heap bytes and {per_rss:.2} KiB RSS per connection"
    );
    drop(socks);
    std::thread::sleep(Duration::from_millis(500));
    shutdown.cancel();
    tracker.close();
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await })?;
    engine.close();
    Ok(())
}
