//! rumqttc 3.1.1 clients whose events arrive on a channel.

use super::*;
pub use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, LastWill, MqttOptions, Packet, Publish, QoS,
};

/// A 3.1.1 client whose events arrive on `events`.
pub struct Client {
    pub client: AsyncClient,
    pub events: mpsc::UnboundedReceiver<Result<Event, String>>,
    task: tokio::task::JoinHandle<()>,
}

pub fn options(addr: SocketAddr, id: &str) -> MqttOptions {
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o
}

/// Connects with `options` and waits for the CONNACK (returned).
pub async fn connect_with(o: MqttOptions) -> (Client, rumqttc::ConnAck) {
    let (client, mut el) = AsyncClient::new(o, 100);
    let (tx, mut events) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            let ev = el.poll().await;
            let stop = ev.is_err();
            if tx.send(ev.map_err(|e| e.to_string())).is_err() || stop {
                return;
            }
        }
    });
    let connack = loop {
        match tokio::time::timeout(WAIT, events.recv()).await {
            Ok(Some(Ok(Event::Incoming(Packet::ConnAck(c))))) => break c,
            Ok(Some(Ok(_))) => {}
            other => panic!("no CONNACK: {other:?}"),
        }
    };
    (
        Client {
            client,
            events,
            task,
        },
        connack,
    )
}

/// Connects expecting a refusal; returns its return code.
pub async fn connect_with_refusal(o: MqttOptions) -> ConnectReturnCode {
    let (_client, mut el) = AsyncClient::new(o, 10);
    loop {
        match tokio::time::timeout(WAIT, el.poll())
            .await
            .expect("answer in time")
        {
            Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return code,
            Err(e) => panic!("not a refusal: {e}"),
            Ok(Event::Incoming(Packet::ConnAck(c))) => panic!("accepted: {c:?}"),
            Ok(_) => {}
        }
    }
}

/// A clean-session client.
pub async fn connect(addr: SocketAddr, id: &str) -> Client {
    let (c, ack) = connect_with(options(addr, id)).await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    c
}

impl Client {
    /// The next incoming packet matching `f`, skipping others.
    pub async fn next_matching<T>(&mut self, mut f: impl FnMut(&Packet) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let ev = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .expect("expected packet in time")
                .expect("event loop alive");
            match ev {
                Ok(Event::Incoming(p)) => {
                    if let Some(v) = f(&p) {
                        return v;
                    }
                }
                Ok(Event::Outgoing(_)) => {}
                Err(e) => panic!("connection error: {e}"),
            }
        }
    }

    pub async fn publish_packet(&mut self) -> Publish {
        self.next_matching(|p| match p {
            Packet::Publish(p) => Some(p.clone()),
            _ => None,
        })
        .await
    }

    /// `n` publishes, in order.
    pub async fn publishes(&mut self, n: usize) -> Vec<Publish> {
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(self.publish_packet().await);
        }
        v
    }

    /// Fails if a PUBLISH arrives within [`QUIET`].
    pub async fn no_publish(&mut self) {
        let until = tokio::time::Instant::now() + QUIET;
        while let Ok(Some(ev)) = tokio::time::timeout_at(until, self.events.recv()).await {
            if let Ok(Event::Incoming(Packet::Publish(p))) = ev {
                panic!("unexpected publish {p:?}");
            }
        }
    }

    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Vec<rumqttc::SubscribeReasonCode> {
        self.client.subscribe(filter, qos).await.unwrap();
        self.next_matching(|p| match p {
            Packet::SubAck(s) => Some(s.return_codes.clone()),
            _ => None,
        })
        .await
    }

    /// Publishes and, for QoS > 0, waits for its acknowledgement.
    pub async fn publish(&mut self, topic: &str, qos: QoS, retain: bool, payload: &[u8]) {
        self.client
            .publish(topic, qos, retain, payload.to_vec())
            .await
            .unwrap();
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => {
                self.next_matching(|p| matches!(p, Packet::PubAck(_)).then_some(()))
                    .await
            }
            QoS::ExactlyOnce => {
                self.next_matching(|p| matches!(p, Packet::PubComp(_)).then_some(()))
                    .await
            }
        }
    }

    /// Waits until the connection fails; returns the error text.
    pub async fn closed(&mut self) -> String {
        loop {
            match tokio::time::timeout(WAIT, self.events.recv()).await {
                Ok(Some(Err(e))) => return e,
                Ok(Some(Ok(_))) => {}
                Ok(None) => return "event loop ended".into(),
                Err(_) => panic!("connection not closed in time"),
            }
        }
    }

    /// Sends DISCONNECT and waits for the event loop to stop.
    pub async fn disconnect(mut self) {
        self.client.disconnect().await.unwrap();
        let _ = tokio::time::timeout(WAIT, self.closed()).await;
        self.task.abort();
    }

    /// Drops the network connection without DISCONNECT (a killed client).
    pub fn kill(self) {
        self.task.abort();
    }
}
