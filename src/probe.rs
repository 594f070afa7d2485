//! `rest-server health`: asks the running server's `GET /health` on its own
//! `--listen` address, for init scripts' `status` and watchdogs: no curl or
//! wget needed, and TLS works without a CA.
//!
//! Runs once, blocking (no event loop): connect, one request, read the
//! answer, each bounded by [`PROBE_TIMEOUT`]. Over TLS the server must
//! present exactly the certificate in its `--tls-cert` file (the probe
//! pins it; names are not checked, since `localhost` is rarely among them),
//! and the handshake's signature is verified with it.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::config::{Config, ListenAddr};

/// Longest the connect, the request and the answer may each take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The most of an answer read: `/health` says a line.
const MAX_ANSWER_BYTES: u64 = 4096;

/// What the server said: healthy (200) or not, and its text.
pub struct Answer {
    pub healthy: bool,
    pub text: String,
}

/// Why the server could not be asked.
#[derive(Debug)]
pub enum ProbeError {
    /// Nothing answers at the address (the server is not running?).
    Connect(String, io::Error),
    /// The certificate file cannot be read, or holds no certificate.
    Certificate(String),
    /// The exchange failed or timed out, or the answer is not HTTP.
    Exchange(io::Error),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::Connect(addr, _) => write!(f, "nothing answers at {addr}"),
            ProbeError::Certificate(why) => f.write_str(why),
            ProbeError::Exchange(_) => f.write_str("asking GET /health failed"),
        }
    }
}

impl std::error::Error for ProbeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProbeError::Connect(_, e) | ProbeError::Exchange(e) => Some(e),
            ProbeError::Certificate(_) => None,
        }
    }
}

/// Asks the server that `config` describes.
pub fn health(config: &Config) -> Result<Answer, ProbeError> {
    let mut stream: Box<dyn ReadWrite> = match &config.listen {
        ListenAddr::Tcp { host, port } => {
            let addr = local_address(host, *port);
            Box::new(connect_tcp(&addr).map_err(|e| ProbeError::Connect(addr, e))?)
        }
        ListenAddr::Unix(path) => {
            let stream = UnixStream::connect(path)
                .and_then(|s| {
                    s.set_read_timeout(Some(PROBE_TIMEOUT))?;
                    s.set_write_timeout(Some(PROBE_TIMEOUT))?;
                    Ok(s)
                })
                .map_err(|e| ProbeError::Connect(path.display().to_string(), e))?;
            Box::new(stream)
        }
    };
    if let Some(tls) = &config.tls {
        let pinned = CertificateDer::from_pem_file(&tls.cert).map_err(|e| {
            ProbeError::Certificate(format!("cannot read {}: {e}", tls.cert.display()))
        })?;
        let client = rustls::ClientConnection::new(client_config(pinned), name())
            .map_err(|e| ProbeError::Exchange(io::Error::other(e)))?;
        stream = Box::new(rustls::StreamOwned::new(client, stream));
    }
    exchange(&mut *stream).map_err(ProbeError::Exchange)
}

/// Where to reach a server listening on `host:port`: an empty or wildcard
/// host means every interface, so loopback.
fn local_address(host: &str, port: u16) -> String {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(ip) if ip == IpAddr::V4(Ipv4Addr::UNSPECIFIED) => format!("127.0.0.1:{port}"),
        Ok(ip) if ip == IpAddr::V6(Ipv6Addr::UNSPECIFIED) => format!("[::1]:{port}"),
        Ok(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
        Ok(IpAddr::V4(ip)) => format!("{ip}:{port}"),
        Err(_) if host.is_empty() => format!("127.0.0.1:{port}"),
        Err(_) => format!("{host}:{port}"),
    }
}

fn connect_tcp(addr: &str) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for candidate in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&candidate, PROBE_TIMEOUT) {
            Ok(stream) => {
                stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
                stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// One request, and the status line and body of the answer.
fn exchange(stream: &mut dyn ReadWrite) -> io::Result<Answer> {
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    stream.flush()?;
    let mut answer = Vec::new();
    match stream.take(MAX_ANSWER_BYTES).read_to_end(&mut answer) {
        Ok(_) => {}
        // A TLS server may close without close_notify once it has answered.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !answer.is_empty() => {}
        Err(e) => return Err(e),
    }
    let text = String::from_utf8_lossy(&answer);
    let not_http = || io::Error::new(io::ErrorKind::InvalidData, "the answer is not HTTP");
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .ok_or_else(not_http)?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    Ok(Answer {
        healthy: status == "200",
        text: match body.trim() {
            "" => format!("HTTP status {status}"),
            body => body.to_string(),
        },
    })
}

/// A name for the handshake (SNI); the certificate is pinned instead.
fn name() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("a valid DNS name")
}

fn client_config(pinned: CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(Pinned {
        pinned,
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Arc::new(config)
}

/// Accepts exactly one certificate, and checks the handshake was signed
/// with its key.
#[derive(Debug)]
struct Pinned {
    pinned: CertificateDer<'static>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.pinned.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the server's certificate is not the one in --tls-cert".into(),
            ))
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_hosts_are_asked_on_loopback() {
        assert_eq!(local_address("", 8000), "127.0.0.1:8000");
        assert_eq!(local_address("0.0.0.0", 1), "127.0.0.1:1");
        assert_eq!(local_address("[::]", 2), "[::1]:2");
        assert_eq!(local_address("[::1]", 3), "[::1]:3");
        assert_eq!(local_address("192.168.1.5", 4), "192.168.1.5:4");
        assert_eq!(local_address("nas.local", 5), "nas.local:5");
    }

    /// A server that answers `answer` to whatever it is sent.
    struct Canned {
        answer: io::Cursor<&'static [u8]>,
        sent: Vec<u8>,
    }

    impl Read for Canned {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.answer.read(buf)
        }
    }

    impl Write for Canned {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.sent.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn ask(answer: &'static [u8]) -> io::Result<Answer> {
        let mut server = Canned {
            answer: io::Cursor::new(answer),
            sent: Vec::new(),
        };
        let got = exchange(&mut server);
        assert!(server.sent.starts_with(b"GET /health HTTP/1.1\r\n"));
        got
    }

    #[test]
    fn reads_the_status_and_the_reason() {
        let got =
            ask(b"HTTP/1.1 503 Service Unavailable\r\nx: y\r\n\r\nunhealthy: read-only\n").unwrap();
        assert!(!got.healthy);
        assert_eq!(got.text, "unhealthy: read-only");
        let got = ask(b"HTTP/1.1 200 OK\r\n\r\nok\n").unwrap();
        assert!(got.healthy);
        assert_eq!(got.text, "ok");
        assert!(ask(b"SSH-2.0-OpenSSH\r\n").is_err());
    }
}
