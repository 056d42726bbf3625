//! Long polls: woken by a send at once, bounded by max_long_polls, many held
//! at once, and free of per-poll leftovers.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_wakes_a_waiting_consumer_at_once() {
    let gw = common::start().await;
    let api = gw.api.clone();
    let id = api.create_queue("%2F", json!({"name": "wake"})).await;
    api.create_group("%2F", &id, "g").await;
    let mut worst = Duration::ZERO;
    for round in 0..5 {
        let poll = {
            let api = api.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let got = api.consume("%2F", &id, "g", "time_wait=10").await;
                (Instant::now(), got)
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let sent_at = Instant::now();
        api.send_messages("%2F", &id, json!([{"body": round}]))
            .await;
        let (got_at, got) = poll.await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["message"]["body"], round);
        let h = got[0]["handler"].as_str().unwrap().to_owned();
        api.ack("%2F", &id, "g", &[(&h, "success")])
            .await
            .expect(200);
        worst = worst.max(got_at.saturating_duration_since(sent_at));
    }
    // The benchmark measures this precisely; here only a generous bound.
    assert!(worst < Duration::from_millis(500), "wake-up took {worst:?}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_are_bounded_and_many_can_wait() {
    let config = gw_http::Config {
        max_long_polls: 400,
        max_connections: 1000,
        ..gw_http::Config::default()
    };
    let gw = common::start_with(config, None).await;
    let api = gw.api.clone();
    let id = api.create_queue("%2F", json!({"name": "many"})).await;
    api.create_group("%2F", &id, "g").await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(500)
        .build()
        .unwrap();
    let url = format!(
        "http://{}/v1.0/%2F/queues/{id}/groups/g/messages?time_wait=3",
        gw.addr
    );
    let mut polls = Vec::new();
    for _ in 0..400 {
        let (c, u) = (client.clone(), url.clone());
        polls.push(tokio::spawn(async move {
            c.get(u)
                .basic_auth("guest", Some("guest"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    common::eventually(10, "400 waiting long polls", || {
        // All 400 permits taken.
        gw.engine
            .connections()
            .iter()
            .filter(|c| c.protocol == "http")
            .count()
            >= 400
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = api
        .get(&format!(
            "/v1.0/%2F/queues/{id}/groups/g/messages?time_wait=3"
        ))
        .await;
    r.expect(429);
    assert!(
        r.error_msg().contains("max_long_polls"),
        "{}",
        r.error_msg()
    );
    // A message wakes one of them; the rest end empty at time_wait.
    api.send_messages("%2F", &id, json!([{"body": "one"}]))
        .await;
    let mut statuses = Vec::new();
    for p in polls {
        statuses.push(p.await.unwrap());
    }
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let stats = gw
        .engine
        .tenant("/")
        .unwrap()
        .queue("many")
        .unwrap()
        .stats();
    assert_eq!(
        stats.groups[0].in_flight, 1,
        "exactly one poll got the message"
    );
    // Permits came back.
    let r = api
        .get(&format!(
            "/v1.0/%2F/queues/{id}/groups/g/messages?time_wait=1"
        ))
        .await;
    r.expect(200);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_gives_up_does_not_hide_messages() {
    let gw = common::start().await;
    let api = gw.api.clone();
    let id = api.create_queue("%2F", json!({"name": "quitters"})).await;
    api.create_group("%2F", &id, "g").await;
    // A client whose own timeout is shorter than time_wait walks away.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let url = format!(
        "http://{}/v1.0/%2F/queues/{id}/groups/g/messages?time_wait=10",
        gw.addr
    );
    let r = impatient
        .get(url)
        .basic_auth("guest", Some("guest"))
        .send()
        .await;
    assert!(r.is_err(), "the impatient client timed out");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let poll = {
        let api = api.clone();
        let id = id.clone();
        tokio::spawn(async move { api.consume("%2F", &id, "g", "time_wait=2").await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    api.send_messages("%2F", &id, json!([{"body": "still here"}]))
        .await;
    // Until the engine's pull_wait is cancel-safe the wake-up may go to the
    // departed client's waiter; the poll must still answer with the message.
    let got = tokio::time::timeout(Duration::from_secs(4), poll)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["message"]["body"], "still here");
    gw.stop().await;
}
