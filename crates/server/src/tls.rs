//! `serve --tls-cert FILE --tls-key FILE`: the collector's own TLS (rustls, ring), for
//! when no reverse proxy terminates TLS in front of it.

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A certificate or key file that cannot be served with.
#[derive(Debug, thiserror::Error)]
#[error("TLS: {path} {why}")]
pub struct TlsFileError {
    pub path: PathBuf,
    pub why: String,
}

/// The TLS settings for a certificate chain and its private key, both PEM files (the
/// server's certificate first, then its intermediates).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsFileError> {
    let fail = |path: &Path, why: String| TlsFileError {
        path: path.to_path_buf(),
        why,
    };
    let pem = |path: &Path| std::fs::read(path).map_err(|e| fail(path, format!("cannot be read: {e}")));
    let chain = CertificateDer::pem_slice_iter(&pem(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(cert, format!("is not valid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(fail(
            cert,
            "holds no certificate (no -----BEGIN CERTIFICATE----- block)".into(),
        ));
    }
    let secret = PrivateKeyDer::from_pem_slice(&pem(key)?).map_err(|e| {
        fail(
            key,
            format!("holds no private key (a PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block): {e}"),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, secret)
        .map_err(|e| {
            fail(
                key,
                format!("cannot be used with the certificate in {}: {e}", cert.display()),
            )
        })?;
    // The collector speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
