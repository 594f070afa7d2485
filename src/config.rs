//! The resolved configuration: built once from the flags, then passed by
//! reference. Plain data: it imports no subsystem. Each subsystem defines
//! how to use its settings (`impl` blocks beside the code that uses them).

use std::path::PathBuf;
use std::time::Duration;

use hyper::header::HeaderName;

/// Permission bits for what the server creates (`--group-accessible-repos`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Modes {
    pub(crate) dir: u32,
    pub(crate) file: u32,
}

/// Where an S3 store is, from the `s3:` location alone (the settings file
/// and the environment say the rest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct S3Location {
    pub(crate) https: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) bucket: String,
    pub(crate) prefix: String,
}

/// How the mirror runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MirrorSettings {
    /// Uploads at once.
    pub(crate) uploads: usize,
    /// Bytes per second over all uploads; None: unlimited.
    pub(crate) bandwidth: Option<u64>,
    /// Mirror deletes (never with --append-only).
    pub(crate) deletes: bool,
    /// S3 Object Lock on every mirrored object (`--mirror-lock-days`).
    pub(crate) lock: Option<ObjectLock>,
}

/// How long, and how strictly, the bucket keeps each mirrored object from
/// being removed or replaced: the store refuses to remove a locked version
/// before its date, to anyone holding the board's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ObjectLock {
    pub(crate) days: u32,
    pub(crate) mode: LockMode,
}

/// S3's two retention modes (`--mirror-lock-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockMode {
    /// Keys with `s3:BypassGovernanceRetention` may still remove a version:
    /// the board's keys must not have it.
    Governance,
    /// Nobody, the account's root included, removes a version before its
    /// date.
    Compliance,
}

impl LockMode {
    /// As S3's `x-amz-object-lock-mode` header says it.
    pub(crate) fn as_s3(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }
}

/// The server's scrub settings (`--scrub-rate`, `--scrub-interval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ScrubSchedule {
    /// Bytes per second.
    pub(crate) rate: u64,
    /// From the start of one pass to the start of the next.
    pub(crate) interval: Duration,
}

/// `--tls-min-ver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsVersion {
    V1_2,
    V1_3,
}

/// What TLS is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) min_version: TlsVersion,
    /// Require client certificates signed by this CA.
    pub(crate) client_ca: Option<PathBuf>,
    /// From the CPU, found once at startup.
    pub(crate) ciphers: Ciphers,
}

/// Which cipher the server prefers, from its CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ciphers {
    /// AES instructions: AES-GCM as the client orders it.
    AesInHardware,
    /// None: ChaCha20-Poly1305 first, whatever the client's order.
    ChaChaFirst,
}

/// Default for `--max-connections`: enough for several restic clients (each
/// opens up to 5 connections by default) on a board with little RAM.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 64;
/// Default for `--header-timeout`, in seconds: time to send a request head once
/// its first byte arrived. Stops slow-header (slowloris) clients.
pub(crate) const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 15;
/// Default for `--idle-timeout`, in seconds: how long a keep-alive connection
/// may wait for its next request. Longer than restic's own 90 s idle timeout,
/// so the client closes first and never races a closing server.
pub(crate) const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 120;
/// Default for `--body-timeout`, in seconds: longest pause while a client sends
/// a body, or while the server waits for a client to read a response.
pub(crate) const DEFAULT_BODY_TIMEOUT_SECS: u64 = 60;
/// Default for `--max-header-size`, in bytes (request line plus headers).
pub(crate) const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// Default for `--max-metadata-size`, in bytes: the cap on bodies of config,
/// keys, locks and snapshots (kilobytes in practice).
pub(crate) const DEFAULT_MAX_METADATA_BYTES: u64 = 8 * 1024 * 1024;
/// Default for `--io-threads`: the cap on the I/O pool (reads, listings,
/// metadata), and the number of upload writer threads beside it.
pub(crate) const DEFAULT_IO_THREADS: usize = 4;
/// Default for `--shutdown-timeout`, in seconds: grace period for requests in
/// flight after SIGINT/SIGTERM.
pub(crate) const DEFAULT_SHUTDOWN_TIMEOUT_SECS: u64 = 10;

/// Where repositories are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Storage {
    /// A data directory, in restic's local layout.
    Local(PathBuf),
    /// A bucket; the settings file, when given, says how to reach it.
    S3 {
        location: S3Location,
        settings: Option<PathBuf>,
    },
}

pub(crate) const DEFAULT_MIRROR_UPLOADS: usize = 2;

/// The offsite mirror of a data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mirror {
    pub(crate) location: S3Location,
    pub(crate) settings_file: Option<PathBuf>,
    pub(crate) run: MirrorSettings,
}

