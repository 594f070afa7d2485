//! Command-line flags, in two stages: [`Flags`] holds what the user typed,
//! [`Flags::resolve`] checks it and builds the [`Config`].
//!
//! Every flag of restic's rest-server 0.14 keeps its name and meaning, so unit
//! files written for it keep working. Go's flag parser also accepts
//! `--flag=value`, `--switch=true` and `--switch=false`; [`normalize_args`]
//! rewrites those into the form argh understands.

use std::path::PathBuf;
use std::time::Duration;

use argh::FromArgs;

use crate::config::MirrorSettings;
use crate::config::Modes;
use crate::config::{AccessLogTarget, AuthMode, Config, Limits, ListenAddr};
use crate::config::{Ciphers, ScrubSchedule, TlsSettings, TlsVersion};
use crate::config::{CleanupTarget, DEFAULT_MIRROR_UPLOADS, Mirror, ScrubTarget, Storage};
use crate::store::s3;

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
    /// print the version and exit
    #[argh(switch)]
    pub version: bool,
    #[argh(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands; without one, the server runs.
#[derive(FromArgs, Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(argh::ArgsInfo))]
#[argh(subcommand)]
pub enum Command {
    User(UserArgs),
    Tls(TlsArgs),
    Mirror(MirrorArgs),
    Cleanup(Cleanup),
    Scrub(ScrubArgs),
    Health(HealthArgs),
    Ntp(NtpArgs),
    Mdns(MdnsArgs),
}

/// answer multicast DNS queries for this board's name with its IPv4
/// address (the flashable image runs it)
#[derive(FromArgs, Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(argh::ArgsInfo))]
#[argh(subcommand, name = "mdns")]
pub struct MdnsArgs {
    /// the name to answer for (default rest-server.local)
    #[argh(option, default = "String::from(\"rest-server.local\")")]
    pub name: String,
}

/// keep the clock set from SNTP servers, for a board without a real-time
/// clock (the flashable image runs it); logs each correction
#[derive(FromArgs, Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(argh::ArgsInfo))]
#[argh(subcommand, name = "ntp")]
pub struct NtpArgs {
    /// seconds between two syncs (default 3600)
    #[argh(option, default = "3600")]
    pub interval: u64,
    /// servers (host, host:port, [v6 address]:port), tried in turn
    #[argh(positional)]
    pub servers: Vec<String>,
}

/// ask the running server's GET /health at --listen (over TLS with --tls,
/// pinning --tls-cert) and print its answer; exit code 0 when healthy
#[derive(FromArgs, Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(argh::ArgsInfo))]
#[argh(subcommand, name = "health")]
pub struct HealthArgs {}

/// verify every stored object against its name now; exit code 1 if any is
/// damaged (docs/scrub.md)
#[derive(FromArgs, Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(argh::ArgsInfo))]
#[argh(subcommand, name = "scrub")]
pub struct ScrubArgs {
    /// the data directory or s3: bucket (default: the --path given before
    /// "scrub")
    #[argh(option)]
    pub path: Option<PathBuf>,
    /// only this repository (alice/laptop; / for the root one)
    #[argh(option)]
    pub repo: Option<String>,
    /// read at most this many MB/s (default: as fast as the disk goes)
    #[argh(option)]
    pub rate: Option<u64>,
    /// print the last pass's result and the damaged objects known, from the
    /// state file; exit code 1 if any is known
    #[argh(switch)]
    pub status: bool,
    /// replace each damaged object by its copy in the offsite mirror (give
    /// --mirror and --s3-config as the server has them), once that copy
    /// matches the object's name
    #[argh(switch)]
    pub repair: bool,
}

/// abort the multipart uploads a crash left in the bucket of an s3: --path
#[derive(FromArgs, Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(argh::ArgsInfo))]
#[argh(subcommand, name = "cleanup")]
pub struct Cleanup {
    /// only those started at least this many seconds ago (default 86400: a
    /// running server's uploads are younger)
    #[argh(option, default = "86400")]
    pub min_age: u64,
}

/// the offsite mirror (--mirror)
#[derive(FromArgs, Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(argh::ArgsInfo))]
#[argh(subcommand, name = "mirror")]
pub struct MirrorArgs {
    #[argh(subcommand)]
    pub action: MirrorAction,
}

#[derive(FromArgs, Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(argh::ArgsInfo))]
#[argh(subcommand)]
pub enum MirrorAction {
    Status(MirrorStatus),
}

/// say whether the offsite copy is current, from the status the running
/// server keeps in <path>/.mirror/status; exit code 0 only when it is
#[derive(FromArgs, Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(argh::ArgsInfo))]
#[argh(subcommand, name = "status")]
pub struct MirrorStatus {}

