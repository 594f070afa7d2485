//! The error of the subcommands (`user add|remove|list`, `tls generate`): one
//! enum whose text says what failed and whose `source()` is the cause, so
//! that `main` prints it once, causes and all, and exits with 1.

use std::error::Error;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a subcommand failed. The text never repeats the cause: that is
/// `source()`'s, and `main` chains the two.
// `main` only prints a CommandError (and matches the probe's); the store's
// and scrub's errors inside stay the crate's own.
#[allow(private_interfaces)]
#[derive(Debug)]
pub enum CommandError {
    /// Reading or writing `path` (or creating its folder) failed.
    Io {
        path: PathBuf,
        source: io::Error,
    },
    /// The terminal could not be switched to hidden input and back.
    Terminal(nix::Error),
    /// Reading the password from stdin (a terminal or a pipe) failed.
    ReadPassword(io::Error),
    /// The two passwords typed on a terminal differ.
    PasswordsDiffer,
    EmptyPassword,
    /// `user remove` of a name that is not in `file`.
    NoSuchUser {
        file: PathBuf,
        name: String,
    },
    /// `tls generate` would replace this file; `--force` allows it.
    FileExists(PathBuf),
    /// `user add` of a user who exists, without `--update`.
    UserExists {
        file: PathBuf,
        name: String,
    },
    /// `user add` of a name the htpasswd file cannot hold safely.
    InvalidName(String),
    Bcrypt(bcrypt::BcryptError),
    Certificate(rcgen::Error),
    /// `mirror status` found no status to read.
    NoMirrorStatus(String),
    /// `mirror status`: the offsite copy is not current (its report is on
    /// stdout).
    MirrorNotCurrent,
    /// `scrub` found damaged objects (listed on stdout).
    ScrubFoundDamage(u64),
    /// `scrub --status`: damaged objects are known (listed on stdout).
    ScrubDamageKnown,
    /// `health`: the server could not be asked.
    Probe(crate::commands::probe::ProbeError),
    /// `health`: the server answered that it is unhealthy (on stdout).
    Unhealthy,
    /// `cleanup`, `scrub`: tokio's runtime could not be started.
    Runtime(io::Error),
    /// `scrub`: the hashing or writer threads could not be started.
    Threads(io::Error),
    /// `cleanup`: the bucket failed.
    Store(crate::store::StoreError),
    /// `cleanup`, `scrub`: the bucket's settings are wrong.
    S3Settings(crate::store::s3::SettingsError),
    /// `scrub`: the pass stopped short.
    Scrub(crate::scrub::ScrubError),
    /// `scrub --status` of a bucket: its state is not kept.
    NoScrubState,
    /// `scrub` of a data directory that is not there, or whose state file
    /// cannot be read.
    ScrubSetup(String),
    /// `trash`: a value it cannot use (the text says which and why).
    Trash(String),
    /// `mirror recover`: a value it cannot use.
    Recover(String),
}

impl CommandError {
    /// Whether the failure happened while running (a store, the runtime,
    /// a scrub pass) rather than in what the user asked: such a failure
    /// also goes to the log, as the server's own failures do.
    pub fn goes_to_the_log(&self) -> bool {
        matches!(
            self,
            CommandError::Runtime(_)
                | CommandError::Threads(_)
                | CommandError::Store(_)
                | CommandError::S3Settings(_)
                | CommandError::Scrub(_)
                | CommandError::ScrubSetup(_)
                | CommandError::NoScrubState
        )
    }

