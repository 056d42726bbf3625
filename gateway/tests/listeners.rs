//! Listen lists end to end: the default shape (both loopbacks) serves real
//! clients on `[::1]` as on `127.0.0.1`, every address gets its own line in
//! the log, and `GATEWAY_*_LISTEN` takes a list as the flag does.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use common::{gateway, wait_for};
use gateway::listeners::default_addresses;

/// Whether this host can listen on the IPv6 loopback at all.
fn host_has_ipv6() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

async fn amqp_round_trip(addr: SocketAddr) {
    use futures::StreamExt;
    use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    let uri = lapin::uri::AMQPUri {
        authority: lapin::uri::AMQPAuthority {
            host: addr.ip().to_string(),
            port: addr.port(),
            ..Default::default()
        },
        ..Default::default()
    };
    let conn = lapin::Connection::connect_uri(uri, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let opts = QueueDeclareOptions {
        exclusive: true,
        ..Default::default()
    };
    let q = ch
        .queue_declare("".into(), opts, FieldTable::default())
        .await
        .unwrap();
    let mut consumer = ch
        .basic_consume(
            q.name().clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    ch.basic_publish(
        "".into(),
        q.name().clone(),
        BasicPublishOptions::default(),
        b"over ipv6",
        Default::default(),
    )
    .await
    .unwrap();
    let d = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(d.data, b"over ipv6");
    conn.close(200, "bye".into()).await.unwrap();
}

async fn mqtt_connects(addr: SocketAddr) {
    let mut o = rumqttc::MqttOptions::new("v6-client", addr.ip().to_string(), addr.port());
    o.set_credentials("guest", "guest");
    let (client, mut events) = rumqttc::AsyncClient::new(o, 10);
    let connack = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(c)) =
                events.poll().await.unwrap()
            {
                return c;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(connack.code, rumqttc::ConnectReturnCode::Success);
    client.disconnect().await.unwrap();
}

async fn http_answers(addr: SocketAddr) {
    let url = format!("http://{addr}/api/overview");
    let resp = reqwest::Client::new()
        .get(&url)
        .basic_auth("guest", Some("guest"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{url}");
}

/// The built-in default shape (127.0.0.1 and [::1]), on free ports: a client
/// that reaches the gateway on `::1` (Node ≥ 17 resolving `localhost`) is
/// served by every door, and the guest user counts it as loopback.
#[tokio::test]
async fn the_default_listens_on_both_loopbacks() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = gateway::Config::ephemeral(dir.path());
    config.amqp.listen = default_addresses(0);
    config.mqtt.listen = default_addresses(0);
    config.http.listen = default_addresses(0);
    let gw = gateway::Gateway::start(config).await.unwrap();
    let all = gw.listening().clone();
    let first = gw.addresses();
    assert_eq!(first.amqp, all.amqp.first().copied());
    assert!(first.amqp.unwrap().ip().is_ipv4());
    if host_has_ipv6() {
        for door in [&all.amqp, &all.mqtt, &all.http] {
            assert_eq!(door.len(), 2, "{door:?}");
            assert!(door[1].ip().is_ipv6() && door[1].ip().is_loopback());
            assert_ne!(door[1].port(), 0);
        }
        amqp_round_trip(all.amqp[1]).await;
        mqtt_connects(all.mqtt[1]).await;
        http_answers(all.http[1]).await;
    } else {
        // The notice path: started anyway, on IPv4 only.
        for door in [&all.amqp, &all.mqtt, &all.http] {
            assert_eq!(door.len(), 1, "{door:?}");
        }
    }
    amqp_round_trip(all.amqp[0]).await;
    mqtt_connects(all.mqtt[0]).await;
    http_answers(all.http[0]).await;
    gw.stop(Duration::from_secs(5)).await;
}

/// An explicitly configured `[::1]` that cannot be bound fails start-up
/// (here: the port is taken), it is not skipped like the default's.
#[tokio::test]
async fn an_asked_for_address_that_cannot_be_bound_fails_start_up() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = gateway::Config::ephemeral(dir.path());
    config.mqtt.listen = vec![
        gateway::listeners::ListenAddr::required("127.0.0.1:0".parse().unwrap()),
        gateway::listeners::ListenAddr::required(taken.local_addr().unwrap()),
    ];
    let Err(e) = gateway::Gateway::start(config).await else {
        panic!("started with a port in use");
    };
    let text = e.to_string();
    assert!(
        text.contains("mqtt") && text.contains(&taken.local_addr().unwrap().to_string()),
        "{text}"
    );
}

/// `GATEWAY_AMQP_LISTEN` with two entries: two lines, two ports, both accept.
#[test]
fn an_environment_list_binds_and_logs_every_entry() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = gateway()
        .args(["--data-dir", dir.path().to_str().unwrap()])
        .env("GATEWAY_AMQP_LISTEN", "127.0.0.1:0, 127.0.0.1:0")
        .env("GATEWAY_MQTT_LISTEN", "off")
        .env("GATEWAY_HTTP_LISTEN", "127.0.0.1:0")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, logs) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let addr = |line: String| -> SocketAddr {
        let rest = line.split("amqp listening on ").nth(1).unwrap();
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    let a = addr(wait_for(&logs, "amqp listening on "));
    let b = addr(wait_for(&logs, "amqp listening on "));
    assert_ne!(a.port(), b.port());
    // The MQTT door is off: HTTP is logged next, with no MQTT line before it.
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while let Ok(line) =
        logs.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
    {
        let done = line.contains("http listening on ");
        seen.push(line);
        if done {
            break;
        }
    }
    assert!(
        seen.iter().any(|l| l.contains("http listening on ")),
        "{seen:?}"
    );
    assert!(
        !seen.iter().any(|l| l.contains("mqtt listening")),
        "{seen:?}"
    );
    for addr in [a, b] {
        std::net::TcpStream::connect(addr).unwrap();
    }
    let _ = child.kill();
    let _ = child.wait();
}
