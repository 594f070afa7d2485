//! The listening socket: TCP, a Unix socket, or one passed by systemd.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};

use nix::sys::socket::{self, AddressFamily, SockaddrLike, SockaddrStorage, sockopt};
use tokio::net::{TcpListener, UnixListener};

use crate::config::ListenAddr;
use crate::http::systemd;

pub(crate) enum Listener {
    Tcp(TcpListener),
    Unix {
        listener: UnixListener,
        /// Removed on shutdown; None for a socket systemd owns.
        path: Option<PathBuf>,
    },
}

impl Listener {
    /// Binds `addr`. Must run inside the tokio runtime.
    pub(crate) fn bind(addr: &ListenAddr) -> io::Result<Listener> {
        match addr {
            ListenAddr::Tcp { host, port } => bind_tcp(host, *port).map(Listener::Tcp),
            ListenAddr::Unix(path) => {
                remove_stale_socket(path)?;
                let listener = UnixListener::bind(path).map_err(|e| {
                    io::Error::new(e.kind(), format!("listen on unix:{}: {e}", path.display()))
                })?;
                Ok(Listener::Unix {
                    listener,
                    path: Some(path.clone()),
                })
            }
        }
    }

    /// The socket passed by systemd socket activation, if any.
    pub(crate) fn from_systemd() -> io::Result<Option<Listener>> {
        let Some(fd) = systemd::take_listen_fd()? else {
            return Ok(None);
        };
        from_inherited(fd).map(Some)
    }

    /// The bound address as rest-server prints it: `127.0.0.1:8000` (port 0
    /// resolved), or a Unix socket's path.
    pub(crate) fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map_or_else(|_| "?".into(), |a| a.to_string()),
            Listener::Unix { listener, .. } => match listener.local_addr() {
                Ok(addr) => match addr.as_pathname() {
                    Some(p) => p.display().to_string(),
                    None => "(unnamed unix socket)".into(),
                },
                Err(_) => "(unix socket)".into(),
            },
        }
    }

    /// The socket file to remove when the server stops.
    pub(crate) fn socket_path(&self) -> Option<&Path> {
        match self {
            Listener::Unix { path, .. } => path.as_deref(),
            Listener::Tcp(_) => None,
        }
    }
}

fn bind_tcp(host: &str, port: u16) -> io::Result<TcpListener> {
    let candidates: Vec<SocketAddr> = if host.is_empty() {
        // Every interface: IPv6 any (dual-stack on Linux), or IPv4 any on a
        // kernel without IPv6, as many router kernels are.
        vec![
            SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)),
            SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, port)),
        ]
    } else {
        (host, port).to_socket_addrs()?.collect()
    };
    let mut last_error = io::Error::other(format!("no address found for {host}"));
    for addr in candidates {
        match std::net::TcpListener::bind(addr) {
            Ok(listener) => {
                listener.set_nonblocking(true)?;
                return TcpListener::from_std(listener);
            }
            Err(e) => last_error = io::Error::new(e.kind(), format!("listen on {addr}: {e}")),
        }
    }
    Err(last_error)
}

/// A socket file left by a server that crashed would make bind fail forever;
/// one that still answers belongs to a running server and is left alone.
fn remove_stale_socket(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if meta.file_type().is_socket() && StdUnixStream::connect(path).is_err() {
        std::fs::remove_file(path)?;
    }
    Ok(())
}

fn from_inherited(fd: OwnedFd) -> io::Result<Listener> {
    let listening = socket::getsockopt(&fd, sockopt::AcceptConn).map_err(io::Error::from)?;
    if !listening {
        return Err(io::Error::other("the socket from systemd is not listening"));
    }
    let addr: SockaddrStorage = socket::getsockname(fd.as_raw_fd()).map_err(io::Error::from)?;
    match addr.family() {
        Some(AddressFamily::Inet) | Some(AddressFamily::Inet6) => {
            let listener = std::net::TcpListener::from(fd);
            listener.set_nonblocking(true)?;
            Ok(Listener::Tcp(TcpListener::from_std(listener)?))
        }
        Some(AddressFamily::Unix) => {
            let listener = std::os::unix::net::UnixListener::from(fd);
            listener.set_nonblocking(true)?;
            Ok(Listener::Unix {
                listener: UnixListener::from_std(listener)?,
                path: None,
            })
        }
        other => Err(io::Error::other(format!(
            "the socket from systemd has an unsupported family {other:?}"
        ))),
    }
}
