//! The door over a stream that is not a plain `TcpStream` (as a TLS stream
//! will be): the accept layer hands it any `AsyncRead + AsyncWrite`, and the
//! door then writes through its writer task instead of writing to the socket
//! directly. lapin must not see a difference: confirms, a large body split
//! over many writes, consumption in order, heartbeats.
#![allow(clippy::unwrap_used)]

mod common;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use gw_core::{Engine, EngineConfig};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use common::within;

/// A TCP stream the door cannot recognise as one.
struct Opaque(TcpStream);

impl AsyncRead for Opaque {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Opaque {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// A listener yielding [`Opaque`] streams: what a TLS acceptor will look
/// like to the accept layer.
struct OpaqueListener(TcpListener);

impl gw_listen::Acceptor for OpaqueListener {
    type Stream = Opaque;

    async fn accept(&self) -> io::Result<(Opaque, SocketAddr)> {
        let (s, peer) = self.0.accept().await?;
        Ok((Opaque(s), peer))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lapin_over_a_stream_that_is_not_tcp() {
    common::init_logging();
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(EngineConfig::new(dir.path())).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (shutdown, tracker) = (CancellationToken::new(), TaskTracker::new());
    let config = gw_amqp::Config {
        heartbeat: 1,
        ..gw_amqp::Config::default()
    };
    let door = gw_amqp::AmqpDoor::new(engine.clone(), config, shutdown.clone(), tracker.clone());
    let permits = gw_listen::Permits::for_door(&door);
    let serving = tokio::spawn(gw_listen::serve_listener(
        OpaqueListener(listener),
        door,
        permits,
        shutdown.clone(),
        tracker.clone(),
    ));

    let uri = format!("amqp://guest:guest@{addr}/%2f?heartbeat=1");
    let conn = within(
        10,
        Connection::connect(&uri, ConnectionProperties::default()),
    )
    .await
    .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "opaque".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let big = vec![7u8; 4 << 20];
    let mut confirms = Vec::new();
    for i in 0..500u32 {
        let body = if i == 250 {
            big.clone()
        } else {
            i.to_be_bytes().to_vec()
        };
        let confirm = ch
            .basic_publish(
                "".into(),
                "opaque".into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default(),
            )
            .await
            .unwrap();
        confirms.push(confirm);
    }
    for c in confirms {
        assert!(within(10, c).await.unwrap().is_ack());
    }
    // Idle for a few heartbeat intervals: the door's heartbeats keep lapin
    // (and lapin's keep the door) from closing the connection.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut consumer = ch
        .basic_consume(
            "opaque".into(),
            "c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for i in 0..500u32 {
        let d = within(10, consumer.next()).await.unwrap().unwrap();
        if i == 250 {
            assert_eq!(d.data.len(), big.len());
        } else {
            assert_eq!(d.data, i.to_be_bytes());
        }
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    conn.close(200, "bye".into()).await.unwrap();

    shutdown.cancel();
    serving.await.unwrap();
    tracker.close();
    within(10, tracker.wait()).await;
    engine.close();
}
