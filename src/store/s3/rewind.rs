//! `mirror recover`: brings a versioned bucket back to what it held at a
//! moment, key by key, from its version history. Whatever was made since
//! (delete markers, newer versions, new keys) is removed; where the store
//! refuses to remove something (a version still locked), the old version is
//! copied back on top instead, or the new key hidden behind a delete marker.
//! Nothing older than the moment is ever removed or changed.

use super::S3Store;
use super::versions::{Removal, Version};
use crate::repo::RepoPath;
use crate::store::StoreError;

/// What a rewind did (or, dry, would do).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Rewound {
    /// Keys whose history changed since the moment.
    pub(crate) keys: u64,
    pub(crate) markers_removed: u64,
    pub(crate) versions_removed: u64,
    /// Old versions copied back on top of one the store kept.
    pub(crate) copied_back: u64,
    /// Keys made since the moment that the store kept, now hidden.
    pub(crate) hidden: u64,
    /// Versions and markers the store refused to remove.
    pub(crate) refused: u64,
    /// One line per key changed, for the dry run's listing.
    pub(crate) lines: Vec<String>,
}

/// One key's history split at the moment.
#[derive(Debug, PartialEq, Eq)]
struct KeyPlan<'a> {
    /// Made at or after the moment, newest first: to remove.
    newer: Vec<&'a Version>,
    /// What the key was at the moment: its newest older entry (None: the
    /// key did not exist; a marker: it was deleted).
    then: Option<&'a Version>,
}

/// Splits one key's versions (newest first) at `since_ms`.
fn plan(versions: &[Version], since_ms: u64) -> KeyPlan<'_> {
    let newer = versions
        .iter()
        .take_while(|v| v.modified_ms >= since_ms)
        .collect::<Vec<_>>();
    let then = versions.get(newer.len());
    KeyPlan { newer, then }
}

impl S3Store {
    /// Rewinds every key under `repo` (all repositories if None) to what it
    /// was at `since_ms` (Unix milliseconds, the store's clock); `dry`
    /// changes nothing and says what it would do.
    pub(crate) async fn rewind(
        &self,
        repo: Option<&RepoPath>,
        since_ms: u64,
        dry: bool,
    ) -> Result<Rewound, StoreError> {
        let inner = &self.inner;
        inner.check_rewindable().await?;
        let prefix = inner.repo_prefix(repo.unwrap_or(&RepoPath::default()));
        let mut done = Rewound::default();
        // One key's versions at a time: a key's versions are listed
        // together, newest first, and may go on on the next page.
        let mut key_versions: Vec<Version> = Vec::new();
        let mut after = None;
        loop {
            let page = inner.versions_page(&prefix, after.as_ref()).await?;
            for version in page.versions {
                if key_versions.first().is_some_and(|v| v.key != version.key) {
                    self.rewind_key(&key_versions, since_ms, dry, &mut done)
                        .await?;
                    key_versions.clear();
                }
                key_versions.push(version);
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        if !key_versions.is_empty() {
            self.rewind_key(&key_versions, since_ms, dry, &mut done)
                .await?;
        }
        Ok(done)
    }

    async fn rewind_key(
        &self,
        versions: &[Version],
        since_ms: u64,
        dry: bool,
        done: &mut Rewound,
    ) -> Result<(), StoreError> {
        let plan = plan(versions, since_ms);
        let Some(newest) = plan.newer.first() else {
            return Ok(());
        };
        let key = &newest.key;
        done.keys += 1;
        let then = match plan.then {
            Some(v) if !v.marker => "back to its version from before",
            Some(_) => "deleted again, as it was",
            None => "removed: it did not exist",
        };
        done.lines.push(format!(
            "{key}: {} change(s) since, {then}",
            plan.newer.len()
        ));
        if dry {
            return Ok(());
        }
        let mut kept = false;
        for version in &plan.newer {
            match self.inner.remove_version(key, &version.id).await? {
                Removal::Removed if version.marker => done.markers_removed += 1,
                Removal::Removed => done.versions_removed += 1,
                Removal::Refused(why) => {
                    log::warn!(
                        "mirror recover: the store keeps version {} of {key}: {why}",
                        version.id
                    );
                    done.refused += 1;
                    kept = true;
                }
            }
        }
        if kept {
            match plan.then {
                Some(v) if !v.marker => {
                    self.inner.copy_back(key, &v.id).await?;
                    done.copied_back += 1;
                }
                _ => {
                    self.inner.remove(key).await?;
                    done.hidden += 1;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(id: &str, marker: bool, modified_ms: u64) -> Version {
        Version {
            key: "k".into(),
            id: id.into(),
            marker,
            latest: false,
            modified_ms,
        }
    }

    #[test]
    fn a_key_splits_at_the_moment() {
        let history = [v("m2", true, 30), v("v2", false, 20), v("v1", false, 10)];
        let p = plan(&history, 20);
        assert_eq!(p.newer.len(), 2);
        assert_eq!(p.then.map(|v| v.id.as_str()), Some("v1"));
        let p = plan(&history, 31);
        assert!(p.newer.is_empty());
        assert_eq!(p.then.map(|v| v.id.as_str()), Some("m2"));
        let p = plan(&history, 5);
        assert_eq!(p.newer.len(), 3);
        assert_eq!(p.then, None);
    }
}
