//! A node alarm holds MQTT publishers back by not reading their sockets,
//! while subscribers keep draining (their acknowledgements are read, so a
//! backlog larger than the in-flight window still arrives), as RabbitMQ
//! blocks only publishing connections. Once the alarm clears, the held-back
//! publishes are read, stored, acknowledged and delivered.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Server, v4};
use gw_core::{Watermark, Watermarks};
use gw_mqtt::Config;
use v4::QoS;

fn marks(memory_high: Watermark) -> Watermarks {
    Watermarks {
        disk_free_min: Some(Watermark::Off),
        memory_high,
    }
}

async fn until_pressure(s: &Server, on: bool) {
    common::eventually("the alarm to change", || {
        (s.engine.under_pressure() == on).then_some(())
    })
    .await;
}

fn puback_count(c: &mut v4::Client) -> usize {
    let mut n = 0;
    while let Ok(ev) = c.events.try_recv() {
        if matches!(ev, Ok(v4::Event::Incoming(v4::Packet::PubAck(_)))) {
            n += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_pauses_publishers_while_subscribers_keep_draining() {
    let s = Server::start_with(Config {
        max_inflight: 4,
        ..Config::default()
    })
    .await;
    let mut o = v4::options(s.addr, "drainer");
    o.set_clean_session(false);
    let (mut sub, _) = v4::connect_with(o.clone()).await;
    sub.subscribe("t/#", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    let mut publ = v4::connect(s.addr, "publisher").await;
    for i in 0..20 {
        publ.publish(
            "t/a",
            QoS::AtLeastOnce,
            false,
            format!("before {i}").as_bytes(),
        )
        .await;
    }

    s.engine.set_watermarks(marks(Watermark::Bytes(1)));
    until_pressure(&s, true).await;
    for i in 0..5 {
        publ.client
            .publish("t/a", QoS::AtLeastOnce, false, format!("held {i}"))
            .await
            .unwrap();
    }
    // The subscriber was never blocked: 20 messages through a window of 4.
    let (mut sub, _) = v4::connect_with(o).await;
    let got = sub.publishes(20).await;
    for (i, p) in got.iter().enumerate() {
        assert_eq!(p.payload, format!("before {i}").as_bytes());
    }
    sub.no_publish().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        puback_count(&mut publ),
        0,
        "a held-back publish was acknowledged"
    );

    s.engine.set_watermarks(marks(Watermark::Off));
    until_pressure(&s, false).await;
    let got = sub.publishes(5).await;
    for (i, p) in got.iter().enumerate() {
        assert_eq!(p.payload, format!("held {i}").as_bytes());
    }
    let mut acked = 0;
    while acked < 5 {
        publ.next_matching(|p| matches!(p, v4::Packet::PubAck(_)).then_some(()))
            .await;
        acked += 1;
    }
    s.stop().await;
}
