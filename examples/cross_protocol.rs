//! One message, two protocols: a device publishes readings over MQTT, a
//! service consumes them over AMQP. MQTT publishes go to the `amq.topic`
//! exchange with the topic as routing key (`/` becomes `.`), so an AMQP queue
//! bound with `sensors.#` receives `sensors/room1/temperature`.
//!
//! ```text
//! cargo run --example cross_protocol [-- AMQP_URL MQTT_ADDR]
//! ```
//!
//! Defaults (arguments or the environment variables `AMQP_URL`, `MQTT_ADDR`):
//! `amqp://guest:guest@127.0.0.1:5672/%2f` and `127.0.0.1:1883`, a local
//! gateway with its default user guest/guest (loopback only).

use std::time::Duration;

use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A reading as the AMQP side sees it: routing key and body.
pub type Reading = (String, String);

/// Publishes `count` readings over MQTT (as guest/guest) and returns them as
/// received over AMQP.
pub async fn run(amqp_url: &str, mqtt_addr: &str, count: usize) -> Result<Vec<Reading>, Error> {
    // The AMQP side first: a queue bound to what the devices publish.
    let conn = Connection::connect(amqp_url, ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        ..Default::default()
    };
    let queue = channel
        .queue_declare("".into(), exclusive, FieldTable::default())
        .await?;
    channel
        .queue_bind(
            queue.name().clone(),
            "amq.topic".into(),
            "sensors.#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue.name().clone(),
            "service".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;

    // The device: QoS 1 publishes, each acknowledged once stored.
    let (host, port) = mqtt_addr.rsplit_once(':').ok_or("expected HOST:PORT")?;
    let mut options =
        MqttOptions::new("sensor-room1", host.trim_matches(['[', ']']), port.parse()?);
    options.set_credentials("guest", "guest");
    options.set_keep_alive(Duration::from_secs(30));
    let (device, mut events) = AsyncClient::new(options, 16);
    for i in 0..count {
        let reading = format!("{{\"celsius\": {}}}", 20 + i);
        device
            .publish(
                "sensors/room1/temperature",
                QoS::AtLeastOnce,
                false,
                reading,
            )
            .await?;
    }
    // Drive the device's event loop: the publishes go out, their PUBACKs
    // (the gateway has stored them) come in, then the DISCONNECT goes out.
    let mut acked = 0;
    if count == 0 {
        device.disconnect().await?;
    }
    loop {
        match events.poll().await? {
            Event::Incoming(Packet::PubAck(_)) => {
                acked += 1;
                if acked == count {
                    device.disconnect().await?;
                }
            }
            Event::Outgoing(Outgoing::Disconnect) => break,
            _ => {}
        }
    }

    let mut received = Vec::new();
    while received.len() < count {
        let Some(delivery) = consumer.next().await else {
            return Err("the consumer was cancelled".into());
        };
        let delivery = delivery?;
        let key = delivery.routing_key.to_string();
        received.push((key, String::from_utf8_lossy(&delivery.data).into_owned()));
        delivery.ack(BasicAckOptions::default()).await?;
    }
    conn.close(200, "done".into()).await?;
    Ok(received)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let amqp = args
        .next()
        .unwrap_or_else(|| env("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"));
    let mqtt = args
        .next()
        .unwrap_or_else(|| env("MQTT_ADDR", "127.0.0.1:1883"));
    for (key, body) in run(&amqp, &mqtt, 3).await? {
        println!("{key}: {body}");
    }
    Ok(())
}
