//! The programs in examples/ run against a real gateway (every door on a
//! free port), so they cannot silently stop working: each example's `run`
//! is compiled into this test as it is and called with the test gateway's
//! addresses and the default guest/guest user.
#![allow(clippy::unwrap_used)]

mod common;

#[path = "../examples/amqp_publish_consume.rs"]
#[allow(dead_code)]
mod amqp_publish_consume;
#[path = "../examples/cross_protocol.rs"]
#[allow(dead_code)]
mod cross_protocol;
#[path = "../examples/http_send_consume.rs"]
#[allow(dead_code)]
mod http_send_consume;
#[path = "../examples/mqtt_publish_subscribe.rs"]
#[allow(dead_code)]
mod mqtt_publish_subscribe;

use common::{Suite, within};

fn hellos(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("hello {i}")).collect()
}

#[tokio::test]
async fn cross_protocol_example_moves_mqtt_readings_to_amqp() {
    let suite = Suite::start().await;
    let url = format!("amqp://guest:guest@{}/%2f", suite.amqp);
    let got = within(
        "the cross-protocol example",
        cross_protocol::run(&url, &suite.mqtt.to_string(), 3),
    )
    .await
    .unwrap();
    let want: Vec<(String, String)> = (0..3)
        .map(|i| {
            (
                "sensors.room1.temperature".to_owned(),
                format!("{{\"celsius\": {}}}", 20 + i),
            )
        })
        .collect();
    assert_eq!(got, want);
    suite.stop().await;
}

#[tokio::test]
async fn single_door_examples_get_back_what_they_sent() {
    let suite = Suite::start().await;
    let url = format!("amqp://guest:guest@{}/%2f", suite.amqp);
    let got = within(
        "the AMQP example",
        amqp_publish_consume::run(&url, "hello", 3),
    )
    .await
    .unwrap();
    assert_eq!(got, hellos(3));
    let got = within(
        "the MQTT example",
        mqtt_publish_subscribe::run(&suite.mqtt.to_string(), "guest", "guest", "demo", 3),
    )
    .await
    .unwrap();
    assert_eq!(got, hellos(3));
    let base = format!("http://{}", suite.http);
    let got = within(
        "the HTTP example",
        http_send_consume::run(&base, "guest", "guest", "demo-http", 3),
    )
    .await
    .unwrap();
    assert_eq!(got, hellos(3));
    // Run again: the queue and group exist now (DMS's 400s are expected), and
    // nothing of the first run is left to consume.
    let got = within(
        "the HTTP example, again",
        http_send_consume::run(&base, "guest", "guest", "demo-http", 3),
    )
    .await
    .unwrap();
    assert_eq!(got, hellos(3));
    suite.stop().await;
}
