//! The trash of a bucket (`--trash-days` with an `s3:` `--path`): a
//! client's delete copies the object inside the store to its trash key
//! (the bytes never leave the store), then removes it, so the object is
//! under one key or the other at every moment. Same layout and names as a
//! data directory's trash ([`crate::store::trash`]), under the prefix:
//! `<prefix>/.trash/<repo>/.trashed/<kind>~<name>~<unix ns>~<user>`.
//! A bucket's own versioning or object lock is not needed for it.

use std::path::PathBuf;

use super::S3Store;
use crate::repo::{Key, ObjectId, RepoPath};
use crate::store::trash::{
    Purged, Restored, SLASH_TRASHED, TRASH_DIR, TRASHED, Trashed, entry_name, newest_of_each, parse,
};
use crate::store::{ErrorKind, StoreError};

impl S3Store {
    /// The key prefix of the trash (`<prefix>/.trash/`).
    fn trash_prefix(&self) -> String {
        let mut prefix = self.inner.repo_prefix(&RepoPath::default());
        prefix.push_str(TRASH_DIR);
        prefix.push('/');
        prefix
    }

    /// Whether `key` under the prefix (relative to it) is in the trash.
    pub(super) fn in_trash(relative: &str) -> bool {
        relative
            .strip_prefix(TRASH_DIR)
            .is_some_and(|rest| rest.starts_with('/'))
    }

    /// Moves `repo`'s `key`, stored under `live` and deleted now by `by`,
    /// into the trash.
    pub(super) async fn keep(
        &self,
        repo: &RepoPath,
        key: Key<'_>,
        live: &str,
        by: Option<&str>,
    ) -> Result<(), StoreError> {
        let inner = &self.inner;
        let mut trashed = self.trash_prefix();
        for segment in repo.segments() {
            trashed.push_str(segment);
            trashed.push('/');
        }
        trashed.push_str(TRASHED);
        trashed.push('/');
        trashed.push_str(&entry_name(key, by));
        // Copied before the live key goes: a failure between the two leaves
        // the file in both places, never in neither.
        inner.copy(live, None, &trashed).await?;
        if let Err(e) = inner.remove(live).await {
            // The delete fails and the file stays live: its copy would be
            // counted nowhere, and a retry would make another.
            if let Err(e) = inner.remove(&trashed).await {
                log::warn!("trash: could not take back the copy {trashed}: {e}");
            }
            return Err(e);
        }
        Ok(())
    }

    /// Everything in the trash, oldest first.
    pub(crate) async fn trash_entries(&self) -> Result<Vec<Trashed>, StoreError> {
        let inner = &self.inner;
        let prefix = self.trash_prefix();
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = inner.list_page(&prefix, token.as_deref()).await?;
            for entry in page.entries {
                let Some(relative) = entry.key.strip_prefix(prefix.as_str()) else {
                    continue;
                };
                let (repo, file) = match relative.strip_prefix(TRASHED) {
                    Some(file) => ("", file),
                    None => match relative.split_once(SLASH_TRASHED) {
                        Some(split) => split,
                        None => continue,
                    },
                };
                let Some(file) = file.strip_prefix('/') else {
                    continue;
                };
                let Some((kind, name, deleted_ns, by)) = parse(file) else {
                    continue;
                };
                found.push(Trashed {
                    repo: format!("/{repo}"),
                    kind,
                    name,
                    deleted_ns,
                    by,
                    bytes: entry.size,
                    path: PathBuf::from(entry.key),
                });
            }
            match page.next {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        found.sort_unstable_by_key(|t| t.deleted_ns);
        Ok(found)
    }

    /// Moves back, never over an existing object, the files of `entries`
    /// (the newest of each name, when one was deleted more than once).
    pub(crate) async fn trash_restore(
        &self,
        entries: Vec<Trashed>,
    ) -> Result<Restored, StoreError> {
        let inner = &self.inner;
        let mut done = Restored::default();
        for entry in newest_of_each(entries) {
            let Some(repo) = RepoPath::from_label(entry.repo.trim_matches('/')) else {
                continue;
            };
            let id;
            let key = match entry.kind {
                None => Key::Config,
                Some(kind) => {
                    let Some(parsed) = ObjectId::parse(&entry.name) else {
                        continue;
                    };
                    id = parsed;
                    Key::Object(kind, &id)
                }
            };
            let live = inner.object_key(&repo, key);
            match inner.head(&live, "stat").await {
                Ok(_) => {
                    done.taken.push(entry);
                    continue;
                }
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            let trashed = entry.path.to_string_lossy().into_owned();
            inner.copy(&trashed, None, &live).await?;
            inner.remove(&trashed).await?;
            done.files.push(entry);
        }
        Ok(done)
    }

    /// Removes from the trash the files deleted before `before_ns`.
    pub(crate) async fn trash_purge(&self, before_ns: u64) -> Result<Purged, StoreError> {
        let mut purged = Purged {
            removed: Vec::new(),
            left: (0, 0),
        };
        for entry in self.trash_entries().await? {
            if entry.deleted_ns >= before_ns {
                purged.left.0 += 1;
                purged.left.1 += entry.bytes;
                continue;
            }
            // One that cannot be removed now stays for the next purge; what
            // was removed is reported all the same.
            match self.inner.remove(&entry.path.to_string_lossy()).await {
                Ok(()) => purged.removed.push(entry),
                Err(e) => {
                    log::warn!("trash: could not purge {}: {e}", entry.path.display());
                    purged.left.0 += 1;
                    purged.left.1 += entry.bytes;
                }
            }
        }
        Ok(purged)
    }

    /// The hourly purge of what is older than `--trash-days`: the bytes
    /// removed per repository (by label).
    pub(super) async fn purge_expired(&self) -> Vec<(String, u64)> {
        let Some(days) = self.trash_days else {
            return Vec::new();
        };
        let before = crate::store::trash::ago_ns(days.saturating_mul(86_400));
        let removed = self.trash_purge(before).await.map(|purged| purged.removed);
        crate::store::trash::report_purge(removed, days)
    }
}
