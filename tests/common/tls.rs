//! Certificates made for a test (a private CA and server certificates it
//! signs, with `rcgen`), and an HTTPS client that trusts only that CA and
//! says which protocol and which certificate the server used.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const TIMEOUT: Duration = Duration::from_secs(20);

/// A private certificate authority.
pub struct Ca {
    key: KeyPair,
    cert: rcgen::Certificate,
}

/// A server certificate and its key, as PEM files in a directory.
pub struct ServerCert {
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
    /// The leaf certificate, to recognise which one a server presented.
    pub der: Vec<u8>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        Ca { key, cert }
    }

    /// The CA certificate, as `upstream.ca_certs` holds it.
    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// Writes the CA certificate as `dir/NAME` and returns its path.
    pub fn write_pem(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.pem()).expect("write CA");
        path
    }

    /// A certificate for `localhost` and 127.0.0.1, written as
    /// `dir/{stem}.crt` (leaf then CA) and `dir/{stem}.key`.
    pub fn issue(&self, dir: &Path, stem: &str) -> ServerCert {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, stem);
        let key = KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("server certificate");
        let cert_pem = dir.join(format!("{stem}.crt"));
        let key_pem = dir.join(format!("{stem}.key"));
        std::fs::write(&cert_pem, format!("{}{}", cert.pem(), self.pem())).expect("write cert");
        std::fs::write(&key_pem, key.serialize_pem()).expect("write key");
        ServerCert {
            cert_pem,
            key_pem,
            der: cert.der().to_vec(),
        }
    }

    /// A server configuration (HTTP/1.1) with a certificate of this CA for
    /// 127.0.0.1 and localhost, for a fake upstream behind a private CA.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("params");
        let key = KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("server certificate");
        let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .expect("server config");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.der().clone()).expect("CA root");
        roots
    }

    /// A TLS connector trusting only this CA, offering `alpn`.
    pub fn connector(&self, alpn: &[&[u8]]) -> TlsConnector {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(self.roots())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        TlsConnector::from(Arc::new(config))
    }
}

/// What one HTTPS request came to.
#[derive(Debug)]
pub struct TlsReply {
    pub version: Version,
    pub status: StatusCode,
    pub body: Bytes,
    /// The leaf certificate the server presented.
    pub server_cert: Vec<u8>,
}

impl TlsReply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An open HTTPS connection (HTTP/1.1 or HTTP/2, as ALPN chose).
pub struct TlsConnection {
    sender: Sender,
    pub server_cert: Vec<u8>,
    pub alpn: Option<Vec<u8>>,
    host: String,
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

impl TlsConnection {
    /// Connects to 127.0.0.1:`port` as `localhost`, offering `alpn`.
    pub async fn open(ca: &Ca, port: u16, alpn: &[&[u8]]) -> Result<TlsConnection, String> {
        let tcp = tokio::time::timeout(TIMEOUT, TcpStream::connect(("127.0.0.1", port)))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
        let stream = tokio::time::timeout(TIMEOUT, ca.connector(alpn).connect(name, tcp))
            .await
            .map_err(|_| "handshake timed out".to_string())?
            .map_err(|e| format!("handshake: {e}"))?;
        let (_, session) = stream.get_ref();
        let server_cert = session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|c: &CertificateDer| c.to_vec())
            .unwrap_or_default();
        let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
        let io = TokioIo::new(stream);
        let sender = if alpn.as_deref() == Some(b"h2") {
            let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            Sender::H2(sender)
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            Sender::H1(sender)
        };
        Ok(TlsConnection {
            sender,
            server_cert,
            alpn,
            host: format!("localhost:{port}"),
        })
    }

    /// One GET on this connection.
    pub async fn get(&mut self, path: &str) -> Result<TlsReply, String> {
        let uri = format!("https://{}{path}", self.host);
        let response = match &mut self.sender {
            Sender::H1(sender) => {
                let request = Request::get(&uri)
                    .header("host", &self.host)
                    .body(Empty::new())
                    .map_err(|e| e.to_string())?;
                tokio::time::timeout(TIMEOUT, sender.send_request(request)).await
            }
            Sender::H2(sender) => {
                let request = Request::get(&uri)
                    .version(Version::HTTP_2)
                    .body(Empty::new())
                    .map_err(|e| e.to_string())?;
                tokio::time::timeout(TIMEOUT, sender.send_request(request)).await
            }
        }
        .map_err(|_| "no answer in time".to_string())?
        .map_err(|e| e.to_string())?;
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(TIMEOUT, body.collect())
            .await
            .map_err(|_| "body timed out".to_string())?
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(TlsReply {
            version: parts.version,
            status: parts.status,
            body,
            server_cert: self.server_cert.clone(),
        })
    }
}

/// One GET on a connection of its own.
pub async fn tls_get(ca: &Ca, port: u16, alpn: &[&[u8]], path: &str) -> Result<TlsReply, String> {
    TlsConnection::open(ca, port, alpn).await?.get(path).await
}
