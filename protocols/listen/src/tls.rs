//! TLS for every door, in one place: the certificate files loaded (and
//! reloaded), the handshake run inside the connection's task (so it holds one
//! of the door's connection permits and is bounded by a timeout), and the
//! verified client certificate turned into a user name that the doors read
//! with [`peer_identity`].
//!
//! A door does not know it is served over TLS: [`TlsDoor`] wraps it and hands
//! it a [`TlsStream`], which is a [`Stream`] like any other. rustls with the
//! ring provider does the work; no OpenSSL.

use std::any::Any;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::{Door, Stream};

/// The lowest TLS version accepted (`[tls] min_version`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MinVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// Which name of a verified client certificate is the user name
/// (`[tls] identity_from`, as RabbitMQ's `ssl_cert_login_from`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IdentityFrom {
    /// The subject's common name.
    #[default]
    Cn,
    /// The first DNS name of the subject alternative names.
    SanDns,
    /// The first e-mail address (rfc822Name) of the subject alternative names.
    SanEmail,
}

/// The `[tls]` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// The server's certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// The server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates (PEM) that client certificates are verified against;
    /// none: clients are not asked for one.
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: refuse the handshake of a client without a certificate.
    pub require_client_cert: bool,
    /// The lowest version accepted.
    pub min_version: MinVersion,
    /// Where a client certificate's user name comes from.
    pub identity_from: IdentityFrom,
    /// How long a client has to finish the handshake.
    pub handshake_timeout: Duration,
}

impl TlsSettings {
    /// The defaults for a certificate and key: no client certificates,
    /// TLS 1.2 and up, the CN as user name, 10 s to finish the handshake.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        TlsSettings {
            cert: cert.into(),
            key: key.into(),
            client_ca: None,
            require_client_cert: false,
            min_version: MinVersion::Tls12,
            identity_from: IdentityFrom::Cn,
            handshake_timeout: Duration::from_secs(10),
        }
    }

    fn files(&self) -> Vec<&Path> {
        let mut files = vec![self.cert.as_path(), self.key.as_path()];
        files.extend(self.client_ca.as_deref());
        files
    }
}

/// A certificate, key or CA file that cannot be used: one line naming the
/// file and the problem.
#[derive(Debug, thiserror::Error)]
#[error("TLS {what} {}: {problem}", path.display())]
pub struct TlsError {
    /// "certificate", "key" or "client CA".
    pub what: &'static str,
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: String,
}

/// The application protocol a door names in ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alpn {
    /// None (AMQP 0.9.1 has no registered ALPN id).
    None,
    /// `mqtt`.
    Mqtt,
    /// `http/1.1` (the HTTP door speaks HTTP/1.1 only).
    Http1,
}

impl Alpn {
    const ALL: [Alpn; 3] = [Alpn::None, Alpn::Mqtt, Alpn::Http1];

    fn index(self) -> usize {
        self as usize
    }

    fn protocols(self) -> Vec<Vec<u8>> {
        match self {
            Alpn::None => Vec::new(),
            Alpn::Mqtt => vec![b"mqtt".to_vec()],
            Alpn::Http1 => vec![b"http/1.1".to_vec()],
        }
    }
}

/// Handshakes of one [`Tls`], for logs and metrics.
#[derive(Debug, Default)]
pub struct HandshakeCounts {
    /// Finished.
    pub completed: AtomicU64,
    /// Ended by the peer or refused (bad certificate, wrong version, not TLS).
    pub failed: AtomicU64,
    /// Not finished within the handshake timeout.
    pub timed_out: AtomicU64,
}

/// What a file looked like when it was last read: a change of either is a
/// reason to read it again.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The loaded certificate and key, one rustls configuration per ALPN, and
/// the reload that swaps them. Shared by every TLS listener.
pub struct Tls {
    settings: TlsSettings,
    configs: RwLock<[Arc<ServerConfig>; 3]>,
    /// The files' stamps at the last load attempt, good or bad (a broken
    /// file is reported once, not at every poll).
    seen: Mutex<Vec<Stamp>>,
    counts: HandshakeCounts,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads the files; any problem is an error naming the file.
    pub fn load(settings: TlsSettings) -> Result<Arc<Tls>, TlsError> {
        let seen = settings.files().into_iter().map(stamp).collect();
        let configs = build(&settings)?;
        Ok(Arc::new(Tls {
            settings,
            configs: RwLock::new(configs),
            seen: Mutex::new(seen),
            counts: HandshakeCounts::default(),
        }))
    }

    /// The settings loaded.
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// Handshakes so far.
    pub fn counts(&self) -> &HandshakeCounts {
        &self.counts
    }