    /// An `io::Error` about `path`, for `map_err`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> CommandError {
        let path = path.into();
        move |source| CommandError::Io { path, source }
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Io { path, .. } => write!(f, "{}", path.display()),
            CommandError::Terminal(_) => f.write_str("terminal"),
            CommandError::ReadPassword(_) => f.write_str("reading the password from stdin"),
            CommandError::PasswordsDiffer => f.write_str("the passwords differ"),
            CommandError::EmptyPassword => f.write_str("empty password"),
            CommandError::NoSuchUser { file, name } => {
                write!(f, "{}: no user {name:?}", file.display())
            }
            CommandError::NoMirrorStatus(why) => f.write_str(why),
            CommandError::FileExists(path) => write!(
                f,
                "{} exists: it is kept (give --force to make a new key and certificate)",
                path.display()
            ),
            CommandError::UserExists { file, name } => write!(
                f,
                "{}: user {name:?} exists; add --update to set a new password",
                file.display()
            ),
            CommandError::MirrorNotCurrent => f.write_str("the mirror is not current"),
            CommandError::ScrubFoundDamage(n) => write!(f, "{n} damaged object(s) found"),
            CommandError::ScrubDamageKnown => f.write_str("damaged objects are known"),
            CommandError::Probe(e) => write!(f, "{e}"),
            CommandError::Unhealthy => f.write_str("the server is unhealthy"),
            CommandError::Runtime(_) => f.write_str("cannot start the runtime"),
            CommandError::Threads(_) => f.write_str("cannot start the worker threads"),
            CommandError::Store(_) => f.write_str("storage"),
            CommandError::S3Settings(e) => write!(f, "S3 settings: {e}"),
            CommandError::Scrub(_) => f.write_str("scrub"),
            CommandError::ScrubSetup(why) => write!(f, "scrub: {why}"),
            CommandError::Trash(why) => write!(f, "trash: {why}"),
            CommandError::Recover(why) => write!(f, "mirror recover: {why}"),
            CommandError::NoScrubState => f.write_str(
                "scrub --status reads the state file of a data directory; a bucket's \
                 scrub keeps none (run `rest-server scrub` for its result)",
            ),
            CommandError::InvalidName(name) => write!(
                f,
                "invalid user name {name:?}: use letters, digits, '_', '-', '.', '@' \
                 (at most {} characters, not starting with '.')",
                crate::auth::htpasswd::MAX_USERNAME_BYTES
            ),
            CommandError::Bcrypt(_) => f.write_str("bcrypt"),
            CommandError::Certificate(_) => f.write_str("cannot make a certificate"),
        }
    }
}

impl Error for CommandError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            CommandError::Io { source, .. } | CommandError::ReadPassword(source) => Some(source),
            CommandError::Terminal(e) => Some(e),
            CommandError::Bcrypt(e) => Some(e),
            CommandError::Certificate(e) => Some(e),
            CommandError::Probe(e) => e.source(),
            CommandError::Runtime(e) | CommandError::Threads(e) => Some(e),
            CommandError::Store(e) => Some(e),
            CommandError::Scrub(e) => Some(e),
            CommandError::PasswordsDiffer
            | CommandError::EmptyPassword
            | CommandError::NoSuchUser { .. }
            | CommandError::UserExists { .. }
            | CommandError::FileExists(_)
            | CommandError::InvalidName(_)
            | CommandError::NoMirrorStatus(_)
            | CommandError::MirrorNotCurrent
            | CommandError::ScrubFoundDamage(_)
            | CommandError::ScrubDamageKnown
            | CommandError::Unhealthy
            | CommandError::S3Settings(_)
            | CommandError::NoScrubState
            | CommandError::ScrubSetup(_)
            | CommandError::Trash(_)
            | CommandError::Recover(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_names_what_failed_and_the_source_says_why() {
        let e = CommandError::io("/data/.htpasswd")(io::Error::from(io::ErrorKind::NotFound));
        assert_eq!(e.to_string(), "/data/.htpasswd");
        let source = e.source().expect("an I/O error has a source");
        assert_eq!(
            source.to_string(),
            io::Error::from(io::ErrorKind::NotFound).to_string()
        );

        let e = CommandError::Terminal(nix::Error::ENOTTY);
        assert_eq!(e.to_string(), "terminal");
        assert_eq!(
            e.source().unwrap().to_string(),
            nix::Error::ENOTTY.to_string()
        );

        let e = CommandError::NoSuchUser {
            file: "/d/.htpasswd".into(),
            name: "bob".into(),
        };
        assert_eq!(e.to_string(), "/d/.htpasswd: no user \"bob\"");
        assert!(e.source().is_none());
        assert!(
            CommandError::InvalidName("../x".into())
                .to_string()
                .starts_with("invalid user name \"../x\": use letters")
        );
        assert_eq!(
            CommandError::PasswordsDiffer.to_string(),
            "the passwords differ"
        );
        assert_eq!(CommandError::EmptyPassword.to_string(), "empty password");
    }
}
