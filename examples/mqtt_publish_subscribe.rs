//! Publish and subscribe over MQTT 3.1.1 with rumqttc: subscribe to
//! `demo/#`, publish three QoS 1 messages (each acknowledged by the gateway
//! once stored), and print what comes back.
//!
//! ```text
//! cargo run --example mqtt_publish_subscribe [-- HOST:PORT]
//! ```
//!
//! `MQTT_ADDR` (argument or environment variable) defaults to
//! `127.0.0.1:1883`; `MQTT_USER` / `MQTT_PASSWORD` default to `guest` /
//! `guest`, the default user of a local gateway (loopback only).

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Subscribes to `{prefix}/#`, publishes `count` messages under it, and
/// returns the payloads received.
pub async fn run(
    addr: &str,
    user: &str,
    password: &str,
    prefix: &str,
    count: usize,
) -> Result<Vec<String>, Error> {
    let (host, port) = addr.rsplit_once(':').ok_or("expected HOST:PORT")?;
    let mut options = MqttOptions::new(
        format!("{prefix}-example"),
        host.trim_matches(['[', ']']),
        port.parse()?,
    );
    options.set_credentials(user, password);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(options, 16);

    // Requests are queued in order: the SUBSCRIBE reaches the gateway first.
    client
        .subscribe(format!("{prefix}/#"), QoS::AtLeastOnce)
        .await?;
    for i in 0..count {
        let topic = format!("{prefix}/hello");
        client
            .publish(topic, QoS::AtLeastOnce, false, format!("hello {i}"))
            .await?;
    }

    // The event loop does the network work; it runs as long as it is polled.
    let mut received = Vec::new();
    while received.len() < count {
        if let Event::Incoming(Packet::Publish(p)) = events.poll().await? {
            received.push(String::from_utf8_lossy(&p.payload).into_owned());
        }
    }
    client.disconnect().await?;
    Ok(received)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| env("MQTT_ADDR", "127.0.0.1:1883"));
    let (user, password) = (env("MQTT_USER", "guest"), env("MQTT_PASSWORD", "guest"));
    for body in run(&addr, &user, &password, "demo", 3).await? {
        println!("received: {body}");
    }
    Ok(())
}
