//! A small HTTP/1.1 client for one S3 endpoint, on hyper's client
//! connections and the server's own runtime: keep-alive connections reused
//! from a small pool, TLS by rustls (ring), every wait bounded.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;

use super::resolve::Resolver;

/// Longest wait for a TCP connection and TLS handshake to the store.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a response's headers once the request is sent. A store
/// that answers a PUT only after replicating it needs a while; one that says
/// nothing for this long is treated as down (restic retries).
pub(crate) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// The slowest uplink a request body in memory is given time for (an 8 MiB
/// multipart part: about 4 minutes more than [`RESPONSE_TIMEOUT`]).
const MIN_UPLOAD_BYTES_PER_SEC: u64 = 32 * 1024;
/// Longest pause while reading a response body.
pub(crate) const BODY_STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept for reuse.
const MAX_IDLE: usize = 16;
/// An idle connection older than this is not reused: stores close idle
/// keep-alive connections after some seconds, and a request sent just as
/// that happens fails.
const IDLE_REUSE: Duration = Duration::from_secs(10);
/// For a streamed upload, which cannot be sent again, only a connection
/// used this recently is trusted to be still open.
const STREAM_REUSE: Duration = Duration::from_secs(2);

/// Where the store listens.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub(crate) https: bool,
    /// Host name or address, as connected to and named in TLS.
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Endpoint {
    /// `host[:port]`, as the `Host` header (and the signature) have it.
    pub(crate) fn authority(&self) -> String {
        let default = if self.https { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host) // an IPv6 address
        } else {
            self.host.clone()
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// A request body: none, in memory, or streamed from an upload with a known
/// length. A stream that ends before its length is an error, so the store
/// sees a broken request, never a short object.
pub(crate) enum OutBody {
    Full(Option<Bytes>),
    Stream {
        chunks: mpsc::Receiver<Bytes>,
        left: u64,
    },
}

impl OutBody {
    pub(crate) fn empty() -> OutBody {
        OutBody::Full(None)
    }

    fn len(&self) -> u64 {
        match self {
            OutBody::Full(bytes) => bytes.as_ref().map_or(0, |b| b.len() as u64),
            OutBody::Stream { left, .. } => *left,
        }
    }
}

impl http_body::Body for OutBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            OutBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            OutBody::Stream { chunks, left } => {
                if *left == 0 {
                    return Poll::Ready(None);
                }
                match chunks.poll_recv(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Some(chunk)) => {
                        *left = left.saturating_sub(chunk.len() as u64);
                        Poll::Ready(Some(Ok(Frame::data(chunk))))
                    }
                    Poll::Ready(None) => Poll::Ready(Some(Err(io::Error::other(
                        "upload abandoned before its end",
                    )))),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.len() == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len())
    }
}

