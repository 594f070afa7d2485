//! TLS with rustls and its ring provider: loading the certificate chain and
//! key (PEM; RSA, ECDSA or Ed25519), optional client certificates, and
//! swapping in renewed files on SIGHUP without a restart.
//!
//! The cipher follows the CPU ([`Ciphers`]): most boards (Raspberry Pi 3 and
//! 4 among them) have no AES instructions, and AES-GCM in software costs
//! them several times what ChaCha20-Poly1305 does, while clients with AES
//! (any x86 laptop) put AES-GCM first. Without AES here, the server's order
//! wins and puts ChaCha20 first; with AES, the client's order is followed,
//! so a client without AES still gets ChaCha20.

use crate::config::{Ciphers, TlsSettings, TlsVersion};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

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

impl Ciphers {
    /// Decided from `/proc/cpuinfo` (x86 `flags`, ARM `Features`); when that
    /// cannot be read, rustls's own order, which assumes AES.
    pub(crate) fn detect() -> Ciphers {
        match std::fs::read_to_string("/proc/cpuinfo") {
            Ok(text) => Ciphers::from_cpuinfo(&text),
            Err(_) => Ciphers::AesInHardware,
        }
    }

    fn from_cpuinfo(text: &str) -> Ciphers {
        let aes = text
            .lines()
            .filter_map(|line| line.split_once(':'))
            .filter(|(key, _)| matches!(key.trim(), "flags" | "Features"))
            .any(|(_, value)| value.split_whitespace().any(|f| f == "aes"));
        if aes {
            Ciphers::AesInHardware
        } else {
            Ciphers::ChaChaFirst
        }
    }

    /// ring's provider with its suites in this preference's order.
    fn provider(self) -> rustls::crypto::CryptoProvider {
        let mut provider = rustls::crypto::ring::default_provider();
        if self == Ciphers::ChaChaFirst {
            // Stable: each version's other suites keep their order.
            let chacha = |suite: &rustls::SupportedCipherSuite| {
                matches!(
                    suite.suite(),
                    rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
                        | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
                        | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
                )
            };
            crate::small_sort::sort_short_by(&mut provider.cipher_suites, |a, b| {
                chacha(a) && !chacha(b)
            });
        }
        provider
    }
}

impl fmt::Display for Ciphers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ciphers::AesInHardware => {
                "AES instructions present: AES-GCM unless the client prefers ChaCha20-Poly1305"
            }
            Ciphers::ChaChaFirst => "no AES instructions: ChaCha20-Poly1305 preferred",
        })
    }
}

/// Reads the files and builds a server configuration. Fails, saying which
/// file, for a missing or unreadable file and for a key that does not belong
/// to the certificate.
fn load(settings: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = read_certs(&settings.cert)?;
    let key = PrivateKeyDer::from_pem_file(&settings.key)
        .map_err(|e| TlsError::Pem(settings.key.clone(), e))?;
    let provider = Arc::new(settings.ciphers.provider());
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
    config.ignore_client_order = settings.ciphers == Ciphers::ChaChaFirst;
    Ok(Arc::new(config))
}

impl crate::runtime::reload::Source for TlsSettings {
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

impl crate::runtime::reload::Reloadable for TlsConfig {
    const WHAT: &'static str = "TLS";
    type Source = TlsSettings;
    type Error = TlsError;

    fn load(settings: &TlsSettings) -> Result<crate::runtime::reload::Loaded<TlsConfig>, TlsError> {
        Ok(crate::runtime::reload::Loaded {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes_is_read_from_x86_flags_and_arm_features() {
        let cases = [
            (
                "flags\t\t: fpu vme de pse sse2 ssse3 aes avx sha_ni\n",
                Ciphers::AesInHardware,
            ),
            // Raspberry Pi 4 (Cortex-A72 without the crypto extension), 64-bit.
            (
                "Features\t: fp asimd evtstrm crc32 cpuid\n",
                Ciphers::ChaChaFirst,
            ),
            // Raspberry Pi 3, 32-bit OS.
            (
                "Features\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm crc32\n",
                Ciphers::ChaChaFirst,
            ),
            // Raspberry Pi 5 (Cortex-A76).
            (
                "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics\n",
                Ciphers::AesInHardware,
            ),
            // Only whole words count.
            ("flags\t\t: vaes_not_really aesni\n", Ciphers::ChaChaFirst),
            ("model name\t: aes\n", Ciphers::ChaChaFirst),
            ("", Ciphers::ChaChaFirst),
        ];
        for (text, expected) in cases {
            assert_eq!(Ciphers::from_cpuinfo(text), expected, "{text}");
        }
    }

    #[test]
    fn without_aes_chacha20_comes_first_in_each_version() {
        let suites = |ciphers: Ciphers| -> Vec<rustls::CipherSuite> {
            ciphers
                .provider()
                .cipher_suites
                .iter()
                .map(|s| s.suite())
                .collect()
        };
        let ring: Vec<_> = rustls::crypto::ring::default_provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        assert_eq!(suites(Ciphers::AesInHardware), ring);
        let chacha = suites(Ciphers::ChaChaFirst);
        assert_eq!(chacha.len(), ring.len());
        let is_chacha = |s: &rustls::CipherSuite| format!("{s:?}").contains("CHACHA20");
        let first_other = chacha.iter().position(|s| !is_chacha(s)).unwrap();
        assert!(first_other > 0);
        assert!(chacha[first_other..].iter().all(|s| !is_chacha(s)));
        assert_eq!(
            chacha[0],
            rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
        );
    }
}
