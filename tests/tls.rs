//! TLS on every door with real clients and certificates the test makes
//! (rcgen): hyper's HTTP client over HTTPS, lapin over amqps://, rumqttc over MQTTS,
//! pika and paho-mqtt (Python `ssl`), MQTT.js over wss://; ALPN; a handshake
//! that stalls; plain text on a TLS port; unusable files at start-up; and
//! certificates reloaded when their files change.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use gateway::listeners::ListenAddr;
use rumqttc::v5::mqttbytes::QoS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::pki::{self, Pem, Pki};
use common::{Suite, WAIT, within};

/// Port 0 on 127.0.0.1 for every TLS door, with `tls` as `[tls]`.
fn with_tls(config: &mut gateway::Config, tls: gw_listen::TlsSettings) {
    let any = vec![ListenAddr::required(SocketAddr::from(([127, 0, 0, 1], 0)))];
    config.amqp.tls_listen = any.clone();
    config.mqtt.tls_listen = any.clone();
    config.http.tls_listen = any;
    config.tls = Some(tls);
}

/// A gateway serving the CA's server certificate (serial 1) on every TLS door.
async fn start(pki: &Pki, change: impl FnOnce(&mut gw_listen::TlsSettings)) -> (Suite, Tls) {
    start_configured(pki, change, |_| {}).await
}

/// [`start`] with the rest of the configuration changed too.
async fn start_configured(
    pki: &Pki,
    change: impl FnOnce(&mut gw_listen::TlsSettings),
    configure: impl FnOnce(&mut gateway::Config),
) -> (Suite, Tls) {
    let (cert, key) = pki.install_server(&pki.server(1));
    let mut settings = gw_listen::TlsSettings::new(cert, key);
    change(&mut settings);
    let suite = Suite::start_with(|c| {
        with_tls(c, settings);
        configure(c);
    })
    .await;
    let a = suite.addresses();
    let tls = Tls {
        amqps: a.amqps.unwrap(),
        mqtts: a.mqtts.unwrap(),
        https: a.https.unwrap(),
    };
    (suite, tls)
}

/// The TLS doors' addresses.
#[derive(Clone, Copy)]
struct Tls {
    amqps: SocketAddr,
    mqtts: SocketAddr,
    https: SocketAddr,
}

