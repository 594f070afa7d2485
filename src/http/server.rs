//! The accept loop: a cap on connections, one local task per connection, and
//! a graceful shutdown that lets requests in flight finish within a bound.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::http::connection::{self, Peer, Registry, Shared};
use crate::http::listener::Listener;
use crate::store::Store;

/// How often a full server asks for room again while it waits for a slot
/// (a scan of at most `--max-connections` entries).
const MAKE_ROOM_INTERVAL: Duration = Duration::from_millis(100);

/// Pause after an accept error such as EMFILE, so that a full fd table does not
/// turn the accept loop into a busy loop.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `listener` until `shutdown` resolves, then drains connections for at
/// most the configured grace period. Must run inside a `LocalSet`.
pub(crate) async fn serve<S: Store>(
    listener: Listener,
    shared: Rc<Shared<S>>,
    registry: Rc<Registry>,
    shutdown: impl Future<Output = ()>,
) {
    let limits = shared.state.config.limits;
    // SECURITY: a connection cap keeps a flood of clients from exhausting
    // memory or file descriptors; extra clients wait in the kernel's backlog
    // (one, accepted, waits for room to be made).
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = accept(&listener) => accepted,
            _ = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                log::warn!("accept failed: {e}");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        // At the cap, an idle keep-alive connection (or one that has sent no
        // whole head for a while) is closed to make room, so that the client
        // just accepted is served instead of waiting for one to time out;
        // asked again now and then, as the one asked may have started a
        // request. Meanwhile further clients wait in the kernel's backlog.
        let permit = loop {
            if let Ok(permit) = slots.clone().try_acquire_owned() {
                break Some(permit);
            }
            registry.make_room();
            tokio::select! {
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(permit) => break Some(permit),
                    Err(_) => break None,
                },
                _ = tokio::time::sleep(MAKE_ROOM_INTERVAL) => {}
                _ = &mut shutdown => break None,
            }
        };
        let Some(permit) = permit else { break };
        let (shared, stop_rx, registry) = (shared.clone(), stop_rx.clone(), registry.clone());
        let tls = shared
            .tls
            .as_ref()
            .map(|tls| TlsAcceptor::from(tls.get().0.clone()));
        tokio::task::spawn_local(async move {
            // Registered from the connect on, so that a client that stalls
            // in the TLS handshake can also be closed to make room.
            let activity = registry.register();
            let handshake_timeout = shared.state.config.limits.header_timeout;
            match tls {
                None => connection::serve(stream, peer, shared, activity, stop_rx).await,
                Some(tls) => {
                    if let Some(s) =
                        handshake(&tls, stream, handshake_timeout, &peer, &activity).await
                    {
                        let s = Stream::Tls(Box::new(s));
                        connection::serve(s, peer, shared, activity, stop_rx).await;
                    }
                }
            }
            drop(permit);
        });
    }
    // Closing the listener now makes new clients fail fast instead of
    // queueing in the backlog of a server that is going away.
    drop(listener);
    log::info!("shutting down: no new connections, finishing requests in flight");
    let _ = stop_tx.send(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    match tokio::time::timeout(limits.shutdown_timeout, slots.acquire_many(all)).await {
        Ok(_) => log::info!("all connections closed"),
        Err(_) => log::warn!(
            "{} connection(s) still open after {:?}; closing them",
            limits.max_connections - slots.available_permits(),
            limits.shutdown_timeout
        ),
    }
}

/// The TLS handshake, bounded by the header timeout so that a client that
/// connects and says nothing cannot hold a connection slot.
async fn handshake<S>(
    tls: &TlsAcceptor,
    stream: S,
    timeout: Duration,
    peer: &Peer,
    activity: &connection::Activity,
) -> Option<tokio_rustls::server::TlsStream<S>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let accepted = tokio::select! {
        accepted = tokio::time::timeout(timeout, tls.accept(stream)) => accepted,
        _ = activity.evicted() => {
            log::info!("closing connection from {peer}: making room for a new client at the connection cap (TLS handshake not done)");
            return None;
        }
    };
    match accepted {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            log::info!("TLS handshake with {peer} failed: {e}");
            None
        }
        Err(_) => {
            log::info!("TLS handshake with {peer} timed out");
            None
        }
    }
}

/// A client connection of any kind. One type for all, so that the
/// connection code (hyper's included) is compiled once, not once per kind
/// of socket and again for TLS: 15 KiB and more each on aarch64. A match
/// per read or write costs nothing beside the syscall (or the decryption).
enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
    /// Boxed: the TLS state is large, and holds a plain stream itself.
    Tls(Box<tokio_rustls::server::TlsStream<Stream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Unix(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

async fn accept(listener: &Listener) -> io::Result<(Stream, Peer)> {
    match listener {
        Listener::Tcp(l) => {
            let (stream, addr) = l.accept().await?;
            // restic sends many small requests; don't let Nagle delay them.
            let _ = stream.set_nodelay(true);
            Ok((Stream::Tcp(stream), Peer::tcp(addr.ip())))
        }
        Listener::Unix { listener, .. } => {
            let (stream, _) = listener.accept().await?;
            Ok((Stream::Unix(stream), Peer::unix()))
        }
    }
}
