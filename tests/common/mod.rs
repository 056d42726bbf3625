//! Shared helpers of the end-to-end suite: the whole gateway in-process (every
//! door on a free port of 127.0.0.1, data in a temporary directory) and one
//! real client per door: lapin for AMQP, rumqttc (5.0) for MQTT,
//! reqwest for HTTP. Every client authenticates as `guest`/`guest`, the
//! default user a fresh gateway has.
#![allow(dead_code, clippy::unwrap_used)]

pub mod pki;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;

/// How long a test waits for something that should happen. Only a guard
/// against hanging: every wait ends as soon as its event arrives.
pub const WAIT: Duration = Duration::from_secs(15);

/// `f` within [`WAIT`], or a panic naming `what`.
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A running gateway with all three doors.
pub struct Suite {
    gateway: gateway::Gateway,
    pub amqp: SocketAddr,
    pub mqtt: SocketAddr,
    pub http: SocketAddr,
    // Dropped after the gateway has stopped (declared last).
    _dir: tempfile::TempDir,
}

impl Suite {
    /// Starts the gateway on free ports with a fresh data directory.
    pub async fn start() -> Suite {
        Self::start_with(|_| {}).await
    }

    /// [`Suite::start`] with the configuration changed by `change` first.
    pub async fn start_with(change: impl FnOnce(&mut gateway::Config)) -> Suite {
        let dir = tempfile::tempdir().unwrap();
        let mut config = gateway::Config::ephemeral(dir.path());
        change(&mut config);
        let gateway = gateway::Gateway::start(config).await.unwrap();
        let a = gateway.addresses();
        Suite {
            amqp: a.amqp.expect("amqp door listening"),
            mqtt: a.mqtt.expect("mqtt door listening"),
            http: a.http.expect("http door listening"),
            gateway,
            _dir: dir,
        }
    }

    /// The engine behind the doors.
    pub fn engine(&self) -> &gw_core::Engine {
        self.gateway.engine()
    }

    /// Every door's first address, the TLS ones included.
    pub fn addresses(&self) -> gateway::Addresses {
        self.gateway.addresses()
    }

    /// Stops the gateway: connections are asked to close, the store is flushed.
    pub async fn stop(self) {
        self.gateway.stop(Duration::from_secs(5)).await;
    }

    /// An AMQP connection to vhost `/`.
    pub async fn amqp(&self) -> lapin::Connection {
        let uri = format!("amqp://guest:guest@{}/%2f", self.amqp);
        within(
            "AMQP connection",
            lapin::Connection::connect(uri.as_str(), lapin::ConnectionProperties::default()),
        )
        .await
        .unwrap()
    }

    /// An AMQP channel with publisher confirms on, so a publish returns once stored.
    pub async fn amqp_channel(&self) -> (lapin::Connection, lapin::Channel) {
        let conn = self.amqp().await;
        let ch = conn.create_channel().await.unwrap();
        ch.confirm_select(Default::default()).await.unwrap();
        (conn, ch)
    }

    /// An MQTT 5 client (clean start), connected.
    pub async fn mqtt5(&self, id: &str) -> Mqtt5 {
        let mut o = rumqttc::v5::MqttOptions::new(id, self.mqtt.ip().to_string(), self.mqtt.port());
        o.set_credentials("guest", "guest");
        o.set_keep_alive(Duration::from_secs(30));
        Mqtt5::connect(o).await
    }

    /// An HTTP client with Basic guest:guest.
    pub fn http(&self) -> Http {
        Http {
            client: reqwest::Client::new(),
            base: format!("http://{}", self.http),
        }
    }
}

// ------------------------------------------------------------------ AMQP

pub mod amqp {
    use futures::StreamExt;
    use lapin::options::{BasicConsumeOptions, BasicPublishOptions};
    use lapin::types::{AMQPValue, FieldTable, ShortString};
    use lapin::{BasicProperties, Channel, Consumer, message::Delivery};

    use super::within;

