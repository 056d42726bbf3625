//! A certificate authority made by the test (rcgen): the server's
//! certificate for `127.0.0.1`/`localhost`, client certificates, the files
//! the gateway reads, and rustls client configurations that trust the CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The process's rustls provider (ring, as the gateway uses); idempotent.
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A certificate and its key, PEM.
#[derive(Clone, Debug)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// A test CA and a directory for the files.
pub struct Pki {
    pub dir: tempfile::TempDir,
    issuer: Issuer<'static, KeyPair>,
    pub ca_pem: String,
}

impl Pki {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Pki {
        install_provider();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let ca = params.self_signed(&key).unwrap();
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
            issuer: Issuer::new(params, key),
            ca_pem: ca.pem(),
        };
        pki.write("ca.pem", &pki.ca_pem);
        pki
    }

    /// The CA certificate's file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A server certificate for 127.0.0.1 and localhost with `serial`.
    pub fn server(&self, serial: u64) -> Pem {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "gateway");
        params.serial_number = Some(SerialNumber::from(serial));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// A client certificate with common name `cn` and `sans`.
    pub fn client(&self, cn: &str, sans: Vec<SanType>) -> Pem {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    /// A client certificate for `cn` that expired yesterday.
    pub fn client_expired(&self, cn: &str) -> Pem {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let day = std::time::Duration::from_secs(86_400);
        let now = std::time::SystemTime::now();
        params.not_before = (now - 30 * day).into();
        params.not_after = (now - day).into();
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Pem {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// Writes `name` in the directory by rename, so a reader never sees it half-written.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        let tmp = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path
    }

    /// Writes `pem` as `server.pem` and `server.key`; returns both paths.
    pub fn install_server(&self, pem: &Pem) -> (PathBuf, PathBuf) {
        let key = self.write("server.key", &pem.key);
        let cert = self.write("server.pem", &pem.cert);
        (cert, key)
    }

    /// A rustls client configuration trusting this CA, offering `alpn`,
    /// showing `identity` when given.
    pub fn client_config(&self, alpn: &[&[u8]], identity: Option<&Pem>) -> rustls::ClientConfig {
        client_config(&self.ca_file(), alpn, identity)
    }
}

/// A rustls client configuration trusting the CA in `ca_file`.
pub fn client_config(
    ca_file: &Path,
    alpn: &[&[u8]],
    identity: Option<&Pem>,
) -> rustls::ClientConfig {
    install_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let mut config = match identity {
        Some(pem) => {
            let chain = CertificateDer::pem_slice_iter(pem.cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(pem.key.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// A TLS connection to `addr` with `config`: the stream, the protocol ALPN
/// agreed and the server certificate's serial number.
pub async fn connect(
    addr: std::net::SocketAddr,
    config: rustls::ClientConfig,
) -> std::io::Result<(
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    Option<Vec<u8>>,
    Vec<u8>,
)> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let tls = connector.connect(name, tcp).await?;
    let (_, conn) = tls.get_ref();
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    let leaf = conn.peer_certificates().unwrap()[0].clone();
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    let serial = cert.raw_serial().to_vec();
    Ok((tls, alpn, serial))
}

/// The serial number of the certificate in `pem`, as [`connect`] reports one.
pub fn serial_of(pem: &Pem) -> Vec<u8> {
    let der = CertificateDer::from_pem_slice(pem.cert.as_bytes()).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    cert.raw_serial().to_vec()
}
