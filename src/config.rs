//! The resolved configuration: built once from the flags, then passed by reference.

use std::path::PathBuf;
use std::time::Duration;

use crate::storage::Modes;

/// Default for `--max-connections`: enough for several restic clients (each
/// opens up to 5 connections by default) on a board with little RAM.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;
/// Default for `--header-timeout`, in seconds: time to send a request head once
/// its first byte arrived. Stops slow-header (slowloris) clients.
pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 15;
/// Default for `--idle-timeout`, in seconds: how long a keep-alive connection
/// may wait for its next request. Longer than restic's own 90 s idle timeout,
/// so the client closes first and never races a closing server.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 120;
/// Default for `--body-timeout`, in seconds: longest pause while a client sends
/// a body, or while the server waits for a client to read a response.
pub const DEFAULT_BODY_TIMEOUT_SECS: u64 = 60;
/// Default for `--max-header-size`, in bytes (request line plus headers).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// Default for `--max-metadata-size`, in bytes: the cap on bodies of config,
/// keys, locks and snapshots (kilobytes in practice).
pub const DEFAULT_MAX_METADATA_BYTES: u64 = 8 * 1024 * 1024;
/// Default for `--io-threads`: the cap on the blocking I/O pool.
pub const DEFAULT_IO_THREADS: usize = 4;
/// Default for `--shutdown-timeout`, in seconds: grace period for requests in
/// flight after SIGINT/SIGTERM.
pub const DEFAULT_SHUTDOWN_TIMEOUT_SECS: u64 = 10;

/// Where to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// `host:port`; an empty host (`:8000`) means every interface.
    Tcp { host: String, port: u16 },
    /// `unix:/path/to.sock`.
    Unix(PathBuf),
}

/// How clients prove who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMode {
    /// `--no-auth`: everyone is anonymous.
    Off,
    /// HTTP Basic auth against this htpasswd file.
    Htpasswd(PathBuf),
    /// `--proxy-auth-username HEADER`: a trusted reverse proxy names the user.
    ProxyHeader(String),
}

/// Where the access log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Stdout,
    File(PathBuf),
}

/// Limits that keep one slow or hostile client from holding the one thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_metadata_bytes: u64,
    pub io_threads: usize,
    pub shutdown_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: Duration::from_secs(DEFAULT_HEADER_TIMEOUT_SECS),
            idle_timeout: Duration::from_secs(DEFAULT_IDLE_TIMEOUT_SECS),
            body_timeout: Duration::from_secs(DEFAULT_BODY_TIMEOUT_SECS),
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_metadata_bytes: DEFAULT_MAX_METADATA_BYTES,
            io_threads: DEFAULT_IO_THREADS,
            shutdown_timeout: Duration::from_secs(DEFAULT_SHUTDOWN_TIMEOUT_SECS),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub listen: ListenAddr,
    pub access_log: Option<AccessLogTarget>,
    pub debug: bool,
    /// `--tls`: serve HTTPS with these files.
    pub tls: Option<crate::tls::TlsSettings>,
    pub auth: AuthMode,
    /// `--private-repos`: a user may only use repositories under their name.
    pub private_repos: bool,
    /// `--acl FILE`: per-user, per-repository access levels.
    pub acl: Option<PathBuf>,
    /// `--prometheus`: serve `/metrics`.
    pub prometheus: bool,
    /// `--prometheus-no-auth`: `/metrics` without credentials.
    pub prometheus_no_auth: bool,
    pub append_only: bool,
    pub max_size: Option<u64>,
    pub verify_upload: bool,
    pub modes: Modes,
    pub limits: Limits,
}

impl Config {
    /// A configuration for tests and embedding: no auth, defaults elsewhere.
    pub fn new(path: PathBuf) -> Config {
        Config {
            path,
            listen: ListenAddr::Tcp {
                host: String::new(),
                port: 8000,
            },
            access_log: None,
            debug: false,
            tls: None,
            auth: AuthMode::Off,
            private_repos: false,
            acl: None,
            prometheus: false,
            prometheus_no_auth: false,
            append_only: false,
            max_size: None,
            verify_upload: true,
            modes: Modes::new(false),
            limits: Limits::default(),
        }
    }
}