/// make TLS files for --tls
#[derive(FromArgs, Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(argh::ArgsInfo))]
#[argh(subcommand, name = "tls")]
pub struct TlsArgs {
    #[argh(subcommand)]
    pub action: TlsAction,
}

#[derive(FromArgs, Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(argh::ArgsInfo))]
#[argh(subcommand)]
pub enum TlsAction {
    Generate(TlsGenerate),
}

/// write a self-signed certificate and key (to --tls-cert and --tls-key, by
/// default public_key and private_key in the data directory, which is
/// created if missing) and print the certificate's SHA-256 fingerprint;
/// existing files are kept unless --force; run as root, the files belong to
/// the owner of their folder (the service user)
#[derive(FromArgs, Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(argh::ArgsInfo))]
#[argh(subcommand, name = "generate")]
pub struct TlsGenerate {
    /// a host name or IP address clients will use (repeatable; default:
    /// localhost, rest-server, rest-server.local)
    #[argh(option)]
    pub name: Vec<String>,
    /// replace an existing certificate and key (clients that pinned the old
    /// certificate must be given the new one)
    #[argh(switch)]
    pub force: bool,
}

/// manage the users of the htpasswd file (no apache2-utils needed)
#[derive(FromArgs, Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(argh::ArgsInfo))]
#[argh(subcommand, name = "user")]
pub struct UserArgs {
    #[argh(subcommand)]
    pub action: UserAction,
}

#[derive(FromArgs, Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(argh::ArgsInfo))]
#[argh(subcommand)]
pub enum UserAction {
    Add(UserAdd),
    Remove(UserRemove),
    List(UserList),
}

/// add a user, or with --update set a new password (bcrypt); asks twice on
/// a terminal, otherwise reads one line from stdin
#[derive(FromArgs, Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(argh::ArgsInfo))]
#[argh(subcommand, name = "add")]
pub struct UserAdd {
    /// user name: letters, digits, '_', '-', '.', '@'
    #[argh(positional)]
    pub name: String,
    /// set a new password for a user who exists already (without it, an
    /// existing user is refused, so that a typo cannot replace a password)
    #[argh(switch)]
    pub update: bool,
}

/// remove a user
#[derive(FromArgs, Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(argh::ArgsInfo))]
#[argh(subcommand, name = "remove")]
pub struct UserRemove {
    /// user name
    #[argh(positional)]
    pub name: String,
}

/// list the users
#[derive(FromArgs, Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(argh::ArgsInfo))]
#[argh(subcommand, name = "list")]
pub struct UserList {}

