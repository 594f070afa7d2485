//! What each repository holds — bytes, objects, when its newest snapshot was
//! written — counted by the startup scan, then kept up to date as uploads
//! commit and deletes remove. The status page, `/metrics` and the
//! per-repository quotas read it, so no request walks the disk.
//!
//! Lives on the event-loop thread only, hence `RefCell`.

use std::cell::RefCell;

use crate::repo::ObjectType;
use crate::store::{RepoStats, Repos};

/// Repositories tracked at most. Each one is a folder tree on the disk, so
/// this only bounds memory (about 100 bytes each) against a disk holding an
/// absurd number of them; past it, new ones are not shown on the status
/// page or in the metrics, and no `--quota-file` budget applies to them.
pub(crate) const MAX_REPOS: usize = 10_000;

#[derive(Debug, Default)]
pub(crate) struct Usage {
    repos: RefCell<Repos>,
}

impl Usage {
    pub(crate) fn new(mut repos: Repos) -> Usage {
        if repos.len() > MAX_REPOS {
            log::warn!(
                "{} repositories: sizes are kept for the first {MAX_REPOS} only",
                repos.len()
            );
            while repos.len() > MAX_REPOS {
                repos.pop_last();
            }
        }
        Usage {
            repos: RefCell::new(repos),
        }
    }

    /// A repository was created (idempotent). Whether it is tracked.
    pub(crate) fn created(&self, repo: &str) -> bool {
        let mut repos = self.repos.borrow_mut();
        if repos.contains_key(repo) {
            return true;
        }
        if repos.len() >= MAX_REPOS {
            return false;
        }
        repos.insert(repo.to_string(), RepoStats::default());
        true
    }

    /// A file of `kind` (None: the config) with `bytes` was committed.
    pub(crate) fn wrote(&self, repo: &str, kind: Option<ObjectType>, bytes: u64) {
        self.created(repo);
        let mut repos = self.repos.borrow_mut();
        let Some(stats) = repos.get_mut(repo) else {
            return;
        };
        stats.bytes += bytes;
        if kind.is_some() {
            stats.objects += 1;
        }
        if kind == Some(ObjectType::Snapshots) {
            stats.newest_snapshot = Some(crate::time::unix_now());
        }
    }

    /// A file of `kind` was deleted, freeing `bytes`. Nothing freed means
    /// nothing was there (restic retries deletes; none of its files is empty).
    pub(crate) fn deleted(&self, repo: &str, kind: Option<ObjectType>, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let mut repos = self.repos.borrow_mut();
        let Some(stats) = repos.get_mut(repo) else {
            return;
        };
        stats.bytes = stats.bytes.saturating_sub(bytes);
        if kind.is_some() {
            stats.objects = stats.objects.saturating_sub(1);
        }
    }

    /// Whether `repo` is tracked, or would be once it holds something.
    pub(crate) fn can_track(&self, repo: &str) -> bool {
        let repos = self.repos.borrow();
        repos.contains_key(repo) || repos.len() < MAX_REPOS
    }

    /// Every tracked repository, by label, in order.
    pub(crate) fn snapshot(&self) -> Vec<(String, RepoStats)> {
        self.repos
            .borrow()
            .iter()
            .map(|(label, stats)| (label.clone(), *stats))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_writes_and_deletes() {
        let usage = Usage::default();
        usage.wrote("alice", None, 10);
        usage.wrote("alice", Some(ObjectType::Data), 100);
        usage.wrote("alice", Some(ObjectType::Snapshots), 5);
        // A retried delete of something already gone frees nothing.
        usage.deleted("alice", Some(ObjectType::Data), 0);
        let stats = usage.snapshot()[0].1;
        assert_eq!((stats.bytes, stats.objects), (115, 2));
        assert!(stats.newest_snapshot.is_some());
        usage.deleted("alice", Some(ObjectType::Data), 100);
        usage.deleted("nobody", Some(ObjectType::Data), 100);
        let stats = usage.snapshot()[0].1;
        assert_eq!((stats.bytes, stats.objects), (15, 1));
        assert_eq!(usage.snapshot().len(), 1);
    }

    #[test]
    fn tracks_at_most_max_repos() {
        let repos: Repos = (0..MAX_REPOS + 3)
            .map(|i| (format!("r{i:05}"), RepoStats::default()))
            .collect();
        let usage = Usage::new(repos);
        assert!(!usage.created("extra"));
        assert!(usage.created("r00001"));
        assert_eq!(usage.snapshot().len(), MAX_REPOS);
    }
}
