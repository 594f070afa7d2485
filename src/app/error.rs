//! [`AppError`]: why the server could not start or stopped on an error, with
//! its cause for `main` to print once.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::http::tls::TlsError;
use crate::runtime::reload::ReloadError;
use crate::store::StoreError;

/// Why the server could not start or run.
#[derive(Debug)]
pub struct AppError(pub(super) Cause);

#[derive(Debug)]
pub(super) enum Cause {
    Runtime(io::Error),
    /// The compute or upload writer threads could not be started.
    Threads(io::Error),
    /// The store cannot be used at startup (data directory or bucket).
    Store(StoreError),
    S3Settings(String),
    Listen(io::Error),
    AccessLog(io::Error),
    Tls(ReloadError<TlsError>),
    /// The htpasswd file cannot be read; the server never serves without it.
    Htpasswd(PathBuf, ReloadError<io::Error>),
    Acl(PathBuf, ReloadError<io::Error>),
    QuotaFile(PathBuf, ReloadError<io::Error>),
    Signals(io::Error),
    /// In the container image: a data directory the server cannot use.
    Volume(super::volume::Unusable),
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Cause::Runtime(e) => write!(f, "cannot start the runtime: {e}"),
            Cause::Threads(e) => write!(f, "cannot start the worker threads: {e}"),
            Cause::Store(e) => write!(f, "storage: {e}"),
            Cause::S3Settings(e) => write!(f, "S3 settings: {e}"),
            Cause::Listen(e) => write!(f, "cannot listen: {e}"),
            Cause::AccessLog(e) => write!(f, "cannot open the access log: {e}"),
            Cause::Tls(e) => write!(f, "TLS: {e}"),
            Cause::Acl(path, e) => write!(f, "cannot read the ACL file {}: {e}", path.display()),
            Cause::QuotaFile(path, e) => {
                write!(f, "cannot read the quota file {}: {e}", path.display())
            }
            Cause::Htpasswd(path, e) => write!(
                f,
                "cannot read the password file {}: {e}. Create a user with \
                 `rest-server --path <data directory> user add <name>` (or \
                 `--htpasswd-file {} user add <name>`), or start with --no-auth \
                 on a network you trust",
                path.display(),
                path.display()
            ),
            Cause::Signals(e) => write!(f, "cannot install signal handlers: {e}"),
            Cause::Volume(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for AppError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0 {
            Cause::Runtime(e)
            | Cause::Threads(e)
            | Cause::Listen(e)
            | Cause::AccessLog(e)
            | Cause::Signals(e) => Some(e),
            Cause::Store(e) => Some(e),
            Cause::S3Settings(_) | Cause::Volume(_) => None,
            Cause::Tls(e) => Some(e),
            Cause::Htpasswd(_, e) | Cause::Acl(_, e) | Cause::QuotaFile(_, e) => Some(e),
        }
    }
}
