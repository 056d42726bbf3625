//! A bare AMQP client over a plain TCP socket: it sends exactly the bytes a
//! test asks for and reads frames back, so bad input and exact close codes can
//! be checked.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use amq_protocol::protocol::{AMQPClass, basic, channel, connection};
use amq_protocol::types::{AMQPValue, FieldTable};
use bytes::BytesMut;
use gw_amqp::codec::{Frame, PROTOCOL_HEADER, decode, encode_content, encode_method};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Raw {
    pub sock: TcpStream,
    pub buf: BytesMut,
}

/// How a raw connection logs in.
pub struct Login<'a> {
    pub user: &'a str,
    pub password: &'a str,
    pub vhost: &'a str,
    pub failure_close: bool,
    pub channel_max: u16,
    pub frame_max: u32,
    pub heartbeat: u16,
}

impl Default for Login<'_> {
    fn default() -> Self {
        Login {
            user: "guest",
            password: "guest",
            vhost: "/",
            failure_close: true,
            channel_max: 0,
            frame_max: 0,
            heartbeat: 0,
        }
    }
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        Raw {
            sock: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).await.unwrap();
    }

    pub async fn method(&mut self, channel: u16, m: AMQPClass) {
        let mut out = BytesMut::new();
        encode_method(&mut out, channel, &m).unwrap();
        self.send(&out).await;
    }

    /// The next frame, or None at end of stream (5 s at most).
    pub async fn frame(&mut self) -> Option<Frame> {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Some(f) = decode(&mut self.buf, 0).unwrap() {
                    return Some(f);
                }
                if self.sock.read_buf(&mut self.buf).await.unwrap_or(0) == 0 {
                    return None;
                }
            }
        })
        .await
        .expect("no frame within 5 s")
    }

    /// Raw bytes until end of stream.
    pub async fn rest(&mut self) -> Vec<u8> {
        let mut out = self.buf.to_vec();
        tokio::time::timeout(Duration::from_secs(5), self.sock.read_to_end(&mut out))
            .await
            .expect("socket not closed within 5 s")
            .ok();
        out
    }

    /// Waits for `connection.close` (skipping other frames); answers close-ok.
    pub async fn connection_close(&mut self) -> connection::Close {
        loop {
            match self.frame().await {
                Some(Frame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Close(c)))) => {
                    let ok = connection::AMQPMethod::CloseOk(connection::CloseOk {});
                    let _ = self.try_method(0, AMQPClass::Connection(ok)).await;
                    return c;
                }
                Some(_) => {}
                None => panic!("connection ended without connection.close"),
            }
        }
    }

    /// Waits for `channel.close` on `ch` (skipping other frames); answers close-ok.
    pub async fn channel_close(&mut self, ch: u16) -> channel::Close {
        loop {
            match self.frame().await {
                Some(Frame::Method(c, AMQPClass::Channel(channel::AMQPMethod::Close(close))))
                    if c == ch =>
                {
                    let ok = channel::AMQPMethod::CloseOk(channel::CloseOk {});
                    self.method(ch, AMQPClass::Channel(ok)).await;
                    return close;
                }
                Some(Frame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Close(c)))) => {
                    panic!("connection closed instead: {c:?}")
                }
                Some(_) => {}
                None => panic!("connection ended without channel.close"),
            }
        }
    }

    async fn try_method(&mut self, channel: u16, m: AMQPClass) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        encode_method(&mut out, channel, &m).unwrap();
        self.sock.write_all(&out).await
    }

    /// Protocol header and connection.start; returns the start method.
    pub async fn start(addr: SocketAddr) -> (Raw, connection::Start) {
        let mut raw = Raw::connect(addr).await;
        raw.send(PROTOCOL_HEADER).await;
        match raw.frame().await {
            Some(Frame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Start(s)))) => {
                (raw, s)
            }
            other => panic!("expected connection.start, got {other:?}"),
        }
    }

    /// Handshake up to tune (start-ok sent, tune received).
    pub async fn login(addr: SocketAddr, login: &Login<'_>) -> (Raw, Option<connection::Tune>) {
        let (mut raw, _) = Raw::start(addr).await;
        let mut caps = FieldTable::default();
        caps.insert(
            "authentication_failure_close".into(),
            AMQPValue::Boolean(login.failure_close),
        );
        caps.insert("consumer_cancel_notify".into(), AMQPValue::Boolean(true));
        caps.insert("connection.blocked".into(), AMQPValue::Boolean(true));
        let mut props = FieldTable::default();
        props.insert("capabilities".into(), AMQPValue::FieldTable(caps));
        let response = format!("\0{}\0{}", login.user, login.password);
        let start_ok = connection::StartOk {
            client_properties: props,
            mechanism: "PLAIN".into(),
            response: response.as_str().into(),
            locale: "en_US".into(),
        };
        raw.method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::StartOk(start_ok)),
        )
        .await;
        let tune = match raw.frame().await {
            Some(Frame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Tune(t)))) => {
                Some(t)
            }
            Some(Frame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Close(c)))) => {
                raw.buf.clear();
                // Put the close back for the caller to read.
                let mut out = BytesMut::new();
                encode_method(
                    &mut out,
                    0,
                    &AMQPClass::Connection(connection::AMQPMethod::Close(c)),
                )
                .unwrap();
                raw.buf = out;
                None
            }
            None => None,
            other => panic!("expected tune, got {other:?}"),
        };
        (raw, tune)
    }

    /// A full handshake; returns after open-ok.
    pub async fn open(addr: SocketAddr, login: &Login<'_>) -> Raw {
        let (mut raw, tune) = Raw::login(addr, login).await;
        let tune = tune.expect("login refused");
        raw.tune_ok(
            if login.channel_max == 0 {
                tune.channel_max
            } else {
                login.channel_max
            },
            if login.frame_max == 0 {
                tune.frame_max
            } else {
                login.frame_max
            },
            login.heartbeat,
        )
        .await;
        raw.method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
                virtual_host: login.vhost.into(),
            })),
        )
        .await;
        match raw.frame().await {
            Some(Frame::Method(0, AMQPClass::Connection(connection::AMQPMethod::OpenOk(_)))) => raw,
            other => panic!("expected open-ok, got {other:?}"),
        }
    }

    pub async fn tune_ok(&mut self, channel_max: u16, frame_max: u32, heartbeat: u16) {
        let ok = connection::TuneOk {
            channel_max,
            frame_max,
            heartbeat,
        };
        self.method(0, AMQPClass::Connection(connection::AMQPMethod::TuneOk(ok)))
            .await;
    }

    pub async fn open_channel(&mut self, ch: u16) {
        self.method(
            ch,
            AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
        )
        .await;
        match self.frame().await {
            Some(Frame::Method(c, AMQPClass::Channel(channel::AMQPMethod::OpenOk(_))))
                if c == ch => {}
            other => panic!("expected channel.open-ok, got {other:?}"),
        }
    }

    /// basic.publish + content, as raw bytes.
    pub fn publish_bytes(
        ch: u16,
        exchange: &str,
        key: &str,
        body: &[u8],
        frame_max: u32,
    ) -> BytesMut {
        let mut out = BytesMut::new();
        let p = basic::Publish {
            exchange: exchange.into(),
            routing_key: key.into(),
            mandatory: false,
            immediate: false,
        };
        encode_method(
            &mut out,
            ch,
            &AMQPClass::Basic(basic::AMQPMethod::Publish(p)),
        )
        .unwrap();
        encode_content(&mut out, ch, 60, &Default::default(), body, frame_max).unwrap();
        out
    }
}
