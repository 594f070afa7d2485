//! Command-line flags, in two stages: [`Flags`] holds what the user typed,
//! [`Flags::resolve`] checks it and builds the [`Config`].
//!
//! Every flag of restic's rest-server 0.14 keeps its name and meaning, so unit
//! files written for it keep working. Go's flag parser also accepts
//! `--flag=value`, `--switch=true` and `--switch=false`; [`normalize_args`]
//! rewrites those into the form argh understands.
//!
//! The files, in the order a command line goes through them:
//! - `normalize`: Go's flag syntax rewritten for argh;
//! - `environment`: in the container image, flags from its variables;
//! - `flags` and `subcommands`: what the user typed (argh's derive; their doc
//!   comments are the `--help` text);
//! - `resolve`: the checks, the defaults, and the [`Config`];
//! - `error`: [`CliError`], what is refused and what to change.
//!
//! Only `main` imports this module: the library below it takes a [`Config`]
//! or a subcommand's plain arguments, never the flags.
//!
//! [`Config`]: crate::config::Config

mod environment;
mod error;
mod flags;
mod normalize;
mod resolve;
mod subcommands;

pub use environment::{VARIABLES, with_environment};
pub use error::CliError;
pub use flags::Flags;
pub use normalize::normalize_args;
pub use subcommands::{
    Cleanup, Command, HealthArgs, MdnsArgs, MirrorAction, MirrorArgs, MirrorRecover, MirrorStatus,
    NtpArgs, ScrubArgs, TlsAction, TlsArgs, TlsGenerate, TrashAction, TrashArgs, TrashList,
    TrashPurge, TrashRestore, UserAction, UserAdd, UserArgs, UserList, UserRemove,
};

/// A command line as the `String`s it is, for the tests.
#[cfg(test)]
fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}
