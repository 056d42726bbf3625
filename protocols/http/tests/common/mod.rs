//! Shared test helpers: the engine on a temp dir with the door served on
//! 127.0.0.1:0 (by the gateway's accept layer), and a reqwest client whose
//! every answer is checked against the server's own `/openapi.json` (status
//! documented, body valid against the schema, with undocumented fields refused).
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gw_core::{Engine, EngineConfig};
use gw_http::{Config, StreamHandler};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A running HTTP door.
pub struct Gw {
    pub addr: SocketAddr,
    pub engine: Engine,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    pub dir: PathBuf,
    pub api: Api,
    _tmp: Option<tempfile::TempDir>,
    task: tokio::task::JoinHandle<()>,
}

pub async fn start() -> Gw {
    start_with(Config::default(), None).await
}

pub async fn start_with(config: Config, ws: Option<StreamHandler>) -> Gw {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let mut gw = start_in(&dir, config, ws).await;
    gw._tmp = Some(tmp);
    gw
}

/// Starts on an existing data directory (restart tests keep the TempDir themselves).
pub async fn start_in(dir: &Path, config: Config, ws: Option<StreamHandler>) -> Gw {
    start_engine(EngineConfig::new(dir), config, ws).await
}

/// The door over an engine opened with `engine_config` (an in-memory store
/// made to fail, for instance).
pub async fn start_engine(
    engine_config: EngineConfig,
    config: Config,
    ws: Option<StreamHandler>,
) -> Gw {
    let dir = engine_config.data_dir.clone();
    let engine = tokio::task::spawn_blocking(move || Engine::open(engine_config))
        .await
        .unwrap()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let door = gw_http::HttpDoor::new(
        engine.clone(),
        config,
        shutdown.clone(),
        tracker.clone(),
        ws,
    )
    .unwrap();
    let task = tokio::spawn(gw_listen::serve_listener(
        listener,
        door.clone(),
        gw_listen::Permits::for_door(&door),
        shutdown.clone(),
        tracker.clone(),
    ));
    let api = Api::new(addr).await;
    Gw {
        addr,
        engine,
        shutdown,
        tracker,
        dir: dir.to_path_buf(),
        api,
        _tmp: None,
        task,
    }
}

impl Gw {
    /// Stops accepting, waits for connections, closes the engine.
    pub async fn stop(self) -> Option<tempfile::TempDir> {
        self.shutdown.cancel();
        let _ = self.task.await;
        self.tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.tracker.wait()).await;
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || engine.close())
            .await
            .unwrap();
        self._tmp
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// An answer, already checked against the OpenAPI document.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub json: Value,
    pub text: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Resp {
    pub fn error_code(&self) -> &str {
        self.json["error_code"].as_str().unwrap_or("")
    }
    pub fn error_msg(&self) -> &str {
        self.json["error_msg"].as_str().unwrap_or("")
    }
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text);
        self
    }
}

/// A client with credentials (guest/guest by default).
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
    auth: Option<(String, String)>,
    pub spec: Arc<Spec>,
}

impl Api {
    async fn new(addr: SocketAddr) -> Api {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .unwrap();
        let base = format!("http://{addr}");
        let doc: Value = client
            .get(format!("{base}/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Api {
            base,
            client,
            auth: Some(("guest".into(), "guest".into())),
            spec: Arc::new(Spec::new(doc)),
        }
    }

    pub fn as_user(&self, user: &str, password: &str) -> Api {
        Api {
            auth: Some((user.into(), password.into())),
            ..self.clone()
        }
    }

    pub fn anonymous(&self) -> Api {
        Api {
            auth: None,
            ..self.clone()
        }
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let rb = self
            .client
            .request(method, format!("{}{}", self.base, path));
        match &self.auth {
            Some((u, p)) => rb.basic_auth(u, Some(p)),
            None => rb,
        }
    }

    /// Sends and checks the answer against the document.
    pub async fn send(&self, rb: reqwest::RequestBuilder) -> Resp {
        let req = rb.build().unwrap();
        let method = req.method().as_str().to_lowercase();
        let path = req.url().path().to_owned();
        let res = self.client.execute(req).await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        self.spec
            .check(&method, &path, status, &headers, &text, &json);
        Resp {
            status,
            json,
            text,
            headers,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.request(reqwest::Method::GET, path)).await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.send(self.request(reqwest::Method::DELETE, path)).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(self.request(reqwest::Method::POST, path).json(&body))
            .await
    }
    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.send(self.request(reqwest::Method::PUT, path).json(&body))
            .await
    }
    pub async fn put_empty(&self, path: &str) -> Resp {
        self.send(self.request(reqwest::Method::PUT, path)).await
    }
    pub async fn delete_json(&self, path: &str, body: Value) -> Resp {
        self.send(self.request(reqwest::Method::DELETE, path).json(&body))
            .await
    }

    // ---- DMS shortcuts ----

    pub async fn create_queue(&self, tenant: &str, body: Value) -> String {
        let r = self.post(&format!("/v1.0/{tenant}/queues"), body).await;
        r.expect(200);
        r.json["id"].as_str().unwrap().to_owned()
    }

    pub async fn create_group(&self, tenant: &str, queue: &str, group: &str) {
        self.post(
            &format!("/v1.0/{tenant}/queues/{queue}/groups"),
            json!({"groups": [{"name": group}]}),
        )
        .await
        .expect(200);
    }

    pub async fn send_messages(&self, tenant: &str, queue: &str, messages: Value) -> Resp {
        let r = self
            .post(
                &format!("/v1.0/{tenant}/queues/{queue}/messages"),
                json!({"messages": messages, "returnId": true}),
            )
            .await;
        r.expect(200);
        r
    }

