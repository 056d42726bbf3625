//! Every kind of bad input gets its own clear JSON error, and what is
//! stored is not harmed by any of it.
#![allow(clippy::unwrap_used)]

mod common;

use serde_json::json;

const T: &str = "%2F";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_named_errors_and_harm_nothing() {
    let config = gw_http::Config {
        max_body_bytes: 600 * 1024,
        ..gw_http::Config::default()
    };
    let gw = common::start_with(config, None).await;
    let api = &gw.api;
    let id = api.create_queue(T, json!({"name": "safe"})).await;
    api.create_group(T, &id, "g").await;
    api.send_messages(T, &id, json!([{"body": "kept"}])).await;
    let send = format!("/v1.0/{T}/queues/{id}/messages");

    // Malformed JSON.
    let r = api
        .send(
            api.request(reqwest::Method::POST, &send)
                .header("content-type", "application/json")
                .body("{\"messages\": [{\"body\": "),
        )
        .await;
    r.expect(400);
    assert_eq!(r.error_code(), "10240009");
    assert!(r.error_msg().contains("malformed"), "{}", r.error_msg());
    // Wrong types and unknown fields, named.
    let r = api
        .post(
            &send,
            json!({"messages": [{"body": "x", "delayTime": "soon"}]}),
        )
        .await;
    r.expect(400);
    assert!(
        r.error_msg().contains("messages[0].delayTime"),
        "{}",
        r.error_msg()
    );
    let r = api
        .post(&send, json!({"messages": [{"body": "x", "delaytime": 5}]}))
        .await;
    r.expect(400);
    assert!(r.error_msg().contains("delaytime"), "{}", r.error_msg());
    let r = api
        .post(&send, json!({"messages": [{"attributes": {}}]}))
        .await;
    r.expect(400);
    assert!(r.error_msg().contains("body"), "{}", r.error_msg());
    let r = api
        .post(
            &format!("/v1.0/{T}/queues"),
            json!({"name": "x", "queue_mod": "FIFO"}),
        )
        .await;
    r.expect(400);
    assert!(r.error_msg().contains("queue_mod"), "{}", r.error_msg());
    let r = api
        .post(
            &format!("/v1.0/{T}/queues"),
            json!({"name": "x", "queue_mode": "LIFO"}),
        )
        .await;
    r.expect(400);
    assert!(r.error_msg().contains("queue_mode"), "{}", r.error_msg());
    // Tags: a 4th one, a bad one.
    let r = api
        .post(
            &send,
            json!({"messages": [{"body": 1, "tags": ["a", "b", "c", "d"]}]}),
        )
        .await;
    r.expect(400);
    assert_eq!(r.error_code(), "10240004");
    assert!(
        r.error_msg().contains("messages[0].tags"),
        "{}",
        r.error_msg()
    );
    let r = api
        .post(
            &send,
            json!({"messages": [{"body": 1}, {"body": 2, "tags": ["ok", "not ok"]}]}),
        )
        .await;
    r.expect(400);
    assert!(
        r.error_msg().contains("messages[1].tags[1]"),
        "{}",
        r.error_msg()
    );
    // Batch limits.
    let eleven: Vec<_> = (0..11).map(|i| json!({"body": i})).collect();
    let r = api.post(&send, json!({"messages": eleven})).await;
    r.expect(400);
    assert!(
        r.error_msg().contains("max_messages_per_send"),
        "{}",
        r.error_msg()
    );
    api.post(&send, json!({"messages": []})).await.expect(400);
    let big = "x".repeat(530_000);
    let r = api.post(&send, json!({"messages": [{"body": big}]})).await;
    r.expect(400);
    assert!(
        r.error_msg().contains("messages[0].body"),
        "{}",
        r.error_msg()
    );
    let half = "x".repeat(320_000);
    let r = api
        .post(&send, json!({"messages": [{"body": half}, {"body": half}]}))
        .await;
    r.expect(413);
    assert_eq!(r.error_code(), "10240413");
    // Not JSON.
    let r = api
        .send(
            api.request(reqwest::Method::POST, &send)
                .header("content-type", "text/plain")
                .body("hello"),
        )
        .await;
    r.expect(415);
    let r = api
        .send(api.request(reqwest::Method::POST, &send).body("{}"))
        .await;
    r.expect(415);

    // Query parameters: misspelt, out of range, repeated, bad tags.
    let consume = format!("/v1.0/{T}/queues/{id}/groups/g/messages");
    for (query, code, needle) in [
        ("max_msg=5", "10240400", "max_msg"),
        ("max_msgs=0", "10240014", "max_msgs"),
        ("max_msgs=11", "10240014", "max_msgs"),
        ("max_msgs=ten", "10240014", "max_msgs"),
        ("time_wait=61", "10240021", "time_wait"),
        ("time_wait=0", "10240021", "time_wait"),
        ("ack_wait=0", "10240400", "ack_wait"),
        ("time_wait=1&time_wait=2", "10240400", "time_wait"),
        ("tag=a&tag=b&tag=c&tag=d", "10240004", "tag"),
        ("tag=no%20space", "10240004", "tag"),
        ("tag=a&tag_type=xor", "10240400", "tag_type"),
    ] {
        let r = api.get(&format!("{consume}?{query}")).await;
        r.expect(400);
        assert_eq!(r.error_code(), code, "{query}: {}", r.text);
        assert!(r.error_msg().contains(needle), "{query}: {}", r.error_msg());
    }
    api.get(&format!("/v1.0/{T}/queues?include_deadleter=true"))
        .await
        .expect(400);
    api.get(&format!("/v1.0/{T}/queues?include_deadletter=yes"))
        .await
        .expect(400);
    api.get(&format!("/v1.0/{T}/queues/{id}/groups/g/deadletters?tag=a"))
        .await
        .expect(400);

    // Unknown objects.
    api.get(&format!(
        "/v1.0/{T}/queues/q-999999/groups/g/messages?time_wait=1"
    ))
    .await
    .expect(404);
    api.get(&format!("/v1.0/{T}/queues/nope")).await.expect(404);
    api.get(&consume.replace("/g/", "/nog/")).await.expect(404);
    api.get("/v1.0/no-such-tenant/queues").await.expect(404);
    api.get(&format!("/v1.0/{T}/queues/amq.default"))
        .await
        .expect(404);
    api.get("/v2/whatever").await.expect(404);
    let r = api
        .send(api.request(reqwest::Method::PATCH, &format!("/v1.0/{T}/queues")))
        .await;
    r.expect(405);
    assert_eq!(r.error_code(), "10240405");

    // Handlers: garbage, another group's, bad status, empty list.
    let ack = format!("/v1.0/{T}/queues/{id}/groups/g/ack");
    let r = api
        .post(
            &ack,
            json!({"message": [{"handler": "garbage", "status": "success"}]}),
        )
        .await;
    r.expect(400);
    assert!(
        r.error_msg().contains("message[0].handler"),
        "{}",
        r.error_msg()
    );
    api.create_group(T, &id, "other").await;
    let theirs = api.consume(T, &id, "other", "time_wait=1").await;
    let h = theirs[0]["handler"].as_str().unwrap();
    let r = api
        .post(
            &ack,
            json!({"message": [{"handler": h, "status": "success"}]}),
        )
        .await;
    r.expect(400);
    assert!(
        r.error_msg().contains("another queue or group"),
        "{}",
        r.error_msg()
    );
    let r = api
        .post(
            &ack,
            json!({"message": [{"handler": h, "status": "maybe"}]}),
        )
        .await;
    r.expect(400);
    assert!(
        r.error_msg().contains("message[0].status"),
        "{}",
        r.error_msg()
    );
    api.post(&ack, json!({"message": []})).await.expect(400);

    // Conflicts.
    let r = api
        .post(&format!("/v1.0/{T}/queues"), json!({"name": "safe"}))
        .await;
    r.expect(400);
    assert_eq!(r.error_code(), "10240017");
    let r = api
        .post(
            &format!("/v1.0/{T}/queues/{id}/groups"),
            json!({"groups": [{"name": "g"}]}),
        )
        .await;
    r.expect(400);
    assert_eq!(r.error_code(), "10240018");
    let r = api
        .post(
            &format!("/v1.0/{T}/queues/{id}/groups"),
            json!({"groups": [{"name": "bad.name"}]}),
        )
        .await;
    r.expect(400);
    assert_eq!(r.error_code(), "10240007");

    // Credentials.
    let r = api.anonymous().get(&format!("/v1.0/{T}/queues")).await;
    r.expect(401);
    assert_eq!(r.error_code(), "10240103");
    assert!(r.headers.contains_key("www-authenticate"));
    let r = api
        .as_user("guest", "wrong")
        .get(&format!("/v1.0/{T}/queues"))
        .await;
    r.expect(401);
    assert_eq!(r.error_code(), "10240101");
    let r = api
        .send(
            api.anonymous()
                .request(reqwest::Method::GET, &format!("/v1.0/{T}/queues"))
                .header("authorization", "Basic !!"),
        )
        .await;
    r.expect(401);

    // An expiration that is neither a number nor a string of digits, through
    // the send API and the exchange publish API (which take RabbitMQ's "60000").
    for expiration in [json!("soon"), json!(-1)] {
        let r = api
            .post(
                &send,
                json!({"messages": [{"body": "x", "properties": {"expiration": expiration}}]}),
            )
            .await;
        r.expect(400);
        assert!(r.error_msg().contains("expiration"), "{}", r.error_msg());
        let r = api
            .post(
                &format!("/api/exchanges/{T}/amq.default/publish"),
                json!({"routing_key": "safe", "payload": "x", "properties": {"expiration": expiration}}),
            )
            .await;
        r.expect(400);
        assert!(r.error_msg().contains("expiration"), "{}", r.error_msg());
    }

    // After all that, the queue holds exactly what was sent well.
    let got = api.consume(T, &id, "g", "time_wait=1").await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["message"]["body"], "kept");
    let q = gw.engine.tenant("/").unwrap().queue("safe").unwrap();
    assert_eq!(q.stats().published, 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_answer_429() {
    let config = gw_http::Config {
        max_queues_per_tenant: 2,
        max_groups_per_queue: 2,
        ..gw_http::Config::default()
    };
    let gw = common::start_with(config, None).await;
    let api = &gw.api;
    let a = api.create_queue(T, json!({"name": "a"})).await;
    api.create_queue(T, json!({"name": "b"})).await;
    let r = api
        .post(&format!("/v1.0/{T}/queues"), json!({"name": "c"}))
        .await;
    // DMS answers 400 with the quota's code, not 429.
    r.expect(400);
    assert_eq!(r.error_code(), "10240020");
    let r = api
        .post(
            &format!("/v1.0/{T}/queues/{a}/groups"),
            json!({"groups": [{"name": "x"}, {"name": "y"}, {"name": "z"}]}),
        )
        .await;
    r.expect(400);
    assert_eq!(r.error_code(), "10240019");
    // Nothing of the refused request was created.
    assert!(
        gw.engine
            .tenant("/")
            .unwrap()
            .queue("a")
            .unwrap()
            .group_names()
            .is_empty()
    );
    let quotas = api.get(&format!("/v1.0/{T}/quotas/dms")).await;
    assert_eq!(quotas.json["quotas"]["resources"][0]["used"], 2);
    assert_eq!(quotas.json["quotas"]["resources"][1]["quota"], 2);
    gw.stop().await;
}

/// A consumer of one group rewrites its handler to name another group's
/// delivery. Handlers are signed, so every alteration is refused, and a
/// batch holding one forged handler acks nothing, not even its genuine entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_handlers_are_refused_and_ack_nothing() {
    let gw = common::start().await;
    let api = &gw.api;
    let id = api.create_queue(T, json!({"name": "forge"})).await;
    api.create_group(T, &id, "g").await;
    let ack = format!("/v1.0/{T}/queues/{id}/groups/g/ack");
    api.send_messages(T, &id, json!([{"body": "forge-me"}]))
        .await
        .expect(200);
    let mine = api.consume(T, &id, "g", "time_wait=1").await;
    let genuine = mine[0]["handler"].as_str().unwrap().to_owned();
    let in_flight = |group: &str| {
        let q = gw.engine.tenant("/").unwrap().queue("forge").unwrap();
        q.stats()
            .groups
            .iter()
            .find(|s| s.name == group)
            .unwrap()
            .in_flight
    };
    let before = in_flight("g");
    assert!(before >= 1);
    for forged in forgeries(&genuine) {
        let r = api
            .post(
                &ack,
                json!({"message": [
                    {"handler": genuine, "status": "success"},
                    {"handler": forged, "status": "fail"},
                ]}),
            )
            .await;
        r.expect(400);
        assert!(
            r.error_msg().contains("message[1].handler"),
            "{}",
            r.error_msg()
        );
    }
    assert_eq!(in_flight("g"), before, "a refused batch acked something");
    api.ack(T, &id, "g", &[(&genuine, "success")])
        .await
        .expect(200);
    assert_eq!(in_flight("g"), before - 1);
    gw.stop().await;
}

/// Handlers made from a genuine one: its group renamed, its sequence number
/// moved on, a flag set, its signature cut or replaced.
fn forgeries(genuine: &str) -> Vec<String> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let raw = b64.decode(&genuine[2..]).unwrap();
    let (fields, signature) = raw.split_at(raw.len() - 16);
    let encode = |bytes: &[u8]| format!("{}{}", &genuine[..2], b64.encode(bytes));
    let mut out = Vec::new();
    // The sequence number (bytes 9..17) one further, signature kept.
    let mut later = raw.clone();
    later[16] = later[16].wrapping_add(1);
    out.push(encode(&later));
    // The dead-letter flag set.
    let mut flagged = raw.clone();
    flagged[0] ^= 1;
    out.push(encode(&flagged));
    // Another group name of the same length.
    let mut regrouped = fields.to_vec();
    if let Some(last) = regrouped.last_mut() {
        *last ^= 0x01;
    }
    regrouped.extend_from_slice(signature);
    out.push(encode(&regrouped));
    // No signature, and a made-up one.
    out.push(encode(fields));
    let mut made_up = fields.to_vec();
    made_up.extend_from_slice(&[0u8; 16]);
    out.push(encode(&made_up));
    out
}
