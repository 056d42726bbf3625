//! Publish and consume over AMQP 0-9-1 with lapin: declare a queue, publish
//! three messages with publisher confirms (each confirmed once stored), then
//! consume and acknowledge them.
//!
//! ```text
//! cargo run --example amqp_publish_consume [-- AMQP_URL]
//! ```
//!
//! `AMQP_URL` (argument or environment variable) defaults to
//! `amqp://guest:guest@127.0.0.1:5672/%2f`: a local gateway with its default
//! user, which may log in from loopback only.

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Publishes `count` messages to `queue` and consumes them back.
pub async fn run(url: &str, queue: &str, count: usize) -> Result<Vec<String>, Error> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.into(), durable, FieldTable::default())
        .await?;

    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let persistent = BasicProperties::default().with_delivery_mode(2);
    for i in 0..count {
        let body = format!("hello {i}");
        // Publish via the default exchange; the second await is the confirm.
        channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                persistent.clone(),
            )
            .await?
            .await?;
    }

    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "example".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut received = Vec::new();
    while received.len() < count {
        let Some(delivery) = consumer.next().await else {
            return Err("the consumer was cancelled".into());
        };
        let delivery = delivery?;
        received.push(String::from_utf8_lossy(&delivery.data).into_owned());
        delivery.ack(BasicAckOptions::default()).await?;
    }
    conn.close(200, "done".into()).await?;
    Ok(received)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("AMQP_URL").ok())
        .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    for body in run(&url, "hello", 3).await? {
        println!("received: {body}");
    }
    Ok(())
}
