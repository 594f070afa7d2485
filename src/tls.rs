//! TLS with rustls and its ring provider: loading the certificate chain and
//! key (PEM; RSA, ECDSA or Ed25519), optional client certificates, and
//! swapping in renewed files on SIGHUP without a restart.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// `--tls-min-ver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsVersion {
    V1_2,
    V1_3,
}

impl TlsVersion {
    pub(crate) fn parse(text: &str) -> Option<TlsVersion> {
        match text {
            "1.2" => Some(TlsVersion::V1_2),
            "1.3" => Some(TlsVersion::V1_3),
            _ => None,
        }
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsVersion::V1_2 => "1.2",
            TlsVersion::V1_3 => "1.3",
        })
    }
}

/// What TLS is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) min_version: TlsVersion,
    /// Require client certificates signed by this CA.
    pub(crate) client_ca: Option<PathBuf>,
}

/// Why the TLS configuration could not be built; the text names the file.
#[derive(Debug)]
pub(crate) enum TlsError {
    /// A PEM file cannot be read or parsed.
    Pem(PathBuf, rustls::pki_types::pem::Error),
    NoCertificate(PathBuf),
    /// The client CA file holds no usable CA certificate.
    ClientCa(PathBuf, rustls::Error),
    Verifier(PathBuf, rustls::server::VerifierBuilderError),
    /// rustls refused the settings, or the key does not fit the certificate.
    Config {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Pem(path, e) => write!(f, "{}: {e}", path.display()),
            TlsError::NoCertificate(path) => {
                write!(f, "{}: no PEM certificate in the file", path.display())
            }
            TlsError::ClientCa(path, e) => write!(f, "{}: {e}", path.display()),
            TlsError::Verifier(path, e) => write!(f, "{}: {e}", path.display()),
            TlsError::Config { cert, key, source } => {
                write!(f, "{} and {}: {source}", cert.display(), key.display())
            }
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::Pem(_, e) => Some(e),
            TlsError::NoCertificate(_) => None,
            TlsError::ClientCa(_, e) | TlsError::Config { source: e, .. } => Some(e),
            TlsError::Verifier(_, e) => Some(e),
        }
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Pem(path.to_path_buf(), e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

/// Reads the files and builds a server configuration. Fails, saying which
/// file, for a missing or unreadable file and for a key that does not belong
/// to the certificate.
fn load(settings: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = read_certs(&settings.cert)?;
    let key = PrivateKeyDer::from_pem_file(&settings.key)
        .map_err(|e| TlsError::Pem(settings.key.clone(), e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match settings.min_version {
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let refused = |source| TlsError::Config {
        cert: settings.cert.clone(),
        key: settings.key.clone(),
        source,
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(refused)?;
    let builder = match &settings.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| TlsError::ClientCa(ca.clone(), e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Verifier(ca.clone(), e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(refused)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

impl crate::reload::Source for TlsSettings {
    fn files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.cert.clone(), self.key.clone()];
        files.extend(self.client_ca.clone());
        files
    }

    fn describe(&self) -> String {
        self.cert.display().to_string()
    }
}

/// The server configuration in use; reloaded like the other watched files,
/// so a renewed certificate is served to new connections without a restart.
pub(crate) struct TlsConfig(pub(crate) Arc<ServerConfig>);

impl crate::reload::Reloadable for TlsConfig {
    const WHAT: &'static str = "TLS";
    type Source = TlsSettings;
    type Error = TlsError;

    fn load(settings: &TlsSettings) -> Result<crate::reload::Loaded<TlsConfig>, TlsError> {
        Ok(crate::reload::Loaded {
            value: TlsConfig(load(settings)?),
            warnings: Vec::new(),
        })
    }

    fn summary(&self) -> String {
        "certificate and key".into()
    }

    fn kept(&self) -> String {
        "current certificate".into()
    }
}
