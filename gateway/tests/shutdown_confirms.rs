//! SIGTERM in the middle of confirmed publish streams (issue 16): before a
//! connection is closed at shutdown, every publish the gateway read and
//! stored is confirmed (AMQP `basic.ack`, MQTT PUBACK), so a client that
//! republishes what was left unanswered duplicates nothing.
//!
//! A fast AMQP confirm publisher (8 channels, 64 publishes in flight each)
//! and an MQTT QoS 1 publisher (100 in flight) feed one durable queue; the
//! gateway gets SIGTERM mid-stream; after a restart on the same data
//! directory the queue is drained. Every acknowledged message must be there,
//! and nothing may be there that was not acknowledged.
//!
//! Why "stored but unacknowledged = 0" is exact and not racy: the reader of
//! each connection stops at the shutdown signal before it reads again (the
//! signal is checked first, `biased` in AMQP, before each wait in MQTT), and
//! it has handled every complete frame it read. What the engine accepted was
//! therefore read before the stop and has its confirm queued; the close
//! waits for the store and writes those confirms before `connection.close` /
//! closing the socket. Bytes still in the socket, or a frame only partly
//! read, were never published, so they are neither stored nor acknowledged.
//! Two client-side ways to miss the last acknowledgements were closed: the
//! MQTT door reads (and drops) what the client still sends after its close
//! until the client closes too (AMQP does the same waiting for
//! `close-ok`), since a socket closed with unread input is reset and the
//! client's next write then fails before it reads them; and rumqttc reports
//! the end of the stream before the PUBACKs of the same read, which the
//! publisher below therefore takes from the event loop's queue after the
//! error. The one way left is a store slower than the settle bound (5 s) or
//! the grace period, which a local temporary directory is not.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Process, amqp, runtime};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};

const QUEUE: &str = "stopping";
const AMQP_PUBLISHERS: u64 = 8;
const AMQP_WINDOW: usize = 64;
const MQTT_INFLIGHT: u16 = 100;
/// Acknowledgements seen (both clients) before the SIGTERM.
const BEFORE_SIGTERM: usize = 4000;

/// What each publisher learnt of each message it sent.
#[derive(Default)]
struct Outcomes {
    acked: HashSet<String>,
    nacked: HashSet<String>,
    unanswered: HashSet<String>,
}

impl Outcomes {
    fn record(all: &Mutex<Outcomes>, id: String, answer: Option<bool>) {
        let mut all = all.lock().unwrap();
        match answer {
            Some(true) => all.acked.insert(id),
            Some(false) => all.nacked.insert(id),
            None => all.unanswered.insert(id),
        };
    }
}

/// One confirming channel publishing persistent messages `a{p}-{i}` with
/// [`AMQP_WINDOW`] unanswered at a time, until the connection closes.
async fn amqp_publisher(conn: Arc<Connection>, p: u64, out: Arc<Mutex<Outcomes>>) {
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let props = BasicProperties::default().with_delivery_mode(2);
    let mut pending = FuturesOrdered::new();
    let mut open = true;
    let mut i = 0u64;
    while open || !pending.is_empty() {
        if open && pending.len() < AMQP_WINDOW {
            let id = format!("a{p}-{i}");
            i += 1;
            match ch
                .basic_publish(
                    "".into(),
                    QUEUE.into(),
                    BasicPublishOptions::default(),
                    id.as_bytes(),
                    props.clone(),
                )
                .await
            {
                Ok(confirm) => pending.push_back(async move { (id, confirm.await) }),
                Err(_) => {
                    // Perhaps written before the error: counted as sent.
                    Outcomes::record(&out, id, None);
                    open = false;
                }
            }
            continue;
        }
        let Some((id, answer)) = pending.next().await else {
            break;
        };
        let answer = match answer {
            Ok(c) if c.is_ack() => Some(true),
            Ok(c) if c.is_nack() => Some(false),
            _ => {
                open = false;
                None
            }
        };
        Outcomes::record(&out, id, answer);
    }
}

