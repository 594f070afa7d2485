//! The scrub: finds bit rot before a restore needs the data. Every restic
//! object but the config is named by the SHA-256 of its content, so the
//! server can re-hash what it stores, without any key, and tell which
//! objects no longer match their names.
//!
//! It reads through the store interface like a download (constant memory),
//! hashes on the compute pool, keeps to `--scrub-rate` (a tenth of it while
//! clients are being served), and works in slices of a few seconds between
//! which it saves where it got to ([`state`]), so a restart resumes the pass.
//! The background scrub never deletes, renames or rewrites anything: what it
//! finds is logged, counted in `/metrics`, and remembered in the state file
//! until the object verifies again or is deleted. Only `rest-server scrub
//! --repair` replaces a damaged object, with a verified copy from the mirror
//! ([`repair`]).

pub(crate) mod repair;
pub(crate) mod state;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::config::ScrubSchedule;
use crate::repo::Key;
use crate::repo::range::Want;
use crate::repo::{ObjectId, RepoPath};
use crate::runtime::pool::{ComputePool, Sha256};
use crate::runtime::rate::TokenBucket;
use crate::store::{ErrorKind, ObjectReader as _, OpenError, Store, StoreError};
use crate::time::utc;
use state::{Counts, Damage, Files, Finished, ORDER, Pass, Place, State};

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

/// While clients are being served, the scrub reads at this fraction of its
/// rate.
const BUSY_SHARE: usize = 10;

/// What one object's check found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Intact(u64),
    /// Read (the bytes read) but does not match its name, or could not be
    /// read.
    Damaged(u64, String),
    /// Deleted since the listing.
    Gone,
}

/// Why a pass stopped short.
#[derive(Debug)]
pub(crate) enum ScrubError {
    Store(StoreError),
    /// The compute pool is gone (the server is stopping).
    Stopping,
    /// `rest-server scrub --repo` of a repository that is not there.
    NoSuchRepo(String),
    /// Not one repository where one was required: nothing to verify.
    NoRepos,
}

impl std::fmt::Display for ScrubError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScrubError::Store(e) => write!(f, "store: {e}"),
            ScrubError::Stopping => f.write_str("stopping"),
            ScrubError::NoSuchRepo(repo) => write!(f, "no repository {repo:?} here"),
            ScrubError::NoRepos => f.write_str("no repository here: nothing to verify"),
        }
    }
}

impl std::error::Error for ScrubError {}

impl From<StoreError> for ScrubError {
    fn from(e: StoreError) -> ScrubError {
        ScrubError::Store(e)
    }
}

/// Keeps reads to a byte rate; a tenth of it while `busy` says clients are
/// being served.
struct Pace {
    bucket: Option<TokenBucket>,
    busy: Rc<dyn Fn() -> bool>,
}

impl Pace {
    /// `rate` in bytes per second; 0 for no limit.
    fn new(rate: u64, busy: Rc<dyn Fn() -> bool>) -> Pace {
        Pace {
            bucket: (rate > 0).then(|| TokenBucket::new(rate)),
            busy,
        }
    }

