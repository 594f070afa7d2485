//! The first stage: [`Flags`], the raw flags as the user typed them, with
//! argh's derive. Nothing here checks or combines them ([`super::resolve`]
//! does); the doc comments are the `--help` text, word for word.

use std::path::PathBuf;

use argh::FromArgs;

use super::subcommands::Command;

/// A restic REST backend server for small boards: a drop-in for rest-server.
#[derive(FromArgs, Debug, Default)]
#[cfg_attr(test, derive(argh::ArgsInfo))]
pub struct Flags {
    /// data directory (default: <system temp dir>/restic), or an S3 bucket
    /// as restic writes it: s3:https://host[:port]/bucket[/prefix]
    #[argh(option)]
    pub path: Option<PathBuf>,
    /// settings for an s3: --path or --mirror (provider, credentials, region,
    /// ...), as name = value lines with rclone's names; see docs/s3.md
    #[argh(option)]
    pub s3_config: Option<PathBuf>,
    /// copy every committed file to this bucket in the background:
    /// s3:https://host[:port]/bucket[/prefix]
    #[argh(option)]
    pub mirror: Option<String>,
    /// mirror deletes too (never with --append-only)
    #[argh(switch)]
    pub mirror_deletes: bool,
    /// mirror uploads at once (default 2)
    #[argh(option)]
    pub mirror_uploads: Option<usize>,
    /// mirror bandwidth limit in bytes per second (default unlimited)
    #[argh(option)]
    pub mirror_bwlimit: Option<u64>,
    /// lock every mirrored object in the bucket (S3 Object Lock) for this
    /// many days, renewed while it is live, so that the board's own keys
    /// cannot remove it; see docs/mirror.md (default: off)
    #[argh(option)]
    pub mirror_lock_days: Option<u32>,
    /// the lock's retention mode: governance or compliance (default
    /// governance)
    #[argh(option)]
    pub mirror_lock_mode: Option<String>,
    /// listen address: host:port, :port, or unix:/path/to.sock (default ":8000")
    #[argh(option)]
    pub listen: Option<String>,
    /// write HTTP requests in the combined log format to this file ("-" for stdout)
    #[argh(option)]
    pub log: Option<String>,
    /// output debug messages (logs every request)
    #[argh(switch)]
    pub debug: bool,
    /// disable authentication
    #[argh(switch)]
    pub no_auth: bool,
    /// location of .htpasswd file (default: "<data directory>/.htpasswd")
    #[argh(option)]
    pub htpasswd_file: Option<String>,
    /// enable append only mode: no deletes except locks, no overwrites
    #[argh(switch)]
    pub append_only: bool,
    /// users can only access their private repo
    #[argh(switch)]
    pub private_repos: bool,
    /// file of access rules per user and repository (read, append, full); see docs/access.md
    #[argh(option)]
    pub acl: Option<PathBuf>,
    /// the maximum size of the data directory in bytes
    #[argh(option)]
    pub max_size: Option<u64>,
    /// file of byte budgets per repository or per user (`/alice/* 200G`);
    /// see docs/monitoring.md
    #[argh(option)]
    pub quota_file: Option<PathBuf>,
    /// GET /health answers 503 when the data directory has fewer bytes free
    /// (default 104857600)
    #[argh(option)]
    pub health_min_free: Option<u64>,
    /// the status page (GET / from a browser) shows a repository red when
    /// its newest snapshot is older than this many days; 0: never (default 3)
    #[argh(option)]
    pub stale_days: Option<u64>,
    /// do not verify that uploaded content matches its name (SHA-256)
    #[argh(switch)]
    pub no_verify_upload: bool,
    /// enable Prometheus metrics at /metrics
    #[argh(switch)]
    pub prometheus: bool,
    /// disable auth for Prometheus /metrics endpoint
    #[argh(switch)]
    pub prometheus_no_auth: bool,
    /// turn on TLS support
    #[argh(switch)]
    pub tls: bool,
    /// TLS certificate path, PEM chain (default "<data directory>/public_key")
    #[argh(option)]
    pub tls_cert: Option<String>,
    /// TLS key path, PEM (default "<data directory>/private_key")
    #[argh(option)]
    pub tls_key: Option<String>,
    /// TLS min version, one of (1.2|1.3) (default "1.2")
    #[argh(option)]
    pub tls_min_ver: Option<String>,
    /// require client certificates signed by the CA in this PEM file
    #[argh(option)]
    pub tls_client_ca: Option<PathBuf>,
    /// let the filesystem group access repository files (0770/0660)
    #[argh(switch)]
    pub group_accessible_repos: bool,
    /// HTTP header holding the username for proxy-based authentication
    #[argh(option)]
    pub proxy_auth_username: Option<String>,
    /// write a CPU profile (Go rest-server only; not supported)
    #[argh(option)]
    pub cpu_profile: Option<String>,
    /// most connections served at once; more wait to be accepted (default 64)
    #[argh(option)]
    pub max_connections: Option<usize>,
    /// seconds a client has to send a request head (default 15)
    #[argh(option)]
    pub header_timeout: Option<u64>,
    /// seconds an idle keep-alive connection is kept open (default 120)
    #[argh(option)]
    pub idle_timeout: Option<u64>,
    /// seconds a body transfer may stall before the request is dropped (default 60)
    #[argh(option)]
    pub body_timeout: Option<u64>,
    /// largest request head in bytes (default 16384)
    #[argh(option)]
    pub max_header_size: Option<usize>,
    /// largest body in bytes for config, keys, locks and snapshots (default 8388608)
    #[argh(option)]
    pub max_metadata_size: Option<u64>,
    /// threads for file reads, listings and metadata, and as many again for
    /// writing uploads (default 4)
    #[argh(option)]
    pub io_threads: Option<usize>,
    /// seconds to let requests in flight finish on SIGINT/SIGTERM (default 10)
    #[argh(option)]
    pub shutdown_timeout: Option<u64>,
    /// how fast the background scrub reads and hashes stored objects, in
    /// MB/s (default 8)
    #[argh(option)]
    pub scrub_rate: Option<u64>,
    /// from the start of one scrub pass to the next: days, or a number with
    /// s, m, h or d (default 30d; 0 turns the background scrub off)
    #[argh(option)]
    pub scrub_interval: Option<String>,
    /// keep each deleted repository file (locks excepted) this many days in
    /// .trash of the data directory (or of the s3: --path), where `trash
    /// restore` brings it back; see docs/trash.md (default: off)
    #[argh(option)]
    pub trash_days: Option<u64>,
    /// log an error and flag the repository (status page, /metrics) when
    /// this share of its snapshots, in percent, is deleted within 24 hours,
    /// 3 at least; 0: never (default 50)
    #[argh(option)]
    pub delete_alarm: Option<u64>,
    /// print the version and exit
    #[argh(switch)]
    pub version: bool,
    #[argh(subcommand)]
    pub command: Option<Command>,
}
