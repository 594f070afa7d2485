//! One client connection: hyper's HTTP/1.1 state machine plus a watchdog that
//! enforces the timeouts hyper does not have in the form a one-thread server
//! needs.
//!
//! hyper's own `header_read_timeout` starts whenever the connection is ready
//! for a request, so it cannot tell an idle keep-alive connection (fine for
//! minutes) from a client trickling a header byte by byte (to be dropped in
//! seconds). [`Activity`] tracks which of the two a connection is in:
//!
//! - new (connected, no complete request yet): closed `--header-timeout`
//!   after the connect, whether or not a byte came;
//! - idle (no request in flight, no byte since the last response): closed after
//!   `--idle-timeout`;
//! - reading a head (bytes arrived, no request yet): closed `--header-timeout`
//!   after the first byte;
//! - busy (a request is being served): closed if a response write has been
//!   blocked on the client for `--body-timeout`. Stalled uploads are timed by the
//!   upload handler itself.
//!
//! At the connection cap, the accept loop asks an idle keep-alive connection
//! (or one that has not sent a whole head for a while, or whose upload body
//! has stalled) to close, so that a new client is served rather than left
//! waiting ([`Registry`]).

use std::cell::Cell;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::config::Limits;
use crate::http::access_log::AccessLog;
use crate::http::body::{Body, Completion};
use crate::http::length_guard::LengthGuard;
use crate::http::request::{self, Client, Record};
use crate::http::tls::TlsConfig;
use crate::runtime::reload::Watched;
use crate::state::AppState;
use crate::store::Store;
use crate::upload::READ_BUFFER_BYTES;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Connected; no request yet.
    New,
    Idle,
    ReadingHead,
    Busy,
}

/// What the connection is doing, updated by its I/O and its requests.
#[derive(Debug)]
pub(crate) struct Activity {
    phase: Cell<Phase>,
    since: Cell<Instant>,
    in_flight: Cell<u32>,
    write_blocked_since: Cell<Option<Instant>>,
    /// Since when the request handler has been waiting for body bytes that
    /// do not come (see [`WatchedBody`]).
    body_waiting_since: Cell<Option<Instant>>,
    /// Wakes the watchdog on every phase change: the new phase's deadline can
    /// be earlier than the one it sleeps towards (e.g. `--idle-timeout` shorter
    /// than `--body-timeout`).
    phase_changed: Notify,
    /// Asks the connection to close to make room (see [`Registry`]).
    evict: Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            phase: Cell::new(Phase::New),
            since: Cell::new(Instant::now()),
            in_flight: Cell::new(0),
            write_blocked_since: Cell::new(None),
            body_waiting_since: Cell::new(None),
            phase_changed: Notify::new(),
            evict: Notify::new(),
        }
    }

    fn on_bytes_read(&self) {
        match self.phase.get() {
            Phase::Idle => {
                self.phase.set(Phase::ReadingHead);
                self.since.set(Instant::now());
                self.phase_changed.notify_one();
            }
            // The head's time counts from the connect.
            Phase::New => self.phase.set(Phase::ReadingHead),
            Phase::ReadingHead | Phase::Busy => {}
        }
    }

    /// Resolves when the connection is asked to close to make room.
    pub(crate) async fn evicted(&self) {
        self.evict.notified().await;
    }

    /// Whether the connection may be closed to make room, and how readily
    /// (lower first): it is idle between requests (0), it has not sent a
    /// whole head in `grace.head` (1), or the body of its request has sent
    /// nothing for `grace.body` (2).
    fn evictable(&self, grace: Grace) -> Option<(u8, Instant)> {
        let since = self.since.get();
        match self.phase.get() {
            Phase::Idle => Some((0, since)),
            Phase::New | Phase::ReadingHead if since.elapsed() >= grace.head => Some((1, since)),
            Phase::Busy => self
                .body_waiting_since
                .get()
                .filter(|t| t.elapsed() >= grace.body)
                .map(|t| (2, t)),
            _ => None,
        }
    }

    fn on_request_start(&self) {
        self.body_waiting_since.set(None);
        self.in_flight.set(self.in_flight.get() + 1);
        self.phase.set(Phase::Busy);
        self.phase_changed.notify_one();
    }

    fn on_request_end(&self) {
        let left = self.in_flight.get().saturating_sub(1);
        self.in_flight.set(left);
        if left == 0 {
            self.body_waiting_since.set(None);
            self.phase.set(Phase::Idle);
            self.since.set(Instant::now());
            self.phase_changed.notify_one();
        }
    }

    /// When the connection's current allowance runs out.
    fn deadline(&self, limits: &Limits) -> Instant {
        match self.phase.get() {
            Phase::Idle => self.since.get() + limits.idle_timeout,
            Phase::New | Phase::ReadingHead => self.since.get() + limits.header_timeout,
            Phase::Busy => match self.write_blocked_since.get() {
                Some(t) => t + limits.body_timeout,
                // Nothing to time; look again later.
                None => Instant::now() + limits.body_timeout,
            },
        }
    }

    fn overdue(&self, limits: &Limits) -> Option<&'static str> {
        if Instant::now() < self.deadline(limits) {
            return None;
        }
        Some(match self.phase.get() {
            Phase::Idle => "idle timeout",
            Phase::New | Phase::ReadingHead => "request header timeout",
            Phase::Busy => "client stopped reading the response",
        })
    }
}