    async fn take(&mut self, bytes: usize) {
        let share = if (self.busy)() { BUSY_SHARE } else { 1 };
        if let Some(bucket) = &mut self.bucket {
            let wait = bucket.take(bytes * share);
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Reads one object through the store and compares its hash with its name.
async fn verify<S: Store>(
    store: &S,
    compute: &ComputePool,
    repo: &RepoPath,
    place: &Place,
    pace: &mut Pace,
    read_bytes: &dyn Fn(u64),
) -> Result<Verdict, ScrubError> {
    let id = ObjectId::parse(&place.id).expect("a place holds a valid id");
    let mut reader = match store
        .open(repo, Key::Object(place.kind(), &id), Want::All)
        .await
    {
        Ok(reader) => reader,
        Err(OpenError::Store(e)) if e.kind == ErrorKind::NotFound => return Ok(Verdict::Gone),
        Err(OpenError::Store(e)) if is_damage(&e) => {
            return Ok(Verdict::Damaged(0, unreadable(&e)));
        }
        Err(OpenError::Store(e)) => return Err(e.into()),
        Err(OpenError::Range(e)) => return Err(StoreError::internal("scrub", e.to_string()).into()),
    };
    let mut sha = Sha256::new(compute.clone());
    let mut read = 0u64;
    loop {
        match std::future::poll_fn(|cx| reader.poll_chunk(cx)).await {
            None => break,
            Some(Ok(chunk)) => {
                read += chunk.len() as u64;
                read_bytes(chunk.len() as u64);
                pace.take(chunk.len()).await;
                sha.push(chunk).await.map_err(|_| ScrubError::Stopping)?;
            }
            Some(Err(e)) if is_damage(&e) => return Ok(Verdict::Damaged(read, unreadable(&e))),
            Some(Err(e)) => return Err(e.into()),
        }
    }
    let digest = sha.finish().await.map_err(|_| ScrubError::Stopping)?;
    Ok(if digest == id.digest() {
        Verdict::Intact(read)
    } else {
        Verdict::Damaged(read, "does not match its name".to_string())
    })
}

/// Whether a read error says the stored bytes are bad (the disk or the file
/// system reports damage, or the file ends before its size), rather than a
/// passing trouble of the machine (no file descriptors, no memory) or of the
/// network, which stops the slice or the command instead of being reported
/// as damage.
fn is_damage(e: &StoreError) -> bool {
    use nix::errno::Errno;
    let Some(source) = e.io() else {
        return false;
    };
    source.kind() == std::io::ErrorKind::UnexpectedEof
        || matches!(
            source.raw_os_error().map(Errno::from_raw),
            Some(Errno::EIO | Errno::EBADMSG | Errno::EUCLEAN | Errno::ENODATA)
        )
}

fn unreadable(e: &dyn std::fmt::Display) -> String {
    // One line, no tabs: it goes into the state file.
    format!("could not be read ({e})").replace(['\t', '\n'], " ")
}

/// Every object of the repositories, in [`Place`] order, after a place; a
/// type folder listed a batch at a time (constant memory).
struct Walk<S: Store> {
    repos: VecDeque<String>,
    kind: usize,
    listing: Option<(RepoPath, S::Listing)>,
    batch: VecDeque<(ObjectId, u64)>,
    after: Option<Place>,
}

impl<S: Store> Walk<S> {
    fn new(repos: impl IntoIterator<Item = String>, after: Option<Place>) -> Walk<S> {
        let mut repos: Vec<String> = repos.into_iter().collect();
        repos.sort();
        Walk {
            repos: repos.into(),
            kind: 0,
            listing: None,
            batch: VecDeque::new(),
            after,
        }
    }

    async fn next(&mut self, store: &S) -> Result<Option<(RepoPath, Place)>, StoreError> {
        loop {
            if let (Some((repo, _)), Some((id, _))) = (&self.listing, self.batch.pop_front()) {
                let place = Place {
                    repo: self.repos[0].clone(),
                    kind: self.kind,
                    id: id.as_str().to_string(),
                };
                if self.after.as_ref().is_some_and(|after| place <= *after) {
                    continue;
                }
                return Ok(Some((repo.clone(), place)));
            }
            if let Some((_, listing)) = &mut self.listing {
                match crate::store::next_batch(listing).await {
                    Some(batch) => {
                        let mut batch = batch?;
                        batch.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
                        self.batch = batch.into();
                    }
                    None => {
                        self.listing = None;
                        self.kind += 1;
                    }
                }
                continue;
            }
            let Some(label) = self.repos.front() else {
                return Ok(None);
            };
            let passed = self
                .after
                .as_ref()
                .is_some_and(|after| (label, self.kind) < (&after.repo, after.kind));
            let repo = RepoPath::from_label(label);
            if self.kind >= ORDER.len() || repo.is_none() {
                self.repos.pop_front();
                self.kind = 0;
                continue;
            }
            if passed {
                self.kind += 1;
                continue;
            }
            let repo = repo.expect("checked");
            match store.list(&repo, ORDER[self.kind]).await {
                Ok(listing) => self.listing = Some((repo, listing)),
                Err(e) if e.kind == ErrorKind::NotFound => self.kind += 1,
                Err(e) => return Err(e),
            }
        }
    }
}

/// The scrub at a glance, for the status page.
pub(crate) struct ScrubSummary {
    /// When the last full pass finished (Unix seconds).
    pub(crate) last_finished: Option<u64>,
    /// How far the pass under way is, 0 to 1.
    pub(crate) progress: Option<f64>,
    /// `/repo/type/id` of each damaged object.
    pub(crate) damaged: Vec<String>,
}

/// What the server's scrub shows: in `/metrics`, on the status page, and to
/// the delete handler.
#[derive(Default)]
pub(crate) struct Status {
    verified_objects: Cell<u64>,
    verified_bytes: Cell<u64>,
    /// The state as last saved.
    state: RefCell<State>,
    /// Objects deleted by clients since the last save: forgotten then.
    deleted: RefCell<Vec<Place>>,
}

impl Status {
    /// A client deleted an object: if it was damaged, it is no longer.
    pub(crate) fn deleted(&self, repo: &RepoPath, key: Key<'_>) {
        let Key::Object(kind, id) = key else {
            return;
        };
        let Some(kind) = ORDER.iter().position(|k| *k == kind) else {
            return;
        };
        let place = Place {
            repo: repo.label(),
            kind,
            id: id.as_str().to_string(),
        };
        let mut state = self.state.borrow_mut();
        if state.damaged.iter().any(|d| d.place == place) {
            state.clear_damage(&place);
            self.deleted.borrow_mut().push(place);
        }
    }

    /// Shows `state` as read from the file, less the deletes not written
    /// to it yet: a delete that came while the file was being read is not
    /// undone in `/metrics`.
    fn publish(&self, mut state: State) {
        for place in self.deleted.borrow().iter() {
            state.clear_damage(place);
        }
        self.state.replace(state);
    }

    fn read(&self, bytes: u64) {
        self.verified_bytes.set(self.verified_bytes.get() + bytes);
    }

    fn verified(&self) {
        self.verified_objects.set(self.verified_objects.get() + 1);
    }

    /// What the status page shows.
    pub(crate) fn summary(&self) -> ScrubSummary {
        let state = self.state.borrow();
        ScrubSummary {
            last_finished: state.last.map(|last| last.finished),
            progress: state
                .pass
                .as_ref()
                .map(|pass| pass.counts.bytes as f64 / pass.total_bytes.max(1) as f64),
            damaged: state.damaged.iter().map(|d| d.place.to_string()).collect(),
        }
    }

    pub(crate) fn render_metrics(&self, out: &mut String) {
        let state = self.state.borrow();
        let progress = state.pass.as_ref().map_or(0.0, |pass| {
            pass.counts.bytes as f64 / pass.total_bytes.max(1) as f64
        });
        let last = state.last.map_or(0, |last| last.finished);
        let metrics: [(&str, &str, &str, String); 5] = [
            (
                "rest_server_scrub_verified_objects_total",
                "Objects read and hashed by the scrub since the server started.",
                "counter",
                self.verified_objects.get().to_string(),
            ),
            (
                "rest_server_scrub_verified_bytes_total",
                "Bytes read and hashed by the scrub since the server started.",
                "counter",
                self.verified_bytes.get().to_string(),
            ),
            (
                "rest_server_scrub_damaged_objects",
                "Objects that did not match their names or could not be read, not yet repaired or deleted.",
                "gauge",
                state.damaged.len().to_string(),
            ),
            (
                "rest_server_scrub_last_pass_finished_timestamp_seconds",
                "When the last full scrub pass finished (Unix time); 0 before the first.",
                "gauge",
                last.to_string(),
            ),
            (
                "rest_server_scrub_pass_progress_ratio",
                "How far the pass in progress is, by bytes stored when it started; 0 between passes.",
                "gauge",
                format!("{:.4}", progress.min(1.0)),
            ),
        ];
        for (name, help, kind, value) in metrics {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
    }
}

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

/// `rest-server scrub`: one pass now, over every repository or `only`
/// one, at most `rate` bytes per second (0: no limit). Prints each damaged
/// object on stdout as it is found, and a progress line on stderr when that
/// is a terminal. With `files` (a data directory), it records what it found
/// and, for a whole pass, its result; it waits for the lock first, which
/// the server's scrub gives up after its current slice. With
/// `require_repos`, a store with no repository at all is an error, not a
/// clean pass (a bucket location with a mistyped prefix).
pub(crate) async fn once<S: Store>(
    store: &S,
    files: Option<Files>,
    compute: ComputePool,
    rate: u64,
    only: Option<&str>,
    healer: Option<&repair::Healer>,
    require_repos: bool,
) -> Result<Outcome, ScrubError> {
    let lock = match &files {
        None => None,
        Some(files) => {
            let try_files = files.clone();
            match crate::store::blocking(move || try_files.lock(false).op_state()).await? {
                Some(lock) => Some(lock),
                None => {
                    eprintln!("waiting for the running server's scrub to pause...");
                    let files = files.clone();
                    crate::store::blocking(move || files.lock(true).op_state()).await?
                }
            }
        }
    };
    let repos = store.repos().await?;
    if require_repos && repos.is_empty() {
        return Err(ScrubError::NoRepos);
    }
    let labels: Vec<String> = match only {
        None => repos.keys().cloned().collect(),
        Some(repo) => {
            let label = repo.trim_matches('/').to_string();
            if !repos.contains_key(&label) {
                return Err(ScrubError::NoSuchRepo(repo.to_string()));
            }
            vec![label]
        }
    };
    let total: u64 = labels.iter().map(|l| repos[l].bytes).sum();
    let known = match &files {
        Some(files) => {
            let files = files.clone();
            crate::store::blocking(move || Ok(files.load())).await?
        }
        None => State::default(),
    };
    let started = (crate::time::unix_now(), Instant::now());
    let mut progress = Progress::new(total);
    let mut pace = Pace::new(rate, Rc::new(|| false));
    let mut walk = Walk::<S>::new(labels.clone(), None);
    let (mut counts, mut found, mut forget) = (Counts::default(), Vec::new(), Vec::new());
    let mut repaired = 0;
    while let Some((repo, place)) = walk.next(store).await? {
        let verdict = verify(store, &compute, &repo, &place, &mut pace, &|_| {}).await?;
        count(&mut counts, &verdict);
        match verdict {
            Verdict::Gone => {}
            Verdict::Intact(_) => {
                if known.damaged.iter().any(|d| d.place == place) {
                    progress.say(&format!("intact again: {place}"));
                    forget.push(place);
                }
            }
            Verdict::Damaged(_, what) => {
                progress.say(&format!("DAMAGED {place}: {what}"));
                if let Some(healer) = healer {
                    let healed = healer.heal(&repo, &place).await;
                    progress.say(&healed.describe(&place));
                    if healed.settled() {
                        repaired += u64::from(healed == repair::Healed::Replaced);
                        forget.push(place);
                        continue;
                    }
                }
                found.push(Damage {
                    place,
                    found: crate::time::unix_now(),
                    what,
                });
            }
        }
        progress.show(&counts);
    }
    progress.done();
    let seconds = started.1.elapsed().as_secs_f64();
    println!(
        "{} objects, {} bytes verified in {seconds:.1} s ({:.1} MB/s): {} damaged{}",
        counts.objects,
        counts.bytes,
        counts.bytes as f64 / seconds.max(0.001) / 1e6,
        counts.damaged,
        match healer {
            Some(_) => format!(", {repaired} repaired"),
            None => String::new(),
        }
    );
    let outcome = Outcome {
        counts,
        still_damaged: found.len() as u64,
    };
    if let (Some(files), Some(lock)) = (files, lock) {
        // Known damage in what was scrubbed, and since deleted, is forgotten.
        for damage in &known.damaged {
            let scrubbed = labels.contains(&damage.place.repo);
            let seen = found.iter().any(|d| d.place == damage.place);
            if scrubbed && !seen && !forget.contains(&damage.place) {
                forget.push(damage.place.clone());
            }
        }
        let whole = only.is_none();
        let end = Finished {
            started: started.0,
            finished: crate::time::unix_now(),
            counts,
        };
        crate::store::blocking(move || {
            files
                .update(&lock, |state| {
                    found.into_iter().for_each(|d| state.add_damage(d));
                    forget.iter().for_each(|p| state.clear_damage(p));
                    if whole {
                        state.last = Some(end);
                    }
                })
                .op_state()
        })
        .await?;
    }
    Ok(outcome)
}

/// What `rest-server scrub` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) counts: Counts,
    /// Damaged and not repaired.
    pub(crate) still_damaged: u64,
}

/// `rest-server scrub --status`: the state file, for people; and whether
/// damaged objects are known.
pub(crate) fn status_report(files: &Files) -> Result<(String, bool), String> {
    let state = files.read()?;
    let now = crate::time::unix_now();
    let mut out = String::new();
    match &state.last {
        Some(last) => {
            let _ = writeln!(
                out,
                "last pass: finished {} ({} ago), {} objects, {} bytes verified in {} s, {} damaged",
                utc(last.finished),
                crate::time::duration(now.saturating_sub(last.finished)),
                last.counts.objects,
                last.counts.bytes,
                last.finished.saturating_sub(last.started),
                last.counts.damaged
            );
        }
        None => out.push_str("last pass: none finished yet\n"),
    }
    if let Some(pass) = &state.pass {
        let _ = writeln!(
            out,
            "pass in progress: started {}, {} of {} bytes ({:.0}%), {} objects verified{}",
            utc(pass.started),
            pass.counts.bytes,
            pass.total_bytes,
            pass.counts.bytes as f64 * 100.0 / pass.total_bytes.max(1) as f64,
            pass.counts.objects,
            pass.at
                .as_ref()
                .map_or(String::new(), |at| format!(", last {at}"))
        );
    }
    if state.damaged.is_empty() {
        out.push_str("damaged objects: none known\n");
    } else {
        let _ = writeln!(out, "damaged objects: {}", state.damaged.len());
        for d in &state.damaged {
            let _ = writeln!(out, "  {}: {} (found {})", d.place, d.what, utc(d.found));
        }
    }
    let _ = writeln!(out, "(from {})", files.path().display());
    Ok((out, !state.damaged.is_empty()))
}

/// The command's progress line, on stderr when that is a terminal.
struct Progress {
    total: u64,
    terminal: bool,
    shown: Option<Instant>,
}

impl Progress {
    fn new(total: u64) -> Progress {
        use std::io::IsTerminal as _;
        Progress {
            total,
            terminal: std::io::stderr().is_terminal(),
            shown: None,
        }
    }

    fn show(&mut self, counts: &Counts) {
        let due = self
            .shown
            .is_none_or(|at| at.elapsed() >= Duration::from_millis(500));
        if self.terminal && due {
            eprint!(
                "\r{} objects, {} of {} MB ({:.0}%)   ",
                counts.objects,
                counts.bytes / 1_000_000,
                self.total / 1_000_000,
                counts.bytes as f64 * 100.0 / self.total.max(1) as f64
            );
            self.shown = Some(Instant::now());
        }
    }

    /// A line on stdout, with the progress line out of its way.
    fn say(&mut self, line: &str) {
        self.done();
        println!("{line}");
    }

    fn done(&mut self) {
        if self.terminal && self.shown.take().is_some() {
            eprint!("\r\x1b[K");
        }
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

fn count(counts: &mut Counts, verdict: &Verdict) {
    match verdict {
        Verdict::Gone => {}
        Verdict::Intact(bytes) => {
            counts.objects += 1;
            counts.bytes += bytes;
        }
        Verdict::Damaged(bytes, _) => {
            counts.objects += 1;
            counts.bytes += bytes;
            counts.damaged += 1;
        }
    }
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

trait OpState<T> {
    fn op_state(self) -> Result<T, StoreError>;
}

impl<T> OpState<T> for std::io::Result<T> {
    fn op_state(self) -> Result<T, StoreError> {
        use crate::store::Op as _;
        self.op("scrub state")
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

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn the_pace_keeps_to_its_rate_and_to_a_tenth_while_clients_are_served() {
        let busy = Rc::new(Cell::new(false));
        let serving = busy.clone();
        let mut pace = Pace::new(1000, Rc::new(move || serving.get()));
        let start = tokio::time::Instant::now();
        // A second's worth at once, then 1000 bytes a second.
        for _ in 0..3 {
            pace.take(1000).await;
        }
        assert_eq!(start.elapsed().as_secs(), 2);
        busy.set(true);
        let start = tokio::time::Instant::now();
        pace.take(1000).await;
        assert_eq!(start.elapsed().as_secs(), 10);
        let mut unlimited = Pace::new(0, Rc::new(|| true));
        let start = tokio::time::Instant::now();
        unlimited.take(1 << 30).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