    pub async fn consume(&self, tenant: &str, queue: &str, group: &str, query: &str) -> Vec<Value> {
        let r = self
            .get(&format!(
                "/v1.0/{tenant}/queues/{queue}/groups/{group}/messages?{query}"
            ))
            .await;
        r.expect(200);
        r.json.as_array().unwrap().clone()
    }

    pub async fn ack(
        &self,
        tenant: &str,
        queue: &str,
        group: &str,
        entries: &[(&str, &str)],
    ) -> Resp {
        let message: Vec<Value> = entries
            .iter()
            .map(|(h, s)| json!({"handler": h, "status": s}))
            .collect();
        self.post(
            &format!("/v1.0/{tenant}/queues/{queue}/groups/{group}/ack"),
            json!({ "message": message }),
        )
        .await
    }
}

/// The OpenAPI document and what was checked against it.
pub struct Spec {
    pub doc: Value,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
    /// (method, path template, status) seen.
    pub seen: Mutex<BTreeSet<(String, String, u16)>>,
}

/// Every object schema refuses properties it does not list, so an
/// undocumented field in an answer fails the check.
fn close_objects(v: &mut Value) {
    match v {
        Value::Object(o) => {
            if o.contains_key("properties") && !o.contains_key("additionalProperties") {
                o.insert("additionalProperties".into(), Value::Bool(false));
            }
            for (_, child) in o.iter_mut() {
                close_objects(child);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(close_objects),
        _ => {}
    }
}

impl Spec {
    pub fn new(doc: Value) -> Spec {
        assert_eq!(doc["openapi"], "3.1.0", "OpenAPI 3.1");
        Spec {
            doc,
            validators: Mutex::new(HashMap::new()),
            seen: Mutex::new(BTreeSet::new()),
        }
    }

    /// The documented path template a concrete (percent-encoded) path matches.
    pub fn template(&self, path: &str) -> Option<String> {
        let want: Vec<&str> = path.split('/').collect();
        let paths = self.doc["paths"].as_object()?;
        // Prefer the template with the most literal segments.
        let mut best: Option<(usize, &String)> = None;
        for t in paths.keys() {
            let segs: Vec<&str> = t.split('/').collect();
            if segs.len() != want.len() {
                continue;
            }
            let mut literal = 0;
            let ok = segs.iter().zip(&want).all(|(s, w)| {
                if s.starts_with('{') && s.ends_with('}') {
                    !w.is_empty()
                } else {
                    literal += 1;
                    s == w
                }
            });
            if ok && best.is_none_or(|(l, _)| literal > l) {
                best = Some((literal, t));
            }
        }
        best.map(|(_, t)| t.clone())
    }

    #[track_caller]
    pub fn check(
        &self,
        method: &str,
        path: &str,
        status: u16,
        headers: &reqwest::header::HeaderMap,
        text: &str,
        json: &Value,
    ) {
        let Some(template) = self.template(path) else {
            // Unknown routes answer the documented error body with 404.
            assert_eq!(
                status, 404,
                "{method} {path}: undocumented path answered {status}"
            );
            self.validate(
                "ErrorBody",
                &json!({"$ref": "#/components/schemas/ErrorBody"}),
                json,
                method,
                path,
            );
            return;
        };
        let op = &self.doc["paths"][&template][method];
        if op.is_null() {
            assert_eq!(
                status, 405,
                "{method} {template}: undocumented method answered {status}"
            );
            return;
        }
        let resp = &op["responses"][status.to_string()];
        assert!(
            !resp.is_null(),
            "{method} {template}: status {status} is not documented; body: {text}"
        );
        self.seen
            .lock()
            .unwrap()
            .insert((method.to_owned(), template.clone(), status));
        let content = &resp["content"];
        if content.is_null() || content.as_object().is_some_and(|c| c.is_empty()) {
            assert!(
                text.is_empty() || status == 101,
                "{method} {template} {status}: documented without a body, got {text}"
            );
            return;
        }
        let ct = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let (media, entry) = content.as_object().unwrap().iter().next().unwrap();
        assert!(
            ct.starts_with(media.as_str()),
            "{method} {template} {status}: content type {ct}, documented {media}"
        );
        if media == "application/json" {
            let key = format!("{method} {template} {status}");
            self.validate(&key, &entry["schema"], json, method, path);
        }
    }

    #[track_caller]
    fn validate(&self, key: &str, schema: &Value, instance: &Value, method: &str, path: &str) {
        let v = {
            let mut cache = self.validators.lock().unwrap();
            Arc::clone(cache.entry(key.to_owned()).or_insert_with(|| {
                let mut s = schema.clone();
                let mut components = self.doc["components"].clone();
                close_objects(&mut components);
                close_objects(&mut s);
                if let Value::Object(o) = &mut s {
                    o.insert("components".into(), components);
                } else {
                    s = json!({"allOf": [s], "components": components});
                }
                Arc::new(
                    jsonschema::validator_for(&s)
                        .unwrap_or_else(|e| panic!("schema of {key}: {e}")),
                )
            }))
        };
        let errors: Vec<String> = v
            .iter_errors(instance)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {path}: answer does not match the OpenAPI schema ({key}):\n{}\nbody: {instance}",
            errors.join("\n")
        );
    }
}

/// Polls until `f` holds (or panics after `secs`).
pub async fn eventually<F: FnMut() -> bool>(secs: u64, what: &str, mut f: F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of an unlabelled (or fully labelled) sample in /metrics text:
/// `name` is everything before the space.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}
