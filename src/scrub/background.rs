//! [`Scrubber`]: the background scrub of a data directory. It runs on the
//! server's event loop in slices of a few seconds under the state file's
//! lock, saves where it got to after each, and starts a pass an interval
//! after the last one started.

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::config::ScrubSchedule;
use crate::repo::Key;
use crate::repo::{ObjectId, RepoPath};
use crate::runtime::pool::ComputePool;
use crate::store::{ErrorKind, Store};
use crate::time::utc;

use super::error::OpState as _;
use super::pace::Pace;
use super::state::{Damage, Files, Finished, Pass, Place, State};
use super::verify::{Verdict, count, verify};
use super::walk::Walk;
use super::{ScrubError, Status};

/// How long the background scrub works before it saves its position and
/// lets go of the lock. It is looked at between objects, so a slice ends
/// with the object under way: `rest-server scrub` waits that long, which for
/// a large pack at the busy rate is minutes.
const SLICE: Duration = Duration::from_secs(5);

/// How long the background scrub waits when the lock is taken or the store
/// failed, before it tries again.
const RETRY: Duration = Duration::from_secs(30);

/// The longest sleep before the background scrub looks at the clock again
/// (a clock corrected by NTP after boot moves the next pass).
const LONGEST_SLEEP: Duration = Duration::from_secs(3600);

/// The longest wait after a pass that found nothing to verify.
const EMPTY_PASS_INTERVAL: Duration = Duration::from_secs(86_400);

/// The background scrub of a data directory.
pub(crate) struct Scrubber<S> {
    store: S,
    files: Files,
    compute: ComputePool,
    schedule: ScrubSchedule,
    busy: Rc<dyn Fn() -> bool>,
    status: Rc<Status>,
}

impl<S: Store> Scrubber<S> {
    /// Starts the background scrub; `busy` tells whether clients are being
    /// served.
    /// The state is read before this returns, so that the delete handler
    /// knows the damaged objects from the first request on.
    pub(crate) async fn start(
        store: S,
        files: Files,
        compute: ComputePool,
        schedule: ScrubSchedule,
        busy: Rc<dyn Fn() -> bool>,
    ) -> Rc<Status> {
        let status = Rc::new(Status::default());
        let known = files.clone();
        if let Ok(state) = crate::store::blocking(move || Ok(known.load())).await {
            status.publish(state);
        }
        let scrubber = Scrubber {
            store,
            files,
            compute,
            schedule,
            busy,
            status: status.clone(),
        };
        log::info!(
            "scrub: every {} at up to {} MB/s; state in {}",
            describe_interval(schedule.interval),
            schedule.rate / 1_000_000,
            scrubber.files.path().display()
        );
        tokio::task::spawn_local(scrubber.run());
        status
    }

