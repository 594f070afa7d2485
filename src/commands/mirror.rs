//! `rest-server mirror status`: whether the offsite copy is current, from
//! the status file the running server keeps; `mirror recover`: the bucket
//! brought back to what it held before an attack (docs/mirror.md).

use std::path::Path;

use crate::commands::error::CommandError;
use crate::config::MirrorTarget;
use crate::repo::RepoPath;
use crate::store::s3::S3Store;

/// The report, and whether the mirror is current.
pub fn status(data_dir: &Path) -> Result<(String, bool), CommandError> {
    crate::mirror::status_report(data_dir).map_err(CommandError::NoMirrorStatus)
}

/// Rewinds the mirror's bucket (or one repository in it) to `since`, and
/// prints what changed and what to run next.
pub fn recover(
    target: &MirrorTarget,
    repo: Option<&str>,
    since: &str,
    dry_run: bool,
) -> Result<(), CommandError> {
    let moment = crate::time::parse_moment(since, crate::time::unix_now()).ok_or_else(|| {
        CommandError::Recover(format!(
            "--since {since:?}: give YYYY-MM-DD[THH:MM[:SS]] in UTC, or an age such as 90m, \
             6h or 2d"
        ))
    })?;
    let repo = match repo {
        None => None,
        Some(text) => Some(RepoPath::from_label(text.trim_matches('/')).ok_or_else(|| {
            CommandError::Recover(format!("--repo {text:?}: not a repository path"))
        })?),
    };
    let store = S3Store::open_mirror(&target.0).map_err(CommandError::S3Settings)?;
    let done = crate::runtime::block_on_boxed(store.rewind(
        repo.as_ref(),
        moment.saturating_mul(1000),
        dry_run,
    ))
    .map_err(CommandError::Runtime)?
    .map_err(CommandError::Store)?;
    let when = crate::time::iso8601(moment);
    if dry_run {
        for line in &done.lines {
            println!("{line}");
        }
        println!(
            "{} key(s) changed since {when}; nothing done (--dry-run)",
            done.keys
        );
        return Ok(());
    }
    println!(
        "{} key(s) brought back to {when}: {} delete marker(s) and {} newer version(s) \
         removed, {} old version(s) copied back over versions the store keeps, {} new key(s) \
         hidden",
        done.keys, done.markers_removed, done.versions_removed, done.copied_back, done.hidden
    );
    if done.keys > 0 {
        println!(
            "next, with restic on the bucket (the repository's password):\n  restic -r \
             s3:<endpoint>/<bucket>/<prefix>/<repo> check --read-data\n  restic -r … snapshots\n\
             and restart the server on the board, so that its mirror compares with the bucket"
        );
    }
    Ok(())
}
