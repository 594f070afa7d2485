//! The subcommands' flags: one struct per subcommand (`user`, `tls
//! generate`, `mirror status`, `cleanup`, `scrub`, `health`, `ntp`, `mdns`,
//! `trash`),
//! holding what the user typed after its name. Their bodies live in
//! `crate::commands`; the doc comments are the `--help` text, word for word.

use std::path::PathBuf;

use argh::FromArgs;

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
    Trash(TrashArgs),
}

/// the files deleted into the trash (--trash-days): list, restore, purge
/// (docs/trash.md)
#[derive(FromArgs, Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(argh::ArgsInfo))]
#[argh(subcommand, name = "trash")]
pub struct TrashArgs {
    #[argh(subcommand)]
    pub action: TrashAction,
}

#[derive(FromArgs, Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(argh::ArgsInfo))]
#[argh(subcommand)]
pub enum TrashAction {
    List(TrashList),
    Restore(TrashRestore),
    Purge(TrashPurge),
}

/// list what is in the trash: when each file was deleted (UTC), by whom,
/// its repository, type and name, and its bytes
#[derive(FromArgs, Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(argh::ArgsInfo))]
#[argh(subcommand, name = "list")]
pub struct TrashList {
    /// only this repository (alice/laptop; / for the root one)
    #[argh(option)]
    pub repo: Option<String>,
    /// only what was deleted since then: YYYY-MM-DD[THH:MM[:SS]] in UTC, or
    /// an age such as 90m, 6h or 2d
    #[argh(option)]
    pub since: Option<String>,
}

/// move back what was deleted from a repository since a time, never over
/// a file that exists, and say what to run in restic next
#[derive(FromArgs, Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(argh::ArgsInfo))]
#[argh(subcommand, name = "restore")]
pub struct TrashRestore {
    /// the repository (alice/laptop; / for the root one)
    #[argh(option)]
    pub repo: String,
    /// what was deleted since then: YYYY-MM-DD[THH:MM[:SS]] in UTC, or an
    /// age such as 90m, 6h or 2d
    #[argh(option)]
    pub since: String,
    /// only files of this type: config, keys, snapshots, index or data
    #[argh(option, long = "type")]
    pub kind: Option<String>,
}

/// remove from the trash for good what was deleted longer ago than
/// --older-than (default: --trash-days)
#[derive(FromArgs, Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(argh::ArgsInfo))]
#[argh(subcommand, name = "purge")]
pub struct TrashPurge {
    /// an age: 90m, 6h, 2d, or days without a unit; 0 empties the trash
    #[argh(option)]
    pub older_than: Option<String>,
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
    Recover(MirrorRecover),
}

/// say whether the offsite copy is current, from the status the running
/// server keeps in <path>/.mirror/status; exit code 0 only when it is
#[derive(FromArgs, Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(argh::ArgsInfo))]
#[argh(subcommand, name = "status")]
pub struct MirrorStatus {}

/// bring the mirror's bucket (versioned: --mirror-lock-days) back to what
/// it held at --since, removing the delete markers and versions made since
/// then; give --mirror (and --s3-config) before `mirror`; see
/// docs/mirror.md
#[derive(FromArgs, Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(argh::ArgsInfo))]
#[argh(subcommand, name = "recover")]
pub struct MirrorRecover {
    /// the moment to go back to, by the store's clock: YYYY-MM-DD[THH:MM[:SS]]
    /// in UTC, or an age (90m, 6h, 2d)
    #[argh(option)]
    pub since: String,
    /// only this repository (e.g. alice/laptop; default: all under the
    /// mirror's prefix)
    #[argh(option)]
    pub repo: Option<String>,
    /// change nothing: list the keys that changed since then
    #[argh(switch)]
    pub dry_run: bool,
}

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
