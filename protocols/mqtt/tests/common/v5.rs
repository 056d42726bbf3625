//! rumqttc 5.0 clients whose events arrive on a channel.

use super::*;
pub use rumqttc::v5::mqttbytes::QoS;
pub use rumqttc::v5::mqttbytes::v5::{
    ConnAck, ConnectReturnCode, Disconnect, DisconnectReasonCode, Filter, LastWill,
    LastWillProperties, Packet, PubAck, PubAckReason, Publish, PublishProperties,
    RetainForwardRule, SubscribeProperties, SubscribeReasonCode,
};
pub use rumqttc::v5::{AsyncClient, Event, MqttOptions};

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

pub async fn connect_with(o: MqttOptions) -> (Client, ConnAck) {
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

pub async fn connect(addr: SocketAddr, id: &str) -> Client {
    let (c, ack) = connect_with(options(addr, id)).await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    c
}

/// Connects expecting a refusal; returns its reason code.
pub async fn connect_refused(o: MqttOptions) -> ConnectReturnCode {
    let (_client, mut el) = AsyncClient::new(o, 10);
    loop {
        match tokio::time::timeout(WAIT, el.poll())
            .await
            .expect("answer in time")
        {
            Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => return code,
            Err(e) => panic!("not a refusal: {e}"),
            Ok(Event::Incoming(Packet::ConnAck(c))) => panic!("accepted: {c:?}"),
            Ok(_) => {}
        }
    }
}

impl Client {
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

    pub async fn no_publish(&mut self) {
        let until = tokio::time::Instant::now() + QUIET;
        while let Ok(Some(ev)) = tokio::time::timeout_at(until, self.events.recv()).await {
            if let Ok(Event::Incoming(Packet::Publish(p))) = ev {
                panic!("unexpected publish {p:?}");
            }
        }
    }

    pub async fn suback(&mut self) -> Vec<SubscribeReasonCode> {
        self.next_matching(|p| match p {
            Packet::SubAck(s) => Some(s.return_codes.clone()),
            _ => None,
        })
        .await
    }

    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Vec<SubscribeReasonCode> {
        self.client.subscribe(filter, qos).await.unwrap();
        self.suback().await
    }

    pub async fn puback(&mut self) -> PubAck {
        self.next_matching(|p| match p {
            Packet::PubAck(a) => Some(a.clone()),
            _ => None,
        })
        .await
    }

    /// The connection's end: the server's DISCONNECT if one came, and the error.
    pub async fn closed(&mut self) -> (Option<Disconnect>, String) {
        let mut disconnect = None;
        loop {
            match tokio::time::timeout(WAIT, self.events.recv()).await {
                Ok(Some(Err(e))) => return (disconnect, e),
                Ok(Some(Ok(Event::Incoming(Packet::Disconnect(d))))) => disconnect = Some(d),
                Ok(Some(Ok(_))) => {}
                Ok(None) => return (disconnect, "event loop ended".into()),
                Err(_) => panic!("connection not closed in time"),
            }
        }
    }

    pub async fn disconnect(mut self) {
        self.client.disconnect().await.unwrap();
        let _ = tokio::time::timeout(WAIT, self.closed()).await;
        self.task.abort();
    }

    pub fn kill(self) {
        self.task.abort();
    }
}
