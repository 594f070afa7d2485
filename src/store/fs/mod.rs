//! The filesystem store: restic's local backend layout under the data
//! directory, so that a repository served here opens with `restic -r /path`
//! and the other way round.
//!
//! How the pieces fit:
//!
//! - [`layout`]: where each object lives; every path is built there.
//! - [`commit`]: temp file → fsync → rename without replacing → fsync the
//!   folder; the store's durability, and nothing else.
//! - [`read`]: sending a file, in pieces read ahead on the I/O pool.
//! - [`store`](mod@store): [`FsStore`], the handle on the data directory.
//! - [`write`](mod@write): receiving an upload ([`FsUpload`]).
//! - [`writers`]: the upload writer threads ([`WriterPool`]), which write,
//!   fsync and commit by the protocol in [`commit`].
//! - [`scan`]: the startup scan and the listings.
//! - [`repair`]: what the scrub's repair needs (a checked swap).
//! - [`space`]: free space and health.
//! - [`trash`]: deleted files kept for `--trash-days`, and their restore.
//!
//! Nothing blocks the event loop: uploads are written by the upload writer
//! threads, everything else runs on the I/O pool
//! ([`crate::runtime::io_pool`]).

mod commit;
mod layout;
mod read;
mod repair;
mod scan;
mod space;
mod store;
pub(crate) mod trash;
mod write;
mod writers;

use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;

pub(crate) use self::read::FsReader;
pub(crate) use self::repair::Replaced;
pub(crate) use self::scan::FsListing;
use self::scan::Tidy;
pub(crate) use self::store::FsStore;
use self::write::Existing;
pub(crate) use self::write::FsUpload;
pub(crate) use self::writers::WriterPool;
use super::{Incoming, Key, Op as _, OpenError, Repos, Scan, Space, StoreError};
use crate::config::Modes;
use crate::repo::range::Want;
use crate::repo::{ObjectType, RepoPath};

impl Modes {
    /// `--group-accessible-repos` lets the owning group in (0770/0660).
    pub(crate) fn new(group_accessible: bool) -> Modes {
        if group_accessible {
            Modes {
                dir: 0o770,
                file: 0o660,
            }
        } else {
            Modes {
                dir: 0o700,
                file: 0o600,
            }
        }
    }
}

impl super::Store for FsStore {
    type Reader = FsReader;
    type Listing = FsListing;
    type Upload = FsUpload;

    async fn create_repo(&self, repo: &RepoPath) -> Result<(), StoreError> {
        let (dir, modes) = (self.repo_dir(repo), self.modes);
        log::info!("creating repository {repo} in {}", dir.display());
        crate::store::blocking(move || layout::create_repo(&dir, modes)).await
    }

    async fn size(&self, repo: &RepoPath, key: Key<'_>) -> Result<u64, StoreError> {
        let path = self.path(repo, key);
        crate::store::blocking(move || layout::file_len(&path)).await
    }

    async fn open(&self, repo: &RepoPath, key: Key<'_>, want: Want) -> Result<FsReader, OpenError> {
        let path = self.path(repo, key);
        let (large_reads, spares) = (self.large_reads.clone(), self.spares.clone());
        read::open(path, want, large_reads, spares).await
    }

    async fn begin_upload(
        &self,
        repo: &RepoPath,
        key: Key<'_>,
        incoming: Incoming,
    ) -> Result<FsUpload, StoreError> {
        self.upload_to(repo, key, Existing::Refuse, incoming.length)
            .await
    }

    async fn delete(
        &self,
        repo: &RepoPath,
        key: Key<'_>,
        by: Option<&str>,
    ) -> Result<u64, StoreError> {
        let path = self.path(repo, key);
        if !super::Lifecycle::keeps_deleted(self, key) {
            return crate::store::blocking(move || commit::remove(&path)).await;
        }
        let (trashed, modes) = (self.trash_path(repo, key, by), self.modes);
        let kept = crate::store::blocking(move || trash::keep(&path, &trashed, modes)).await?;
        if let Some(bytes) = kept {
            self.count_trash(false, 1, bytes);
        }
        Ok(kept.unwrap_or(0))
    }

    async fn list(&self, repo: &RepoPath, kind: ObjectType) -> Result<FsListing, StoreError> {
        let type_dir = self.type_dir(repo, kind);
        let dirs = crate::store::blocking(move || scan::listing_dirs(&type_dir, kind)).await?;
        Ok(FsListing {
            dirs: dirs.into(),
            pending: None,
        })
    }
}

impl super::Lifecycle for FsStore {
    async fn scan(&self) -> Result<Scan, StoreError> {
        let (root, modes, trash) = (self.root.clone(), self.modes, self.trash_days);
        let (scan, trashed) = crate::store::blocking(move || {
            let mut builder = DirBuilder::new();
            builder.recursive(true).mode(modes.dir);
            builder.create(root.as_path()).op("create data directory")?;
            let mut scan = scan::scan(&root, Tidy::RemoveTemps)?;
            // What the trash holds, counted once: in the data directory's
            // bytes (--max-size) and in each repository's budgets.
            let trashed = match trash {
                Some(_) => trash::entries(&root)?,
                None => Vec::new(),
            };
            let bytes: u64 = trashed.iter().map(|t| t.bytes).sum();
            scan.bytes += bytes;
            for t in &trashed {
                if let Some(stats) = scan.repos.get_mut(t.repo.trim_start_matches('/')) {
                    stats.trash_bytes += t.bytes;
                }
            }
            Ok((scan, (trashed.len() as u64, bytes)))
        })
        .await?;
        self.count_trash(true, trashed.0, trashed.1);
        Ok(scan)
    }

    async fn repos(&self) -> Result<Repos, StoreError> {
        let root = self.root.clone();
        crate::store::blocking(move || Ok(scan::scan(&root, Tidy::Leave)?.repos)).await
    }

    fn keeps_deleted(&self, key: Key<'_>) -> bool {
        super::trash::keeps(self.trash_days, key)
    }

    async fn purge_trash(&self) -> Vec<(String, u64)> {
        self.purge_expired().await
    }

    async fn space(&self) -> Option<Space> {
        let root = self.root.clone();
        let space = crate::store::blocking(move || Ok(space::fs_space(&root)))
            .await
            .ok()
            .flatten()?;
        Some(Space {
            trash: self.trash_use(),
            ..space
        })
    }

    async fn unhealthy(&self, min_free: u64) -> Option<String> {
        let root = self.root.clone();
        crate::store::blocking(move || Ok(space::fs_unhealthy(&root, min_free)))
            .await
            .unwrap_or_else(|e| Some(e.to_string()))
    }
}
