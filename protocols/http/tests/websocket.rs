//! MQTT over WebSocket: the `/mqtt` upgrade with the `mqtt` subprotocol hands
//! a byte stream to the injected handler (here an echo), driven by a real
//! WebSocket client.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use gw_http::{Config, StreamHandler, WsStream};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn echo(peers: Arc<Mutex<Vec<SocketAddr>>>) -> StreamHandler {
    Arc::new(move |stream: WsStream, peer: SocketAddr| {
        peers.lock().unwrap().push(peer);
        Box::pin(async move {
            let (mut r, mut w) = tokio::io::split(stream);
            let _ = tokio::io::copy(&mut r, &mut w).await;
            let _ = w.shutdown().await;
        })
    })
}

async fn connect(
    addr: SocketAddr,
    protocol: Option<&str>,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    String,
> {
    let mut req = format!("ws://{addr}/mqtt").into_client_request().unwrap();
    if let Some(p) = protocol {
        req.headers_mut()
            .insert("sec-websocket-protocol", p.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, res)) => {
            assert_eq!(res.headers().get("sec-websocket-protocol").unwrap(), "mqtt");
            Ok(ws)
        }
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_messages_are_one_byte_stream() {
    let peers = Arc::new(Mutex::new(Vec::new()));
    let gw = common::start_with(Config::default(), Some(echo(Arc::clone(&peers)))).await;
    let mut ws = connect(gw.addr, Some("mqtt")).await.unwrap();
    // An MQTT CONNECT split over two frames, then two packets in one frame.
    let connect_packet: Vec<u8> = vec![
        0x10, 0x0c, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x00,
    ];
    ws.send(Message::Binary(connect_packet[..5].to_vec().into()))
        .await
        .unwrap();
    ws.send(Message::Binary(connect_packet[5..].to_vec().into()))
        .await
        .unwrap();
    ws.send(Message::Binary(vec![0xc0, 0x00, 0xc0, 0x00].into()))
        .await
        .unwrap();
    let mut echoed = Vec::new();
    while echoed.len() < connect_packet.len() + 4 {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            Message::Binary(b) => echoed.extend_from_slice(&b),
            other => panic!("unexpected {other:?}"),
        }
    }
    let mut want = connect_packet.clone();
    want.extend_from_slice(&[0xc0, 0x00, 0xc0, 0x00]);
    assert_eq!(echoed, want);
    // Pings are answered by the WebSocket layer and never reach the stream.
    ws.send(Message::Ping(vec![1, 2].into())).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            Message::Pong(p) => {
                assert_eq!(&p[..], &[1, 2]);
                break;
            }
            Message::Binary(b) => panic!("ping leaked into the stream: {b:?}"),
            _ => {}
        }
    }
    assert!(peers.lock().unwrap()[0].ip().is_loopback());
    // A clean close ends the stream (EOF), and the handler closes its side.
    ws.close(None).await.unwrap();
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_frames_and_missing_subprotocol_are_refused() {
    let gw = common::start_with(
        Config::default(),
        Some(echo(Arc::new(Mutex::new(Vec::new())))),
    )
    .await;
    let err = connect(gw.addr, None).await.unwrap_err();
    assert!(err.contains("400"), "{err}");
    let err = connect(gw.addr, Some("graphql-ws")).await.unwrap_err();
    assert!(err.contains("400"), "{err}");

    let mut ws = connect(gw.addr, Some("mqtt")).await.unwrap();
    ws.send(Message::Text("CONNECT".into())).await.unwrap();
    let mut close_code = None;
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        match msg {
            Ok(Message::Close(frame)) => {
                close_code = frame.map(|f| u16::from(f.code));
                break;
            }
            Ok(Message::Binary(b)) => panic!("text was treated as data: {b:?}"),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert_eq!(close_code, Some(1003), "closed as unsupported data");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_handler_mqtt_is_not_found() {
    let gw = common::start().await;
    let err = connect(gw.addr, Some("mqtt")).await.unwrap_err();
    assert!(err.contains("404"), "{err}");
    let r = gw.api.anonymous().get("/mqtt").await;
    r.expect(404);
    gw.stop().await;
}
