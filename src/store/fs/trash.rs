//! The trash of a data directory (`--trash-days`): a client's delete of a
//! repository file moves it into the trash instead of removing it, so that
//! a delete made with stolen credentials (a `forget --prune` by an
//! attacker) can be undone by the owner of the machine (`rest-server trash
//! restore`). The layout and names are [`crate::store::trash`]'s.
//!
//! The move is one rename on the same file system, then an fsync of both
//! folders: after a crash the file is in one place or the other. Locks are
//! removed as before: restic deletes its own on every run.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::commit::{commit_temp, sync_dir};
use super::layout::{ensure_dir, is_fanned_out};
use super::store::FsStore;
use crate::config::Modes;
use crate::repo::{Key, RepoPath};
pub(crate) use crate::store::trash::{Purged, Restored, Trashed, ago_ns};
use crate::store::trash::{TRASH_DIR, TRASHED, entry_name, newest_of_each, parse};
use crate::store::{Op as _, StoreError};

impl FsStore {
    /// Where the file of `key`, deleted now by `by`, goes in the trash.
    pub(super) fn trash_path(&self, repo: &RepoPath, key: Key<'_>, by: Option<&str>) -> PathBuf {
        let mut dir = self.root.join(TRASH_DIR);
        dir.extend(repo.segments());
        dir.push(TRASHED);
        dir.join(entry_name(key, by))
    }
}

/// Moves `live` to `trashed` (made by [`FsStore::trash_path`]); the bytes it
/// held, None when it was not there (restic retries deletes).
pub(super) fn keep(live: &Path, trashed: &Path, modes: Modes) -> Result<Option<u64>, StoreError> {
    let len = match fs::symlink_metadata(live) {
        Ok(meta) if meta.is_dir() => return Err(StoreError::not_found("trash")),
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).op("stat"),
    };
    let folder = trashed.parent().unwrap_or(Path::new("."));
    let mut builder = fs::DirBuilder::new();
    std::os::unix::fs::DirBuilderExt::mode(builder.recursive(true), modes.dir);
    builder.create(folder).op("create trash folder")?;
    match fs::rename(live, trashed) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        // A repository on a disk mounted below the data directory: the file
        // stays, and the delete fails, rather than leave the trash's promise.
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
            return Err(e).op("move to trash, which is on the data directory's file system");
        }
        Err(e) => return Err(e).op("move to trash"),
    }
    // The trash's new name first, then the live name's removal.
    sync_dir(folder)?;
    sync_dir(live.parent().unwrap_or(Path::new(".")))?;
    Ok(Some(len))
}

/// Everything in the trash of the data directory `root`, oldest first.
pub(crate) fn entries(root: &Path) -> Result<Vec<Trashed>, StoreError> {
    let trash = root.join(TRASH_DIR);
    let mut found = Vec::new();
    let mut pending = vec![trash.clone()];
    while let Some(dir) = pending.pop() {
        let listing = match fs::read_dir(&dir) {
            Ok(listing) => listing,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).op("read trash"),
        };
        for entry in listing {
            let entry = entry.op("read trash")?;
            let path = entry.path();
            if entry.file_name() != TRASHED {
                if entry.file_type().op("read trash")?.is_dir() {
                    pending.push(path);
                }
                continue;
            }
            let relative = dir.strip_prefix(&trash).unwrap_or(Path::new(""));
            let repo = format!("/{}", relative.to_string_lossy());
            for file in fs::read_dir(&path).op("read trash")? {
                let file = file.op("read trash")?;
                let Some((kind, name, deleted_ns, by)) = parse(&file.file_name().to_string_lossy())
                else {
                    continue;
                };
                let bytes = file.metadata().map_or(0, |m| m.len());
                found.push(Trashed {
                    repo: repo.clone(),
                    kind,
                    name,
                    deleted_ns,
                    by,
                    bytes,
                    path: file.path(),
                });
            }
        }
    }
    found.sort_unstable_by_key(|t| t.deleted_ns);
    Ok(found)
}

/// Where a trashed file lives when it is not in the trash.
fn live_path(root: &Path, entry: &Trashed) -> PathBuf {
    let mut path = root.to_path_buf();
    path.extend(entry.repo.split('/').filter(|s| !s.is_empty()));
    match entry.kind {
        None => path.push("config"),
        Some(kind) => {
            path.push(kind.dir_name());
            if is_fanned_out(kind) {
                path.push(entry.name.get(..2).unwrap_or("00"));
            }
            path.push(&entry.name);
        }
    }
    path
}

/// Moves back, never over an existing file, the files of `entries` (the
/// newest of each name, when one was deleted more than once).
pub(crate) fn restore(
    root: &Path,
    entries: Vec<Trashed>,
    modes: Modes,
) -> Result<Restored, StoreError> {
    let mut done = Restored::default();
    for entry in newest_of_each(entries) {
        let live = live_path(root, &entry);
        if let Some(folder) = live.parent() {
            ensure_dir(folder, modes)?;
        }
        match commit_temp(&entry.path, &live) {
            Ok(()) => done.files.push(entry),
            Err(e) if e.kind == crate::store::ErrorKind::AlreadyExists => done.taken.push(entry),
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Removes from the trash the files deleted before `before_ns`.
pub(crate) fn purge(root: &Path, before_ns: u64) -> Result<Purged, StoreError> {
    let mut purged = Purged {
        removed: Vec::new(),
        left: (0, 0),
    };
    for entry in entries(root)? {
        if entry.deleted_ns >= before_ns {
            purged.left.0 += 1;
            purged.left.1 += entry.bytes;
            continue;
        }
        match fs::remove_file(&entry.path) {
            Ok(()) => purged.removed.push(entry),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).op("purge trash"),
        }
    }
    Ok(purged)
}

impl FsStore {
    /// Counts `files` more files of `bytes` in the trash, or with `set`,
    /// that many in all (a purge's count, which also takes in what a
    /// `trash` command changed meanwhile).
    pub(super) fn count_trash(&self, set: bool, files: u64, bytes: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let [f, b] = &*self.trash_count;
        if set {
            f.store(files, Relaxed);
            b.store(bytes, Relaxed);
        } else {
            f.fetch_add(files, Relaxed);
            b.fetch_add(bytes, Relaxed);
        }
    }

    /// What the trash holds, with `--trash-days`.
    pub(super) fn trash_use(&self) -> Option<crate::store::TrashUse> {
        use std::sync::atomic::Ordering::Relaxed;
        let [files, bytes] = &*self.trash_count;
        self.trash_days.map(|days| crate::store::TrashUse {
            files: files.load(Relaxed),
            bytes: bytes.load(Relaxed),
            days,
        })
    }

    /// Removes from the trash what is older than `--trash-days`, on the
    /// I/O pool; logs what it removed.
    pub(super) async fn purge_expired(&self) -> Vec<(String, u64)> {
        let Some(days) = self.trash_days else {
            return Vec::new();
        };
        let root = self.root.clone();
        let purged = crate::store::blocking(move || purge(&root, ago_ns(days * 86_400))).await;
        let removed = purged.map(|purged| {
            self.count_trash(true, purged.left.0, purged.left.1);
            purged.removed
        });
        crate::store::trash::report_purge(removed, days)
    }
}
