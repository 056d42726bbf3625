//! No input makes a handler fail: random methods, paths, query strings,
//! content types and bodies (random bytes and JSON built from the API's own
//! field names) are sent to the router; every answer is below 500 and every
//! error has the JSON error body.
#![allow(clippy::unwrap_used)]

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::Request;
use gw_core::{Engine, EngineConfig, StartPosition};
use http_body_util::BodyExt;
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::ServiceExt;

struct World {
    rt: tokio::runtime::Runtime,
    app: axum::Router,
    _engine: Engine,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(EngineConfig::new(dir.path())).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let t = engine.tenant("/").unwrap();
        let spec = gw_core::QueueSpec {
            durable: true,
            ..Default::default()
        };
        let (q, _) = t.declare_queue("orders", spec).unwrap();
        q.create_group("g", StartPosition::Oldest, None).unwrap();
        let app = gw_http::router(gw_http::AppState::standalone(
            engine.clone(),
            gw_http::Config::default(),
        ));
        World {
            rt,
            app,
            _engine: engine,
            _dir: dir,
        }
    })
}

const TEMPLATES: &[&str] = &[
    "/v1.0/{}/queues",
    "/v1.0/{}/queues/{}",
    "/v1.0/{}/queues/{}/groups",
    "/v1.0/{}/queues/{}/groups/{}",
    "/v1.0/{}/queues/{}/groups/{}/messages",
    "/v1.0/{}/queues/{}/groups/{}/ack",
    "/v1.0/{}/queues/{}/groups/{}/deadletters",
    "/v1.0/{}/queues/{}/groups/{}/deadletters/ack",
    "/v1.0/{}/queues/{}/groups/{}/rewind",
    "/v1.0/{}/queues/{}/messages",
    "/v1.0/{}/queues/{}/messages/{}",
    "/v1.0/{}/quotas/dms",
    "/api/tenants/{}",
    "/api/users/{}",
    "/api/permissions/{}/{}",
    "/api/exchanges/{}/{}",
    "/api/bindings/{}",
    "/api/queues/{}/{}",
    "/api/queues/{}/{}/contents",
    "/api/connections/{}",
    "/mqtt",
    "/{}",
];

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("%2F".to_owned()),
        4 => Just("orders".to_owned()),
        4 => Just("g".to_owned()),
        1 => Just("q-1".to_owned()),
        1 => Just("q-99999999999999999999999".to_owned()),
        1 => Just("amq.dlq.1.g".to_owned()),
        1 => Just("%00".to_owned()),
        1 => Just("12".to_owned()),
        2 => "[a-zA-Z0-9%._~-]{1,12}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    (
        prop::sample::select(TEMPLATES),
        prop::collection::vec(segment(), 3),
    )
        .prop_map(|(t, segs)| {
            let mut out = String::new();
            let mut it = segs.into_iter();
            for (i, part) in t.split("{}").enumerate() {
                if i > 0 {
                    out.push_str(&it.next().unwrap_or_default());
                }
                out.push_str(part);
            }
            out
        })
}

fn query() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "max_msgs",
        "time_wait",
        "ack_wait",
        "tag",
        "tag_type",
        "include_deadletter",
        "include_messages_num",
        "page_size",
        "current_page",
        "if_unused",
        "if_empty",
        "x",
    ]);
    let value = prop_oneof![
        Just("1".to_owned()),
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("true".to_owned()),
        Just("and".to_owned()),
        Just("99999999999999999999999".to_owned()),
        "[a-z0-9%+ ]{0,6}",
    ];
    prop::collection::vec((key, value), 0..4).prop_map(|kv| {
        // time_wait is capped so the fuzzer does not sit in long polls.
        kv.into_iter()
            .map(|(k, v)| {
                if k == "time_wait" {
                    format!("{k}=1")
                } else {
                    format!("{k}={v}")
                }
            })
            .collect::<Vec<_>>()
            .join("&")
    })
}

fn json_value() -> impl Strategy<Value = Value> {
    let keys = prop::sample::select(vec![
        "messages",
        "body",
        "attributes",
        "tags",
        "delayTime",
        "message_group_id",
        "properties",
        "returnId",
        "message",
        "handler",
        "status",
        "groups",
        "name",
        "queue_mode",
        "redrive_policy",
        "max_consume_count",
        "retention_hours",
        "description",
        "to_time",
        "to_sequence",
        "to",
        "password",
        "type",
        "source",
        "destination",
        "destination_type",
        "routing_key",
        "arguments",
        "configure",
        "write",
        "read",
        "correlation_id",
        "expiration",
        "priority",
        "user_id",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(vec![
            "success",
            "fail",
            "NORMAL",
            "FIFO",
            "enable",
            "topic",
            "queue",
            "h1AAAA",
            "a b",
            "",
            "2026-01-01T00:00:00Z"
        ])
        .prop_map(|s| Value::String(s.to_owned())),
        "[a-z]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 40, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((keys.clone(), inner), 0..6).prop_map(|kv| Value::Object(
                kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
            )),
        ]
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        prop::collection::vec(any::<u8>(), 0..64),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        json_value().prop_map(|v| serde_json::to_vec(&json!({"messages": [{"body": v}]})).unwrap()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]
    #[test]
    fn no_input_makes_a_server_error(
        method in prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH"]),
        path in path(),
        query in query(),
        content_type in prop::sample::select(vec!["application/json", "text/plain", ""]),
        body in body(),
    ) {
        let w = world();
        let uri = if query.is_empty() { path.clone() } else { format!("{path}?{query}") };
        let mut req = Request::builder().method(method).uri(&uri).header("authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=");
        if !content_type.is_empty() {
            req = req.header("content-type", content_type);
        }
        let Ok(req) = req.body(Body::from(body)) else { return Ok(()) };
        let (status, bytes) = w.rt.block_on(async {
            let res = w.app.clone().oneshot(req).await.unwrap();
            let status = res.status().as_u16();
            (status, res.into_body().collect().await.unwrap().to_bytes())
        });
        prop_assert!(status < 500, "{method} {uri} answered {status}: {}", String::from_utf8_lossy(&bytes));
        if status >= 400 {
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            prop_assert!(v["error_code"].is_string() && v["error_msg"].is_string(), "{method} {uri}: {status} without the error body");
        }
    }
}
