//! `rest-server trash list|restore|purge`: what `--trash-days` kept of the
//! deleted files, for the owner of the machine (docs/trash.md). They work
//! on the data directory or the bucket itself, beside a running server or
//! without one.

use std::path::PathBuf;

use crate::commands::error::CommandError;
use crate::config::{Modes, Storage, TrashTarget};
use crate::repo::{ObjectType, RepoPath};
use crate::store::fs::trash;
use crate::store::s3::S3Store;
use crate::store::trash::{Purged, Restored, Trashed};

/// The trash a command works on.
enum Trash {
    Dir(PathBuf, Modes),
    Bucket(S3Store),
}

impl Trash {
    fn entries(&self) -> Result<Vec<Trashed>, CommandError> {
        match self {
            Trash::Dir(root, _) => trash::entries(root).map_err(CommandError::Store),
            Trash::Bucket(store) => on_bucket(store.trash_entries()),
        }
    }

    fn restore(&self, found: Vec<Trashed>) -> Result<Restored, CommandError> {
        match self {
            Trash::Dir(root, modes) => {
                trash::restore(root, found, *modes).map_err(CommandError::Store)
            }
            Trash::Bucket(store) => on_bucket(store.trash_restore(found)),
        }
    }

    fn purge(&self, before_ns: u64) -> Result<Purged, CommandError> {
        match self {
            Trash::Dir(root, _) => trash::purge(root, before_ns).map_err(CommandError::Store),
            Trash::Bucket(store) => on_bucket(store.trash_purge(before_ns)),
        }
    }
}

/// Runs one of the bucket's trash operations to its end.
fn on_bucket<T>(
    work: impl Future<Output = Result<T, crate::store::StoreError>>,
) -> Result<T, CommandError> {
    crate::runtime::block_on_boxed(work)
        .map_err(CommandError::Runtime)?
        .map_err(CommandError::Store)
}

/// What `rest-server trash` is asked to do, as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    List {
        repo: Option<String>,
        since: Option<String>,
    },
    Restore {
        repo: String,
        since: String,
        kind: Option<String>,
    },
    /// `older_than` defaults to `trash_days` (`--trash-days`).
    Purge {
        older_than: Option<String>,
        trash_days: Option<u64>,
    },
}

/// Runs a trash subcommand on the data directory `root`.
pub fn run(
    action: Action,
    target: &TrashTarget,
    group_accessible: bool,
) -> Result<(), CommandError> {
    let now = crate::time::unix_now();
    let bin = match &target.0 {
        Storage::Local(root) => Trash::Dir(root.clone(), Modes::new(group_accessible)),
        Storage::S3 { location, settings } => Trash::Bucket(
            S3Store::open(location, settings.as_deref()).map_err(CommandError::S3Settings)?,
        ),
    };
    match action {
        Action::List { repo, since } => {
            let repo = repo.as_deref().map(label).transpose()?;
            let since = since
                .as_deref()
                .map(|t| when(t, now, "--since"))
                .transpose()?;
            let found = chosen(&bin, repo.as_deref(), since.unwrap_or(0), None)?;
            for t in &found {
                println!(
                    "{}  {}  {}  {}/{}  {}",
                    crate::time::utc(t.deleted()),
                    t.by,
                    t.repo,
                    t.kind.map_or("config", ObjectType::dir_name),
                    t.name,
                    t.bytes
                );
            }
            let bytes: u64 = found.iter().map(|t| t.bytes).sum();
            eprintln!("{} file(s), {bytes} bytes", found.len());
            Ok(())
        }
        Action::Restore { repo, since, kind } => {
            let repo = label(&repo)?;
            let since = when(&since, now, "--since")?;
            let kind = kind.as_deref().map(type_named).transpose()?;
            let found = chosen(&bin, Some(&repo), since, kind)?;
            let done = bin.restore(found)?;
            let bytes: u64 = done.files.iter().map(|t| t.bytes).sum();
            println!(
                "restored {} file(s), {bytes} bytes, of {repo}",
                done.files.len()
            );
            for t in &done.taken {
                println!(
                    "left in the trash (a file of that name exists): {}/{}",
                    t.kind.map_or("config", ObjectType::dir_name),
                    t.name
                );
            }
            if !done.files.is_empty() {
                println!(
                    "restart the server, so that its counts (--max-size, quotas, metrics) \
                     and its mirror take the restored files in\nnext, with restic (the repository's password; restic 0.16 and later \
                     name rebuild-index `repair index`):\n  restic -r rest:http://<server>{repo} \
                     rebuild-index\n  restic -r rest:http://<server>{repo} check --read-data\n  \
                     restic -r rest:http://<server>{repo} snapshots"
                );
            }
            Ok(())
        }
        Action::Purge {
            older_than,
            trash_days,
        } => {
            let age = match (older_than, trash_days) {
                (Some(text), _) => when_ago(&text, "--older-than", true)?,
                (None, Some(days)) => days.saturating_mul(86_400),
                (None, None) => {
                    return Err(CommandError::Trash(
                        "purge: give --older-than (or the server's --trash-days)".into(),
                    ));
                }
            };
            let removed = bin.purge(trash::ago_ns(age))?.removed;
            let bytes: u64 = removed.iter().map(|t| t.bytes).sum();
            println!("purged {} file(s), {bytes} bytes", removed.len());
            Ok(())
        }
    }
}