    async fn run(self) {
        let mut pace = Pace::new(self.schedule.rate, self.busy.clone());
        let mut walk: Option<Walk<S>> = None;
        loop {
            let wait = match self.slice(&mut walk, &mut pace).await {
                Ok(wait) => wait,
                Err(ScrubError::Stopping) => {
                    log::error!("scrub: the hashing threads are gone; the background scrub stops");
                    return;
                }
                Err(e) => {
                    log::warn!("scrub: {e}; trying again in {} s", RETRY.as_secs());
                    walk = None;
                    RETRY
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Works for one slice under the lock; returns how long to wait before
    /// the next.
    async fn slice(
        &self,
        walk: &mut Option<Walk<S>>,
        pace: &mut Pace,
    ) -> Result<Duration, ScrubError> {
        let files = self.files.clone();
        let Some(lock) = crate::store::blocking(move || files.lock(false).op_state()).await? else {
            // `rest-server scrub` is running.
            *walk = None;
            return Ok(RETRY);
        };
        // Objects clients deleted are forgotten now, passes or not.
        let deleted = std::mem::take(&mut *self.status.deleted.borrow_mut());
        let files = self.files.clone();
        let (lock, state) = crate::store::blocking(move || {
            let state = files
                .update_if(&lock, !deleted.is_empty(), |state| {
                    deleted.iter().for_each(|p| state.clear_damage(p))
                })
                .op_state()?;
            Ok((lock, state))
        })
        .await?;
        self.status.publish(state.clone());
        let now = crate::time::unix_now();
        let mut pass = match state.pass.clone() {
            Some(pass) => pass,
            None => {
                let due = next_pass_due(state.last, self.schedule.interval);
                if now < due {
                    return Ok(Duration::from_secs(due - now).min(LONGEST_SLEEP));
                }
                *walk = None;
                Pass {
                    started: now,
                    ..Pass::default()
                }
            }
        };
        let mut forget = Vec::new();
        let walking = match walk {
            Some(walk) => walk,
            None => {
                let repos = self.store.repos().await?;
                if pass.at.is_none() {
                    pass.total_bytes = repos.values().map(|r| r.bytes).sum();
                    log::info!(
                        "scrub: pass started over {} repositories, {} bytes",
                        repos.len(),
                        pass.total_bytes
                    );
                    forget.extend(self.vanished(&state).await);
                } else if let Some(at) = &pass.at {
                    log::info!(
                        "scrub: resuming the pass after {at} ({} objects verified)",
                        pass.counts.objects
                    );
                }
                walk.insert(Walk::new(repos.into_keys(), pass.at.clone()))
            }
        };
        let until = Instant::now() + SLICE;
        let mut found = Vec::new();
        let finished = loop {
            if Instant::now() >= until {
                break false;
            }
            let Some((repo, place)) = walking.next(&self.store).await? else {
                break true;
            };
            let status = &self.status;
            let verdict = verify(&self.store, &self.compute, &repo, &place, pace, &|n| {
                status.read(n)
            })
            .await?;
            count(&mut pass.counts, &verdict);
            match verdict {
                Verdict::Gone => {}
                Verdict::Intact(_) => {
                    self.status.verified();
                    if state.damaged.iter().any(|d| d.place == place) {
                        log::info!("scrub: {place} is intact again");
                        forget.push(place.clone());
                    }
                }
                Verdict::Damaged(_, what) => {
                    self.status.verified();
                    report_damage(&state, &place, &what);
                    found.push(Damage {
                        place: place.clone(),
                        found: crate::time::unix_now(),
                        what,
                    });
                }
            }
            pass.at = Some(place);
        };
        let end = finished.then(|| Finished {
            started: pass.started,
            finished: crate::time::unix_now(),
            counts: pass.counts,
        });
        let files = self.files.clone();
        let saved = crate::store::blocking(move || {
            files
                .update(&lock, |state| {
                    found.into_iter().for_each(|d| state.add_damage(d));
                    forget.iter().for_each(|p| state.clear_damage(p));
                    match end {
                        Some(end) => {
                            state.last = Some(end);
                            state.pass = None;
                        }
                        None => state.pass = Some(pass),
                    }
                })
                .op_state()
        })
        .await?;
        if let Some(at) = saved.pass.as_ref().and_then(|pass| pass.at.as_ref()) {
            log::debug!("scrub: position saved: {at}");
        }
        if let Some(end) = end {
            *walk = None;
            log::info!(
                "scrub: pass finished: {} objects, {} bytes verified, {} damaged, in {} s",
                end.counts.objects,
                end.counts.bytes,
                end.counts.damaged,
                end.finished.saturating_sub(end.started)
            );
        }
        self.status.publish(saved);
        // A moment without the lock, for a `rest-server scrub` waiting for it.
        Ok(Duration::from_millis(50))
    }

    /// Damaged objects deleted meanwhile: forgotten at the start of a pass.
    async fn vanished(&self, state: &State) -> Vec<Place> {
        let mut gone = Vec::new();
        for damage in &state.damaged {
            let Some(repo) = RepoPath::from_label(&damage.place.repo) else {
                continue;
            };
            let id = ObjectId::parse(&damage.place.id).expect("a place holds a valid id");
            let key = Key::Object(damage.place.kind(), &id);
            if let Err(e) = self.store.size(&repo, key).await
                && e.kind == ErrorKind::NotFound
            {
                gone.push(damage.place.clone());
            }
        }
        gone
    }
}

/// When the next pass starts (Unix seconds): an interval after the last
/// one started, or at once when there was none. A pass that found nothing
/// to verify (a new install) is followed within a day, so the first backups
/// are not left unchecked for a whole interval.
fn next_pass_due(last: Option<Finished>, interval: Duration) -> u64 {
    let Some(last) = last else {
        return 0;
    };
    let wait = match last.counts.objects {
        0 => interval.as_secs().min(EMPTY_PASS_INTERVAL.as_secs()),
        _ => interval.as_secs(),
    };
    last.started.saturating_add(wait)
}

fn report_damage(state: &State, place: &Place, what: &str) {
    match state.damaged.iter().find(|d| d.place == *place) {
        Some(known) => log::warn!(
            "scrub: {place} is still damaged (found {}): {what}",
            utc(known.found)
        ),
        None => log::error!("scrub: {place} is damaged: {what}"),
    }
}

fn describe_interval(interval: Duration) -> String {
    let secs = interval.as_secs();
    if secs.is_multiple_of(86_400) && secs > 0 {
        format!("{} day(s)", secs / 86_400)
    } else {
        format!("{secs} s")
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::Counts;
    use super::*;

    #[test]
    fn passes_follow_each_other_by_the_interval_and_an_empty_one_within_a_day() {
        let month = Duration::from_secs(30 * 86_400);
        let finished = |objects| Finished {
            started: 1000,
            finished: 2000,
            counts: Counts {
                objects,
                ..Counts::default()
            },
        };
        assert_eq!(next_pass_due(None, month), 0);
        assert_eq!(next_pass_due(Some(finished(5)), month), 1000 + 30 * 86_400);
        assert_eq!(next_pass_due(Some(finished(0)), month), 1000 + 86_400);
        let short = Duration::from_secs(60);
        assert_eq!(next_pass_due(Some(finished(0)), short), 1060);
        assert_eq!(next_pass_due(Some(finished(1)), Duration::MAX), u64::MAX);
    }
}