/// How long a connection may go without a whole request head, or an upload
/// without a byte of its body, before it may be closed to make room at the
/// cap.
#[derive(Debug, Clone, Copy)]
struct Grace {
    head: std::time::Duration,
    body: std::time::Duration,
}

/// A real client sends its head at once, and does not pause mid-body for a
/// second unless its network has failed (restic then retries the upload).
/// A second, not more: uploads that stall on purpose can hold every slot
/// and fill the listen backlog ahead of a new client, which then waits for
/// two of these graces (the slots' holders, then those ahead of it in the
/// backlog); it must be answered within 2 s.
const AT_THE_CAP: Grace = Grace {
    head: std::time::Duration::from_secs(1),
    body: std::time::Duration::from_secs(1),
};

/// The open connections' activity, for making room at the cap: idle
/// keep-alive connections first (the longest idle), as nginx does, then
/// connections still without a whole head, then uploads whose body has
/// stalled (see [`AT_THE_CAP`]); never one where the server is at work or
/// the client is receiving.
#[derive(Default)]
pub(crate) struct Registry {
    connections: std::cell::RefCell<Vec<std::rc::Weak<Activity>>>,
}

impl Registry {
    /// A new connection's activity, tracked from its connect on.
    pub(crate) fn register(&self) -> Rc<Activity> {
        let activity = Rc::new(Activity::new());
        let mut connections = self.connections.borrow_mut();
        connections.retain(|c| c.strong_count() > 0);
        connections.push(Rc::downgrade(&activity));
        activity
    }

    /// Whether any connection has a request in flight (the scrub slows
    /// down meanwhile).
    pub(crate) fn serving(&self) -> bool {
        self.connections
            .borrow()
            .iter()
            .filter_map(std::rc::Weak::upgrade)
            .any(|a| a.phase.get() == Phase::Busy)
    }