/// A command line the server refuses: flags argh cannot parse, or a
/// combination that cannot start. The text says what to change.
#[derive(Debug)]
pub enum CliError {
    /// argh's own message (unknown flag, missing value, stray argument):
    /// argh reports its errors as text only.
    Parse(String),
    /// `--switch=VALUE` where VALUE is not one of Go's booleans.
    SwitchValue {
        switch: String,
        value: String,
    },
    /// `--listen unix:` without a path.
    UnixSocketPath,
    /// `--listen` that is neither `host:port`, `:port` nor `unix:/path`.
    Listen(String),
    /// The named flag was given 0.
    NotPositive(&'static str),
    /// `--max-header-size` below [`MIN_HEADER_BYTES`].
    HeaderSizeTooSmall,
    /// `--tls-cert`, `--tls-key` or `--tls-client-ca` without `--tls`.
    TlsFilesWithoutTls,
    TlsMinVersion(String),
    /// A flag of Go's rest-server this one does not implement.
    Unsupported(&'static str),
    ProxyHeader {
        header: String,
        source: hyper::header::InvalidHeaderName,
    },
    /// `--acl` with `--no-auth`: there would be no user to apply rules to.
    AclWithoutAuth,
    /// A file that defaults to the data directory, with an S3 `--path`.
    NoDataDir(&'static str),
    /// A malformed `s3:` location.
    S3Location(String),
    /// `--s3-config` without an `s3:` path or mirror.
    S3ConfigWithoutS3,
    /// A mirror flag that cannot work as given.
    Mirror(&'static str),
    /// A scrub flag that cannot work as given.
    Scrub(String),
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Parse(text) => f.write_str(text.trim_end()),
            CliError::SwitchValue { switch, value } => {
                write!(
                    f,
                    "invalid value {value:?} for switch {switch}: use true or false"
                )
            }
            CliError::UnixSocketPath => f.write_str("--listen unix: needs a socket path"),
            CliError::Listen(text) => write!(
                f,
                "--listen {text:?}: expected host:port, :port or unix:/path/to.sock"
            ),
            CliError::NotPositive(name) => write!(f, "{name} must be greater than 0"),
            CliError::HeaderSizeTooSmall => {
                write!(f, "--max-header-size must be at least {MIN_HEADER_BYTES}")
            }
            CliError::TlsFilesWithoutTls => {
                f.write_str("--tls-cert, --tls-key and --tls-client-ca need --tls")
            }
            CliError::TlsMinVersion(text) => {
                write!(f, "--tls-min-ver {text:?}: use 1.2 or 1.3")
            }
            CliError::Unsupported(name) => write!(
                f,
                "{name} is not yet supported by this version of rest-server; remove it to start"
            ),
            CliError::ProxyHeader { header, .. } => {
                write!(
                    f,
                    "--proxy-auth-username {header:?} is not a valid header name"
                )
            }
            CliError::AclWithoutAuth => f.write_str(
                "--acl needs authentication: remove --no-auth (or add --proxy-auth-username)",
            ),
            CliError::NoDataDir(flag) => write!(
                f,
                "with an s3: --path there is no data directory for the default file: give {flag}"
            ),
            CliError::S3Location(why) => write!(f, "--path: {why}"),
            CliError::S3ConfigWithoutS3 => {
                f.write_str("--s3-config needs an s3: --path or an s3: --mirror")
            }
            CliError::Mirror(why) => f.write_str(why),
            CliError::Scrub(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for CliError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CliError::ProxyHeader { source, .. } => Some(source),
            CliError::Parse(_)
            | CliError::SwitchValue { .. }
            | CliError::UnixSocketPath
            | CliError::Listen(_)
            | CliError::NotPositive(_)
            | CliError::HeaderSizeTooSmall
            | CliError::TlsFilesWithoutTls
            | CliError::TlsMinVersion(_)
            | CliError::Unsupported(_)
            | CliError::AclWithoutAuth
            | CliError::NoDataDir(_)
            | CliError::S3Location(_)
            | CliError::S3ConfigWithoutS3
            | CliError::Mirror(_)
            | CliError::Scrub(_) => None,
        }
    }
}

/// `--scrub-rate` by default, MB/s: a 1 TB disk is scrubbed in about a day
/// and a half, well inside the default interval, while the reads stay a
/// small share of a USB disk's or SD card's speed.
const DEFAULT_SCRUB_RATE_MB: u64 = 8;

/// `--health-min-free` by default: 100 MiB, a few packs.
const DEFAULT_HEALTH_MIN_FREE: u64 = 100 << 20;

/// `--stale-days` by default: a laptop that backs up daily and has missed
/// three days in a row has stopped, or its owner is away; worth a look.
const DEFAULT_STALE_DAYS: u64 = 3;

/// `--scrub-interval` by default.
const DEFAULT_SCRUB_INTERVAL_DAYS: u64 = 30;

/// A duration as `--scrub-interval` takes it: days, or a number with a unit.
fn parse_interval(text: &str) -> Option<Duration> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "d"),
    };
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    number
        .parse::<u64>()
        .ok()?
        .checked_mul(unit)
        .map(Duration::from_secs)
}

/// The smallest `--max-header-size`, in bytes.
const MIN_HEADER_BYTES: usize = 1024;

/// Switches, whose `--name=true|false` form Go accepts. Kept by hand: argh
/// does not tell switches from options at run time. The test
/// `switches_lists_every_switch` compares it with the switches argh's
/// `ArgsInfo` finds, which is why every argh type here derives it in tests.
const SWITCHES: &[&str] = &[
    "debug",
    "mirror-deletes",
    "update",
    "force",
    "no-auth",
    "append-only",
    "private-repos",
    "no-verify-upload",
    "prometheus",
    "prometheus-no-auth",
    "tls",
    "group-accessible-repos",
    "version",
    "status",
    "repair",
];

/// Rewrites Go-style `--flag=value` into `--flag value`, `--switch=true` into
/// `--switch` and drops `--switch=false`. Also accepts Go's single-dash form.
pub fn normalize_args(args: &[String]) -> Result<Vec<String>, CliError> {
    let mut out = Vec::with_capacity(args.len());
    let mut only_positionals = false;
    for arg in args {
        if only_positionals || !arg.starts_with('-') || arg == "-" {
            out.push(arg.clone());
            continue;
        }
        if arg == "--" {
            only_positionals = true;
            out.push(arg.clone());
            continue;
        }
        // Go accepts -flag as well as --flag.
        let long = if arg.starts_with("--") || arg == "-h" {
            arg.clone()
        } else {
            format!("-{arg}")
        };
        match long.split_once('=') {
            Some((name, value)) if SWITCHES.contains(&&name[2..]) => match value {
                "true" | "1" | "t" | "T" | "TRUE" | "True" => out.push(name.to_string()),
                "false" | "0" | "f" | "F" | "FALSE" | "False" => {}
                _ => {
                    return Err(CliError::SwitchValue {
                        switch: name.to_string(),
                        value: value.to_string(),
                    });
                }
            },
            Some((name, value)) => {
                out.push(name.to_string());
                out.push(value.to_string());
            }
            None => out.push(long),
        }
    }
    Ok(out)
}

