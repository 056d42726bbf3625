//! SIGKILL of the gateway binary in the middle of confirmed publish streams,
//! through each door: everything the gateway confirmed (AMQP publisher
//! confirm, MQTT PUBACK, HTTP 200) is delivered after a restart, and
//! deliveries that were unacknowledged come back as redeliveries.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Process, amqp, runtime};
use futures::StreamExt;
use lapin::BasicProperties;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use rumqttc::Outgoing;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{ConnectProperties, Packet};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::{Value, json};

#[test]
fn amqp_confirmed_publishes_and_unacked_deliveries_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let gw = Process::start(dir.path());
    let confirmed = Arc::new(Mutex::new(HashSet::new()));
    rt.block_on(async {
        let conn = amqp(gw.amqp).await;
        let ch = conn.create_channel().await.unwrap();
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.queue_declare("crash".into(), durable, FieldTable::default())
            .await
            .unwrap();
        ch.queue_declare("held".into(), durable, FieldTable::default())
            .await
            .unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let props = BasicProperties::default().with_delivery_mode(2);
        // Ten messages a consumer takes and never acknowledges.
        for i in 0..10 {
            ch.basic_publish(
                "".into(),
                "held".into(),
                BasicPublishOptions::default(),
                i.to_string().as_bytes(),
                props.clone(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        }
        let holder = conn.create_channel().await.unwrap();
        holder
            .basic_qos(10, BasicQosOptions::default())
            .await
            .unwrap();
        let mut held = holder
            .basic_consume(
                "held".into(),
                "holder".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        for _ in 0..10 {
            held.next().await.unwrap().unwrap();
        }
        // Publishers with confirms; the gateway dies under them.
        let mut tasks = Vec::new();
        for p in 0..4u64 {
            let ch = conn.create_channel().await.unwrap();
            ch.confirm_select(ConfirmSelectOptions::default())
                .await
                .unwrap();
            let (confirmed, props) = (Arc::clone(&confirmed), props.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0.. {
                    let id = p * 1_000_000 + i;
                    let Ok(pending) = ch
                        .basic_publish(
                            "".into(),
                            "crash".into(),
                            BasicPublishOptions::default(),
                            id.to_string().as_bytes(),
                            props.clone(),
                        )
                        .await
                    else {
                        return;
                    };
                    match pending.await {
                        Ok(c) if c.is_ack() => {
                            confirmed.lock().unwrap().insert(id);
                        }
                        _ => return,
                    }
                }
            }));
        }
        let start = Instant::now();
        while confirmed.lock().unwrap().len() < 1500 && start.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        gw.kill9();
        for t in tasks {
            let _ = t.await;
        }
    });
    let confirmed = confirmed.lock().unwrap().clone();
    assert!(
        confirmed.len() >= 100,
        "publishers got confirms ({})",
        confirmed.len()
    );

    let gw = Process::start(dir.path());
    rt.block_on(async {
        let conn = amqp(gw.amqp).await;
        let ch = conn.create_channel().await.unwrap();
        let mut c = ch
            .basic_consume(
                "crash".into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let mut got = HashSet::new();
        while let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_secs(2), c.next()).await {
            got.insert(String::from_utf8(d.data).unwrap().parse::<u64>().unwrap());
        }
        let lost: Vec<_> = confirmed.difference(&got).take(10).collect();
        assert!(
            lost.is_empty(),
            "confirmed but lost: {lost:?} of {}",
            confirmed.len()
        );
        eprintln!(
            "amqp: {} confirmed before SIGKILL, {} delivered after",
            confirmed.len(),
            got.len()
        );
        let mut h = ch
            .basic_consume(
                "held".into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        for _ in 0..10 {
            let d = tokio::time::timeout(Duration::from_secs(5), h.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert!(
                d.redelivered,
                "unacknowledged before the crash: redelivered"
            );
        }
    });
    gw.terminate();
}

fn mqtt_options(id: &str, addr: std::net::SocketAddr) -> MqttOptions {
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_clean_start(false);
    let mut props = ConnectProperties::new();
    props.session_expiry_interval = Some(3600);
    o.set_connect_properties(props);
    o.set_keep_alive(Duration::from_secs(5));
    o
}

#[test]
fn mqtt_pubacked_messages_reach_a_persistent_session_after_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let gw = Process::start(dir.path());
    let acked = rt.block_on(async {
        // The subscriber's persistent session exists before the stream starts.
        let (sub, mut sub_loop) = AsyncClient::new(mqtt_options("sub-1", gw.mqtt), 100);
        sub.subscribe("crash/#", QoS::AtLeastOnce).await.unwrap();
        loop {
            if let Event::Incoming(Packet::SubAck(_)) = sub_loop.poll().await.unwrap() {
                break;
            }
        }
        sub.disconnect().await.unwrap();
        while sub_loop.poll().await.is_ok() {}

        let (publisher, mut pub_loop) = AsyncClient::new(mqtt_options("pub-1", gw.mqtt), 1000);
        let feeder = tokio::spawn(async move {
            for i in 0..100_000u64 {
                if publisher
                    .publish("crash/data", QoS::AtLeastOnce, false, i.to_string())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        // Outgoing publishes go out in order; PUBACKs name their packet ids.
        let mut next = 0u64;
        let mut in_flight = std::collections::HashMap::new();
        let mut acked = HashSet::new();
        let start = Instant::now();
        while acked.len() < 1500 && start.elapsed() < Duration::from_secs(20) {
            match pub_loop.poll().await {
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    in_flight.insert(pkid, next);
                    next += 1;
                }
                Ok(Event::Incoming(Packet::PubAck(ack))) => {
                    if let Some(i) = in_flight.remove(&ack.pkid) {
                        acked.insert(i);
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("publisher failed before the kill: {e}"),
            }
        }
        gw.kill9();
        feeder.abort();
        acked
    });
    assert!(acked.len() >= 100, "PUBACKs received ({})", acked.len());

    let gw = Process::start(dir.path());
    rt.block_on(async {
        let (sub, mut sub_loop) = AsyncClient::new(mqtt_options("sub-1", gw.mqtt), 100);
        let mut got = HashSet::new();
        let mut last = Instant::now();
        while last.elapsed() < Duration::from_secs(3) {
            match tokio::time::timeout(Duration::from_secs(3), sub_loop.poll()).await {
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                    got.insert(String::from_utf8_lossy(&p.payload).parse::<u64>().unwrap());
                    last = Instant::now();
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("subscriber failed: {e}"),
                Err(_) => break,
            }
        }
        let lost: Vec<_> = acked.difference(&got).take(10).collect();
        assert!(
            lost.is_empty(),
            "PUBACKed but lost: {lost:?} of {}",
            acked.len()
        );
        eprintln!(
            "mqtt: {} PUBACKed before SIGKILL, {} delivered after",
            acked.len(),
            got.len()
        );
        let _ = sub.disconnect().await;
    });
    gw.terminate();
}

#[test]
fn http_sends_answered_200_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let gw = Process::start(dir.path());
    let http = reqwest::Client::new();
    let base = format!("http://{}/v1.0/%2F", gw.http);
    let sent = rt.block_on(async {
        let post = |url: String, body: Value| {
            http.post(url)
                .basic_auth("guest", Some("guest"))
                .json(&body)
                .send()
        };
        let r = post(format!("{base}/queues"), json!({"name": "crash"}))
            .await
            .unwrap();
        assert!(r.status().is_success());
        let r = post(
            format!("{base}/queues/crash/groups"),
            json!({"groups": [{"name": "g"}]}),
        )
        .await
        .unwrap();
        assert!(r.status().is_success());
        let sent = Arc::new(Mutex::new(HashSet::new()));
        let mut tasks = Vec::new();
        for p in 0..4u64 {
            let (sent, http, url) = (
                Arc::clone(&sent),
                http.clone(),
                format!("{base}/queues/crash/messages"),
            );
            tasks.push(tokio::spawn(async move {
                for batch in 0.. {
                    let ids: Vec<u64> = (0..10).map(|i| p * 1_000_000 + batch * 10 + i).collect();
                    let msgs: Vec<Value> =
                        ids.iter().map(|i| json!({"body": i.to_string()})).collect();
                    let r = http
                        .post(&url)
                        .basic_auth("guest", Some("guest"))
                        .json(&json!({"messages": msgs}))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 200 => sent.lock().unwrap().extend(ids),
                        _ => return,
                    }
                }
            }));
        }
        let start = Instant::now();
        while sent.lock().unwrap().len() < 2000 && start.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        gw.kill9();
        for t in tasks {
            let _ = t.await;
        }
        sent.lock().unwrap().clone()
    });
    assert!(sent.len() >= 100, "sends answered 200 ({})", sent.len());

    let gw = Process::start(dir.path());
    let base = format!("http://{}/v1.0/%2F", gw.http);
    rt.block_on(async {
        let mut got = HashSet::new();
        loop {
            let r = http
                .get(format!(
                    "{base}/queues/crash/groups/g/messages?max_msgs=10&time_wait=1"
                ))
                .basic_auth("guest", Some("guest"))
                .send()
                .await
                .unwrap();
            let items: Vec<Value> = r.json().await.unwrap();
            if items.is_empty() {
                break;
            }
            let mut acks = Vec::new();
            for it in &items {
                got.insert(
                    it["message"]["body"]
                        .as_str()
                        .unwrap()
                        .parse::<u64>()
                        .unwrap(),
                );
                acks.push(json!({"handler": it["handler"], "status": "success"}));
            }
            let r = http
                .post(format!("{base}/queues/crash/groups/g/ack"))
                .basic_auth("guest", Some("guest"))
                .json(&json!({"message": acks}))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
        }
        let lost: Vec<_> = sent.difference(&got).take(10).collect();
        assert!(
            lost.is_empty(),
            "answered 200 but lost: {lost:?} of {}",
            sent.len()
        );
        eprintln!(
            "http: {} answered 200 before SIGKILL, {} delivered after",
            sent.len(),
            got.len()
        );
    });
    gw.terminate();
}