    /// A field table from pairs.
    pub fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in entries {
            t.insert(ShortString::from(*k), v.clone());
        }
        t
    }

    pub fn text(s: &str) -> AMQPValue {
        AMQPValue::LongString(s.into())
    }

    /// Declares a durable queue with arguments.
    pub async fn declare(ch: &Channel, name: &str, args: FieldTable) {
        ch.queue_declare(
            name.into(),
            lapin::options::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .unwrap();
    }

    /// Binds a queue to an exchange.
    pub async fn bind(ch: &Channel, queue: &str, exchange: &str, key: &str) {
        ch.queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            Default::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }

    /// Publishes and waits for the broker's confirm (the channel must be in
    /// confirm mode); asserts it is an ack.
    pub async fn publish(
        ch: &Channel,
        exchange: &str,
        key: &str,
        body: &[u8],
        props: BasicProperties,
    ) {
        let confirm = ch
            .basic_publish(
                exchange.into(),
                key.into(),
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await
            .unwrap();
        let confirmation = within("publisher confirm", confirm).await.unwrap();
        assert!(
            confirmation.is_ack(),
            "publish not confirmed: {confirmation:?}"
        );
    }

    /// Starts a consumer (manual acks) with consume arguments.
    pub async fn consume(ch: &Channel, queue: &str, args: FieldTable) -> Consumer {
        ch.basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            args,
        )
        .await
        .unwrap()
    }

    /// The next delivery.
    pub async fn next(c: &mut Consumer) -> Delivery {
        within("an AMQP delivery", c.next())
            .await
            .expect("consumer open")
            .unwrap()
    }

    /// A header of a delivery.
    pub fn header<'a>(d: &'a Delivery, name: &str) -> Option<&'a AMQPValue> {
        d.properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get(name))
    }

    /// A short-string property as `&str`.
    pub fn prop(p: &Option<ShortString>) -> Option<&str> {
        p.as_ref().map(ShortString::as_str)
    }
}

// ------------------------------------------------------------------ MQTT

/// An MQTT 5 client whose events arrive on a channel.
pub struct Mqtt5 {
    pub client: rumqttc::v5::AsyncClient,
    events: mpsc::UnboundedReceiver<Result<rumqttc::v5::Event, String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Mqtt5 {
    /// Connects with `o` (any transport) and asserts the CONNACK is a success.
    pub async fn connect(o: rumqttc::v5::MqttOptions) -> Mqtt5 {
        use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet};
        let (client, mut el) = rumqttc::v5::AsyncClient::new(o, 100);
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let ev = el.poll().await.map_err(|e| e.to_string());
                let stop = ev.is_err();
                if tx.send(ev).is_err() || stop {
                    return;
                }
            }
        });
        let mut c = Mqtt5 {
            client,
            events,
            task,
        };
        let ack = c
            .next_matching("CONNACK", |p| match p {
                Packet::ConnAck(a) => Some(a.code),
                _ => None,
            })
            .await;
        assert_eq!(ack, ConnectReturnCode::Success);
        c
    }

    /// The next incoming packet `f` picks; other events are skipped.
    pub async fn next_matching<T>(
        &mut self,
        what: &str,
        mut f: impl FnMut(&rumqttc::v5::mqttbytes::v5::Packet) -> Option<T>,
    ) -> T {
        use rumqttc::v5::Event;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let ev = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                .expect("event loop alive");
            match ev {
                Ok(Event::Incoming(p)) => {
                    if let Some(v) = f(&p) {
                        return v;
                    }
                }
                Ok(Event::Outgoing(_)) => {}
                Err(e) => panic!("MQTT connection error while waiting for {what}: {e}"),
            }
        }
    }

    /// Subscribes and waits for the SUBACK; asserts it granted `qos`.
    pub async fn subscribe(&mut self, filter: &str, qos: rumqttc::v5::mqttbytes::QoS) {
        use rumqttc::v5::mqttbytes::v5::{Packet, SubscribeReasonCode};
        self.client.subscribe(filter, qos).await.unwrap();
        let codes = self
            .next_matching("SUBACK", |p| match p {
                Packet::SubAck(s) => Some(s.return_codes.clone()),
                _ => None,
            })
            .await;
        assert_eq!(codes, [SubscribeReasonCode::Success(qos)], "{filter}");
    }

    /// Publishes at QoS 1 and waits for the PUBACK (so the message is stored).
    pub async fn publish_acked(
        &mut self,
        topic: &str,
        payload: &[u8],
        props: rumqttc::v5::mqttbytes::v5::PublishProperties,
    ) {
        use rumqttc::v5::mqttbytes::QoS;
        use rumqttc::v5::mqttbytes::v5::Packet;
        self.client
            .publish_with_properties(topic, QoS::AtLeastOnce, false, payload.to_vec(), props)
            .await
            .unwrap();
        let ack = self
            .next_matching("PUBACK", |p| match p {
                Packet::PubAck(a) => Some(a.clone()),
                _ => None,
            })
            .await;
        assert_eq!(
            ack.reason,
            rumqttc::v5::mqttbytes::v5::PubAckReason::Success,
            "{ack:?}"
        );
    }

    /// The next PUBLISH received.
    pub async fn next_publish(&mut self) -> rumqttc::v5::mqttbytes::v5::Publish {
        use rumqttc::v5::mqttbytes::v5::Packet;
        self.next_matching("a PUBLISH", |p| match p {
            Packet::Publish(p) => Some(p.clone()),
            _ => None,
        })
        .await
    }

    /// Disconnects cleanly.
    pub async fn disconnect(self) {
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout(WAIT, self.task).await;
    }
}