/// The trash's files of `repo` (all repositories if None), deleted at or
/// after `since` (Unix seconds), of `kind` (Some(None): config) if given.
fn chosen(
    trash: &Trash,
    repo: Option<&str>,
    since: u64,
    kind: Option<Option<ObjectType>>,
) -> Result<Vec<Trashed>, CommandError> {
    let all = trash.entries()?;
    Ok(all
        .into_iter()
        .filter(|t| repo.is_none_or(|r| t.repo == r))
        .filter(|t| t.deleted() >= since)
        .filter(|t| kind.is_none_or(|k| t.kind == k))
        .collect())
}

/// A repository as `--repo` names it (`alice/laptop`, `/alice/laptop`, `/`),
/// as the trash names it (`/alice/laptop`).
fn label(text: &str) -> Result<String, CommandError> {
    match RepoPath::from_label(text.trim_matches('/')) {
        Some(repo) => Ok(repo.to_string()),
        None => Err(CommandError::Trash(format!(
            "--repo {text:?}: not a repository path"
        ))),
    }
}

/// `--type`: config (Some(None)) or an object type.
fn type_named(text: &str) -> Result<Option<ObjectType>, CommandError> {
    match text {
        "config" => Ok(None),
        _ => match ObjectType::ALL.iter().find(|k| k.dir_name() == text) {
            Some(ObjectType::Locks) | None => Err(CommandError::Trash(format!(
                "--type {text:?}: give config, keys, snapshots, index or data"
            ))),
            Some(kind) => Ok(Some(*kind)),
        },
    }
}

/// An age (`90m`, `6h`, `2d`; with `bare_days`, a number alone is days) in
/// seconds.
fn when_ago(text: &str, flag: &str, bare_days: bool) -> Result<u64, CommandError> {
    let bare = text.bytes().all(|b| b.is_ascii_digit());
    match crate::time::parse_age(text) {
        Some(secs) if bare_days || !bare => Ok(secs),
        _ => Err(bad_time(text, flag)),
    }
}

/// A time as `--since` takes it, in Unix seconds ([`crate::time::parse_moment`]).
fn when(text: &str, now: u64, flag: &str) -> Result<u64, CommandError> {
    crate::time::parse_moment(text, now).ok_or_else(|| bad_time(text, flag))
}

fn bad_time(text: &str, flag: &str) -> CommandError {
    CommandError::Trash(format!(
        "{flag} {text:?}: give YYYY-MM-DD[THH:MM[:SS]] in UTC, or an age such as 90m, 6h or 2d"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_ages() {
        let now = 1_000_000;
        assert_eq!(when("6h", now, "--since").unwrap(), now - 6 * 3600);
        assert_eq!(when("1970-01-02", now, "--since").unwrap(), 86_400);
        assert_eq!(
            when("1970-01-02T01:02:03Z", now, "--since").unwrap(),
            86_400 + 3723
        );
        assert_eq!(
            when("1970-01-02 01:02", now, "--since").unwrap(),
            86_400 + 3720
        );
        for bad in ["6", "yesterday", "1970-1-2", "1970-01-02T25:00", "2d3h", ""] {
            assert!(when(bad, now, "--since").is_err(), "{bad}");
        }
        assert_eq!(when_ago("30", "--older-than", true).unwrap(), 30 * 86_400);
        assert!(when_ago("30", "--older-than", false).is_err());
    }

    #[test]
    fn repositories_and_types() {
        assert_eq!(label("alice/laptop").unwrap(), "/alice/laptop");
        assert_eq!(label("/alice/laptop/").unwrap(), "/alice/laptop");
        assert!(label("../etc").is_err());
        assert_eq!(
            type_named("snapshots").unwrap(),
            Some(ObjectType::Snapshots)
        );
        assert_eq!(type_named("config").unwrap(), None);
        assert!(type_named("locks").is_err());
    }
}