    /// Asks one connection to close; false when none may be.
    pub(crate) fn make_room(&self) -> bool {
        let connections = self.connections.borrow();
        let candidate = connections
            .iter()
            .filter_map(std::rc::Weak::upgrade)
            .filter_map(|a| {
                a.evictable(AT_THE_CAP)
                    .map(|(rank, since)| (rank, since, a))
            })
            .min_by_key(|(rank, since, _)| (*rank, *since));
        match candidate {
            Some((_, _, activity)) => {
                activity.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// The socket, watched: reads and blocked writes update [`Activity`].
struct TrackedIo<S> {
    inner: S,
    activity: Rc<Activity>,
    guard: LengthGuard,
}

impl<S: AsyncRead + Unpin> AsyncRead for TrackedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result
            && buf.filled().len() > before
        {
            // Bytes read while a request is served are its body; a head
            // starts once it has been answered.
            if this.activity.phase.get() == Phase::Busy {
                this.guard.expect_head();
            } else {
                this.guard.scan(&mut buf.filled_mut()[before..]);
            }
            this.activity.on_bytes_read();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> TrackedIo<S> {
    fn note_write<T>(&self, result: &Poll<io::Result<T>>) {
        match result {
            Poll::Pending => {
                if self.activity.write_blocked_since.get().is_none() {
                    self.activity.write_blocked_since.set(Some(Instant::now()));
                }
            }
            Poll::Ready(_) => self.activity.write_blocked_since.set(None),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TrackedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note_write(&result);
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note_write(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.note_write(&result);
        result
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Shared by all connections: state, the access log, and hyper's settings.
pub(crate) struct Shared<S> {
    pub(crate) state: Rc<AppState<S>>,
    pub(crate) access_log: Option<Rc<AccessLog>>,
    /// Some when serving HTTPS.
    pub(crate) tls: Option<Rc<Watched<TlsConfig>>>,
    pub(crate) http: http1::Builder,
}

impl<S> Shared<S> {
    pub(crate) fn new(
        state: Rc<AppState<S>>,
        access_log: Option<Rc<AccessLog>>,
        tls: Option<Rc<Watched<TlsConfig>>>,
    ) -> Shared<S> {
        let limits = &state.config.limits;
        let mut http = http1::Builder::new();
        http.keep_alive(true)
            // A client that sends its request and then shuts down its write
            // side (some proxies and scripts do) still gets its answer, and
            // its upload is stored.
            .half_close(true)
            .max_headers(64)
            .max_header_size(limits.max_header_bytes)
            // The read buffer bounds memory per connection; the largest head
            // must fit in it.
            .max_buf_size(limits.max_header_bytes.max(READ_BUFFER_BYTES))
            // Our watchdog does header and idle timeouts (see module docs).
            .header_read_timeout(None);
        Shared {
            state,
            access_log,
            tls,
            http,
        }
    }
}

/// Fires when a response is done: records the request and ends it for the
/// watchdog.
struct RequestDone {
    activity: Rc<Activity>,
    record: Record,
}

impl Completion for RequestDone {
    fn complete(&mut self, body_bytes: u64) {
        self.record.complete(body_bytes);
        self.activity.on_request_end();
    }
}

/// The client at the other end of a connection.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    /// None on a Unix socket.
    pub(crate) ip: Option<IpAddr>,
    /// For logs: the address, or `-` on a Unix socket.
    pub(crate) name: Rc<str>,
}

impl Peer {
    pub(crate) fn tcp(ip: IpAddr) -> Peer {
        Peer {
            ip: Some(ip),
            name: Rc::from(ip.to_string()),
        }
    }

    pub(crate) fn unix() -> Peer {
        Peer {
            ip: None,
            name: Rc::from("-"),
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// Serves one connection until the client leaves, a timeout hits, or the
/// server shuts down (then the request in flight is finished first).
pub(crate) async fn serve<S, IO>(
    stream: IO,
    peer: Peer,
    shared: Rc<Shared<S>>,
    activity: Rc<Activity>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: Store,
    IO: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let io = TokioIo::new(TrackedIo {
        inner: stream,
        activity: activity.clone(),
        guard: LengthGuard::new(),
    });
    let service = {
        let (activity, shared, peer) = (activity.clone(), shared.clone(), peer.clone());
        service_fn(move |req: Request<hyper::body::Incoming>| {
            let (activity, shared, peer) = (activity.clone(), shared.clone(), peer.clone());
            // Boxed (once per request) so that the connection can be polled
            // without shutting the socket down, for the lingering close.
            Box::pin(async move {
                Ok::<_, std::convert::Infallible>(respond(req, &activity, &shared, &peer).await)
            }) as Pin<Box<dyn Future<Output = Result<_, std::convert::Infallible>>>>
        })
    };
    let mut conn = shared.http.serve_connection(io, service);
    let limits = shared.state.config.limits;
    let mut draining = *shutdown.borrow();
    if draining {
        Pin::new(&mut conn).graceful_shutdown();
    }
    loop {
        let deadline = activity.deadline(&limits);
        tokio::select! {
            result = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => {
                match result {
                    // Not while the server stops: it would hold up the exit.
                    Ok(()) if !draining => {
                        let io = conn.into_parts().io.into_inner();
                        linger(io.inner, &activity).await;
                    }
                    Ok(()) => {}
                    // hyper has answered a head it could not parse (400, 431).
                    Err(e) if e.is_parse() || e.is_parse_too_large() => {
                        log::info!("bad request from {peer}: {e}")
                    }
                    Err(e) => log::debug!("connection from {peer} ended: {e}"),
                }
                return;
            }
            _ = activity.phase_changed.notified() => {}
            _ = activity.evict.notified() => {
                // Still between requests, or stalled? (It may have moved on
                // since it was picked.)
                let now = Grace { head: std::time::Duration::ZERO, body: std::time::Duration::ZERO };
                if activity.evictable(now).is_some() {
                    log::info!("closing connection from {peer}: making room for a new client at the connection cap");
                    return;
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                if let Some(why) = activity.overdue(&limits) {
                    log::info!("closing connection from {peer}: {why}");
                    return;
                }
            }
            changed = shutdown.changed(), if !draining => {
                draining = true;
                if changed.is_ok() {
                    Pin::new(&mut conn).graceful_shutdown();
                }
            }
        }
    }
}

/// A request body that tells [`Activity`] when the handler waits for bytes
/// the client does not send: an upload stalled at the cap can then make room.
struct WatchedBody {
    inner: hyper::body::Incoming,
    activity: Rc<Activity>,
}

impl hyper::body::Body for WatchedBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let waiting = &self.activity.body_waiting_since;
        match polled {
            Poll::Pending if waiting.get().is_none() => waiting.set(Some(Instant::now())),
            Poll::Pending => {}
            Poll::Ready(_) => waiting.set(None),
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// How long a closing connection keeps reading what the client still sends.
const LINGER_TOTAL: std::time::Duration = std::time::Duration::from_secs(30);
/// ...and how long it waits for more before it gives up.
const LINGER_IDLE: std::time::Duration = std::time::Duration::from_secs(5);

/// Closes the way nginx's lingering close does: the write side first (the
/// answer is complete), then whatever the client still sends is read and
/// dropped, for a bounded time, before the socket is closed. A client still
/// sending a body the server refused (over the quota, say) then reads the
/// refusal, where closing at once with its bytes unread would reset the
/// connection and lose the answer ("broken pipe" instead of 507).
async fn linger<IO: AsyncRead + AsyncWrite + Unpin>(mut io: IO, activity: &Activity) {
    let shut = std::future::poll_fn(|cx| Pin::new(&mut io).poll_shutdown(cx));
    if !matches!(tokio::time::timeout(LINGER_IDLE, shut).await, Ok(Ok(()))) {
        return;
    }
    // The slot may be taken for a new client meanwhile.
    activity.phase.set(Phase::Idle);
    activity.since.set(Instant::now());
    let mut buf = vec![0u8; 8 * 1024];
    let give_up = Instant::now() + LINGER_TOTAL;
    loop {
        let read = std::future::poll_fn(|cx| {
            let mut buf = ReadBuf::new(&mut buf);
            Pin::new(&mut io)
                .poll_read(cx, &mut buf)
                .map_ok(|()| buf.filled().len())
        });
        tokio::select! {
            read = tokio::time::timeout(LINGER_IDLE, read) => match read {
                Ok(Ok(n)) if n > 0 && Instant::now() < give_up => {}
                _ => return,
            },
            _ = activity.evict.notified() => return,
        }
    }
}

async fn respond<S: Store>(
    req: Request<hyper::body::Incoming>,
    activity: &Rc<Activity>,
    shared: &Shared<S>,
    peer: &Peer,
) -> Response<Body<S>> {
    activity.on_request_start();
    let client = Client {
        ip: peer.ip,
        name: &peer.name,
    };
    let req = req.map(|inner| WatchedBody {
        inner,
        activity: activity.clone(),
    });
    let (mut response, record) =
        request::serve(&shared.state, shared.access_log.as_ref(), req, &client).await;
    response.body_mut().set_completion(Box::new(RequestDone {
        activity: activity.clone(),
        record,
    }));
    response
}
