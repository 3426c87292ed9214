//! TLS for warehouse connections, as libpq's `sslmode` says: the same for PostgreSQL and Redshift.

use std::path::Path;
use std::sync::Arc;

use tokio_postgres::Config;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::connection::Connection;
use super::error::WarehouseError;
use crate::config::SslMode;

/// A connection over TLS as `mode` says (see [`tls_connector`]); with `prefer`, plain TCP when the server offers
/// no TLS, as libpq does.
pub fn tls_connection(
    config: Config,
    mode: &SslMode,
    ca_bundle: Option<&Path>,
) -> Result<Connection, WarehouseError> {
    let connection = Connection::new(config, tls_connector(mode, ca_bundle)?);
    Ok(if *mode == SslMode::Prefer {
        connection.tls_optional()
    } else {
        connection
    })
}

/// A rustls connector for an SSL mode: `None` for disable; `prefer` and `require` encrypt without verifying the
/// server; `verify-ca` checks the chain against the public roots plus an optional PEM bundle (the RDS/Redshift
/// CAs); `verify-full` checks the host name too.
pub fn tls_connector(
    mode: &SslMode,
    ca_bundle: Option<&Path>,
) -> Result<Option<MakeRustlsConnect>, WarehouseError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| WarehouseError::Config(format!("TLS: {e}")))?;
    let config = match mode {
        SslMode::Disable => return Ok(None),
        SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Lenient {
                chain: None,
                provider,
            }))
            .with_no_client_auth(),
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let mut roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            if let Some(path) = ca_bundle {
                use rustls::pki_types::{CertificateDer, pem::PemObject};
                for cert in CertificateDer::pem_file_iter(path).map_err(|e| {
                    WarehouseError::Config(format!("CA bundle {}: {e}", path.display()))
                })? {
                    let cert = cert.map_err(|e| {
                        WarehouseError::Config(format!("CA bundle {}: {e}", path.display()))
                    })?;
                    roots.add(cert).map_err(|e| {
                        WarehouseError::Config(format!("CA bundle {}: {e}", path.display()))
                    })?;
                }
            }
            if *mode == SslMode::VerifyCa {
                let chain = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider.clone(),
                )
                .build()
                .map_err(|e| WarehouseError::Config(format!("TLS: {e}")))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(Lenient {
                        chain: Some(chain),
                        provider,
                    }))
                    .with_no_client_auth()
            } else {
                builder.with_root_certificates(roots).with_no_client_auth()
            }
        }
    };
    Ok(Some(MakeRustlsConnect::new(config)))
}

/// The certificate checks of the modes libpq makes lenient: `verify-ca` (with `chain`: the certificate must chain
/// to a trusted CA; its host name is not compared) and `prefer`/`require` (without: the channel is encrypted, the
/// certificate not checked). The handshake's signatures are always verified.
#[derive(Debug)]
struct Lenient {
    chain: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(rustls::client::danger::ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
