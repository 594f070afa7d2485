//! [`CliError`]: why a command line is refused, in words that say what to
//! change.

use super::resolve::MIN_HEADER_BYTES;

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
    /// `--max-header-size` below `MIN_HEADER_BYTES`.
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
    /// A container variable (`cli::environment`) with a value it does not
    /// take: the variable and the value.
    Environment(&'static str, String),
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
            CliError::Environment(name, value) => write!(
                f,
                "{name}={value:?}: {}",
                match *name {
                    "OPTIONS" => "give flags only, as on the command line",
                    _ => "give 1 or 0 (true or false)",
                }
            ),
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
            | CliError::Scrub(_)
            | CliError::Environment(..) => None,
        }
    }
}