/// Parses `host:port`, `:port` or `unix:/path`.
pub(crate) fn parse_listen(text: &str) -> Result<ListenAddr, CliError> {
    if let Some(path) = text.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(CliError::UnixSocketPath);
        }
        return Ok(ListenAddr::Unix(PathBuf::from(path)));
    }
    let bad = || CliError::Listen(text.to_string());
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err() {
        return Err(bad());
    }
    Ok(ListenAddr::Tcp {
        host: host.to_string(),
        port,
    })
}

fn positive<T: PartialEq + Default>(value: T, name: &'static str) -> Result<T, CliError> {
    if value == T::default() {
        return Err(CliError::NotPositive(name));
    }
    Ok(value)
}

impl Flags {
    /// Where repositories are: `--path` (a folder or an `s3:` bucket), or
    /// rest-server's default folder.
    fn storage(&self) -> Result<Storage, CliError> {
        self.storage_at(self.path.as_ref())
    }

    fn storage_at(&self, path: Option<&PathBuf>) -> Result<Storage, CliError> {
        let path = path
            .cloned()
            .unwrap_or_else(|| std::env::temp_dir().join("restic"));
        match path.to_str().filter(|p| s3::is_location(p)) {
            Some(text) => Ok(Storage::S3 {
                location: s3::parse_location(text).map_err(|e| CliError::S3Location(e.0))?,
                settings: self.s3_config.clone(),
            }),
            None if self.s3_config.is_some() && self.mirror.is_none() => {
                Err(CliError::S3ConfigWithoutS3)
            }
            None => Ok(Storage::Local(path)),
        }
    }

    /// Where `cleanup` works: the bucket of an `s3:` path.
    pub fn cleanup_target(&self) -> Result<CleanupTarget, CliError> {
        match self.storage()? {
            storage @ Storage::S3 { .. } => Ok(CleanupTarget(storage)),
            Storage::Local(_) => Err(CliError::Mirror(
                "cleanup is for an s3: --path: a data directory's leftovers are removed at startup",
            )),
        }
    }

    /// Where `scrub` works: its own `--path`, or the one before it; with
    /// `--repair`, the mirror too.
    pub fn scrub_target(&self, args: &ScrubArgs) -> Result<ScrubTarget, CliError> {
        let storage = self.storage_at(args.path.as_ref().or(self.path.as_ref()))?;
        let mirror = match args.repair {
            false => None,
            true => Some(self.mirror_settings(&storage)?.ok_or_else(|| {
                CliError::Scrub(
                    "scrub --repair heals from the offsite mirror: give --mirror (and \
                     --s3-config) before `scrub`, as the server has them"
                        .to_string(),
                )
            })?),
        };
        Ok(ScrubTarget { storage, mirror })
    }

    /// The background scrub: a data directory's, unless turned off.
    fn scrub_schedule(&self, storage: &Storage) -> Result<Option<ScrubSchedule>, CliError> {
        let interval = match self.scrub_interval.as_deref() {
            None => Duration::from_secs(DEFAULT_SCRUB_INTERVAL_DAYS * 86_400),
            Some(text) => parse_interval(text).ok_or_else(|| {
                CliError::Scrub(format!(
                    "--scrub-interval {text:?}: expected days, or a number with s, m, h or d"
                ))
            })?,
        };
        let rate = self.scrub_rate.unwrap_or(DEFAULT_SCRUB_RATE_MB);
        if rate == 0 {
            return Err(CliError::NotPositive("--scrub-rate"));
        }
        if interval.is_zero() {
            return Ok(None);
        }
        if let Storage::S3 { .. } = storage {
            if self.scrub_interval.is_some() || self.scrub_rate.is_some() {
                return Err(CliError::Scrub(
                    "the background scrub is of a data directory: re-reading a bucket is paid \
                     per request and byte, so scrub an s3: --path with `rest-server scrub` \
                     when you choose to"
                        .to_string(),
                ));
            }
            return Ok(None);
        }
        let rate = rate
            .checked_mul(1_000_000)
            .ok_or_else(|| CliError::Scrub(format!("--scrub-rate {rate}: too large")))?;
        Ok(Some(ScrubSchedule { rate, interval }))
    }

    /// The data directory, for `mirror status`.
    pub fn data_dir(&self) -> Result<PathBuf, CliError> {
        match self.storage()? {
            Storage::Local(dir) => Ok(dir),
            Storage::S3 { .. } => Err(CliError::Mirror(
                "the mirror is of a data directory: give its --path",
            )),
        }
    }

