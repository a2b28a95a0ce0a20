//! Mutual TLS between cluster members: every connection is authenticated on both ends by a
//! certificate signed by the cluster CA, and nothing else is trusted.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::NetworkError;
use crate::certs::{self, read_pem};

/// This member's credentials: the cluster CA it trusts, its certificate and its private key,
/// ready-made as rustls configurations for both ends of a connection.
///
/// Cheap to clone: the parsed material and configurations are shared.
#[derive(Clone)]
pub struct TlsIdentity {
    name: String,
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("TlsIdentity")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// Loads the CA certificate, this member's certificate chain and its private key from PEM
    /// files. Errors name the file that is missing or unparsable.
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<TlsIdentity, NetworkError> {
        let ca_der = certs::read_cert(ca)?;
        let chain = read_chain(cert)?;
        let key_pem = read_pem(key)?;
        let key_der =
            PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| NetworkError::Certificate {
                path: key.to_owned(),
                reason: format!("no PEM private key could be parsed: {e}"),
            })?;
        Self::from_der(ca_der, chain, key_der).map_err(|e| match e {
            NetworkError::TlsConfig(reason) => NetworkError::TlsConfig(format!(
                "{reason} (certificate {}, key {}, CA {})",
                cert.display(),
                key.display(),
                ca.display()
            )),
            other => other,
        })
    }

    /// Loads member `name`'s identity from a directory laid out by [`certs::generate_cluster`].
    pub fn load_member(dir: &Path, name: &str) -> Result<TlsIdentity, NetworkError> {
        Self::load(
            &certs::ca_cert_path(dir),
            &certs::member_cert_path(dir, name),
            &certs::member_key_path(dir, name),
        )
    }

    /// Builds an identity from DER material already in memory.
    pub fn from_der(
        ca: CertificateDer<'static>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<TlsIdentity, NetworkError> {
        let leaf = chain
            .first()
            .ok_or_else(|| NetworkError::TlsConfig("the certificate chain is empty".into()))?;
        let name = member_names(leaf)
            .map_err(NetworkError::TlsConfig)?
            .into_iter()
            .next()
            .ok_or_else(|| {
                NetworkError::TlsConfig(
                    "the certificate has no DNS subject alternative name other than localhost, \
                     so it cannot identify a cluster member"
                        .into(),
                )
            })?;

        let mut roots = RootCertStore::empty();
        roots
            .add(ca)
            .map_err(|e| NetworkError::TlsConfig(format!("unusable CA certificate: {e}")))?;
        let roots = Arc::new(roots);
        let provider = provider();
        let config_err = |e: rustls::Error| NetworkError::TlsConfig(e.to_string());

        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| NetworkError::TlsConfig(format!("client verifier: {e}")))?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_err)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(config_err)?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_err)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(config_err)?;
        Ok(TlsIdentity {
            name,
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }

    /// The member name this identity's certificate vouches for (its first DNS SAN other than
    /// `localhost`); sent in the hello frame.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Server side: requires a client certificate signed by the cluster CA, TLS 1.3 only.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server.clone()
    }

    /// Client side: trusts only the cluster CA and presents this member's certificate.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.client.clone()
    }
}

/// The ring provider, chosen explicitly so nothing depends on a process-wide default.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, NetworkError> {
    let pem = read_pem(path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| NetworkError::Certificate {
            path: path.to_owned(),
            reason: format!("invalid PEM: {e}"),
        })?;
    if chain.is_empty() {
        return Err(NetworkError::Certificate {
            path: path.to_owned(),
            reason: "contains no PEM certificate".into(),
        });
    }
    Ok(chain)
}

/// The member names a certificate vouches for: its DNS subject alternative names, except
/// `localhost`, which every member certificate carries for loopback use.
pub(crate) fn member_names(cert: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    let parsed = webpki::EndEntityCert::try_from(cert)
        .map_err(|e| format!("cannot parse the certificate: {e}"))?;
    Ok(parsed
        .valid_dns_names()
        .filter(|n| !n.eq_ignore_ascii_case("localhost"))
        .map(str::to_owned)
        .collect())
}

/// Turns an error from a TLS handshake into [`NetworkError::Tls`] when rustls refused the peer
/// (or the peer refused us), keeping plain I/O errors (resets, refusals) as I/O so callers can
/// retry them. Adds what the usual refusals mean in cluster terms.
pub(crate) fn handshake_error(peer: &str, e: std::io::Error) -> NetworkError {
    use rustls::{AlertDescription, CertificateError, Error};
    let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) else {
        return if e.kind() == std::io::ErrorKind::InvalidData {
            NetworkError::Tls {
                peer: peer.to_owned(),
                reason: e.to_string(),
            }
        } else {
            NetworkError::Io(e)
        };
    };
    let hint = match tls {
        Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => {
            "; its certificate was not issued by this cluster's CA (self-signed, or another cluster's)"
        }
        Error::InvalidCertificate(CertificateError::NotValidForName)
        | Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => {
            "; its certificate is for another member than the one we meant to reach"
        }
        Error::NoCertificatesPresented => "; cluster connections need a member certificate",
        Error::AlertReceived(
            AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::DecryptError
            | AlertDescription::CertificateRequired,
        ) => "; the peer refused our certificate (are both members from the same cluster?)",
        _ => "",
    };
    NetworkError::Tls {
        peer: peer.to_owned(),
        reason: format!("{tls}{hint}"),
    }
}
