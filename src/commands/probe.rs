//! `rest-server health`: asks the running server's `GET /health` on its own
//! `--listen` address, for init scripts' `status` and watchdogs: no curl or
//! wget needed, and TLS works without a CA.
//!
//! Runs once, on a runtime of its own: connect, one request, read the
//! answer, all within `PROBE_TIMEOUT`. Over TLS the server must
//! present exactly the certificate in its `--tls-cert` file (the probe
//! pins it; names are not checked, since `localhost` is rarely among them),
//! and the handshake's signature is verified with it.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;

use crate::client::{Client, ClientError, Endpoint, OutBody, Trust};
use crate::config::{Config, ListenAddr};

/// Longest the whole probe may take: connect, handshake, request, answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The most of an answer read: `/health` says a line.
const MAX_ANSWER_BYTES: usize = 4096;

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
    /// The certificate file cannot be read, or TLS cannot be set up.
    Certificate(String),
    /// The setup cannot be asked: the server wants client certificates, or
    /// TLS on a Unix socket (the probe speaks TLS over TCP only).
    CannotAsk(&'static str),
    /// The exchange failed or timed out, or the answer is not HTTP.
    Exchange(io::Error),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::Connect(addr, _) => write!(f, "nothing answers at {addr}"),
            ProbeError::Certificate(why) => f.write_str(why),
            ProbeError::CannotAsk(why) => write!(f, "health not checked: {why}"),
            ProbeError::Exchange(_) => f.write_str("asking GET /health failed"),
        }
    }
}

impl std::error::Error for ProbeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProbeError::Connect(_, e) | ProbeError::Exchange(e) => Some(e),
            ProbeError::Certificate(_) | ProbeError::CannotAsk(_) => None,
        }
    }
}

/// Asks the server that `config` describes. Runs its own small runtime: a
/// command, not the server. (On tokio and tokio-rustls, which the server
/// and its S3 client have anyway: a blocking std and rustls version cost
/// 33 KiB of binary.)
pub fn health(config: &Config) -> Result<Answer, ProbeError> {
    if let Some(tls) = &config.tls {
        if tls.client_ca.is_some() {
            let why = "the server requires client certificates (--tls-client-ca)";
            return Err(ProbeError::CannotAsk(why));
        }
        if matches!(config.listen, ListenAddr::Unix(_)) {
            return Err(ProbeError::CannotAsk("TLS on a Unix socket"));
        }
    }
    let timed_out = || {
        let why = io::Error::new(io::ErrorKind::TimedOut, "no answer within 10 s");
        ProbeError::Exchange(why)
    };
    // The timer is made inside the runtime, which it needs.
    crate::runtime::block_on(None, async {
        tokio::time::timeout(PROBE_TIMEOUT, ask(config)).await
    })
    .map_err(ProbeError::Exchange)?
    .map_err(|_| timed_out())?
}

async fn ask(config: &Config) -> Result<Answer, ProbeError> {
    let exchanged = match (&config.listen, &config.tls) {
        (ListenAddr::Tcp { host, port }, tls) => {
            // The S3 store's client: its code is in the binary anyway.
            let trust = match tls {
                None => None,
                Some(tls) => {
                    let pinned = CertificateDer::from_pem_file(&tls.cert).map_err(|e| {
                        ProbeError::Certificate(format!("cannot read {}: {e}", tls.cert.display()))
                    })?;
                    let provider = Arc::new(rustls::crypto::ring::default_provider());
                    Some(Trust::Verifier(Arc::new(Pinned { pinned, provider })))
                }
            };
            let endpoint = Endpoint {
                https: tls.is_some(),
                host: local_host(host),
                port: *port,
            };
            let addr = endpoint.authority();
            let client = Client::new(endpoint, trust).map_err(ProbeError::Certificate)?;
            return over_http(&client).await.map_err(|e| match e {
                ClientError::Connect(e) => ProbeError::Connect(addr, e),
                other => ProbeError::Exchange(io::Error::other(other.to_string())),
            });
        }
        // (TLS on a Unix socket was refused above.)
        (ListenAddr::Unix(path), _) => {
            let stream = UnixStream::connect(path)
                .await
                .map_err(|e| ProbeError::Connect(path.display().to_string(), e))?;
            exchange(stream).await
        }
    };
    exchanged.map_err(ProbeError::Exchange)
}

