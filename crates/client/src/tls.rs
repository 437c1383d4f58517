//! Whom the agent trusts at an `https://` endpoint: the system's root certificates (the
//! ones curl, and so the reference script, trusts), or only the CAs of a `ca-file` (a
//! private CA). Certificates are always verified: nothing here can turn that off.

use crate::Error;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::path::Path;
use std::sync::Arc;
use ureq::tls::{Certificate, RootCerts, TlsConfig};

/// The roots a transport verifies the collector's certificate against.
#[derive(Debug, Clone)]
pub(crate) enum Trust {
    /// The system's roots, read at the first https connection (not at start-up).
    System,
    /// Only these CAs, read from a `ca-file` at start-up.
    Only(Arc<Vec<Certificate<'static>>>),
}

impl Trust {
    /// Only the CAs in the PEM file at `path`; a file that holds none is an error that
    /// names the file and what is wrong with it.
    pub(crate) fn ca_file(path: &Path) -> Result<Trust, Error> {
        let fail = |why: String| Error::CaFile {
            path: path.to_path_buf(),
            why,
        };
        let pem = std::fs::read(path).map_err(|e| fail(format!("cannot be read: {e}")))?;
        let mut store = rustls::RootCertStore::empty();
        let mut certs = Vec::new();
        for der in CertificateDer::pem_slice_iter(&pem) {
            let der = der.map_err(|e| fail(format!("is not valid PEM: {e}")))?;
            store
                .add(der.clone())
                .map_err(|e| fail(format!("holds a certificate that cannot be read: {e}")))?;
            certs.push(Certificate::from_der(&der).to_owned());
        }
        if certs.is_empty() {
            return Err(fail(
                "holds no certificate (no -----BEGIN CERTIFICATE----- block)".into(),
            ));
        }
        Ok(Trust::Only(Arc::new(certs)))
    }

    /// The TLS settings for these roots. For [`Trust::System`] this reads the system's
    /// certificate store (where OpenSSL looks, or `SSL_CERT_FILE` / `SSL_CERT_DIR`).
    pub(crate) fn config(&self) -> Result<TlsConfig, String> {
        let roots = match self {
            Trust::Only(certs) => RootCerts::Specific(certs.clone()),
            Trust::System => RootCerts::Specific(Arc::new(system_roots()?)),
        };
        Ok(TlsConfig::builder()
            .root_certs(roots)
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .build())
    }
}

fn system_roots() -> Result<Vec<Certificate<'static>>, String> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        let why = found
            .errors
            .first()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        return Err(format!(
            "this system has no root certificates{why}: install the ca-certificates package, \
             or give the collector's CA with --ca-file (ca-file in anonstats.toml)"
        ));
    }
    Ok(found
        .certs
        .iter()
        .map(|der| Certificate::from_der(der).to_owned())
        .collect())
}

/// What went wrong in TLS, when `e` is a TLS failure: one sentence for the person who
/// runs the agent.
pub(crate) fn failure(e: &ureq::Error) -> Option<String> {
    let tls = match e {
        ureq::Error::Rustls(t) => t,
        ureq::Error::Io(io) => io.get_ref()?.downcast_ref::<rustls::Error>()?,
        ureq::Error::Tls(t) => return Some(format!("TLS failed: {t}")),
        _ => return None,
    };
    Some(match tls {
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => {
            "the collector's certificate did not verify: it is not signed by a CA this agent \
             trusts (a self-signed certificate, or one from a private CA, needs that CA in \
             --ca-file or ca-file in anonstats.toml)"
                .to_string()
        }
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(e)) => {
            format!("the collector's certificate did not verify: {e}")
        }
        rustls::Error::InvalidCertificate(c) => {
            format!("the collector's certificate did not verify: {c}")
        }
        other => format!("TLS failed: {other}"),
    })
}
