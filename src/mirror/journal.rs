//! The delete journal (`.mirror/deletes`): deletes cannot be recovered from
//! the listings at a start (an empty new disk would empty the bucket), so
//! with `--mirror-deletes` each is appended and fsynced before the client
//! is answered, replayed at the next start, and the file is removed once no
//! delete waits.
//!
//! One line per delete, `label<TAB>config` or `label<TAB>dir<TAB>id`, with
//! the repository's label as it is on disk (see [`RepoPath::label`]).

use std::path::{Path, PathBuf};

use super::queue::Item;
use super::{ensure_dir, remove_if_there};
use crate::repo::{KeyBuf, ObjectId, ObjectType, RepoPath};
use crate::store::{Op as _, StoreError};

/// Journal of deletes still to mirror, in the mirror's folder.
const DELETES_FILE: &str = "deletes";

pub(super) struct Journal {
    /// The data directory's `.mirror` folder.
    dir: PathBuf,
    /// Held while the journal is written or cleared.
    lock: tokio::sync::Mutex<()>,
}

impl Journal {
    pub(super) fn new(dir: PathBuf) -> Journal {
        Journal {
            dir,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Appends a delete's [`line`](fn@line) and makes it durable; a failure is
    /// logged (the delete stays queued in memory).
    pub(super) async fn append(&self, line: String) {
        // Under the lock: a clearing of the journal must not overtake this.
        let _held = self.lock.lock().await;
        let dir = self.dir.clone();
        if let Err(e) =
            crate::store::blocking(move || append_line(&dir, &line).op("journal a delete")).await
        {
            log::error!("mirror: cannot journal a delete ({e}); it is queued in memory only");
        }
    }

    /// The deletes journalled and not yet mirrored, for the replay at start.
    pub(super) async fn read(&self) -> Result<Vec<Item>, StoreError> {
        let dir = self.dir.clone();
        crate::store::blocking(move || read_items(&dir).op("read the delete journal")).await
    }

    /// Removes the journal if `idle` (no delete waits): asked under the
    /// journal lock, so a delete journalled meanwhile stays.
    pub(super) async fn clear_if(&self, idle: impl FnOnce() -> bool) {
        let _held = self.lock.lock().await;
        if !idle() {
            return;
        }
        let dir = self.dir.clone();
        if let Err(e) = crate::store::blocking(move || {
            remove_if_there(&dir.join(DELETES_FILE)).op("clear the delete journal")
        })
        .await
        {
            log::error!("mirror: cannot clear the delete journal: {e}");
        }
    }
}

/// The journal's line for a delete of `item`'s file.
pub(super) fn line(item: &Item) -> String {
    match &item.name {
        KeyBuf::Config => format!("{}\tconfig\n", item.repo.label()),
        KeyBuf::Object(kind, id) => {
            format!("{}\t{}\t{id}\n", item.repo.label(), kind.dir_name())
        }
    }
}

/// The journal holds labels as they are on disk (see
/// [`RepoPath::label`]): nothing is decoded, so `a%41` stays `a%41`.
fn parse_line(line: &str) -> Option<Item> {
    let mut parts = line.split('\t');
    let (label, kind) = (parts.next()?, parts.next()?);
    let name = match (kind, parts.next()) {
        ("config", None) => KeyBuf::Config,
        (kind, Some(id)) => KeyBuf::Object(ObjectType::from_segment(kind)?, ObjectId::parse(id)?),
        _ => return None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(Item {
        repo: RepoPath::from_label(label)?,
        name,
        size: 0,
        since: crate::time::unix_now(),
    })
}

/// Appends a line to the delete journal and makes it durable.
fn append_line(dir: &Path, line: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    ensure_dir(dir)?;
    let path = dir.join(DELETES_FILE);
    let new = !path.exists();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    file.write_all(line.as_bytes())?;
    file.sync_data()?;
    if new {
        // A new file's name is durable once its folder is.
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn read_items(dir: &Path) -> std::io::Result<Vec<Item>> {
    match std::fs::read_to_string(dir.join(DELETES_FILE)) {
        Ok(text) => Ok(text.lines().filter_map(parse_line).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::super::queue::{class_of, test_item as item};
    use super::*;

    #[test]
    fn the_journal_round_trips_and_locks_are_not_mirrored() {
        for path in [
            "/config".to_string(),
            "/a/b/config".to_string(),
            format!("/a/index/{}", "d".repeat(64)),
        ] {
            let it = item(&path);
            let back = parse_line(line(&it).trim_end()).unwrap();
            assert_eq!(back.id(), it.id());
        }
        assert!(parse_line("../x\tconfig").is_none());
        assert_eq!(
            class_of(&item(&format!("/r/locks/{}", "e".repeat(64))).name),
            None
        );
        assert_eq!(RepoPath::from_label("a/b").unwrap().label(), "a/b");
        assert_eq!(RepoPath::from_label("").unwrap().label(), "");
        // Folder names as they are on disk: nothing is decoded.
        assert_eq!(RepoPath::from_label("50%").unwrap().label(), "50%");
        assert_eq!(RepoPath::from_label("a%41").unwrap().label(), "a%41");
        for bad in ["a/b/c", "data", "a/keys", ".hidden", "a//b", "../x"] {
            assert_eq!(RepoPath::from_label(bad), None, "{bad}");
        }
    }
}