/// Why a request got no response.
#[derive(Debug)]
pub(crate) enum ClientError {
    Connect(io::Error),
    Tls(io::Error),
    Http(hyper::Error),
    Timeout(&'static str),
    /// The value of this header cannot be carried by HTTP (a control
    /// character, say in a session token from the environment).
    BadHeader(&'static str),
    /// The request could not be built otherwise.
    BadRequest,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect(e) => write!(f, "cannot connect to the store: {e}"),
            ClientError::Tls(e) => write!(f, "TLS with the store: {e}"),
            ClientError::Http(e) => write!(f, "HTTP with the store: {e}"),
            ClientError::Timeout(what) => write!(f, "the store did not answer in time ({what})"),
            ClientError::BadHeader(name) => write!(
                f,
                "cannot make the request: the {name} header's value cannot be sent (a \
                 control character or a non-ASCII byte in it?)"
            ),
            ClientError::BadRequest => f.write_str("cannot make the request"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Connect(e) | ClientError::Tls(e) => Some(e),
            ClientError::Http(e) => Some(e),
            ClientError::Timeout(_) | ClientError::BadHeader(_) | ClientError::BadRequest => None,
        }
    }
}

type Conn = SendRequest<OutBody>;

struct Idle {
    conn: Conn,
    since: Instant,
}

/// The connections to one endpoint.
pub(crate) struct Client {
    /// The endpoint's addresses, looked up off the file-I/O pool.
    resolver: Resolver,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    idle: RefCell<Vec<Idle>>,
}

/// A request sent on a connection, its response not yet read.
pub(crate) struct Sent {
    response: Pin<Box<dyn Future<Output = hyper::Result<Response<Incoming>>>>>,
    conn: Conn,
    /// How long the response may take.
    timeout: Duration,
}

/// Whom an https endpoint is trusted as.
pub(crate) enum Trust {
    /// Certificates of these CAs, for the endpoint's name (a store).
    Roots(rustls::RootCertStore),
    /// Whatever this verifier accepts (`rest-server health`: exactly the
    /// server's own certificate).
    Verifier(Arc<dyn rustls::client::danger::ServerCertVerifier>),
}

impl Client {
    pub(crate) fn new(endpoint: Endpoint, trust: Option<Trust>) -> Result<Client, String> {
        let tls = match (endpoint.https, trust) {
            (false, _) => None,
            (true, None) => return Err("an https endpoint needs CA certificates".into()),
            (true, Some(trust)) => {
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let builder = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?;
                let mut config = match trust {
                    Trust::Roots(roots) => builder.with_root_certificates(roots),
                    Trust::Verifier(verifier) => builder
                        .dangerous()
                        .with_custom_certificate_verifier(verifier),
                }
                .with_no_client_auth();
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                let name = ServerName::try_from(endpoint.host.clone())
                    .map_err(|e| format!("endpoint host {:?}: {e}", endpoint.host))?;
                Some((TlsConnector::from(Arc::new(config)), name))
            }
        };
        Ok(Client {
            resolver: Resolver::new(&endpoint.host, endpoint.port),
            tls,
            idle: RefCell::new(Vec::new()),
        })
    }

    /// Sends a request with an in-memory body and waits for its response
    /// headers. A reused connection that turns out closed (the store dropped
    /// it while idle) is retried once on a new one, as the body can be sent
    /// again.
    /// (`make` is a `dyn`: one copy of this state machine for every caller,
    /// not one per closure, which cost binary size.)
    pub(crate) async fn send(
        &self,
        make: &dyn Fn() -> Result<Request<OutBody>, ClientError>,
    ) -> Result<Response<Incoming>, ClientError> {
        // Built before connecting: a request that cannot be made costs no
        // connection.
        let request = make()?;
        let (conn, reused) = self.connection(IDLE_REUSE).await?;
        // A POST (completing a multipart upload, say) may have been carried
        // out though its answer was lost: sent again only if it never left.
        let post = request.method() == hyper::Method::POST;
        match self.start(conn, request).finish(self).await {
            Err(ClientError::Http(e))
                if reused && (e.is_canceled() || (!post && e.is_incomplete_message())) =>
            {
                log::debug!("store connection closed while idle; sending again: {e}");
                let (conn, _) = self.connection(Duration::ZERO).await?;
                self.start(conn, make()?).finish(self).await
            }
            other => other,
        }
    }

    /// Sends a request whose body is streamed; the response is awaited with
    /// [`Sent::finish`] once the body is done.
    pub(crate) async fn stream(&self, request: Request<OutBody>) -> Result<Sent, ClientError> {
        let (conn, _) = self.connection(STREAM_REUSE).await?;
        Ok(self.start(conn, request))
    }

    fn start(&self, mut conn: Conn, request: Request<OutBody>) -> Sent {
        // The response comes once the body is sent: a body in memory (a
        // multipart part) gets time for that at the slowest uplink we allow.
        let body = match request.body() {
            OutBody::Full(bytes) => bytes.as_ref().map_or(0, |b| b.len() as u64),
            OutBody::Stream { .. } => 0,
        };
        Sent {
            response: Box::pin(conn.send_request(request)),
            conn,
            timeout: RESPONSE_TIMEOUT + Duration::from_secs(body / MIN_UPLOAD_BYTES_PER_SEC),
        }
    }