/// The client libraries' paths from `tests/clients/install.sh` (run once).
fn client_env() -> &'static Vec<(String, String)> {
    static ENV: OnceLock<Vec<(String, String)>> = OnceLock::new();
    ENV.get_or_init(|| {
        let out = std::process::Command::new("bash")
            .arg(root().join("tests/clients/install.sh"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "install.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    })
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `program` with `args` and the client libraries on its path; its
/// stdout, after asserting it succeeded.
async fn run_client(program: &str, args: Vec<String>) -> String {
    let env = tokio::task::spawn_blocking(client_env).await.unwrap();
    let child = tokio::process::Command::new(program)
        .args(&args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), child)
        .await
        .expect("client finished in time")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `GET path` over HTTPS with hyper's HTTP/1.1 client on tokio-rustls,
/// trusting the test CA, showing `identity` and sending `authorization`
/// when given: the status, or the TLS error.
async fn https_get(
    pki: &Pki,
    addr: SocketAddr,
    path: &str,
    identity: Option<&Pem>,
    authorization: Option<&str>,
) -> std::io::Result<u16> {
    let config = pki.client_config(&[b"http/1.1"], identity);
    let (tls, _, _) = pki::connect(addr, config).await?;
    let io = hyper_util::rt::TokioIo::new(tls);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    let mut req = hyper::Request::get(path).header("host", addr.to_string());
    if let Some(value) = authorization {
        req = req.header("authorization", value);
    }
    let req = req
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let res = within("an HTTPS answer", sender.send_request(req))
        .await
        .map_err(std::io::Error::other)?;
    Ok(res.status().as_u16())
}

/// `Authorization` for guest/guest (base64 of "guest:guest").
const GUEST: &str = "Basic Z3Vlc3Q6Z3Vlc3Q=";

async fn lapin_amqps(
    pki: &Pki,
    addr: SocketAddr,
    uri_auth: &str,
) -> lapin::Result<lapin::Connection> {
    let uri = format!("amqps://{uri_auth}{addr}/%2f");
    let tls = lapin::tcp::OwnedTLSConfig {
        identity: None,
        cert_chain: Some(pki.ca_pem.clone()),
    };
    lapin::Connection::connect_with_config(
        &uri,
        lapin::ConnectionProperties::default(),
        tls,
        lapin::runtime::default_runtime().unwrap(),
    )
    .await
}

/// An MQTT 5 client over TLS; `password` None sends none.
fn mqtts_options(
    pki: &Pki,
    addr: SocketAddr,
    id: &str,
    identity: Option<&Pem>,
    password: Option<&str>,
) -> rumqttc::v5::MqttOptions {
    let mut o = rumqttc::v5::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    if let Some(password) = password {
        o.set_credentials("guest", password);
    }
    o.set_keep_alive(Duration::from_secs(30));
    let config = pki.client_config(&[b"mqtt"], identity);
    o.set_transport(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(Arc::new(config)),
    ));
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_hyper_and_names_http_1_1_in_alpn() {
    let pki = Pki::new("https CA");
    let (suite, tls) = start(&pki, |_| {}).await;
    let status = https_get(&pki, tls.https, "/api/overview", None, Some(GUEST)).await;
    assert_eq!(status.unwrap(), 200);
    // Without credentials: 401, as over HTTP.
    let status = https_get(&pki, tls.https, "/api/overview", None, None).await;
    assert_eq!(status.unwrap(), 401);
    // ALPN: the HTTP door picks http/1.1 from a browser-like offer.
    let (_, alpn, _) = pki::connect(tls.https, pki.client_config(&[b"h2", b"http/1.1"], None))
        .await
        .unwrap();
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    // A client that trusts another CA does not get through.
    let other = Pki::new("another CA");
    let e = https_get(&other, tls.https, "/healthz", None, None)
        .await
        .unwrap_err();
    assert!(format!("{e:?}").contains("UnknownIssuer"), "{e:?}");
    suite.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_serves_lapin() {
    use futures::StreamExt;
    use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    let pki = Pki::new("amqps CA");
    let (suite, tls) = start(&pki, |_| {}).await;
    let conn = within(
        "lapin over amqps",
        lapin_amqps(&pki, tls.amqps, "guest:guest@"),
    )
    .await
    .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let opts = QueueDeclareOptions {
        exclusive: true,
        ..Default::default()
    };
    let q = ch
        .queue_declare("".into(), opts, FieldTable::default())
        .await
        .unwrap();
    let mut consumer = ch
        .basic_consume(
            q.name().clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    ch.basic_publish(
        "".into(),
        q.name().clone(),
        BasicPublishOptions::default(),
        b"lapin over tls",
        Default::default(),
    )
    .await
    .unwrap();
    let delivery = within("the delivery", consumer.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(delivery.data, b"lapin over tls");
    conn.close(200, "bye".into()).await.unwrap();
    // AMQP has no ALPN id: an offer of one is not taken up.
    let (_, alpn, _) = pki::connect(tls.amqps, pki.client_config(&[b"amqp"], None))
        .await
        .unwrap();
    assert_eq!(alpn, None);
    suite.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtts_serves_rumqttc_and_names_mqtt_in_alpn() {
    let pki = Pki::new("mqtts CA");
    let (suite, tls) = start(&pki, |_| {}).await;
    let mut client = common::Mqtt5::connect(mqtts_options(
        &pki,
        tls.mqtts,
        "rumqttc-tls",
        None,
        Some("guest"),
    ))
    .await;
    client.subscribe("tls/rumqttc", QoS::AtLeastOnce).await;
    client
        .publish_acked("tls/rumqttc", b"rumqttc over tls", Default::default())
        .await;
    let p = client.next_publish().await;
    assert_eq!(p.payload.as_ref(), b"rumqttc over tls");
    client.disconnect().await;
    let (_, alpn, _) = pki::connect(tls.mqtts, pki.client_config(&[b"mqtt"], None))
        .await
        .unwrap();
    assert_eq!(alpn.as_deref(), Some(&b"mqtt"[..]));
    // A client asking only for another protocol is refused in the handshake.
    let Err(e) = pki::connect(tls.mqtts, pki.client_config(&[b"h2"], None)).await else {
        panic!("a handshake without a common protocol was taken");
    };
    assert!(e.to_string().contains("NoApplicationProtocol"), "{e}");
    suite.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pika_and_paho_over_tls() {
    let pki = Pki::new("python CA");
    let (suite, tls) = start(&pki, |_| {}).await;
    let script = root().join("tests/clients/tls_clients.py");
    let out = run_client(
        "python3",
        vec![
            script.display().to_string(),
            pki.ca_file().display().to_string(),
            tls.amqps.port().to_string(),
            tls.mqtts.port().to_string(),
        ],
    )
    .await;
    assert!(out.lines().any(|l| l == "ok pika-amqps"), "{out}");
    assert!(out.lines().any(|l| l == "ok paho-mqtts"), "{out}");
    suite.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_js_over_wss() {
    let pki = Pki::new("wss CA");
    let (suite, tls) = start(&pki, |_| {}).await;
    let script = root().join("tests/clients/tls_wss.js");
    let out = run_client(
        "node",
        vec![
            script.display().to_string(),
            format!("wss://{}/mqtt", tls.https),
            pki.ca_file().display().to_string(),
        ],
    )
    .await;
    assert!(out.lines().any(|l| l == "ok wss"), "{out}");
    suite.stop().await;
}

/// Reads until the server closes; the bytes it sent first.
async fn read_to_close(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    within("the server to close", stream.read_to_end(&mut got))
        .await
        .unwrap_or(0);
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_is_closed_and_plain_text_is_refused() {
    let pki = Pki::new("stall CA");
    let (suite, tls) = start(&pki, |s| s.handshake_timeout = Duration::from_secs(1)).await;
    for addr in [tls.amqps, tls.mqtts, tls.https] {
        // Connects and sends nothing: closed once the timeout passes.
        let at = Instant::now();
        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(read_to_close(&mut idle).await.is_empty());
        assert!(
            at.elapsed() >= Duration::from_millis(900),
            "{addr}: closed early"
        );
        // Plain AMQP, MQTT or HTTP on a TLS port: no answer in the protocol, a close.
        let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
        plain.write_all(b"AMQP\x00\x00\x09\x01").await.unwrap();
        let answer = read_to_close(&mut plain).await;
        assert!(!answer.starts_with(b"AMQP"), "{addr}: {answer:?}");
        // A TLS alert at most (content type 21), never protocol bytes.
        assert!(answer.is_empty() || answer[0] == 21, "{addr}: {answer:?}");
    }
    // TLS on a plain port: the handshake fails on the client's side.
    assert!(
        pki::connect(suite.amqp, pki.client_config(&[], None))
            .await
            .is_err()
    );
    // The TLS door still serves after all that.
    let (_, alpn, _) = pki::connect(tls.mqtts, pki.client_config(&[b"mqtt"], None))
        .await
        .unwrap();
    assert_eq!(alpn.as_deref(), Some(&b"mqtt"[..]));
    suite.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_files_stop_start_up_naming_the_file() {
    let pki = Pki::new("files CA");
    let good = pki.server(1);
    let other = pki.server(2);
    let cert = pki.write("good.pem", &good.cert);
    let key = pki.write("good.key", &good.key);
    let garbage = pki.write("garbage.pem", "not a certificate\n");
    let wrong_key = pki.write("other.key", &other.key);
    let missing = pki.dir.path().join("missing.pem");
    let cases: Vec<(gw_listen::TlsSettings, PathBuf, &str)> = vec![
        (
            gw_listen::TlsSettings::new(&missing, &key),
            missing.clone(),
            "cannot read",
        ),
        (
            gw_listen::TlsSettings::new(&garbage, &key),
            garbage.clone(),
            "no certificate",
        ),
        (
            gw_listen::TlsSettings::new(&cert, &garbage),
            garbage.clone(),
            "no private key",
        ),
        (
            gw_listen::TlsSettings::new(&cert, &wrong_key),
            wrong_key.clone(),
            "does not fit the certificate",
        ),
        (
            gw_listen::TlsSettings {
                client_ca: Some(garbage.clone()),
                ..gw_listen::TlsSettings::new(&cert, &key)
            },
            garbage.clone(),
            "client CA",
        ),
    ];
    for (settings, file, problem) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut config = gateway::Config::ephemeral(dir.path());
        with_tls(&mut config, settings);
        let Err(e) = gateway::Gateway::start(config).await else {
            panic!("started with an unusable {}", file.display());
        };
        let e = e.to_string();
        assert!(e.contains(&file.display().to_string()), "{e}");
        assert!(e.contains(problem), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }
}

/// The serial of the certificate a new connection to `addr` is shown.
async fn serial_now(pki: &Pki, addr: SocketAddr) -> Vec<u8> {
    pki::connect(addr, pki.client_config(&[], None))
        .await
        .unwrap()
        .2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_reload_when_their_files_change() {
    let pki = Pki::new("reload CA");
    let (suite, tls) = start(&pki, |_| {}).await;
    let first = pki.server(1);
    let second = pki.server(2);
    assert_eq!(serial_now(&pki, tls.amqps).await, pki::serial_of(&first));
    // A connection made now stays up across the reload.
    let mut client = common::Mqtt5::connect(mqtts_options(
        &pki,
        tls.mqtts,
        "across-reload",
        None,
        Some("guest"),
    ))
    .await;
    pki.install_server(&second);
    let deadline = Instant::now() + WAIT;
    while serial_now(&pki, tls.https).await != pki::serial_of(&second) {
        assert!(Instant::now() < deadline, "new certificate not served");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for addr in [tls.amqps, tls.mqtts] {
        assert_eq!(serial_now(&pki, addr).await, pki::serial_of(&second));
    }
    client.subscribe("reload/x", QoS::AtLeastOnce).await;
    // A broken certificate file: the previous certificate is kept.
    pki.write("server.pem", "-----BEGIN CERTIFICATE-----\nbroken\n");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(serial_now(&pki, tls.amqps).await, pki::serial_of(&second));
    // Mended: served again.
    let third = pki.server(3);
    pki.install_server(&third);
    let deadline = Instant::now() + WAIT;
    while serial_now(&pki, tls.amqps).await != pki::serial_of(&third) {
        assert!(Instant::now() < deadline, "mended certificate not served");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    client.disconnect().await;
    suite.stop().await;
}

/// A gateway that verifies client certificates against `pki`'s CA, with
/// user `alice` (administrator, full rights on `/`); no user `mallory`.
/// MQTT without a password is never anonymous here, so a client that gets in
/// without one got in by its certificate.
async fn start_mutual(pki: &Pki) -> (Suite, Tls) {
    let ca = pki.ca_file();
    let (suite, tls) = start_configured(
        pki,
        |s| s.client_ca = Some(ca),
        |c| {
            c.mqtt
                .settings
                .insert("allow_anonymous".into(), "never".into());
        },
    )
    .await;
    let engine = suite.engine();
    engine
        .put_user(
            "alice",
            "a password nobody sends",
            vec!["administrator".into()],
        )
        .unwrap();
    engine
        .set_permission("alice", gw_core::Permission::full("/"))
        .unwrap();
    (suite, tls)
}

/// Who the engine says is connected over `protocol`.
fn users_on(suite: &Suite, protocol: &str) -> Vec<String> {
    suite
        .engine()
        .connections()
        .into_iter()
        .filter(|c| c.protocol == protocol)
        .map(|c| c.user)
        .collect()
}

async fn lapin_external(
    pki: &Pki,
    addr: SocketAddr,
    identity: Option<&Pem>,
) -> lapin::Result<lapin::Connection> {
    let uri = format!("amqps://{addr}/%2f?auth_mechanism=external");
    let tls = lapin::tcp::OwnedTLSConfig {
        identity: identity.map(|pem| lapin::tcp::OwnedIdentity::PKCS8 {
            pem: pem.cert.clone().into_bytes(),
            key: pem.key.clone().into_bytes(),
        }),
        cert_chain: Some(pki.ca_pem.clone()),
    };
    lapin::Connection::connect_with_config(
        &uri,
        lapin::ConnectionProperties::default(),
        tls,
        lapin::runtime::default_runtime().unwrap(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_sasl_external_with_a_client_certificate() {
    let pki = Pki::new("external CA");
    let (suite, tls) = start_mutual(&pki).await;
    let alice = pki.client("alice", vec![]);
    let conn = within(
        "lapin EXTERNAL",
        lapin_external(&pki, tls.amqps, Some(&alice)),
    )
    .await
    .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare("alice-q".into(), Default::default(), Default::default())
        .await
        .unwrap();
    assert_eq!(users_on(&suite, "amqp"), ["alice"]);
    conn.close(200, "bye".into()).await.unwrap();
    // A certificate for a user the gateway does not know: 403 ACCESS_REFUSED.
    let mallory = pki.client("mallory", vec![]);
    let Err(e) = within("refusal", lapin_external(&pki, tls.amqps, Some(&mallory))).await else {
        panic!("mallory got in");
    };
    assert!(format!("{e:?}").contains("ACCESS_REFUSED"), "{e:?}");
    // Without a certificate EXTERNAL is not offered: the login fails.
    assert!(
        within("no certificate", lapin_external(&pki, tls.amqps, None))
            .await
            .is_err()
    );
    // Certificates from another CA, self-signed or expired do not pass the handshake.
    let stranger = Pki::new("another CA").client("alice", vec![]);
    let self_signed = {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        Pem {
            cert: params.self_signed(&key).unwrap().pem(),
            key: key.serialize_pem(),
        }
    };
    let expired = pki.client_expired("alice");
    for (what, pem) in [
        ("another CA", &stranger),
        ("self-signed", &self_signed),
        ("expired", &expired),
    ] {
        assert!(
            within(what, lapin_external(&pki, tls.amqps, Some(pem)))
                .await
                .is_err(),
            "{what} certificate let in"
        );
        let config = pki.client_config(&[], Some(pem));
        let refused = match pki::connect(tls.amqps, config).await {
            Err(_) => true,
            // TLS 1.3: the client finishes first and learns of the refusal on its first read.
            Ok((mut s, _, _)) => {
                let mut buf = [0u8; 1];
                s.write_all(b"AMQP\x00\x00\x09\x01").await.ok();
                !matches!(s.read(&mut buf).await, Ok(n) if n > 0)
            }
        };
        assert!(refused, "{what} certificate passed the handshake");
    }
    suite.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_without_a_password_is_the_certificates_user() {
    use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet};
    let pki = Pki::new("mqtt identity CA");
    let (suite, tls) = start_mutual(&pki).await;
    let alice = pki.client("alice", vec![]);
    let mut client = common::Mqtt5::connect(mqtts_options(
        &pki,
        tls.mqtts,
        "alice-1",
        Some(&alice),
        None,
    ))
    .await;
    client.subscribe("alice/t", QoS::AtLeastOnce).await;
    assert_eq!(users_on(&suite, "mqtt"), ["alice"]);
    client.disconnect().await;
    // Unknown user: CONNACK 0x86 Bad user name or password.
    let mallory = pki.client("mallory", vec![]);
    let (_c, mut el) = rumqttc::v5::AsyncClient::new(
        mqtts_options(&pki, tls.mqtts, "mallory-1", Some(&mallory), None),
        10,
    );
    let refused = within("CONNACK", async {
        loop {
            match el.poll().await {
                Ok(rumqttc::v5::Event::Incoming(Packet::ConnAck(a))) => return Some(a.code),
                Ok(_) => {}
                Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => return Some(code),
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await;
    assert_eq!(refused, Some(ConnectReturnCode::BadUserNamePassword));
    // MQTT 3.1.1: CONNACK 0x04 for the unknown user, accepted for alice.
    for (pem, expected) in [
        (
            &mallory,
            Some(rumqttc::ConnectReturnCode::BadUserNamePassword),
        ),
        (&alice, Some(rumqttc::ConnectReturnCode::Success)),
    ] {
        let mut o = rumqttc::MqttOptions::new("v311-cert", "127.0.0.1", tls.mqtts.port());
        let config = pki.client_config(&[b"mqtt"], Some(pem));
        o.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(Arc::new(config)),
        ));
        let (_c, mut el) = rumqttc::AsyncClient::new(o, 10);
        let code = within("3.1.1 CONNACK", async {
            loop {
                match el.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a))) => {
                        return Some(a.code);
                    }
                    Ok(_) => {}
                    Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return Some(code),
                    Err(e) => panic!("{e}"),
                }
            }
        })
        .await;
        assert_eq!(code, expected);
    }
    suite.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_without_basic_is_the_certificates_user() {
    let pki = Pki::new("https identity CA");
    let (suite, tls) = start_mutual(&pki).await;
    let url = "/api/overview";
    let alice = pki.client("alice", vec![]);
    let res = https_get(&pki, tls.https, url, Some(&alice), None)
        .await
        .unwrap();
    assert_eq!(res, 200);
    let mallory = pki.client("mallory", vec![]);
    let res = https_get(&pki, tls.https, url, Some(&mallory), None)
        .await
        .unwrap();
    assert_eq!(res, 401);
    // No certificate and no Basic: 401 as before.
    let res = https_get(&pki, tls.https, url, None, None).await.unwrap();
    assert_eq!(res, 401);
    suite.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_can_come_from_a_subject_alternative_name() {
    use rcgen::SanType;
    let pki = Pki::new("san CA");
    let ca = pki.ca_file();
    let (suite, tls) = start(&pki, |s| {
        s.client_ca = Some(ca);
        s.identity_from = gw_listen::IdentityFrom::SanEmail;
    })
    .await;
    suite
        .engine()
        .put_user("alice@example.com", "unused", vec!["administrator".into()])
        .unwrap();
    let url = "/api/overview";
    let email = pki.client(
        "not-a-user",
        vec![SanType::Rfc822Name("alice@example.com".try_into().unwrap())],
    );
    let res = https_get(&pki, tls.https, url, Some(&email), None)
        .await
        .unwrap();
    assert_eq!(res, 200);
    // The CN is not looked at.
    let cn_only = pki.client("alice@example.com", vec![]);
    let res = https_get(&pki, tls.https, url, Some(&cn_only), None)
        .await
        .unwrap();
    assert_eq!(res, 401);
    suite.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_client_cert_refuses_a_client_without_one() {
    let pki = Pki::new("required CA");
    let ca = pki.ca_file();
    let (suite, tls) = start(&pki, |s| {
        s.client_ca = Some(ca);
        s.require_client_cert = true;
    })
    .await;
    let url = "/healthz";
    assert!(https_get(&pki, tls.https, url, None, None).await.is_err());
    let guest = pki.client("guest", vec![]);
    let res = https_get(&pki, tls.https, url, Some(&guest), None)
        .await
        .unwrap();
    assert_eq!(res, 200);
    suite.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pika_paho_and_mqtt_js_log_in_with_a_certificate() {
    let pki = Pki::new("python identity CA");
    let (suite, tls) = start_mutual(&pki).await;
    let alice = pki.client("alice", vec![]);
    let cert = pki.write("alice.pem", &alice.cert);
    let key = pki.write("alice.key", &alice.key);
    let out = run_client(
        "python3",
        vec![
            root()
                .join("tests/clients/tls_clients.py")
                .display()
                .to_string(),
            pki.ca_file().display().to_string(),
            tls.amqps.port().to_string(),
            tls.mqtts.port().to_string(),
            cert.display().to_string(),
            key.display().to_string(),
        ],
    )
    .await;
    assert!(out.lines().any(|l| l == "ok pika-amqps"), "{out}");
    assert!(out.lines().any(|l| l == "ok paho-mqtts"), "{out}");
    let out = run_client(
        "node",
        vec![
            root()
                .join("tests/clients/tls_wss.js")
                .display()
                .to_string(),
            format!("wss://{}/mqtt", tls.https),
            pki.ca_file().display().to_string(),
            cert.display().to_string(),
            key.display().to_string(),
        ],
    )
    .await;
    assert!(out.lines().any(|l| l == "ok wss"), "{out}");
    suite.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_a_certificate_the_file_watch_cannot_see() {
    let pki = Pki::new("sighup CA");
    let (suite, tls) = start(&pki, |_| {}).await;
    let first = pki.server(1);
    let cert_path = pki.dir.path().join("server.pem");
    let key_path = pki.dir.path().join("server.key");
    let stamp = |p: &std::path::Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let (cert_time, key_time) = (stamp(&cert_path), stamp(&key_path));
    // A second certificate of the same sizes, written with the old times:
    // the file watch (times and sizes) sees no change, only SIGHUP can.
    let len = |p: &std::path::Path| std::fs::metadata(p).unwrap().len() as usize;
    let second = (0..200)
        .map(|_| pki.server(2))
        .find(|p| p.cert.len() == len(&cert_path) && p.key.len() == len(&key_path))
        .expect("a certificate of the same size");
    pki.install_server(&second);
    for (path, time) in [(&cert_path, cert_time), (&key_path, key_time)] {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(time)
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(serial_now(&pki, tls.amqps).await, pki::serial_of(&first));
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + WAIT;
    while serial_now(&pki, tls.amqps).await != pki::serial_of(&second) {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    suite.stop().await;
}
