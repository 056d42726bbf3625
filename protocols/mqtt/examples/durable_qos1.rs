//! QoS 1 into a persistent session, for a figure mqbench cannot give (its
//! clients use clean sessions): one subscriber with clean session 0, so the
//! gateway stores every message durably before its PUBACK, and one publisher.
//!
//! ```sh
//! cargo run --release -p gw-mqtt --example durable_qos1 -- PORT [COUNT] [SIZE]
//! ```
//! Prints publish and delivery rates; works against any MQTT broker.

use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args
        .next()
        .ok_or("usage: durable_qos1 PORT [COUNT] [SIZE]")?
        .parse()?;
    let count: usize = args.next().map_or(Ok(100_000), |a| a.parse())?;
    let size: usize = args.next().map_or(Ok(256), |a| a.parse())?;
    let run = std::process::id();
    let topic = format!("durable/{run}");

    let mut o = MqttOptions::new(format!("durable-sub-{run}"), "127.0.0.1", port);
    o.set_clean_session(false);
    o.set_keep_alive(Duration::from_secs(60));
    let (sub, mut sub_loop) = AsyncClient::new(o, 1000);
    sub.subscribe(&topic, QoS::AtLeastOnce).await?;
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = sub_loop.poll().await? {
            break;
        }
    }
    let receiver = tokio::spawn(async move {
        let mut got = 0;
        let mut last = Instant::now();
        while got < count {
            match sub_loop.poll().await {
                Ok(Event::Incoming(Packet::Publish(_))) => {
                    got += 1;
                    last = Instant::now();
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("subscriber: {e}");
                    break;
                }
            }
        }
        (got, last)
    });

    let mut o = MqttOptions::new(format!("durable-pub-{run}"), "127.0.0.1", port);
    o.set_inflight(100);
    o.set_keep_alive(Duration::from_secs(60));
    let (publ, mut pub_loop) = AsyncClient::new(o, 1000);
    let started = Instant::now();
    let acks = tokio::spawn(async move {
        let mut acked = 0;
        while acked < count {
            match pub_loop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => {
                    eprintln!("publisher: {e}");
                    break;
                }
            }
        }
        Instant::now()
    });
    let payload = vec![b'x'; size];
    for _ in 0..count {
        publ.publish(&topic, QoS::AtLeastOnce, false, payload.clone())
            .await?;
    }
    let acked_at = acks.await?;
    let (got, last) = receiver.await?;
    let publish_s = acked_at.duration_since(started).as_secs_f64();
    let deliver_s = last.duration_since(started).as_secs_f64();
    println!(
        "{count} x {size} B QoS 1 into a persistent session: publish (PUBACKed) {:.0} msg/s, delivered {got} at {:.0} msg/s",
        count as f64 / publish_s,
        got as f64 / deliver_s
    );
    // Leave no session behind.
    let mut o = MqttOptions::new(format!("durable-sub-{run}"), "127.0.0.1", port);
    o.set_clean_session(true);
    let (end, mut end_loop) = AsyncClient::new(o, 10);
    while !matches!(end_loop.poll().await?, Event::Incoming(Packet::ConnAck(_))) {}
    end.disconnect().await?;
    let _ = tokio::time::timeout(Duration::from_secs(1), end_loop.poll()).await;
    Ok(())
}
