//! The lock's renewal (`--mirror-lock-days N`): an object's lock is set
//! when it is copied and would run out N days later, while restic still
//! needs a pack for as long as a snapshot refers to it. So every N/2 days a
//! pass moves the lock of every file still on the disk on to N days from
//! then: a live object always has at least N/2 days of lock left, which is
//! how long the owner has, after an attack, to run `mirror recover`. The
//! first pass runs at the first start with the lock, and locks what an
//! earlier mirror copied without one.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use super::queue::Item;
use super::{COPIED, Mirror};
use crate::config::ObjectLock;
use crate::repo::{Key, KeyBuf, RepoPath};
use crate::store::{ErrorKind, Lifecycle, Store, StoreError};

/// When the last whole pass began (Unix seconds), the days it locked for,
/// and the date it locked until, in the mirror's folder.
const RECORD: &str = "locks-renewed";
/// Where the record is written before it is renamed into place.
const TEMP: &str = "locks-renewed.tmp";
/// How long after a pass that left objects unrenewed the next one begins.
const RETRY: Duration = Duration::from_secs(6 * 3600);
/// The longest sleep at once, so that a clock set forward is noticed.
const NAP: Duration = Duration::from_secs(3600);

/// How a pass went: renewed, not in the bucket (yet), failed.
#[derive(Debug, Default)]
struct Pass {
    /// The latest date an object was locked until (Unix seconds).
    until: u64,
    renewed: u64,
    absent: u64,
    failed: u64,
    first_error: Option<String>,
}

impl Mirror {
    /// Renews the locks every `lock.days / 2` days, for as long as the
    /// server runs.
    pub(super) async fn renew_locks(self: Rc<Self>, state_dir: PathBuf, lock: ObjectLock) {
        let half = u64::from(lock.days) * 86_400 / 2;
        loop {
            let last = record_io(&state_dir, None).await.unwrap_or(None);
            let now = crate::time::unix_now();
            let last = last.as_deref().and_then(parse_record);
            // A window changed since (`--mirror-lock-days`) is applied now.
            let due = match last {
                Some(record) if record.days == lock.days => record.at.saturating_add(half),
                _ => 0,
            };
            let wait = if now < due {
                Duration::from_secs(due - now).min(NAP)
            } else {
                match self.renew_and_record(&state_dir, lock, now, last).await {
                    Some(wait) => wait,
                    None => continue,
                }
            };
            // The one sleep of the loop: each await of a timer is compiled
            // on its own.
            tokio::time::sleep(wait).await;
        }
    }

    /// A pass, logged and recorded; how long to wait before the record is
    /// read again (None: at once).
    async fn renew_and_record(
        &self,
        state_dir: &Path,
        lock: ObjectLock,
        now: u64,
        last: Option<Record>,
    ) -> Option<Duration> {
        // Never earlier than a date set before: S3 refuses to shorten
        // a lock, so a shorter window takes over once it reaches it
        // (objects copied under a longer one may be locked up to now
        // plus its days).
        let floor = match last {
            Some(r) if r.days > lock.days => r.until.max(now + u64::from(r.days) * 86_400),
            Some(r) => r.until,
            None => 0,
        };
        let pass = self.renew_pass(lock.days, floor).await;
        let until = pass.until;
        if pass.failed == 0 {
            log::info!(
                "mirror: locks renewed until {} on {} object(s) ({} not in the bucket yet)",
                crate::time::utc(until),
                pass.renewed,
                pass.absent
            );
            let text = format!("{now} {} {until}\n", lock.days);
            if let Err(e) = record_io(state_dir, Some(text)).await {
                log::warn!("mirror: cannot record the lock renewal: {e}");
                return Some(RETRY);
            }
            None
        } else {
            log::error!(
                "mirror: lock renewal: {} object(s) not renewed ({}); {} renewed; next try in {} h",
                pass.failed,
                pass.first_error.unwrap_or_default(),
                pass.renewed,
                RETRY.as_secs() / 3600
            );
            Some(RETRY)
        }
    }