    /// Reads the files again; connections accepted from now on get the new
    /// certificate. On error the old one stays and the error says why
    /// (also logged as a warning).
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamps: Vec<Stamp> = self.settings.files().into_iter().map(stamp).collect();
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = stamps;
        match build(&self.settings) {
            Ok(configs) => {
                *self.configs.write().unwrap_or_else(|e| e.into_inner()) = configs;
                tracing::info!(
                    cert = %self.settings.cert.display(),
                    "TLS certificate reloaded from {}",
                    self.settings.cert.display()
                );
                Ok(())
            }
            Err(e) => {
                tracing::warn!(cause = %e, "TLS reload failed, still serving the previous certificate: {e}");
                Err(e)
            }
        }
    }

    /// Whether a file changed since it was last read.
    fn changed(&self) -> bool {
        let now: Vec<Stamp> = self.settings.files().into_iter().map(stamp).collect();
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) != now
    }

    /// Reloads whenever a file changes (checked every `every`) until `shutdown`.
    pub async fn watch_files(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if self.changed() {
                // The outcome is logged by `reload`.
                let _ = self.reload();
            }
        }
    }

    fn config(&self, alpn: Alpn) -> Arc<ServerConfig> {
        Arc::clone(&self.configs.read().unwrap_or_else(|e| e.into_inner())[alpn.index()])
    }

    /// Runs the server side of the handshake on `stream`, within the
    /// handshake timeout. None (logged, counted) when it fails or stalls.
    async fn accept<S: Stream>(
        &self,
        stream: S,
        peer: SocketAddr,
        alpn: Alpn,
        door: &'static str,
    ) -> Option<TlsStream<S>> {
        let acceptor = TlsAcceptor::from(self.config(alpn));
        let limit = self.settings.handshake_timeout;
        match tokio::time::timeout(limit, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => {
                self.counts.completed.fetch_add(1, Ordering::Relaxed);
                let identity = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(<[_]>::first)
                    .and_then(|leaf| identity(leaf, self.settings.identity_from, peer, door));
                Some(TlsStream {
                    inner: tls,
                    identity,
                })
            }
            Ok(Err(e)) => {
                self.counts.failed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(door, %peer, cause = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                self.counts.timed_out.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    door,
                    %peer,
                    "TLS handshake not finished within {}s; closed",
                    limit.as_secs_f32()
                );
                None
            }
        }
    }
}

/// One rustls configuration per ALPN from the settings' files.
fn build(settings: &TlsSettings) -> Result<[Arc<ServerConfig>; 3], TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = read_certs("certificate", &settings.cert)?;
    let key = read_key(&settings.key)?;
    let key_problem = |problem: String| TlsError {
        what: "key",
        path: settings.key.clone(),
        problem,
    };
    let certified = rustls::sign::CertifiedKey::from_der(certs, key, &provider)
        .map_err(|e| key_problem(format!("does not fit the certificate: {e}")))?;
    let certified = Arc::new(certified);
    let verifier = client_verifier(settings, &provider)?;
    let versions: &[&rustls::SupportedProtocolVersion] = match settings.min_version {
        MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let one = |alpn: Alpn| -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(versions)
            .map_err(|e| key_problem(e.to_string()))?
            .with_client_cert_verifier(Arc::clone(&verifier))
            .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(Arc::clone(
                &certified,
            ))));
        config.alpn_protocols = alpn.protocols();
        Ok(Arc::new(config))
    };
    let [a, b, c] = Alpn::ALL;
    Ok([one(a)?, one(b)?, one(c)?])
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError {
        what,
        path: path.to_owned(),
        problem: format!("cannot read: {e}"),
    })
}

/// Every certificate of a PEM file, each checked to be X.509.
fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(what, path)?;
    let problem = |problem: String| TlsError {
        what,
        path: path.to_owned(),
        problem,
    };
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| problem(format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(problem(
            "no certificate in it (expected PEM \"BEGIN CERTIFICATE\" blocks)".into(),
        ));
    }
    for (n, cert) in certs.iter().enumerate() {
        x509_parser::parse_x509_certificate(cert)
            .map_err(|e| problem(format!("certificate {} is not X.509: {e}", n + 1)))?;
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read("key", path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError {
        what: "key",
        path: path.to_owned(),
        problem: format!("no private key in it (expected PEM PKCS#8, PKCS#1 or SEC1): {e}"),
    })
}

/// Client certificates verified against `client_ca` (optional unless
/// `require_client_cert`), or none asked for.
fn client_verifier(
    settings: &TlsSettings,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let Some(path) = &settings.client_ca else {
        return Ok(WebPkiClientVerifier::no_client_auth());
    };
    let problem = |problem: String| TlsError {
        what: "client CA",
        path: path.clone(),
        problem,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs("client CA", path)? {
        roots
            .add(cert)
            .map_err(|e| problem(format!("not a usable CA certificate: {e}")))?;
    }
    let builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider));
    let builder = if settings.require_client_cert {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    builder
        .build()
        .map_err(|e| problem(format!("cannot verify clients with it: {e}")))
}