/// Where to reach a server listening on `host`: an empty or wildcard host
/// means every interface, so loopback.
fn local_host(host: &str) -> String {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(ip) if ip == IpAddr::V4(Ipv4Addr::UNSPECIFIED) => "127.0.0.1".to_string(),
        Ok(ip) if ip == IpAddr::V6(Ipv6Addr::UNSPECIFIED) => "::1".to_string(),
        _ if host.is_empty() => "127.0.0.1".to_string(),
        _ => host.to_string(),
    }
}

/// `GET /health` through the client, and the answer.
async fn over_http(client: &Client) -> Result<Answer, ClientError> {
    let response = client
        .send(&|| {
            let mut request = hyper::Request::new(OutBody::empty());
            *request.uri_mut() = hyper::Uri::from_static("/health");
            request.headers_mut().insert(
                hyper::header::HOST,
                hyper::header::HeaderValue::from_static("localhost"),
            );
            Ok(request)
        })
        .await?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut text = Vec::new();
    while text.len() < MAX_ANSWER_BYTES {
        match http_body_util::BodyExt::frame(&mut body).await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    text.extend_from_slice(data);
                }
            }
            Some(Err(e)) => return Err(ClientError::Http(e)),
            None => break,
        }
    }
    Ok(answer(status, &text))
}

/// One request, and the answer read (at most [`MAX_ANSWER_BYTES`]).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> io::Result<Answer> {
    // (By hand: tokio's io-util helpers are not compiled in.)
    let mut request: &[u8] =
        b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    while !request.is_empty() {
        let n = poll_fn(|cx| Pin::new(&mut stream).poll_write(cx, request)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        request = &request[n..];
    }
    poll_fn(|cx| Pin::new(&mut stream).poll_flush(cx)).await?;
    let mut answer = vec![0u8; MAX_ANSWER_BYTES];
    let mut filled = 0;
    while filled < answer.len() {
        let mut buf = ReadBuf::new(&mut answer[filled..]);
        let read = poll_fn(|cx| Pin::new(&mut stream).poll_read(cx, &mut buf)).await;
        match read.map(|()| buf.filled().len()) {
            Ok(0) => break,
            Ok(n) => filled += n,
            // A TLS server may close without close_notify once it has answered.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && filled > 0 => break,
            Err(e) => return Err(e),
        }
    }
    parse(&answer[..filled])
}

/// The status line and body of an answer read whole.
fn parse(raw: &[u8]) -> io::Result<Answer> {
    let text = String::from_utf8_lossy(raw);
    let not_http = || io::Error::new(io::ErrorKind::InvalidData, "the answer is not HTTP");
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(not_http)?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    Ok(answer(status, body.as_bytes()))
}

fn answer(status: u16, body: &[u8]) -> Answer {
    let body = String::from_utf8_lossy(body);
    Answer {
        healthy: status == 200,
        text: match body.trim() {
            "" => format!("HTTP status {status}"),
            body => body.to_string(),
        },
    }
}

/// Accepts exactly one certificate, and checks the handshake was signed
/// with its key.
struct Pinned {
    pinned: CertificateDer<'static>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

/// rustls wants it; a derived one would print the certificate's bytes.
impl fmt::Debug for Pinned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pinned")
    }
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
        assert_eq!(local_host(""), "127.0.0.1");
        assert_eq!(local_host("0.0.0.0"), "127.0.0.1");
        assert_eq!(local_host("[::]"), "::1");
        assert_eq!(local_host("[::1]"), "::1");
        assert_eq!(local_host("192.168.1.5"), "192.168.1.5");
        assert_eq!(local_host("nas.local"), "nas.local");
    }

    #[test]
    fn reads_the_status_and_the_reason() {
        let got = parse(b"HTTP/1.1 503 Service Unavailable\r\nx: y\r\n\r\nunhealthy: read-only\n")
            .unwrap();
        assert!(!got.healthy);
        assert_eq!(got.text, "unhealthy: read-only");
        let got = parse(b"HTTP/1.1 200 OK\r\n\r\nok\n").unwrap();
        assert!(got.healthy);
        assert_eq!(got.text, "ok");
        assert!(parse(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert_eq!(
            parse(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").unwrap().text,
            "HTTP status 502"
        );
    }
}
