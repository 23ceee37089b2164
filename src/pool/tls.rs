//! TLS for the pool's connections, chosen by the URL's `sslmode` (rustls with the `ring` provider).
//!
//! tokio-postgres knows only `disable`, `prefer` and `require`; [`DatabaseUrl::pg_config`] maps
//! `verify-ca` and `verify-full` to `require`, and this module decides how the certificate is
//! checked:
//!
//! | `sslmode` | encryption | certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` | when the server offers it (plain when it answers `N` to the TLS request) | not checked |
//! | `require` | always | not checked (handshake signatures still are) |
//! | `verify-ca` | always | chain to a trusted root; host name not checked |
//! | `verify-full` | always | chain to a trusted root and the host name |
//!
//! Trusted roots are the PEM file named by `sslrootcert` when the URL has one, otherwise the
//! Mozilla roots of `webpki-roots` (what a managed database such as Render's presents).

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::PoolConfigError;
use crate::database_url::{DatabaseUrl, SslMode};

/// The TLS connector for `url`'s `sslmode` (unused by the driver when it is `disable`).
pub(crate) fn connector(url: &DatabaseUrl) -> Result<MakeRustlsConnect, PoolConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| PoolConfigError::Tls(e.to_string()))?;
    let config = match url.sslmode() {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate { provider }))
            .with_no_client_auth(),
        SslMode::VerifyCa => {
            let webpki = webpki_verifier(url, provider)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly { webpki }))
                .with_no_client_auth()
        }
        SslMode::VerifyFull => {
            let webpki = webpki_verifier(url, provider)?;
            builder.with_webpki_verifier(webpki).with_no_client_auth()
        }
    };
    Ok(MakeRustlsConnect::new(config))
}

fn webpki_verifier(
    url: &DatabaseUrl,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, PoolConfigError> {
    let roots = root_store(url)?;
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| PoolConfigError::Tls(e.to_string()))
}

/// The roots of `sslrootcert` (libpq's `system` means the usual public roots), or webpki-roots.
fn root_store(url: &DatabaseUrl) -> Result<RootCertStore, PoolConfigError> {
    let Some(path) = url.sslrootcert().filter(|p| p.as_os_str() != "system") else {
        return Ok(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        });
    };
    let bad = |reason: String| PoolConfigError::RootCertificate {
        path: path.to_path_buf(),
        reason,
    };
    let mut store = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))?;
    for cert in certs {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        store.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    if store.is_empty() {
        return Err(bad("holds no PEM certificate".into()));
    }
    Ok(store)
}

/// `prefer`/`require`: any certificate is accepted, as libpq does, but the handshake's
/// signatures are still verified so the session keys belong to whoever holds the key.
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `verify-ca`: webpki checks the chain first and the name last, so a name mismatch is the
/// one failure that still means "chains to a trusted root"; that one is forgiven.
#[derive(Debug)]
struct ChainOnly {
    webpki: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sslmode_builds_a_connector_with_the_public_roots() {
        for mode in ["disable", "prefer", "require", "verify-ca", "verify-full"] {
            let url = DatabaseUrl::parse(&format!("postgres://u:p@h/db?sslmode={mode}")).unwrap();
            assert!(connector(&url).is_ok(), "{mode}");
        }
    }

    #[test]
    fn an_unreadable_sslrootcert_is_a_configuration_error_naming_the_file() {
        let url = DatabaseUrl::parse(
            "postgres://u:p@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        )
        .unwrap();
        let err = connector(&url).err().expect("refused");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn an_sslrootcert_without_certificates_is_refused() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "not a certificate\n").unwrap();
        let url = DatabaseUrl::parse(&format!(
            "postgres://u:p@h/db?sslmode=verify-ca&sslrootcert={}",
            file.path().display()
        ))
        .unwrap();
        assert!(matches!(
            connector(&url),
            Err(PoolConfigError::RootCertificate { .. })
        ));
    }
}