    /// A connection ready for a request: an idle one used within `reuse`,
    /// else a new one. The bool says whether it was reused.
    async fn connection(&self, reuse: Duration) -> Result<(Conn, bool), ClientError> {
        {
            let mut idle = self.idle.borrow_mut();
            idle.retain(|i| !i.conn.is_closed() && i.since.elapsed() < IDLE_REUSE);
            if let Some(at) = idle
                .iter()
                .rposition(|i| i.conn.is_ready() && i.since.elapsed() < reuse)
            {
                return Ok((idle.swap_remove(at).conn, true));
            }
        }
        Ok((self.connect().await?, false))
    }

    /// Keeps `conn` for another request. A connection whose response body
    /// is still being read becomes ready when it has been; until then it is
    /// skipped.
    fn keep(&self, conn: Conn) {
        let mut idle = self.idle.borrow_mut();
        if idle.len() < MAX_IDLE && !conn.is_closed() {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    async fn connect(&self) -> Result<Conn, ClientError> {
        // The lookup is inside the timeout: a hanging one is given up on
        // (and left to finish on its own thread) like a hanging connect.
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let addresses = self.resolver.resolve().await?;
            TcpStream::connect(&addresses[..]).await
        })
        .await
        .map_err(|_| ClientError::Timeout("connect"))?
        .map_err(ClientError::Connect)?;
        let _ = tcp.set_nodelay(true);
        let builder = http1::Builder::new();
        match &self.tls {
            None => {
                let (conn, driver) = builder
                    .handshake(TokioIo::new(tcp))
                    .await
                    .map_err(ClientError::Http)?;
                tokio::spawn(drive(driver));
                Ok(conn)
            }
            Some((connector, name)) => {
                let stream =
                    tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name.clone(), tcp))
                        .await
                        .map_err(|_| ClientError::Timeout("TLS handshake"))?
                        .map_err(ClientError::Tls)?;
                let (conn, driver) = builder
                    .handshake(TokioIo::new(stream))
                    .await
                    .map_err(ClientError::Http)?;
                tokio::spawn(drive(driver));
                Ok(conn)
            }
        }
    }
}

/// Runs a connection until it closes; its errors reach the request that
/// was on it, so they are only noted here.
async fn drive(driver: impl Future<Output = hyper::Result<()>>) {
    if let Err(e) = driver.await {
        log::debug!("store connection ended: {e}");
    }
}

impl Sent {
    /// Waits for the response headers (bounded); on success the connection
    /// goes back to `client` for reuse once the body has been read.
    pub(crate) async fn finish(self, client: &Client) -> Result<Response<Incoming>, ClientError> {
        let response = tokio::time::timeout(self.timeout, self.response)
            .await
            .map_err(|_| ClientError::Timeout("response"))?
            .map_err(ClientError::Http)?;
        client.keep(self.conn);
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store on 127.0.0.1 that answers every request with an empty 200.
    async fn answering_store() -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::task::spawn_local(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::task::spawn_local(async move {
                    let service = hyper::service::service_fn(|_| async {
                        Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Empty::<
                            Bytes,
                        >::new(
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        port
    }

    /// The store's name is looked up apart from the file-I/O pool: with
    /// every I/O thread busy (an fsync on a slow card, a stuck disk), a
    /// connection to the store by name is still made.
    #[test]
    fn a_lookup_needs_no_io_thread() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(1)
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async {
            let port = answering_store().await;
            let (release, busy) = std::sync::mpsc::channel::<()>();
            let held = tokio::task::spawn_blocking(move || busy.recv());
            let endpoint = Endpoint {
                https: false,
                host: "localhost".into(),
                port,
            };
            let client = Client::new(endpoint, None).unwrap();
            let request = || {
                Request::builder()
                    .uri("/")
                    .header(hyper::header::HOST, "localhost")
                    .body(OutBody::empty())
                    .map_err(|_| ClientError::BadRequest)
            };
            let answered =
                tokio::time::timeout(Duration::from_secs(5), client.send(&request)).await;
            release.send(()).unwrap();
            held.await.unwrap().unwrap();
            let response = answered
                .expect("the lookup waited for the I/O pool")
                .unwrap();
            assert_eq!(response.status(), hyper::StatusCode::OK);
        });
    }
}