/// An MQTT 3.1.1 QoS 1 publisher sending `m{i}` to `stopping/data` with
/// [`MQTT_INFLIGHT`] unacknowledged at a time, until the connection ends.
async fn mqtt_publisher(addr: std::net::SocketAddr, out: Arc<Mutex<Outcomes>>) {
    let mut o = MqttOptions::new("stopping-pub", addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o.set_inflight(MQTT_INFLIGHT);
    let (client, mut events) = AsyncClient::new(o, usize::from(MQTT_INFLIGHT));
    let feeder = tokio::spawn(async move {
        for i in 0u64.. {
            let sent = client
                .publish("stopping/data", QoS::AtLeastOnce, false, format!("m{i}"))
                .await;
            if sent.is_err() {
                return;
            }
        }
    });
    // Publishes go out in order; a PUBACK names the packet id.
    let mut next = 0u64;
    let mut in_flight: HashMap<u16, String> = HashMap::new();
    let mut seen = |event: Event| match event {
        Event::Outgoing(Outgoing::Publish(pkid)) => {
            in_flight.insert(pkid, format!("m{next}"));
            next += 1;
        }
        Event::Incoming(Packet::PubAck(ack)) => {
            if let Some(id) = in_flight.remove(&ack.pkid) {
                Outcomes::record(&out, id, Some(true));
            }
        }
        _ => {}
    };
    while let Ok(event) = events.poll().await {
        seen(event);
    }
    // rumqttc handles every packet of a read burst before it reports the
    // end of the stream that followed them, and returns that error first:
    // the last PUBACKs (the ones the gateway sent as it closed) wait here.
    while let Some(event) = events.state.events.pop_front() {
        seen(event);
    }
    feeder.abort();
    for (_, id) in in_flight {
        Outcomes::record(&out, id, None);
    }
}

fn print(name: &str, o: &Outcomes, stored: &HashSet<String>) -> usize {
    let unacked: Vec<_> = stored.difference(&o.acked).collect();
    eprintln!(
        "{name}: acked {}, nacked {}, unanswered {}, stored {}, stored-but-unacked {}",
        o.acked.len(),
        o.nacked.len(),
        o.unanswered.len(),
        stored.len(),
        unacked.len(),
    );
    let lost: Vec<_> = o.acked.difference(stored).take(10).collect();
    assert!(lost.is_empty(), "{name}: acknowledged but lost: {lost:?}");
    unacked.len()
}

#[test]
fn sigterm_confirms_every_stored_publish_before_closing() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let gw = Process::start(dir.path());
    let amqp_out = Arc::new(Mutex::new(Outcomes::default()));
    let mqtt_out = Arc::new(Mutex::new(Outcomes::default()));
    rt.block_on(async {
        let conn = Arc::new(amqp(gw.amqp).await);
        let ch = conn.create_channel().await.unwrap();
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.queue_declare(QUEUE.into(), durable, FieldTable::default())
            .await
            .unwrap();
        ch.queue_bind(
            QUEUE.into(),
            "amq.topic".into(),
            "stopping.#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        let mut tasks = Vec::new();
        for p in 0..AMQP_PUBLISHERS {
            let (conn, out) = (Arc::clone(&conn), Arc::clone(&amqp_out));
            tasks.push(tokio::spawn(amqp_publisher(conn, p, out)));
        }
        tasks.push(tokio::spawn(mqtt_publisher(gw.mqtt, Arc::clone(&mqtt_out))));
        let acked = || amqp_out.lock().unwrap().acked.len() + mqtt_out.lock().unwrap().acked.len();
        let start = Instant::now();
        while acked() < BEFORE_SIGTERM && start.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        gw.send_sigterm();
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(20), t)
                .await
                .expect("publishers end when the gateway closes their connections")
                .unwrap();
        }
    });
    let mut gw = gw;
    let status = gw.child.wait().unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    for (name, o) in [("amqp", &amqp_out), ("mqtt", &mqtt_out)] {
        let o = o.lock().unwrap();
        assert!(
            o.acked.len() >= 100,
            "{name}: acknowledged before SIGTERM ({})",
            o.acked.len()
        );
    }

    let gw = Process::start(dir.path());
    let stored = rt.block_on(async {
        let conn = amqp(gw.amqp).await;
        let ch = conn.create_channel().await.unwrap();
        let options = BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        };
        let mut c = ch
            .basic_consume(QUEUE.into(), "".into(), options, FieldTable::default())
            .await
            .unwrap();
        let mut stored = Vec::new();
        while let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_secs(2), c.next()).await {
            stored.push(String::from_utf8(d.data).unwrap());
        }
        stored
    });
    drop(gw);
    let (from_amqp, from_mqtt): (HashSet<String>, HashSet<String>) =
        stored.iter().cloned().partition(|id| id.starts_with('a'));
    assert_eq!(
        from_amqp.len() + from_mqtt.len(),
        stored.len(),
        "each message stored once"
    );
    let unacked = print("amqp", &amqp_out.lock().unwrap(), &from_amqp)
        + print("mqtt", &mqtt_out.lock().unwrap(), &from_mqtt);
    assert_eq!(
        unacked, 0,
        "stored at SIGTERM but never acknowledged (a republishing client duplicates them)"
    );
}
