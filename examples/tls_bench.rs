//! What TLS costs: the TLS handshake rate on the AMQPS door, and confirmed
//! AMQP publishing (lapin) and MQTT QoS 1 publishing (rumqttc) over plain TCP
//! and over TLS in one run, against an in-process gateway serving a
//! certificate made here (rcgen; ECDSA P-256, TLS 1.3).
//!
//! ```text
//! cargo run --release --example tls_bench [-- --messages N] [--handshakes N]
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway::listeners::ListenAddr;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

type Error = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let messages = arg("--messages", 20_000);
    let handshakes = arg("--handshakes", 2_000);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir()?;
    // A CA and the server's certificate.
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate()?;
    let cert =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])?.signed_by(&key, &issuer)?;
    let (cert_path, key_path) = (dir.path().join("s.pem"), dir.path().join("s.key"));
    std::fs::write(&cert_path, cert.pem())?;
    std::fs::write(&key_path, key.serialize_pem())?;

    let mut config = gateway::Config::ephemeral(dir.path().join("data"));
    let any = vec![ListenAddr::required(SocketAddr::from(([127, 0, 0, 1], 0)))];
    config.amqp.tls_listen = any.clone();
    config.mqtt.tls_listen = any;
    config.tls = Some(gw_listen::TlsSettings::new(&cert_path, &key_path));
    let gw = gateway::Gateway::start(config).await?;
    let a = gw.addresses();
    let (amqp, amqps) = (a.amqp.ok_or("amqp")?, a.amqps.ok_or("amqps")?);
    let (mqtt, mqtts) = (a.mqtt.ok_or("mqtt")?, a.mqtts.ok_or("mqtts")?);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca.pem().as_bytes())?)?;
    let client = Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );

    // Handshakes: two clients at a time (the machine's cores), no resumption.
    let started = Instant::now();
    let per_task = handshakes / 2;
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let client = Arc::clone(&client);
            tokio::spawn(async move {
                let connector = tokio_rustls::TlsConnector::from(client);
                for _ in 0..per_task {
                    let tcp = tokio::net::TcpStream::connect(amqps).await?;
                    let name = ServerName::IpAddress(amqps.ip().into());
                    connector.connect(name, tcp).await?;
                }
                Ok::<(), std::io::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "TLS 1.3 handshakes (ECDSA P-256, 2 clients): {:.0}/s ({} in {secs:.2}s)",
        (per_task * 2) as f64 / secs,
        per_task * 2
    );

    let ca_pem = ca.pem();
    for (name, addr, tls) in [("AMQP ", amqp, false), ("AMQPS", amqps, true)] {
        let rate = amqp_publish(addr, tls.then(|| ca_pem.clone()), messages).await?;
        println!("{name} confirmed publishes, 256 B, 1 connection: {rate:.0} msg/s");
    }
    for (name, addr, tls) in [("MQTT ", mqtt, None), ("MQTTS", mqtts, Some(&client))] {
        let rate = mqtt_publish(addr, tls.cloned(), messages).await?;
        println!("{name} QoS 1 publishes, 256 B, 1 connection: {rate:.0} msg/s");
    }
    gw.stop(Duration::from_secs(5)).await;
    Ok(())
}

/// Publishes `n` messages with confirms (1000 in flight) to a queue nobody reads.
async fn amqp_publish(addr: SocketAddr, ca: Option<String>, n: usize) -> Result<f64, Error> {
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
    let scheme = if ca.is_some() { "amqps" } else { "amqp" };
    let uri = format!("{scheme}://guest:guest@{addr}/%2f");
    let tls = lapin::tcp::OwnedTLSConfig {
        identity: None,
        cert_chain: ca,
    };
    let conn = lapin::Connection::connect_with_config(
        &uri,
        lapin::ConnectionProperties::default(),
        tls,
        lapin::runtime::default_runtime()?,
    )
    .await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let q = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await?;
    let body = vec![b'x'; 256];
    let started = Instant::now();
    let mut pending = std::collections::VecDeque::new();
    for _ in 0..n {
        let confirm = ch
            .basic_publish(
                "".into(),
                q.name().clone(),
                BasicPublishOptions::default(),
                &body,
                Default::default(),
            )
            .await?;
        pending.push_back(confirm);
        if pending.len() >= 1000
            && let Some(c) = pending.pop_front()
        {
            c.await?;
        }
    }
    for c in pending {
        c.await?;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    conn.close(200, "done".into()).await?;
    Ok(rate)
}

/// Publishes `n` QoS 1 messages (rumqttc's default 100 in flight) and waits for every PUBACK.
async fn mqtt_publish(
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    n: usize,
) -> Result<f64, Error> {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let mut o = MqttOptions::new("tls-bench", addr.ip().to_string(), addr.port());
    o.set_credentials("guest", "guest");
    if let Some(config) = tls {
        o.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(config),
        ));
    }
    let (client, mut events) = AsyncClient::new(o, 1000);
    let started = Instant::now();
    let publisher = tokio::spawn(async move {
        let body = vec![b'x'; 256];
        for _ in 0..n {
            client
                .publish("bench/tls", QoS::AtLeastOnce, false, body.clone())
                .await?;
        }
        Ok::<_, rumqttc::v5::ClientError>(client)
    });
    let mut acked = 0;
    while acked < n {
        if let Event::Incoming(Packet::PubAck(_)) = events.poll().await? {
            acked += 1;
        }
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let client = publisher.await??;
    client.disconnect().await?;
    Ok(rate)
}
