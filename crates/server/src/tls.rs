//! `serve --tls-cert FILE --tls-key FILE`: the collector's own TLS (rustls, ring), for
//! when no reverse proxy terminates TLS in front of it.

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A certificate or key file that cannot be served with.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve TLS: the {what} {path} ({flag}) {why}")]
pub struct TlsFileError {
    /// "certificate file" or "key file".
    pub what: &'static str,
    /// The `serve` flag that names the file.
    pub flag: &'static str,
    pub path: PathBuf,
    pub why: String,
}

/// The TLS settings for a certificate chain and its private key, both PEM files (the
/// server's certificate first, then its intermediates).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsFileError> {
    let cert_error = |why: String| TlsFileError {
        what: "certificate file",
        flag: "--tls-cert",
        path: cert.to_path_buf(),
        why,
    };
    let key_error = |why: String| TlsFileError {
        what: "key file",
        flag: "--tls-key",
        path: key.to_path_buf(),
        why,
    };
    let read = |path: &Path| std::fs::read(path).map_err(|e| format!("cannot be read: {e}"));
    let chain = CertificateDer::pem_slice_iter(&read(cert).map_err(cert_error)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(format!("is not valid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(cert_error(
            "holds no certificate (no -----BEGIN CERTIFICATE----- block)".into(),
        ));
    }
    let secret = PrivateKeyDer::from_pem_slice(&read(key).map_err(key_error)?).map_err(|e| {
        key_error(format!(
            "holds no private key (a PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY \
             block): {e}"
        ))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| cert_error(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, secret)
        .map_err(|e| {
            key_error(format!(
                "cannot be used with the certificate in {}: {e}",
                cert.display()
            ))
        })?;
    // The collector speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
