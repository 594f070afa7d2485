//! What the two stores' trashes (`--trash-days`, docs/trash.md) share: where
//! a deleted file goes below its repository, how its name says what it was,
//! when and by whom (so no index can disagree with the files), and which of
//! several deletes of one name a restore takes.
//!
//! ```text
//! .trash/<repo segments...>/.trashed/<kind>~<name>~<unix ns>~<user>
//! ```
//!
//! In the data directory (`fs::trash`) or under the bucket's prefix
//! (`s3::trash`); a dot folder no request can name and no scan or listing
//! enters.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::repo::{Key, ObjectType};

/// The trash's folder, at the root of the data directory or the prefix.
pub(crate) const TRASH_DIR: &str = ".trash";
/// A repository's folder of trashed files, below its path in the trash (a
/// dot name, which no repository's segment can be).
pub(crate) const TRASHED: &str = ".trashed";
/// [`TRASHED`] after a repository's last segment, as a bucket's keys hold it.
pub(crate) const SLASH_TRASHED: &str = "/.trashed";
/// Between the parts of a trashed file's name: in neither a kind, a hex id,
/// a number nor a user name.
const SEPARATOR: char = '~';

/// A file in the trash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Trashed {
    /// The repository's label (`/alice/laptop`; `/` for the root one).
    pub(crate) repo: String,
    /// None for the repository's `config`.
    pub(crate) kind: Option<ObjectType>,
    /// The object's id, or `config`.
    pub(crate) name: String,
    /// When it was deleted: nanoseconds since 1970.
    pub(crate) deleted_ns: u64,
    /// Who deleted it (`-` without authentication).
    pub(crate) by: String,
    pub(crate) bytes: u64,
    /// Where it is now: its path, or its key in the bucket.
    pub(crate) path: PathBuf,
}

impl Trashed {
    /// Seconds since 1970 of the delete.
    pub(crate) fn deleted(&self) -> u64 {
        self.deleted_ns / 1_000_000_000
    }
}

/// What a restore did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Restored {
    /// Moved back.
    pub(crate) files: Vec<Trashed>,
    /// Left in the trash: a file of that name is there already.
    pub(crate) taken: Vec<Trashed>,
}

/// What a purge removed, and what the trash holds after it.
pub(crate) struct Purged {
    pub(crate) removed: Vec<Trashed>,
    /// Files and bytes left.
    pub(crate) left: (u64, u64),
}

/// The hourly purge of a `days`-day window, logged; the bytes it removed
/// per repository (by label), for the budgets.
pub(crate) fn report_purge(
    removed: Result<Vec<Trashed>, crate::store::StoreError>,
    days: u64,
) -> Vec<(String, u64)> {
    let removed = match removed {
        Ok(removed) => removed,
        Err(e) => {
            log::error!("trash: purge failed: {e}");
            return Vec::new();
        }
    };
    if !removed.is_empty() {
        let bytes: u64 = removed.iter().map(|t| t.bytes).sum();
        log::info!(
            "trash: purged {} file(s), {bytes} bytes, deleted more than {days} day(s) ago",
            removed.len()
        );
    }
    removed
        .into_iter()
        .map(|t| (t.repo.trim_start_matches('/').to_string(), t.bytes))
        .collect()
}

/// Nanoseconds since 1970, now.
pub(crate) fn now_ns() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH);
    since.map_or(0, |d| d.as_nanos() as u64)
}

/// Nanoseconds since 1970 of `secs` seconds ago.
pub(crate) fn ago_ns(secs: u64) -> u64 {
    now_ns().saturating_sub(secs.saturating_mul(1_000_000_000))
}

/// Whether a delete of `key` goes to the trash of `--trash-days`: locks
/// never do (restic makes and removes them all the time, and a stale one
/// only gets in the way).
pub(crate) fn keeps(trash_days: Option<u64>, key: Key<'_>) -> bool {
    trash_days.is_some() && !matches!(key, Key::Object(ObjectType::Locks, _))
}

/// A user name as it can stand in a file name: what the htpasswd file allows
/// passes, anything else (a proxy's header value) becomes `_`.
fn file_safe(user: Option<&str>) -> String {
    match user {
        None | Some("") => "-".to_string(),
        Some(name) => name
            .chars()
            .map(|c| match c {
                'A'..='Z' | 'a'..='z' | '0'..='9' | '_' | '.' | '@' | '-' => c,
                _ => '_',
            })
            .collect(),
    }
}

/// The trash's name for the file of `key`, deleted now by `by`.
pub(crate) fn entry_name(key: Key<'_>, by: Option<&str>) -> String {
    let (kind, name) = match key {
        Key::Config => ("config", "config"),
        Key::Object(kind, id) => (kind.dir_name(), id.as_str()),
    };
    format!(
        "{kind}{SEPARATOR}{name}{SEPARATOR}{}{SEPARATOR}{}",
        now_ns(),
        file_safe(by)
    )
}

/// Parses a trashed file's name into (kind, name, deleted ns, by).
pub(crate) fn parse(file: &str) -> Option<(Option<ObjectType>, String, u64, String)> {
    let mut parts = file.splitn(4, SEPARATOR);
    let kind = match parts.next()? {
        "config" => None,
        dir => Some(*ObjectType::ALL.iter().find(|k| k.dir_name() == dir)?),
    };
    let name = parts.next()?.to_string();
    let deleted = parts.next()?.parse().ok()?;
    let by = parts.next()?.to_string();
    Some((kind, name, deleted, by))
}

/// The newest of each name among `entries` (oldest first), oldest first: a
/// file deleted more than once comes back as it was last.
pub(crate) fn newest_of_each(entries: Vec<Trashed>) -> Vec<Trashed> {
    let mut newest: Vec<Trashed> = Vec::new();
    for entry in entries.into_iter().rev() {
        let same =
            |t: &Trashed| t.repo == entry.repo && t.kind == entry.kind && t.name == entry.name;
        if !newest.iter().any(same) {
            newest.push(entry);
        }
    }
    newest.reverse();
    newest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        let (kind, name, ns, by) = parse("snapshots~abc~17~alice@home").unwrap();
        assert_eq!(
            (kind, name.as_str(), ns, by.as_str()),
            (Some(ObjectType::Snapshots), "abc", 17, "alice@home")
        );
        assert_eq!(parse("config~config~5~-").unwrap().0, None);
        assert_eq!(parse("nonsense~a~1~b"), None);
        assert_eq!(parse("data~a~x~b"), None);
        assert_eq!(file_safe(Some("a/b~c d")), "a_b_c_d");
        assert_eq!(file_safe(None), "-");
        assert_eq!(SLASH_TRASHED, format!("/{TRASHED}"));
    }
}
