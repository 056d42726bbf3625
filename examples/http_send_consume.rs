//! Send and consume over HTTP with reqwest, through the DMS queue API
//! (`protocols/http/README.md`): create a queue and a consumer group, send
//! three messages (answered once stored), consume them with a long poll and
//! acknowledge them.
//!
//! ```text
//! cargo run --example http_send_consume [-- BASE_URL]
//! ```
//!
//! `HTTP_URL` (argument or environment variable) defaults to
//! `http://127.0.0.1:8080`; `HTTP_USER` / `HTTP_PASSWORD` default to `guest` /
//! `guest`, the default user of a local gateway (loopback only).

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Sends `count` messages to `queue` (tenant `/`) and consumes them as group `demo`.
pub async fn run(
    base: &str,
    user: &str,
    password: &str,
    queue: &str,
    count: usize,
) -> Result<Vec<String>, Error> {
    let http = Client::new();
    // The tenant stands where DMS has a project id; "/" is written %2F.
    let queues = format!("{base}/v1.0/%2F/queues");
    let post = |url: String, body: Value| {
        http.post(url)
            .basic_auth(user, Some(password))
            .json(&body)
            .send()
    };

    // Create the queue and its group; DMS answers 400 with error code
    // 10240017 (queue) or 10240018 (group) when they exist already.
    for (url, body, exists) in [
        (queues.clone(), json!({"name": queue}), "10240017"),
        (
            format!("{queues}/{queue}/groups"),
            json!({"groups": [{"name": "demo"}]}),
            "10240018",
        ),
    ] {
        let resp = post(url, body).await?;
        if resp.status() == StatusCode::BAD_REQUEST {
            let err: Value = resp.json().await?;
            if err["error_code"] != exists {
                return Err(format!("create refused: {err}").into());
            }
        } else {
            resp.error_for_status()?;
        }
    }

    let messages: Vec<Value> = (0..count)
        .map(|i| json!({"body": format!("hello {i}")}))
        .collect();
    post(
        format!("{queues}/{queue}/messages"),
        json!({"messages": messages}),
    )
    .await?
    .error_for_status()?;

    let mut received = Vec::new();
    while received.len() < count {
        // A long poll: answers as soon as a message is there, or after 3 s empty.
        let got: Vec<Value> = http
            .get(format!(
                "{queues}/{queue}/groups/demo/messages?max_msgs=10&time_wait=3"
            ))
            .basic_auth(user, Some(password))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let acks: Vec<Value> = got
            .iter()
            .map(|m| json!({"handler": m["handler"], "status": "success"}))
            .collect();
        for m in &got {
            received.push(m["message"]["body"].as_str().unwrap_or_default().to_owned());
        }
        if !acks.is_empty() {
            post(
                format!("{queues}/{queue}/groups/demo/ack"),
                json!({"message": acks}),
            )
            .await?
            .error_for_status()?;
        }
    }
    Ok(received)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let base = std::env::args()
        .nth(1)
        .unwrap_or_else(|| env("HTTP_URL", "http://127.0.0.1:8080"));
    let (user, password) = (env("HTTP_USER", "guest"), env("HTTP_PASSWORD", "guest"));
    for body in run(&base, &user, &password, "demo-http", 3).await? {
        println!("received: {body}");
    }
    Ok(())
}
