//! The lock's renewal (`--mirror-lock-days N`): an object's lock is set
//! when it is copied and would run out N days later, while restic still
//! needs a pack for as long as a snapshot refers to it. So every N/2 days a
//! pass moves the lock of every file still on the disk on to N days from
//! then: a live object always has at least N/2 days of lock left, which is
//! how long the owner has, after an attack, to run `mirror recover`. The
//! first pass runs at the first start with the lock, and locks what an
//! earlier mirror copied without one.

use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use super::Mirror;
use crate::config::ObjectLock;
use crate::repo::{Key, ObjectType, RepoPath};
use crate::store::{ErrorKind, Lifecycle, Store, StoreError};

/// When the last whole pass began (Unix seconds) and the days it locked
/// for, in the mirror's folder.
const RECORD: &str = "locks-renewed";
/// How long after a pass that left objects unrenewed the next one begins.
const RETRY: Duration = Duration::from_secs(6 * 3600);
/// The longest sleep at once, so that a clock set forward is noticed.
const NAP: Duration = Duration::from_secs(3600);

/// How a pass went: renewed, not in the bucket (yet), failed.
#[derive(Debug, Default)]
struct Pass {
    renewed: u64,
    absent: u64,
    failed: u64,
    first_error: Option<String>,
}

impl Mirror {
    /// Renews the locks every `lock.days / 2` days, for as long as the
    /// server runs.
    pub(super) async fn renew_locks(self: Rc<Self>, state_dir: PathBuf, lock: ObjectLock) {
        let record = state_dir.join(RECORD);
        let half = u64::from(lock.days) * 86_400 / 2;
        loop {
            let last = {
                let record = record.clone();
                crate::store::blocking(move || Ok(std::fs::read_to_string(record).ok()))
                    .await
                    .unwrap_or(None)
            };
            let now = crate::time::unix_now();
            // A window changed since (`--mirror-lock-days`) is applied now.
            let due = match last.as_deref().map(parse_record) {
                Some(Some((at, days))) if days == lock.days => at.saturating_add(half),
                _ => 0,
            };
            if now < due {
                tokio::time::sleep(Duration::from_secs(due - now).min(NAP)).await;
                continue;
            }
            let pass = self.renew_pass().await;
            if pass.failed == 0 {
                log::info!(
                    "mirror: locks renewed until {} on {} object(s) ({} not in the bucket yet)",
                    crate::time::utc(now + u64::from(lock.days) * 86_400),
                    pass.renewed,
                    pass.absent
                );
                let record = record.clone();
                let written = crate::store::blocking(move || {
                    let temp = record.with_extension("tmp");
                    std::fs::write(&temp, format!("{now} {}\n", lock.days))
                        .and_then(|()| std::fs::rename(&temp, &record))
                        .map_err(|e| StoreError::new(ErrorKind::Unexpected, "record", e))
                })
                .await;
                if let Err(e) = written {
                    log::warn!("mirror: cannot record the lock renewal: {e}");
                    tokio::time::sleep(RETRY).await;
                }
            } else {
                log::error!(
                    "mirror: lock renewal: {} object(s) not renewed ({}); {} renewed; next try in {} h",
                    pass.failed,
                    pass.first_error.unwrap_or_default(),
                    pass.renewed,
                    RETRY.as_secs() / 3600
                );
                tokio::time::sleep(RETRY).await;
            }
        }
    }

    /// One pass over every file of every repository on the disk.
    async fn renew_pass(&self) -> Pass {
        let mut pass = Pass::default();
        let repos = match self.local.repos().await {
            Ok(repos) => repos,
            Err(e) => {
                pass.failed = 1;
                pass.first_error = Some(e.to_string());
                return pass;
            }
        };
        for label in repos.keys() {
            let Some(repo) = RepoPath::from_label(label) else {
                continue;
            };
            if self.local.size(&repo, Key::Config).await.is_ok() {
                pass.book(self.remote.renew_lock(&repo, Key::Config).await);
            }
            for kind in [
                ObjectType::Keys,
                ObjectType::Data,
                ObjectType::Index,
                ObjectType::Snapshots,
            ] {
                let local = match self.local.list(&repo, kind).await {
                    Ok(listing) => crate::store::collect(listing).await,
                    Err(e) if e.kind == ErrorKind::NotFound => continue,
                    Err(e) => Err(e),
                };
                match local {
                    Ok(files) => {
                        for (id, _) in files {
                            let key = Key::Object(kind, &id);
                            pass.book(self.remote.renew_lock(&repo, key).await);
                        }
                    }
                    Err(e) => pass.book(Err(e)),
                }
            }
        }
        pass
    }
}

/// `<unix seconds> <days>`, as [`RECORD`] holds it.
fn parse_record(text: &str) -> Option<(u64, u32)> {
    let (at, days) = text.trim().split_once(' ')?;
    Some((at.parse().ok()?, days.parse().ok()?))
}

impl Pass {
    fn book(&mut self, result: Result<(), StoreError>) {
        match result {
            Ok(()) => self.renewed += 1,
            Err(e) if e.kind == ErrorKind::NotFound => self.absent += 1,
            Err(e) => {
                self.failed += 1;
                self.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_record_holds_a_time_and_days() {
        assert_eq!(
            super::parse_record("1700000000 30\n"),
            Some((1_700_000_000, 30))
        );
        assert_eq!(super::parse_record("1700000000"), None);
        assert_eq!(super::parse_record("x 30"), None);
    }
}
