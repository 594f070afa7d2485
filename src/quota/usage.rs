//! What each repository holds — bytes, objects, when its newest snapshot was
//! written — counted by the startup scan, then kept up to date as uploads
//! commit and deletes remove. The status page, `/metrics` and the
//! per-repository quotas read it, so no request walks the disk.
//!
//! Lives on the event-loop thread only, hence `RefCell`.

use std::cell::RefCell;
use std::collections::BTreeMap;

use super::deletes::{Recent, Window, alarming};
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
    /// Each repository's deletes of the last day, for the deletion alarm.
    deletes: RefCell<BTreeMap<String, Window>>,
    /// `--delete-alarm`: the share of snapshots (percent) whose deletion
    /// within a day raises it; 0: never.
    alarm_percent: u64,
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
            deletes: RefCell::default(),
            alarm_percent: super::deletes::DEFAULT_PERCENT,
        }
    }

    /// This usage, with the deletion alarm at `percent` (0: off).
    pub(crate) fn with_alarm(self, percent: u64) -> Usage {
        Usage {
            alarm_percent: percent,
            ..self
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
            stats.snapshots += 1;
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
        if kind == Some(ObjectType::Snapshots) {
            stats.snapshots = stats.snapshots.saturating_sub(1);
        }
        let left = stats.snapshots;
        drop(repos);
        let now = crate::time::unix_now();
        let mut deletes = self.deletes.borrow_mut();
        let window = deletes.entry(repo.to_string()).or_default();
        window.record(kind, now);
        let recent = window.recent(now);
        if !window.logged && alarming(recent.snapshots, left, self.alarm_percent) {
            window.logged = true;
            log::error!(
                "deletion alarm: {} of {} snapshots of /{repo} deleted within 24 h: if \
                 that was not a prune you meant, see docs/trash.md",
                recent.snapshots,
                recent.snapshots + left
            );
        }
    }

    /// A deleted file of `bytes` went to the trash: it still counts in the
    /// repository's budgets.
    pub(crate) fn trashed(&self, repo: &str, bytes: u64) {
        if let Some(stats) = self.repos.borrow_mut().get_mut(repo) {
            stats.trash_bytes += bytes;
        }
    }

    /// The trash let go of `bytes` of the repository's files.
    pub(crate) fn purged(&self, repo: &str, bytes: u64) {
        if let Some(stats) = self.repos.borrow_mut().get_mut(repo) {
            stats.trash_bytes = stats.trash_bytes.saturating_sub(bytes);
        }
    }

    /// Each repository's deletes of the last day that hold any, with
    /// whether they raise the deletion alarm.
    pub(crate) fn deletes(&self) -> Vec<(String, Recent, bool)> {
        let now = crate::time::unix_now();
        let repos = self.repos.borrow();
        let mut deletes = self.deletes.borrow_mut();
        deletes
            .iter_mut()
            .map(|(repo, window)| (repo, window.recent(now)))
            .filter(|(_, recent)| recent.snapshots + recent.data > 0)
            .map(|(repo, recent)| {
                let left = repos.get(repo).map_or(0, |s| s.snapshots);
                let alarm = alarming(recent.snapshots, left, self.alarm_percent);
                (repo.clone(), recent, alarm)
            })
            .collect()
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