    /// A file in the data directory, for the flag that names it otherwise.
    fn in_data_dir(&self, name: &str, flag: &'static str) -> Result<PathBuf, CliError> {
        match self.storage()? {
            Storage::Local(dir) => Ok(dir.join(name)),
            Storage::S3 { .. } => Err(CliError::NoDataDir(flag)),
        }
    }

    /// The TLS certificate and key: `--tls-cert` and `--tls-key`, or
    /// `public_key` and `private_key` in the data directory.
    pub fn tls_paths(&self) -> Result<(PathBuf, PathBuf), CliError> {
        let file = |given: &Option<String>, default: &str, flag| match given {
            Some(path) => Ok(PathBuf::from(path)),
            None => self.in_data_dir(default, flag),
        };
        Ok((
            file(&self.tls_cert, "public_key", "--tls-cert")?,
            file(&self.tls_key, "private_key", "--tls-key")?,
        ))
    }

    /// The htpasswd file: `--htpasswd-file`, or `.htpasswd` in the data directory.
    pub fn htpasswd_path(&self) -> Result<PathBuf, CliError> {
        match &self.htpasswd_file {
            Some(file) => Ok(PathBuf::from(file)),
            None => self.in_data_dir(".htpasswd", "--htpasswd-file"),
        }
    }

    /// The TLS settings, as rest-server takes them: the files default to
    /// `public_key` and `private_key` in the data directory, and naming them
    /// without `--tls` is an error rather than a silent plain-HTTP server.
    fn tls_settings(&self) -> Result<Option<TlsSettings>, CliError> {
        if !self.tls {
            if self.tls_cert.is_some() || self.tls_key.is_some() || self.tls_client_ca.is_some() {
                return Err(CliError::TlsFilesWithoutTls);
            }
            return Ok(None);
        }
        let min_version = match self.tls_min_ver.as_deref() {
            None => TlsVersion::V1_2,
            Some(text) => {
                TlsVersion::parse(text).ok_or_else(|| CliError::TlsMinVersion(text.to_string()))?
            }
        };
        let (cert, key) = self.tls_paths()?;
        Ok(Some(TlsSettings {
            cert,
            key,
            min_version,
            client_ca: self.tls_client_ca.clone(),
            ciphers: Ciphers::detect(),
        }))
    }

    /// The offsite mirror, when asked for: only from a data directory, and
    /// deletes never in append-only mode.
    fn mirror_settings(&self, storage: &Storage) -> Result<Option<Mirror>, CliError> {
        let Some(target) = &self.mirror else {
            let given = self.mirror_deletes
                || self.mirror_uploads.is_some()
                || self.mirror_bwlimit.is_some();
            if given {
                return Err(CliError::Mirror(
                    "--mirror-deletes, --mirror-uploads and --mirror-bwlimit need --mirror",
                ));
            }
            return Ok(None);
        };
        if matches!(storage, Storage::S3 { .. }) {
            return Err(CliError::Mirror(
                "--mirror copies a data directory: it cannot go with an s3: --path",
            ));
        }
        if self.mirror_deletes && self.append_only {
            return Err(CliError::Mirror(
                "--mirror-deletes cannot go with --append-only: deletes on the board must \
                 never delete offsite",
            ));
        }
        let location = s3::parse_location(target).map_err(|e| CliError::S3Location(e.0))?;
        Ok(Some(Mirror {
            location,
            settings_file: self.s3_config.clone(),
            run: MirrorSettings {
                uploads: match self.mirror_uploads {
                    Some(n) => positive(n, "--mirror-uploads")?,
                    None => DEFAULT_MIRROR_UPLOADS,
                },
                bandwidth: self.mirror_bwlimit.filter(|&n| n > 0),
                deletes: self.mirror_deletes,
            },
        }))
    }