// ------------------------------------------------------------------ HTTP

/// An HTTP answer: status and JSON body (`Null` when empty or not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub json: Value,
}

impl Answer {
    /// Asserts the status, showing the body when it differs.
    pub fn expect(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "unexpected answer: {}", self.json);
        &self.json
    }
}

/// A reqwest client authenticated as guest:guest.
#[derive(Clone)]
pub struct Http {
    pub client: reqwest::Client,
    pub base: String,
}

impl Http {
    async fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        let res = within(
            "an HTTP answer",
            req.basic_auth("guest", Some("guest")).send(),
        )
        .await
        .unwrap();
        let status = res.status().as_u16();
        let bytes = res.bytes().await.unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer { status, json }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(self.client.get(format!("{}{path}", self.base)))
            .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send(self.client.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    /// Creates a DMS queue (`extra` adds fields such as `redrive_policy`).
    pub async fn create_queue(&self, name: &str, extra: Value) {
        let mut body = json!({ "name": name });
        if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
            b.extend(e);
        }
        self.post("/v1.0/%2F/queues", &body).await.expect(200);
    }

    /// Creates a consumer group on a DMS queue.
    pub async fn create_group(&self, queue: &str, group: &str) {
        self.post(
            &format!("/v1.0/%2F/queues/{queue}/groups"),
            &json!({ "groups": [{ "name": group }] }),
        )
        .await
        .expect(200);
    }

    /// Binds a queue to `amq.topic` through the management API.
    pub async fn bind_to_amq_topic(&self, queue: &str, key: &str) {
        let a = self
            .post(
                "/api/bindings/%2F",
                &json!({
                    "source": "amq.topic",
                    "destination": queue,
                    "destination_type": "queue",
                    "routing_key": key,
                }),
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.json);
    }

    /// DMS send; asserts every message was stored.
    pub async fn send_messages(&self, queue: &str, messages: Value) {
        let a = self
            .post(
                &format!("/v1.0/%2F/queues/{queue}/messages"),
                &json!({ "messages": messages }),
            )
            .await;
        for m in a.expect(200)["messages"].as_array().unwrap() {
            assert_eq!(m["state"], 0, "{}", a.json);
        }
    }

    /// Management publish (RabbitMQ's shape) to an exchange; returns `routed`.
    pub async fn publish(&self, exchange: &str, body: &Value) -> bool {
        let a = self
            .post(&format!("/api/exchanges/%2F/{exchange}/publish"), body)
            .await;
        a.expect(200)["routed"].as_bool().unwrap()
    }

    /// One DMS consume (long poll of up to `time_wait` s); `query` adds
    /// parameters such as `&tag=red`. Returns the entries (`message`, `handler`).
    pub async fn consume(&self, queue: &str, group: &str, query: &str) -> Vec<Value> {
        let a = self
            .get(&format!(
                "/v1.0/%2F/queues/{queue}/groups/{group}/messages?time_wait=5{query}"
            ))
            .await;
        a.expect(200).as_array().unwrap().clone()
    }

    /// Consumes until `n` messages came (each answer can hold several).
    pub async fn consume_n(&self, queue: &str, group: &str, query: &str, n: usize) -> Vec<Value> {
        let mut got = Vec::new();
        within("DMS messages", async {
            while got.len() < n {
                got.extend(self.consume(queue, group, query).await);
            }
        })
        .await;
        got
    }

    /// Acks consumed entries (status `success`); asserts all were accepted.
    pub async fn ack(&self, queue: &str, group: &str, entries: &[Value]) {
        self.ack_at(
            &format!("/v1.0/%2F/queues/{queue}/groups/{group}/ack"),
            entries,
        )
        .await;
    }

    pub async fn ack_at(&self, path: &str, entries: &[Value]) {
        let handlers: Vec<Value> = entries
            .iter()
            .map(|e| json!({ "handler": e["handler"], "status": "success" }))
            .collect();
        let a = self.post(path, &json!({ "message": handlers })).await;
        assert_eq!(a.expect(200)["success"], entries.len(), "{}", a.json);
    }
}