/// Where `scrub` works, and the mirror it repairs from (opaque outside the
/// crate).
pub struct ScrubTarget {
    pub(crate) storage: Storage,
    pub(crate) mirror: Option<Mirror>,
}

/// The bucket `cleanup` works on (opaque outside the crate).
pub struct CleanupTarget(pub(crate) Storage);

/// Where `trash` works: a data directory or a bucket (opaque outside the
/// crate).
pub struct TrashTarget(pub(crate) Storage);

/// The mirror's bucket `mirror recover` works on (opaque outside the
/// crate).
pub struct MirrorTarget(pub(crate) Mirror);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListenAddr {
    /// `host:port`; an empty host (`:8000`) means every interface.
    Tcp { host: String, port: u16 },
    /// `unix:/path/to.sock`.
    Unix(PathBuf),
}

/// How clients prove who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthMode {
    /// `--no-auth`: everyone is anonymous.
    Off,
    /// HTTP Basic auth against this htpasswd file.
    Htpasswd(PathBuf),
    /// `--proxy-auth-username HEADER`: a trusted reverse proxy names the user.
    /// Parsed once, when the flags are read.
    ProxyHeader(HeaderName),
}

/// Where the access log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AccessLogTarget {
    Stdout,
    File(PathBuf),
}

/// Limits that keep one slow or hostile client from holding the one thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) max_connections: usize,
    pub(crate) header_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) body_timeout: Duration,
    pub(crate) max_header_bytes: usize,
    pub(crate) max_metadata_bytes: u64,
    pub(crate) io_threads: usize,
    pub(crate) shutdown_timeout: Duration,
}

impl Limits {
    /// Threads that write uploads: as many as `--io-threads`, beside the I/O
    /// pool rather than in it, so that uploads keep the write parallelism
    /// they had and reads keep all of the pool.
    pub(crate) fn upload_writers(&self) -> usize {
        self.io_threads
    }
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

/// Where the server runs. In the container image (docs/container.md) it
/// checks its volume at start, creates an empty users file, and its hints
/// name `exec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Deployment {
    #[default]
    Host,
    Container,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) deployment: Deployment,
    pub(crate) storage: Storage,
    pub(crate) mirror: Option<Mirror>,
    /// The background scrub; None when off.
    pub(crate) scrub: Option<ScrubSchedule>,
    pub(crate) listen: ListenAddr,
    pub(crate) access_log: Option<AccessLogTarget>,
    pub(crate) debug: bool,
    /// `--tls`: serve HTTPS with these files.
    pub(crate) tls: Option<TlsSettings>,
    pub(crate) auth: AuthMode,
    /// `--private-repos`: a user may only use repositories under their name.
    pub(crate) private_repos: bool,
    /// `--acl FILE`: per-user, per-repository access levels.
    pub(crate) acl: Option<PathBuf>,
    /// `--quota-file FILE`: byte budgets per repository or tree.
    pub(crate) quota_file: Option<PathBuf>,
    /// `--prometheus`: serve `/metrics`.
    pub(crate) prometheus: bool,
    /// `--prometheus-no-auth`: `/metrics` without credentials.
    pub(crate) prometheus_no_auth: bool,
    pub(crate) append_only: bool,
    pub(crate) max_size: Option<u64>,
    /// `--health-min-free`: below this many free bytes, `/health` says 503.
    pub(crate) health_min_free: u64,
    /// `--stale-days`: the status page's age for a repository's newest
    /// snapshot past which it is shown red; 0: never.
    pub(crate) stale_days: u64,
    pub(crate) verify_upload: bool,
    /// `--trash-days`: deleted files kept this many days; None: removed.
    pub(crate) trash_days: Option<u64>,
    /// `--delete-alarm`: percent of a repository's snapshots deleted within
    /// a day that raises the deletion alarm; 0: never.
    pub(crate) delete_alarm: u64,
    pub(crate) modes: Modes,
    pub(crate) limits: Limits,
}

impl Config {
    /// A configuration for tests: no auth, defaults elsewhere.
    #[cfg(test)]
    pub(crate) fn new(path: PathBuf) -> Config {
        Config {
            storage: Storage::Local(path),
            mirror: None,
            scrub: None,
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
            quota_file: None,
            prometheus: false,
            prometheus_no_auth: false,
            append_only: false,
            max_size: None,
            health_min_free: 0,
            stale_days: 3,
            verify_upload: true,
            trash_days: None,
            delete_alarm: 50,
            modes: Modes::new(false),
            limits: Limits::default(),
            deployment: Deployment::Host,
        }
    }

    /// This configuration, run as `deployment` says.
    pub fn deployed(self, deployment: Deployment) -> Config {
        Config { deployment, ..self }
    }
}