    /// Checks the flags and builds the configuration.
    // Called for the server and for `health`: one copy (it is large).
    #[inline(never)]
    pub fn resolve(self) -> Result<Config, CliError> {
        let unsupported = [(self.cpu_profile.is_some(), "--cpu-profile")];
        if let Some((_, name)) = unsupported.iter().find(|(given, _)| *given) {
            return Err(CliError::Unsupported(name));
        }
        let defaults = Limits::default();
        let secs = |value: Option<u64>, default: Duration, name: &'static str| match value {
            Some(s) => positive(s, name).map(Duration::from_secs),
            None => Ok(default),
        };
        let limits = Limits {
            max_connections: match self.max_connections {
                Some(n) => positive(n, "--max-connections")?,
                None => defaults.max_connections,
            },
            header_timeout: secs(
                self.header_timeout,
                defaults.header_timeout,
                "--header-timeout",
            )?,
            idle_timeout: secs(self.idle_timeout, defaults.idle_timeout, "--idle-timeout")?,
            body_timeout: secs(self.body_timeout, defaults.body_timeout, "--body-timeout")?,
            max_header_bytes: match self.max_header_size {
                // hyper's read buffer cannot be smaller than 8 KiB.
                Some(n) if n < MIN_HEADER_BYTES => return Err(CliError::HeaderSizeTooSmall),
                Some(n) => n,
                None => defaults.max_header_bytes,
            },
            max_metadata_bytes: self
                .max_metadata_size
                .unwrap_or(defaults.max_metadata_bytes),
            io_threads: match self.io_threads {
                Some(n) => positive(n, "--io-threads")?,
                None => defaults.io_threads,
            },
            shutdown_timeout: match self.shutdown_timeout {
                Some(s) => Duration::from_secs(s),
                None => defaults.shutdown_timeout,
            },
        };
        let listen = parse_listen(self.listen.as_deref().unwrap_or(":8000"))?;
        let access_log = match self.log.as_deref() {
            None | Some("") => None,
            Some("-") => Some(AccessLogTarget::Stdout),
            Some(file) => Some(AccessLogTarget::File(PathBuf::from(file))),
        };
        let max_size = match self.max_size {
            Some(0) | None => None,
            Some(n) => Some(n),
        };
        let storage = self.storage()?;
        let mirror = self.mirror_settings(&storage)?;
        let scrub = self.scrub_schedule(&storage)?;
        let tls = self.tls_settings()?;
        // As rest-server: --no-auth wins over everything, then the proxy header.
        let auth = if self.no_auth {
            AuthMode::Off
        } else if let Some(header) = self.proxy_auth_username {
            match hyper::header::HeaderName::try_from(header.as_str()) {
                Ok(name) => AuthMode::ProxyHeader(name),
                Err(source) => return Err(CliError::ProxyHeader { header, source }),
            }
        } else {
            AuthMode::Htpasswd(self.htpasswd_path()?)
        };
        if self.acl.is_some() && auth == AuthMode::Off {
            return Err(CliError::AclWithoutAuth);
        }
        Ok(Config {
            acl: self.acl,
            quota_file: self.quota_file,
            tls,
            storage,
            mirror,
            scrub,
            auth,
            private_repos: self.private_repos,
            prometheus: self.prometheus,
            prometheus_no_auth: self.prometheus_no_auth,
            listen,
            access_log,
            debug: self.debug,
            append_only: self.append_only,
            max_size,
            health_min_free: self.health_min_free.unwrap_or(DEFAULT_HEALTH_MIN_FREE),
            stale_days: self.stale_days.unwrap_or(DEFAULT_STALE_DAYS),
            verify_upload: !self.no_verify_upload,
            modes: Modes::new(self.group_accessible_repos),
            limits,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use argh::ArgsInfo;

    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn parse(list: &[&str]) -> Result<Config, CliError> {
        let normalized = normalize_args(&args(list))?;
        let refs: Vec<&str> = normalized.iter().map(String::as_str).collect();
        Flags::from_args(&["rest-server"], &refs)
            .map_err(|e| CliError::Parse(e.output))?
            .resolve()
    }

    #[test]
    fn scrub_flags() {
        assert_eq!(parse_interval("30"), Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_interval("12h"), Some(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_interval("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_interval("0"), Some(Duration::ZERO));
        for bad in ["", "d", "1w", "-1", "1.5d", "99999999999999999999d"] {
            assert_eq!(parse_interval(bad), None, "{bad}");
        }
        let config = parse(&["--path", "/srv"]).unwrap();
        assert_eq!(
            config.scrub,
            Some(ScrubSchedule {
                rate: 8_000_000,
                interval: Duration::from_secs(30 * 86_400)
            })
        );
        let off = parse(&["--path", "/srv", "--scrub-interval", "0"]).unwrap();
        assert_eq!(off.scrub, None);
        assert!(parse(&["--scrub-rate", "0"]).is_err());
        assert!(parse(&["--scrub-interval", "soon"]).is_err());
        // A bucket is only scrubbed on demand.
        let bucket = ["--no-auth", "--path", "s3:http://127.0.0.1:9/b"];
        assert_eq!(parse(&bucket).unwrap().scrub, None);
        let rate = [&bucket[..], &["--scrub-rate", "4"]].concat();
        assert!(matches!(parse(&rate), Err(CliError::Scrub(_))));
    }

    #[test]
    fn go_style_flags_are_understood() {
        let normalized = normalize_args(&args(&[
            "--path=/srv/restic",
            "-listen",
            ":9000",
            "--append-only=true",
            "--debug=false",
            "--no-auth",
        ]))
        .unwrap();
        assert_eq!(
            normalized,
            args(&[
                "--path",
                "/srv/restic",
                "--listen",
                ":9000",
                "--append-only",
                "--no-auth"
            ])
        );
        assert!(normalize_args(&args(&["--tls=maybe"])).is_err());
    }

    /// Adds the switches of `command` and of its subcommands, without `--`.
    fn switches_of(command: &argh::CommandInfoWithArgs, found: &mut BTreeSet<String>) {
        for flag in command.flags {
            // argh's own --help takes no Go-style value.
            if flag.kind == argh::FlagInfoKind::Switch && flag.long != "--help" {
                found.insert(flag.long.trim_start_matches("--").to_string());
            }
        }
        for sub in &command.commands {
            switches_of(&sub.command, found);
        }
    }

    #[test]
    fn switches_lists_every_switch() {
        // A switch missing from SWITCHES would take `--it=true` as an option
        // with a value and fail; one that is no longer a switch would turn
        // `--it=value` into `--it`.
        let mut declared = BTreeSet::new();
        switches_of(&Flags::get_args_info(), &mut declared);
        let listed: BTreeSet<String> = SWITCHES.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            declared, listed,
            "SWITCHES must name exactly the switches of Flags and its subcommands"
        );
        for switch in SWITCHES {
            let on = normalize_args(&args(&[&format!("--{switch}=true")])).unwrap();
            assert_eq!(on, args(&[&format!("--{switch}")]));
            let off = normalize_args(&args(&[&format!("-{switch}=false")])).unwrap();
            assert!(off.is_empty(), "{off:?}");
        }
    }

    #[test]
    fn errors_say_what_to_change_and_keep_their_cause() {
        use std::error::Error as _;
        let err = normalize_args(&args(&["--tls=maybe"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value \"maybe\" for switch --tls: use true or false"
        );
        assert!(err.source().is_none());
        let err = parse(&["--proxy-auth-username", "bad header"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--proxy-auth-username \"bad header\" is not a valid header name"
        );
        assert!(err.source().is_some(), "the header parser's error is kept");
        let err = parse(&["--no-auth", "--acl", "/etc/acl"]).unwrap_err();
        assert!(matches!(err, CliError::AclWithoutAuth), "{err}");
        let err = parse(&["--no-auth", "--io-threads", "0"]).unwrap_err();
        assert_eq!(err.to_string(), "--io-threads must be greater than 0");
        let err = parse(&["--no-auth", "--max-header-size", "100"]).unwrap_err();
        assert_eq!(err.to_string(), "--max-header-size must be at least 1024");
        let err = parse(&["--no-auth", "stray"]).unwrap_err();
        assert!(matches!(err, CliError::Parse(_)), "{err}");
    }

    #[test]
    fn resolves_defaults_and_modes() {
        let config = parse(&[
            "--no-auth",
            "--path",
            "/data",
            "--append-only",
            "--max-size",
            "1000",
        ])
        .unwrap();
        assert_eq!(config.storage, Storage::Local(PathBuf::from("/data")));
        assert!(config.append_only);
        assert_eq!(config.max_size, Some(1000));
        assert!(config.verify_upload);
        assert_eq!(config.modes, Modes::new(false));
        assert_eq!(
            config.listen,
            ListenAddr::Tcp {
                host: String::new(),
                port: 8000
            }
        );
        let default_path = parse(&["--no-auth"]).unwrap().storage;
        assert_eq!(
            default_path,
            Storage::Local(std::env::temp_dir().join("restic"))
        );
    }

    #[test]
    fn mirror_flags_are_checked() {
        let target = "s3:http://127.0.0.1:9000/b";
        let config = parse(&["--no-auth", "--path", "/d", "--mirror", target]).unwrap();
        let mirror = config.mirror.unwrap();
        assert_eq!(mirror.run.uploads, DEFAULT_MIRROR_UPLOADS);
        assert!(!mirror.run.deletes);
        let config = parse(&[
            "--no-auth",
            "--path",
            "/d",
            "--mirror",
            target,
            "--mirror-deletes",
            "--mirror-bwlimit",
            "1000",
            "--mirror-uploads",
            "4",
        ])
        .unwrap();
        let run = config.mirror.unwrap().run;
        assert_eq!(
            (run.uploads, run.bandwidth, run.deletes),
            (4, Some(1000), true)
        );
        // Someone who deletes on the board must not delete offsite.
        let refused = [
            vec!["--mirror", target, "--mirror-deletes", "--append-only"],
            vec!["--mirror-deletes"],
            vec!["--mirror", "s3:http://host"],
            vec!["--mirror", target, "--mirror-uploads", "0"],
        ];
        for extra in refused {
            let mut args = vec!["--no-auth", "--path", "/d"];
            args.extend(extra.iter().copied());
            assert!(parse(&args).is_err(), "{extra:?}");
        }
        assert!(parse(&["--no-auth", "--path", target, "--mirror", target]).is_err());
        assert!(
            parse(&[
                "--no-auth",
                "--path",
                "/d",
                "--mirror",
                target,
                "--s3-config",
                "/s"
            ])
            .is_ok()
        );
    }

    #[test]
    fn an_s3_path_needs_its_files_named() {
        let config = parse(&["--path", "s3:http://127.0.0.1:9000/b/p", "--no-auth"]).unwrap();
        let Storage::S3 { location, settings } = config.storage else {
            panic!("not S3: {:?}", config.storage);
        };
        assert_eq!(
            (location.bucket.as_str(), location.prefix.as_str()),
            ("b", "p")
        );
        assert_eq!(settings, None);
        // No data directory to hold .htpasswd or the TLS files.
        let s3 = "s3:http://127.0.0.1:9000/b";
        assert!(matches!(
            parse(&["--path", s3]),
            Err(CliError::NoDataDir("--htpasswd-file"))
        ));
        assert!(matches!(
            parse(&["--path", s3, "--no-auth", "--tls"]),
            Err(CliError::NoDataDir("--tls-cert"))
        ));
        assert!(parse(&["--path", s3, "--htpasswd-file", "/etc/h"]).is_ok());
        assert!(matches!(
            parse(&["--path", "s3:http://host", "--no-auth"]),
            Err(CliError::S3Location(_))
        ));
        assert!(matches!(
            parse(&["--path", "/data", "--s3-config", "/etc/s3"]),
            Err(CliError::S3ConfigWithoutS3)
        ));
    }

    #[test]
    fn chooses_the_auth_mode_like_rest_server() {
        let config = parse(&["--path", "/data"]).unwrap();
        assert_eq!(
            config.auth,
            AuthMode::Htpasswd(PathBuf::from("/data/.htpasswd"))
        );
        let config = parse(&["--htpasswd-file", "/etc/rs.htpasswd", "--private-repos"]).unwrap();
        assert_eq!(
            config.auth,
            AuthMode::Htpasswd(PathBuf::from("/etc/rs.htpasswd"))
        );
        assert!(config.private_repos);
        let config = parse(&["--proxy-auth-username", "X-Forwarded-User"]).unwrap();
        assert_eq!(
            config.auth,
            AuthMode::ProxyHeader(hyper::header::HeaderName::from_static("x-forwarded-user"))
        );
        let config = parse(&["--no-auth", "--proxy-auth-username", "X-User"]).unwrap();
        assert_eq!(config.auth, AuthMode::Off, "--no-auth overrides");
        assert!(parse(&["--proxy-auth-username", "bad header"]).is_err());
    }

    #[test]
    fn tls_settings_follow_rest_server() {
        let config = parse(&["--no-auth", "--path", "/d", "--tls"]).unwrap();
        let tls = config.tls.unwrap();
        assert_eq!(tls.cert, PathBuf::from("/d/public_key"));
        assert_eq!(tls.key, PathBuf::from("/d/private_key"));
        assert_eq!(tls.min_version, TlsVersion::V1_2);
        let config = parse(&[
            "--no-auth",
            "--tls",
            "--tls-min-ver",
            "1.3",
            "--tls-cert",
            "c",
        ])
        .unwrap();
        assert_eq!(config.tls.as_ref().unwrap().min_version, TlsVersion::V1_3);
        assert_eq!(config.tls.unwrap().cert, PathBuf::from("c"));
        assert!(parse(&["--no-auth", "--tls", "--tls-min-ver", "1.1"]).is_err());
        assert!(
            parse(&["--no-auth", "--tls-cert", "c"]).is_err(),
            "needs --tls"
        );
        assert!(parse(&["--no-auth"]).unwrap().tls.is_none());
    }

    #[test]
    fn refuses_features_of_later_versions() {
        // Go's profiler has no counterpart here.
        let err = parse(&["--no-auth", "--cpu-profile", "x"]).unwrap_err();
        assert!(
            matches!(err, CliError::Unsupported("--cpu-profile")),
            "{err}"
        );
        assert!(err.to_string().contains("not yet supported"), "{err}");
    }

    #[test]
    fn parses_listen_forms() {
        assert_eq!(
            parse_listen("127.0.0.1:0").unwrap(),
            ListenAddr::Tcp {
                host: "127.0.0.1".into(),
                port: 0
            }
        );
        assert_eq!(
            parse_listen("[::1]:8000").unwrap(),
            ListenAddr::Tcp {
                host: "::1".into(),
                port: 8000
            }
        );
        assert_eq!(
            parse_listen("unix:/run/rs.sock").unwrap(),
            ListenAddr::Unix(PathBuf::from("/run/rs.sock"))
        );
        for bad in ["8000", "host:port", "unix:", ":99999"] {
            assert!(parse_listen(bad).is_err(), "{bad}");
        }
    }
}
