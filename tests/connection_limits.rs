//! Each door's `max_connections` through the whole gateway: MQTT's counts
//! TCP and WebSocket connections together (both enter through the accept
//! layer with the same permits), and a client over it is answered in MQTT's
//! terms whichever way it came in; the other doors keep serving.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use common::{Suite, within};

/// An MQTT CONNECT (clean start, keep alive 60 s, no properties) of protocol
/// level 4 (3.1.1) or 5.
fn connect_packet(level: u8, client_id: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', level, 0x02, 0, 60];
    if level == 5 {
        body.push(0); // properties
    }
    body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend(body);
    packet
}

/// The CONNACK's return code (3.1.1) or reason code (5.0).
fn connack_code(bytes: &[u8]) -> u8 {
    assert_eq!(bytes.first(), Some(&0x20), "not a CONNACK: {bytes:?}");
    bytes[3]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_limit_counts_tcp_and_websocket_together() {
    let suite = Suite::start_with(|c| {
        c.mqtt
            .settings
            .insert("max_connections".into(), toml::Value::Integer(2));
    })
    .await;
    // One MQTT client over TCP, one over WebSocket: the limit is reached.
    let tcp = suite.mqtt5("over-tcp").await;
    let mut req = format!("ws://{}/mqtt", suite.http)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", "mqtt".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req.clone()).await.unwrap();
    ws.send(Message::Binary(connect_packet(5, "over-ws").into()))
        .await
        .unwrap();
    let accepted = within("the WebSocket CONNACK", ws.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(connack_code(&accepted.into_data()), 0x00);

    // A third, over WebSocket: CONNACK 0x97 Quota exceeded.
    let (mut third, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    third
        .send(Message::Binary(connect_packet(5, "third-ws").into()))
        .await
        .unwrap();
    let refused = within("the refusal", third.next()).await.unwrap().unwrap();
    assert_eq!(connack_code(&refused.into_data()), 0x97);

    // A fourth, over TCP with 3.1.1: 0x03 Server unavailable.
    let mut fourth = tokio::net::TcpStream::connect(suite.mqtt).await.unwrap();
    fourth
        .write_all(&connect_packet(4, "fourth"))
        .await
        .unwrap();
    let mut buf = [0u8; 4];
    within("the 3.1.1 refusal", fourth.read_exact(&mut buf))
        .await
        .unwrap();
    assert_eq!(connack_code(&buf), 0x03);

    // The other doors are not affected by MQTT's limit.
    let conn = suite.amqp().await;
    conn.close(200, "bye".into()).await.unwrap();

    // When the TCP client leaves, a WebSocket client takes its place.
    tcp.disconnect().await;
    let mut next = None;
    for _ in 0..50 {
        let mut req = format!("ws://{}/mqtt", suite.http)
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("sec-websocket-protocol", "mqtt".parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        ws.send(Message::Binary(connect_packet(5, "next-ws").into()))
            .await
            .unwrap();
        let ack = within("a CONNACK", ws.next()).await.unwrap().unwrap();
        if connack_code(&ack.into_data()) == 0x00 {
            next = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(next.is_some(), "the freed permit was never given out");
    suite.stop().await;
}
