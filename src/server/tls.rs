//! HTTPS serving: the certificate chain and key of `tls.cert` / `tls.key`
//! (PEM), HTTP/2 and HTTP/1.1 offered by ALPN. The certificate is swapped
//! on SIGHUP for the handshakes that follow; connections already open keep
//! the one they were made with.

use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;

/// ALPN names, most wanted first.
const ALPN_H2: &[u8] = b"h2";
const ALPN_HTTP1: &[u8] = b"http/1.1";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls.cert {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("tls.key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("tls.key and tls.cert do not make a usable pair: {0}")]
    Mismatch(String),
    #[error("TLS set-up failed: {0}")]
    Setup(String),
}

/// The acceptor and the certificate it presents.
pub(crate) struct Tls {
    acceptor: TlsAcceptor,
    current: Arc<Current>,
}

/// The certificate new handshakes get.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

impl Tls {
    /// `None` when `tls.cert` is not set (plain http).
    pub(crate) fn from_config(config: &TlsConfig) -> Result<Option<Tls>, TlsError> {
        let (Some(cert), Some(key)) = (&config.cert, &config.key) else {
            return Ok(None);
        };
        let current = Arc::new(Current(RwLock::new(Arc::new(load(cert, key)?))));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setup(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        server.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
        Ok(Some(Tls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            current,
        }))
    }

    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Loads the files of `config` again; new handshakes present them.
    /// A pair that does not load leaves the running certificate in place.
    pub(crate) fn reload(&self, config: &TlsConfig) -> Result<(), TlsError> {
        let (Some(cert), Some(key)) = (&config.cert, &config.key) else {
            return Err(TlsError::Setup(
                "tls.cert and tls.key were removed; plain http needs a restart".into(),
            ));
        };
        let fresh = Arc::new(load(cert, key)?);
        *self.current.0.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }
}

/// Whether the client chose HTTP/2 during the handshake.
pub(crate) fn negotiated_h2(alpn: Option<&[u8]>) -> bool {
    alpn == Some(ALPN_H2)
}

/// The chain of `cert` (leaf first) and the key of `key`, checked to belong together.
fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_error = |reason: String| TlsError::Cert {
        path: cert.display().to_string(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(format!("not PEM certificates: {e}")))?;
    if chain.is_empty() {
        return Err(cert_error("holds no PEM CERTIFICATE block".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        reason: format!("no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
    })?;
    let provider: &CryptoProvider = &rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, private, provider).map_err(|e| TlsError::Mismatch(e.to_string()))
}