    /// One pass over every file of every repository on the disk.
    /// Each object is locked until `days` from the moment it is renewed,
    /// and never before `floor`: a file the mirror copies while the pass
    /// runs is locked until its copy's time plus N, which a date taken at
    /// the pass's start would shorten (refused).
    async fn renew_pass(&self, days: u32, floor: u64) -> Pass {
        let mut pass = Pass::default();
        let until = |pass: &mut Pass| {
            let until = (crate::time::unix_now() + u64::from(days) * 86_400).max(floor);
            pass.until = pass.until.max(until);
            until
        };
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
            match self.local.size(&repo, Key::Config).await {
                Ok(size) => {
                    let until = until(&mut pass);
                    let renewed = self.remote.renew_lock(&repo, Key::Config, until).await;
                    self.copy_if_missing(&renewed, &repo, KeyBuf::Config, size);
                    pass.book(renewed);
                }
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => pass.book(Err(e)),
            }
            for kind in COPIED {
                match self.local_files(&repo, kind).await {
                    Ok(files) => {
                        for (id, size) in files {
                            let key = Key::Object(kind, &id);
                            let until = until(&mut pass);
                            let renewed = self.remote.renew_lock(&repo, key, until).await;
                            self.copy_if_missing(&renewed, &repo, KeyBuf::Object(kind, id), size);
                            pass.book(renewed);
                        }
                    }
                    Err(e) => pass.book(Err(e)),
                }
            }
        }
        pass
    }
}

/// A whole pass, as [`RECORD`] holds it: `<at> <days> <until>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    /// When it began (Unix seconds).
    at: u64,
    days: u32,
    /// The date it locked every live object until (Unix seconds).
    until: u64,
}

fn parse_record(text: &str) -> Option<Record> {
    let mut parts = text.split_whitespace();
    let record = Record {
        at: parts.next()?.parse().ok()?,
        days: parts.next()?.parse().ok()?,
        until: parts.next()?.parse().ok()?,
    };
    parts.next().is_none().then_some(record)
}

impl Mirror {
    /// A file on the disk that the bucket does not show (a delete marker
    /// on top, as a thief's plain delete leaves, or a copy still waiting)
    /// is queued to be copied: copied again, it is locked anew. A copy
    /// already waiting is not queued twice.
    fn copy_if_missing(
        &self,
        renewed: &Result<(), StoreError>,
        repo: &RepoPath,
        name: KeyBuf,
        size: u64,
    ) {
        if matches!(renewed, Err(e) if e.kind == ErrorKind::NotFound) {
            self.queue(Item {
                repo: repo.clone(),
                name,
                size,
                since: crate::time::unix_now(),
            });
        }
    }
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

/// Reads [`RECORD`] in `state_dir` (None: absent or unreadable), or with
/// `text` replaces it (a temp file, then a rename). One closure for both:
/// each closure type given to the file-I/O pool is a tokio task type of its
/// own, about 3 KiB of the aarch64 binary.
async fn record_io(state_dir: &Path, text: Option<String>) -> Result<Option<String>, StoreError> {
    let record = state_dir.join(RECORD);
    // RECORD with the extension `tmp`, as `with_extension` would make it
    // (which would bring in std's extension code for this one name).
    let temp = state_dir.join(TEMP);
    crate::store::blocking(move || match text {
        None => Ok(std::fs::read_to_string(record).ok()),
        Some(text) => std::fs::write(&temp, text)
            .and_then(|()| std::fs::rename(&temp, &record))
            .map(|()| None)
            .map_err(|e| StoreError::new(ErrorKind::Unexpected, "record", e)),
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::{Record, parse_record};

    #[test]
    fn the_record_holds_a_time_days_and_a_date() {
        assert_eq!(
            parse_record("1700000000 30 1702592000\n"),
            Some(Record {
                at: 1_700_000_000,
                days: 30,
                until: 1_702_592_000
            })
        );
        assert_eq!(parse_record("1700000000 30"), None);
        assert_eq!(parse_record("x 30 5"), None);
        assert_eq!(parse_record("1 2 3 4"), None);
    }
}