/// Who a verified client certificate says the client is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The user name, from the name `[tls] identity_from` picks.
    pub user: String,
}

/// The user name in a verified leaf certificate; None (logged) when the
/// certificate has no such name.
fn identity(
    leaf: &CertificateDer<'_>,
    from: IdentityFrom,
    peer: SocketAddr,
    door: &'static str,
) -> Option<PeerIdentity> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let san = || {
        cert.subject_alternative_name()
            .ok()
            .flatten()
            .map(|ext| ext.value.general_names.clone())
            .unwrap_or_default()
    };
    use x509_parser::extensions::GeneralName;
    let user = match from {
        IdentityFrom::Cn => cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned),
        IdentityFrom::SanDns => san().into_iter().find_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_owned()),
            _ => None,
        }),
        IdentityFrom::SanEmail => san().into_iter().find_map(|n| match n {
            GeneralName::RFC822Name(e) => Some(e.to_owned()),
            _ => None,
        }),
    };
    if user.is_none() {
        tracing::info!(door, %peer, ?from, "client certificate verified but has no name to log in with ([tls] identity_from)");
    }
    user.map(|user| PeerIdentity { user })
}

/// A TLS connection as a door sees it: the decrypted byte stream and, when
/// the client showed a verified certificate, who it is.
pub struct TlsStream<S> {
    inner: tokio_rustls::server::TlsStream<S>,
    identity: Option<PeerIdentity>,
}

impl<S> TlsStream<S> {
    /// The verified client certificate's identity.
    pub fn identity(&self) -> Option<&PeerIdentity> {
        self.identity.as_ref()
    }

    /// The protocol agreed by ALPN.
    pub fn alpn(&self) -> Option<&[u8]> {
        self.inner.get_ref().1.alpn_protocol()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A stream that carries the identity of the TLS connection it came through
/// (MQTT over WebSocket over HTTPS: the HTTP door hands the WebSocket on
/// with the identity its connection had).
pub struct Identified {
    inner: Box<dyn Stream>,
    identity: PeerIdentity,
}

impl Identified {
    /// `stream`, known to come from a client with `identity`.
    pub fn new(stream: impl Stream, identity: PeerIdentity) -> Self {
        Identified {
            inner: Box::new(stream),
            identity,
        }
    }
}

impl AsyncRead for Identified {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Identified {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}

/// Whether `stream` is a TLS connection (or came through one).
pub fn is_tls<S: Stream>(stream: &S) -> bool {
    let any = stream as &dyn Any;
    any.is::<TlsStream<TcpStream>>() || any.is::<Identified>()
}

/// The verified client certificate's identity of the connection `stream`
/// is (or came through), if it showed one. Doors call this, so none of
/// them needs to know how the stream was made.
pub fn peer_identity<S: Stream>(stream: &S) -> Option<PeerIdentity> {
    let any = stream as &dyn Any;
    if let Some(tls) = any.downcast_ref::<TlsStream<TcpStream>>() {
        return tls.identity.clone();
    }
    any.downcast_ref::<Identified>().map(|s| s.identity.clone())
}

/// A door served over TLS: the handshake first, within the door's task and
/// permit, then the door itself on the decrypted stream.
#[derive(Clone)]
pub struct TlsDoor<D> {
    door: D,
    tls: Arc<Tls>,
    alpn: Alpn,
}

impl<D> TlsDoor<D> {
    /// `door` behind `tls`, naming `alpn` in the handshake.
    pub fn new(door: D, tls: Arc<Tls>, alpn: Alpn) -> Self {
        TlsDoor { door, tls, alpn }
    }
}

impl<D: Door> Door for TlsDoor<D> {
    const NAME: &'static str = D::NAME;

    fn max_connections(&self) -> usize {
        self.door.max_connections()
    }

    fn serve<S: Stream>(
        &self,
        stream: S,
        peer: SocketAddr,
    ) -> impl Future<Output = ()> + Send + 'static {
        let (door, tls, alpn) = (self.door.clone(), Arc::clone(&self.tls), self.alpn);
        async move {
            if let Some(stream) = tls.accept(stream, peer, alpn, D::NAME).await {
                door.serve(stream, peer).await;
            }
        }
    }

    /// The refusal in the protocol's terms, over TLS (the client would not
    /// understand it otherwise); the handshake timeout bounds the handshake.
    fn refuse<S: Stream>(
        &self,
        stream: S,
        peer: SocketAddr,
    ) -> impl Future<Output = ()> + Send + 'static {
        let (door, tls, alpn) = (self.door.clone(), Arc::clone(&self.tls), self.alpn);
        async move {
            if let Some(stream) = tls.accept(stream, peer, alpn, D::NAME).await {
                door.refuse(stream, peer).await;
            }
        }
    }
}
