//! The offsite mirror (`--mirror s3:…`): every file committed to the data
//! directory is copied to a bucket in the background, in restic's s3 layout,
//! so the bucket is a repository restic opens directly.
//!
//! The queue's durable record is the data directory itself: a file is queued
//! once it is committed (fsynced) there, and at every start the mirror
//! compares the local and the remote listings and queues whatever the bucket
//! lacks, so nothing a crash or power cut interrupted is lost. Deletes cannot
//! be recovered that way (and must not be guessed from a listing: an empty
//! new disk would empty the bucket), so they are only mirrored with
//! `--mirror-deletes`, journalled (fsynced) before they are answered, and
//! never in append-only mode.
//!
//! Order keeps the bucket restorable: packs, index, keys and config go
//! first; a snapshot only once nothing of those is waiting; deletes (prune)
//! last. Locks are not mirrored. Each upload is read from disk, hashed on the
//! compute pool and sent with the same verified PUT as the S3 store uses, so
//! a local file that no longer matches its name is reported, not copied.
//! Failures retry with a backoff shared by all uploads, forever.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::Frame;
use tokio::sync::Notify;

use crate::config::MirrorSettings;
use crate::quota::Quota;
use crate::repo::range::Want;
use crate::repo::{Key, KeyBuf};
use crate::repo::{ObjectId, ObjectType, RepoPath};
use crate::runtime::pool::ComputePool;
use crate::runtime::rate::TokenBucket;
use crate::store::fs::FsStore;
use crate::store::s3::S3Store;
use crate::store::{ErrorKind, ObjectReader as _, Op as _, Store, StoreError};
use crate::upload::{BufferBudget, ReaderBody, Received, Receiver, Rules, UploadError};

/// The mirror's own files, in the data directory (a dot name: never served).
pub(crate) const STATE_DIR: &str = ".mirror";
/// Journal of deletes still to mirror.
const DELETES_FILE: &str = "deletes";
/// What `rest-server mirror status` reads.
pub(crate) const STATUS_FILE: &str = "status";
/// Locked by the running server for as long as it mirrors: `mirror status`
/// trusts the status file only while someone holds it (a pid or the file's
/// age cannot tell: pids repeat on a board that boots alike every time or
/// in a container, and a board without a clock starts in the past).
const LOCK_FILE: &str = "lock";
/// Shortest time between two writes of the status file: it follows the
/// backlog closely without a write per file copied.
const STATUS_MIN_INTERVAL: Duration = Duration::from_millis(250);
/// The status file is rewritten at least this often, so its age tells
/// whether the server is running.
const STATUS_REFRESH: Duration = Duration::from_secs(15);
/// A status file older than this means the server is not running.
pub(crate) const STATUS_STALE: Duration = Duration::from_secs(60);
/// How often a backlog is reported in the log.
const LOG_INTERVAL: Duration = Duration::from_secs(300);
/// Longest wait between two attempts while the store fails.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Longest pause while reading a local file for upload.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
struct Item {
    repo: RepoPath,
    name: KeyBuf,
    size: u64,
    /// Unix seconds since when the bucket lacks it.
    since: u64,
}

impl Item {
    /// Identifies the file across queues (`repo/config`, `repo/data/<id>`).
    fn id(&self) -> String {
        match &self.name {
            KeyBuf::Config => format!("{}/config", self.repo.label()),
            KeyBuf::Object(kind, id) => format!("{}/{}/{id}", self.repo.label(), kind.dir_name()),
        }
    }

    fn journal_line(&self) -> String {
        match &self.name {
            KeyBuf::Config => format!("{}\tconfig\n", self.repo.label()),
            KeyBuf::Object(kind, id) => {
                format!("{}\t{}\t{id}\n", self.repo.label(), kind.dir_name())
            }
        }
    }

    /// The journal holds labels as they are on disk (see
    /// [`RepoPath::label`]): nothing is decoded, so `a%41` stays `a%41`.
    fn from_journal_line(line: &str) -> Option<Item> {
        let mut parts = line.split('\t');
        let (label, kind) = (parts.next()?, parts.next()?);
        let name = match (kind, parts.next()) {
            ("config", None) => KeyBuf::Config,
            (kind, Some(id)) => {
                KeyBuf::Object(ObjectType::from_segment(kind)?, ObjectId::parse(id)?)
            }
            _ => return None,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(Item {
            repo: RepoPath::from_label(label)?,
            name,
            size: 0,
            since: crate::time::unix_now(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Packs, index, keys, config.
    First,
    /// Snapshots: only once nothing of the first class is waiting.
    Snapshot,
    Delete,
}

fn class_of(name: &KeyBuf) -> Option<Class> {
    match name {
        KeyBuf::Object(ObjectType::Locks, _) => None,
        KeyBuf::Object(ObjectType::Snapshots, _) => Some(Class::Snapshot),
        _ => Some(Class::First),
    }
}

/// Counts for the metrics, the log and the status file.
#[derive(Debug, Default, Clone)]
struct Totals {
    uploaded_files: u64,
    uploaded_bytes: u64,
    deleted_files: u64,
    failures: u64,
    corrupt_files: u64,
}

#[derive(Default)]
struct State {
    queues: [VecDeque<Item>; 3],
    /// Every file queued or in flight, by [`Item::id`] (deletes prefixed
    /// `delete `), with the time since when it waits.
    known: HashMap<String, u64>,
    in_flight: [usize; 3],
    /// Files ([`Item::id`]) with an upload or a delete in flight, and which:
    /// a second operation on the same name waits for it, so that a delete
    /// sent before a re-upload cannot land after it.
    busy: HashMap<String, Class>,
    /// Operations ([`State::known_id`]) asked for again while the same one
    /// was in flight: a file committed again during its upload, deleted
    /// again during its delete. Queued once more unless the one in flight
    /// did the job.
    again: HashSet<String>,
    /// Files that could not be copied (the local copy does not match its
    /// name, or the bucket holds other content under it), by
    /// [`Item::id`]: the mirror is not current while there are any.
    failed: HashSet<String>,
    /// Files and bytes queued or in flight.
    backlog_files: u64,
    backlog_bytes: u64,
    /// Until when nothing is tried, after a failure.
    paused_until: Option<Instant>,
    failures_in_row: u32,
    last_error: Option<String>,
    /// Whether the startup comparison of listings finished.
    compared: bool,
    totals: Totals,
    /// Bumped on every change, so the status file is only written then.
    generation: u64,
    /// Whether the log last said the mirror is current: it says so once per
    /// change, not after every file while the mirror keeps up.
    said_current: bool,
}

impl State {
    fn index(class: Class) -> usize {
        match class {
            Class::First => 0,
            Class::Snapshot => 1,
            Class::Delete => 2,
        }
    }

    /// The next item a worker may take, by the ordering rules.
    fn take(&mut self) -> Option<(Item, Class)> {
        let uploads_busy = |s: &State, upto: usize| {
            (0..upto).any(|i| !s.queues[i].is_empty() || s.in_flight[i] > 0)
        };
        // Until the startup comparison has queued what the bucket lacks, no
        // snapshot (its packs may be among those) and no delete (the new
        // index may be) goes out.
        let class = if !self.queues[0].is_empty() {
            Class::First
        } else if !self.compared {
            return None;
        } else if !self.queues[1].is_empty() && !uploads_busy(self, 1) {
            Class::Snapshot
        } else if !self.queues[2].is_empty() && !uploads_busy(self, 2) {
            Class::Delete
        } else {
            return None;
        };
        let i = State::index(class);
        // The first whose name has nothing in flight.
        let at = self.queues[i]
            .iter()
            .position(|item| !self.busy.contains_key(&item.id()))?;
        let item = self.queues[i].remove(at)?;
        self.busy.insert(item.id(), class);
        self.in_flight[i] += 1;
        Some((item, class))
    }

    /// Takes a queued operation on `item`'s file out of `class`'s queue.
    fn cancel(&mut self, class: Class, item: &Item) {
        let queue = &mut self.queues[State::index(class)];
        let Some(at) = queue
            .iter()
            .position(|i| i.repo == item.repo && i.name == item.name)
        else {
            return;
        };
        let dropped = queue.remove(at).map_or(0, |i| i.size);
        self.known.remove(&State::known_id(class, item));
        self.backlog_files -= 1;
        self.backlog_bytes -= dropped;
        self.generation += 1;
    }

    fn known_id(class: Class, item: &Item) -> String {
        match class {
            Class::Delete => format!("delete {}", item.id()),
            _ => item.id(),
        }
    }

    /// What `mirror status` may call current: compared, nothing waits, and
    /// nothing failed for good.
    fn current(&self) -> bool {
        self.compared && self.backlog_files == 0 && self.failed.is_empty()
    }

    /// Notes that `class`'s operation on `item` is asked for again while
    /// the same operation is in flight (the queue holds one of each).
    fn again_if_in_flight(&mut self, class: Class, item: &Item) {
        let in_flight = match self.busy.get(&item.id()) {
            Some(Class::Delete) => class == Class::Delete,
            Some(_) => class != Class::Delete,
            None => false,
        };
        if in_flight {
            self.again.insert(State::known_id(class, item));
        }
    }

    fn oldest(&self) -> Option<u64> {
        self.known.values().copied().min()
    }
}

/// The mirror at a glance, for the status page.
pub(crate) struct MirrorSummary {
    pub(crate) backlog_files: u64,
    pub(crate) backlog_bytes: u64,
    /// When the oldest file still waiting was committed (Unix seconds).
    pub(crate) waiting_since: Option<u64>,
    /// Whether the startup comparison with the bucket has finished.
    pub(crate) compared: bool,
    /// Files that could not be copied (corrupt, or other content offsite).
    pub(crate) failed_files: usize,
    pub(crate) last_error: Option<String>,
}

/// What came of one attempt.
enum Outcome {
    Done,
    /// The bucket has it already (another server, or an earlier run).
    AlreadyThere,
    /// Gone from the data directory since it was queued: nothing to copy.
    Vanished,
    /// A delete of a file that is in the data directory again: not sent.
    Superseded,
    /// The local file does not match its name, or cannot be read: reported,
    /// not copied.
    Corrupt(&'static str),
    /// The bucket holds other content under the name: not replaced.
    Conflict,
    /// Try again after the backoff.
    Retry(String),
}

pub(crate) struct Mirror {
    local: FsStore,
    remote: S3Store,
    compute: ComputePool,
    settings: MirrorSettings,
    /// The data directory's `.mirror` folder.
    dir: PathBuf,
    target: String,
    state: RefCell<State>,
    changed: Notify,
    /// Told of every change, for the status file.
    status_changed: Notify,
    bandwidth: Option<Rc<RefCell<TokenBucket>>>,
    /// No quota applies to the copy; the receiver wants one.
    unlimited: Rc<Quota>,
    /// The mirror's own upload buffers, one grant per upload it runs at once;
    /// none with a low bandwidth limit, so that the paced pieces go on to
    /// the store as they come instead of gathering into 192 KiB bursts.
    buffers: Rc<BufferBudget>,
    /// Held while the delete journal is written or cleared.
    journal: tokio::sync::Mutex<()>,
    /// Held while the status file is written: each write takes the state as
    /// it is once it holds this, so an older text never lands last.
    status: tokio::sync::Mutex<()>,
    /// What the status file says: the generation written, and whether it
    /// says current.
    published: Cell<(u64, bool)>,
    /// Held while the server runs (see [`LOCK_FILE`]).
    _running: Option<nix::fcntl::Flock<std::fs::File>>,
}

impl Mirror {
    /// Starts the mirror's background tasks; `repos` are the repositories
    /// the startup scan found (labels).
    pub(crate) fn start(
        data_dir: &Path,
        local: FsStore,
        remote: S3Store,
        compute: ComputePool,
        settings: MirrorSettings,
        repos: Vec<String>,
    ) -> Rc<Mirror> {
        let target = remote.describe();
        let dir = data_dir.join(STATE_DIR);
        let running = match hold_lock(&dir) {
            Ok(lock) => {
                // A status an earlier run left says nothing of this one,
                // which has not compared yet (written again within moments).
                if let Err(e) = remove_if_there(&dir.join(STATUS_FILE)) {
                    log::warn!("mirror: cannot remove the old status file: {e}");
                }
                Some(lock)
            }
            Err(e) => {
                log::error!(
                    "mirror: cannot lock {}: {e}; `mirror status` will say UNKNOWN",
                    dir.join(LOCK_FILE).display()
                );
                None
            }
        };
        let mirror = Rc::new(Mirror {
            local,
            remote,
            compute,
            settings,
            dir,
            target,
            state: RefCell::new(State::default()),
            changed: Notify::new(),
            status_changed: Notify::new(),
            bandwidth: settings
                .bandwidth
                .map(|rate| Rc::new(RefCell::new(TokenBucket::new(rate)))),
            unlimited: Rc::new(Quota::new(None, 0)),
            buffers: BufferBudget::new(match paced_piece(&settings) {
                Some(piece) if piece < BUFFERED_PIECE => 0,
                _ => settings.uploads,
            }),
            journal: tokio::sync::Mutex::new(()),
            status: tokio::sync::Mutex::new(()),
            published: Cell::new((u64::MAX, false)),
            _running: running,
        });
        log::info!(
            "mirror: copying committed files to {} ({} uploads at once{}{})",
            mirror.target,
            settings.uploads,
            match settings.bandwidth {
                Some(rate) => format!(", at most {rate} bytes/s"),
                None => String::new(),
            },
            if settings.deletes {
                ", deletes mirrored"
            } else {
                ", deletes not mirrored"
            }
        );
        tokio::task::spawn_local(mirror.clone().prepare(repos));
        for _ in 0..settings.uploads.max(1) {
            tokio::task::spawn_local(mirror.clone().worker());
        }
        tokio::task::spawn_local(mirror.clone().report());
        mirror
    }

    /// A file was committed to the data directory (or re-uploaded with
    /// the same content). Once this returns, `mirror status` no longer says
    /// current until the file is in the bucket: the client is answered
    /// after this.
    pub(crate) async fn committed(&self, repo: &RepoPath, key: Key<'_>, size: u64) {
        let name = KeyBuf::of(key);
        if class_of(&name).is_none() {
            return;
        }
        let item = Item {
            repo: repo.clone(),
            name,
            size,
            since: crate::time::unix_now(),
        };
        {
            let mut state = self.state.borrow_mut();
            // The file is back: a delete still waiting for it is void
            // (restic retries a failed upload by deleting the name and
            // sending the same bytes again). One in flight is waited for.
            state.cancel(Class::Delete, &item);
            // A file that failed is given another chance.
            state.failed.remove(&item.id());
            if let Some(class) = class_of(&item.name) {
                state.again_if_in_flight(class, &item);
            }
        }
        self.queue(item);
        self.publish_if_current().await;
    }

    /// A file was deleted from the data directory. With `--mirror-deletes`
    /// the delete is journalled before this returns, so it survives a crash.
    pub(crate) async fn deleted(&self, repo: &RepoPath, key: Key<'_>) {
        let name = KeyBuf::of(key);
        if !self.settings.deletes || class_of(&name).is_none() {
            return;
        }
        let item = Item {
            repo: repo.clone(),
            name,
            size: 0,
            since: crate::time::unix_now(),
        };
        // A copy still waiting is not needed any more, nor one that failed.
        {
            let mut state = self.state.borrow_mut();
            for class in [Class::First, Class::Snapshot] {
                state.cancel(class, &item);
            }
            if state.failed.remove(&item.id()) {
                state.generation += 1;
            }
            state.again_if_in_flight(Class::Delete, &item);
        }
        // Queued before the journal write, so that a client that leaves
        // meanwhile does not take the delete with it; the journal lock keeps
        // a clearing of the journal from overtaking this write.
        let (dir, line) = (self.dir.clone(), item.journal_line());
        self.queue_class(item, Class::Delete);
        {
            let _journal = self.journal.lock().await;
            if let Err(e) =
                crate::store::blocking(move || append_journal(&dir, &line).op("journal a delete"))
                    .await
            {
                log::error!("mirror: cannot journal a delete ({e}); it is queued in memory only");
            }
        }
        self.publish_if_current().await;
    }

    fn queue(&self, item: Item) {
        if let Some(class) = class_of(&item.name) {
            self.queue_class(item, class);
        }
    }

    fn queue_class(&self, item: Item, class: Class) {
        let mut state = self.state.borrow_mut();
        let id = State::known_id(class, &item);
        if state.known.contains_key(&id) {
            return;
        }
        state.known.insert(id, item.since);
        state.backlog_files += 1;
        state.backlog_bytes += item.size;
        state.queues[State::index(class)].push_back(item);
        state.generation += 1;
        drop(state);
        self.changed.notify_waiters();
        self.status_changed.notify_one();
    }

    /// Replays the delete journal, then compares listings until that works.
    async fn prepare(self: Rc<Self>, repos: Vec<String>) {
        let dir = self.dir.clone();
        match crate::store::blocking(move || read_journal(&dir).op("read the delete journal")).await
        {
            Ok(items) if !items.is_empty() && !self.settings.deletes => log::warn!(
                "mirror: {} delete(s) journalled earlier are not mirrored: deletes are off \
                 now (--mirror-deletes, never with --append-only); the journal is kept",
                items.len()
            ),
            Ok(items) => {
                if !items.is_empty() {
                    log::info!(
                        "mirror: {} delete(s) from the journal still to mirror",
                        items.len()
                    );
                }
                for item in items {
                    self.queue_class(item, Class::Delete);
                }
            }
            Err(e) => log::error!("mirror: cannot read the delete journal: {e}"),
        }
        let mut failures = 0;
        loop {
            match self.compare(&repos).await {
                Ok(queued) => {
                    log::info!(
                        "mirror: compared {} repositories with the bucket: {queued} file(s) to copy",
                        repos.len()
                    );
                    let mut state = self.state.borrow_mut();
                    state.compared = true;
                    state.generation += 1;
                    self.say_if_current(&mut state);
                    drop(state);
                    // Snapshots and deletes waited for this: wake the
                    // workers, or they would wait for the next commit.
                    self.changed.notify_waiters();
                    self.status_changed.notify_one();
                    return;
                }
                Err(e) => {
                    failures += 1;
                    let wait = backoff(failures);
                    log::warn!(
                        "mirror: cannot compare with the bucket ({e}); trying again in {}s",
                        wait.as_secs()
                    );
                    self.state.borrow_mut().last_error = Some(e.to_string());
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Queues what the bucket lacks, repository by repository.
    async fn compare(&self, repos: &[String]) -> Result<u64, StoreError> {
        self.remote.prepare().await?;
        let mut queued = 0;
        for label in repos {
            let Some(repo) = RepoPath::from_label(label) else {
                continue;
            };
            if let Ok(size) = self.local.size(&repo, Key::Config).await
                && let Err(e) = self.remote.size(&repo, Key::Config).await
            {
                if e.kind != ErrorKind::NotFound {
                    return Err(e);
                }
                self.queue(Item {
                    repo: repo.clone(),
                    name: KeyBuf::Config,
                    size,
                    since: crate::time::unix_now(),
                });
                queued += 1;
            }
            for kind in [
                ObjectType::Keys,
                ObjectType::Data,
                ObjectType::Index,
                ObjectType::Snapshots,
            ] {
                let local = match self.local.list(&repo, kind).await {
                    Ok(listing) => crate::store::collect(listing).await?,
                    Err(e) if e.kind == ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                if local.is_empty() {
                    continue;
                }
                let remote: HashSet<String> =
                    crate::store::collect(self.remote.list(&repo, kind).await?)
                        .await?
                        .into_iter()
                        .map(|(id, _)| id.as_str().to_string())
                        .collect();
                for (id, size) in local {
                    if !remote.contains(id.as_str()) {
                        self.queue(Item {
                            repo: repo.clone(),
                            name: KeyBuf::Object(kind, id),
                            size,
                            since: crate::time::unix_now(),
                        });
                        queued += 1;
                    }
                }
            }
        }
        Ok(queued)
    }

    async fn worker(self: Rc<Self>) {
        loop {
            let (item, class) = self.next().await;
            let outcome = match class {
                Class::Delete => self.delete(&item).await,
                _ => self.upload(&item).await,
            };
            self.finish(item, class, outcome);
        }
    }

    /// Waits for an item the rules let a worker take, and for the backoff.
    async fn next(&self) -> (Item, Class) {
        loop {
            let mut changed = pin!(self.changed.notified());
            changed.as_mut().enable();
            let paused = self.state.borrow().paused_until;
            if let Some(until) = paused
                && until > Instant::now()
            {
                tokio::time::sleep_until(until.into()).await;
                continue;
            }
            if let Some(next) = self.state.borrow_mut().take() {
                return next;
            }
            changed.await;
        }
    }

    async fn upload(&self, item: &Item) -> Outcome {
        let key = item.name.key();
        let reader = match self.local.open(&item.repo, key, Want::All).await {
            Ok(reader) => reader,
            Err(crate::store::OpenError::Store(e)) if e.kind == ErrorKind::NotFound => {
                return Outcome::Vanished;
            }
            Err(e) => return Outcome::Retry(e.to_string()),
        };
        let size = reader.size();
        let body = Throttled::new(
            ReaderBody(reader),
            paced_piece(&self.settings).zip(self.bandwidth.clone()),
        );
        let receiver = Receiver {
            rules: Rules {
                max_bytes: None,
                expected: match key {
                    Key::Object(_, id) => Some(id.digest()),
                    Key::Config => None,
                },
            },
            quota: &self.unlimited,
            compute: &self.compute,
            buffers: &self.buffers,
            // A bandwidth pause is not a stalled disk.
            body_timeout: READ_TIMEOUT
                + self.settings.bandwidth.map_or(Duration::ZERO, |rate| {
                    Duration::from_secs_f64(
                        self.settings.uploads as f64 * (1u64 << 20) as f64 / rate as f64,
                    )
                }),
        };
        match receiver
            .receive(&self.remote, &item.repo, key, Some(size), body, |_| async {
            })
            .await
        {
            Ok(Received::Stored(_)) => Outcome::Done,
            Ok(Received::Same) => Outcome::AlreadyThere,
            // The bucket holds other content under this name: never replaced.
            Err(UploadError::Taken) => Outcome::Conflict,
            Err(UploadError::Storage(e)) if e.kind == ErrorKind::AlreadyExists => {
                Outcome::AlreadyThere
            }
            Err(UploadError::HashMismatch) => Outcome::Corrupt("does not match its name"),
            // The local file could not be read: a disk problem, reported;
            // the next start's comparison queues it again, and so does a
            // new upload of it.
            Err(UploadError::BodyRead(_)) => Outcome::Corrupt("could not be read"),
            // A disk that stalls (an SD card's garbage collection) may
            // answer again: tried again after the backoff.
            Err(UploadError::BodyTimeout) => Outcome::Retry("the local disk stalled".to_string()),
            Err(e) => Outcome::Retry(e.to_string()),
        }
    }

    async fn delete(&self, item: &Item) -> Outcome {
        // A file uploaded again since it was deleted (restic's retry, or a
        // journal replayed after a restart) stays in the bucket. Checked
        // while the name is busy: a commit from now on queues an upload
        // that waits for this delete.
        match self.local.size(&item.repo, item.name.key()).await {
            Ok(_) => return Outcome::Superseded,
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => return Outcome::Retry(e.to_string()),
        }
        match self.remote.delete(&item.repo, item.name.key()).await {
            Ok(_) => Outcome::Done,
            Err(e) => Outcome::Retry(e.to_string()),
        }
    }

    /// Removes the delete journal once no delete waits: under the journal
    /// lock, and checked again there, so a delete journalled meanwhile stays.
    async fn clear_journal(self: Rc<Self>) {
        let _journal = self.journal.lock().await;
        let idle = {
            let state = self.state.borrow();
            state.queues[2].is_empty() && state.in_flight[2] == 0
        };
        if !idle {
            return;
        }
        let dir = self.dir.clone();
        if let Err(e) =
            crate::store::blocking(move || clear_journal(&dir).op("clear the delete journal")).await
        {
            log::error!("mirror: cannot clear the delete journal: {e}");
        }
    }

    fn finish(self: &Rc<Self>, item: Item, class: Class, outcome: Outcome) {
        let mut state = self.state.borrow_mut();
        let i = State::index(class);
        state.in_flight[i] -= 1;
        state.generation += 1;
        let id = State::known_id(class, &item);
        state.busy.remove(&item.id());
        // Asked for again while this one ran: queued once more unless this
        // one did the job (the bucket holds the file, or it is deleted).
        let again = state.again.remove(&id)
            && !matches!(
                outcome,
                Outcome::Done | Outcome::AlreadyThere | Outcome::Retry(_)
            );
        match outcome {
            Outcome::Retry(reason) => {
                state.totals.failures += 1;
                state.failures_in_row += 1;
                let wait = backoff(state.failures_in_row);
                if state.failures_in_row == 1 || state.failures_in_row.is_multiple_of(10) {
                    state.said_current = false;
                    log::warn!(
                        "mirror: {} failed ({reason}); {} attempt(s) in a row, next in {}s",
                        item.id(),
                        state.failures_in_row,
                        wait.as_secs()
                    );
                }
                state.last_error = Some(reason);
                state.paused_until = Some(Instant::now() + wait);
                // To the back: one file the store keeps refusing must not
                // hold up the others.
                state.queues[i].push_back(item);
            }
            outcome => {
                match outcome {
                    Outcome::Done if class == Class::Delete => state.totals.deleted_files += 1,
                    Outcome::Done => {
                        state.totals.uploaded_files += 1;
                        state.totals.uploaded_bytes += item.size;
                    }
                    Outcome::Corrupt(why) => {
                        state.totals.corrupt_files += 1;
                        state.failed.insert(item.id());
                        log::error!(
                            "mirror: {} {why} on the local disk: not copied \
                             (run restic check --read-data)",
                            item.id()
                        );
                    }
                    Outcome::Conflict => {
                        state.totals.corrupt_files += 1;
                        state.failed.insert(item.id());
                        log::error!(
                            "mirror: the bucket holds other content under {}: not replaced \
                             (is another repository at this prefix?)",
                            item.id()
                        );
                    }
                    _ => {}
                }
                if state.failures_in_row > 0 {
                    log::info!("mirror: the bucket works again");
                }
                state.failures_in_row = 0;
                state.paused_until = None;
                state.last_error = None;
                state.known.remove(&id);
                state.backlog_files -= 1;
                state.backlog_bytes -= item.size;
                if again {
                    drop(state);
                    self.queue_class(
                        Item {
                            since: crate::time::unix_now(),
                            ..item
                        },
                        class,
                    );
                    state = self.state.borrow_mut();
                }
                if state.current() {
                    self.say_if_current(&mut state);
                    // Without deletes on, a journal from before is kept.
                    if self.settings.deletes {
                        tokio::task::spawn_local(self.clone().clear_journal());
                    }
                }
            }
        }
        drop(state);
        self.changed.notify_waiters();
        self.status_changed.notify_one();
    }

    /// Logs that the mirror is current, once per change of state: after the
    /// start, or once the log has said it was behind or failing.
    fn say_if_current(&self, state: &mut State) {
        if state.current() && !state.said_current {
            state.said_current = true;
            log::info!(
                "mirror is current: {} file(s), {} bytes copied since start",
                state.totals.uploaded_files,
                state.totals.uploaded_bytes
            );
        }
    }

    /// Rewrites the status file now, if it says current: called before a
    /// client is answered, so that `mirror status` never says current
    /// while a file the client was told is stored waits for the bucket.
    async fn publish_if_current(&self) {
        // Looked at under the lock: a write of "current" under way now
        // lands before this one.
        let _held = self.status.lock().await;
        if self.published.get().1 {
            self.write_status(false).await;
        }
    }

    /// Writes the status file from the state as it is once the status lock
    /// is held, if it changed since the last write (or `always`).
    async fn publish(&self, always: bool) {
        let _held = self.status.lock().await;
        self.write_status(always).await;
    }

    /// [`Mirror::publish`] with the status lock held.
    async fn write_status(&self, always: bool) {
        let (generation, text, current) = {
            let state = self.state.borrow();
            if !always && state.generation == self.published.get().0 {
                return;
            }
            (state.generation, self.status_text(&state), state.current())
        };
        let dir = self.dir.clone();
        match crate::store::blocking(move || write_status(&dir, &text).op("write the status")).await
        {
            Ok(()) => self.published.set((generation, current)),
            Err(e) => {
                log::warn!("mirror: cannot write the status file: {e}");
                self.published.set((u64::MAX, false));
            }
        }
    }

    /// Writes the status file soon after each change (and now and then, so
    /// that its age shows the server runs), and logs a backlog now and then.
    async fn report(self: Rc<Self>) {
        let mut logged = Instant::now();
        let mut refreshed = Instant::now();
        loop {
            let refresh = refreshed.elapsed() >= STATUS_REFRESH;
            if refresh {
                refreshed = Instant::now();
            }
            self.publish(refresh).await;
            let backlog = self.state.borrow().backlog_files;
            if backlog > 0 && logged.elapsed() >= LOG_INTERVAL {
                logged = Instant::now();
                let mut state = self.state.borrow_mut();
                state.said_current = false;
                log::info!(
                    "mirror: {} file(s), {} bytes waiting{}",
                    state.backlog_files,
                    state.backlog_bytes,
                    state
                        .last_error
                        .as_ref()
                        .map(|e| format!("; last error: {e}"))
                        .unwrap_or_default()
                );
            }
            tokio::time::sleep(STATUS_MIN_INTERVAL).await;
            let _ = tokio::time::timeout(STATUS_REFRESH, self.status_changed.notified()).await;
        }
    }

    fn status_text(&self, state: &State) -> String {
        let now = crate::time::unix_now();
        let mut out = String::new();
        let _ = writeln!(out, "updated {now}");
        let _ = writeln!(out, "target {}", self.target);
        let _ = writeln!(out, "compared {}", state.compared);
        let _ = writeln!(out, "backlog_files {}", state.backlog_files);
        let _ = writeln!(out, "backlog_bytes {}", state.backlog_bytes);
        let _ = writeln!(out, "failed_files {}", state.failed.len());
        let _ = writeln!(out, "oldest {}", state.oldest().unwrap_or(0));
        let t = &state.totals;
        let _ = writeln!(out, "uploaded_files {}", t.uploaded_files);
        let _ = writeln!(out, "uploaded_bytes {}", t.uploaded_bytes);
        let _ = writeln!(out, "deleted_files {}", t.deleted_files);
        let _ = writeln!(out, "failures {}", t.failures);
        let _ = writeln!(out, "corrupt_files {}", t.corrupt_files);
        if let Some(e) = &state.last_error {
            let _ = writeln!(out, "last_error {}", e.replace('\n', " "));
        }
        out
    }

    /// The mirror's part of `/metrics`.
    /// What the status page shows.
    pub(crate) fn summary(&self) -> MirrorSummary {
        let state = self.state.borrow();
        MirrorSummary {
            backlog_files: state.backlog_files,
            backlog_bytes: state.backlog_bytes,
            waiting_since: state.oldest(),
            compared: state.compared,
            failed_files: state.failed.len(),
            last_error: state.last_error.clone(),
        }
    }

    pub(crate) fn render_metrics(&self, out: &mut String) {
        let state = self.state.borrow();
        let now = crate::time::unix_now();
        let t = &state.totals;
        let oldest = state.oldest().map_or(0, |since| now.saturating_sub(since));
        for (name, help, kind, value) in [
            (
                "rest_server_mirror_backlog_files",
                "Files committed locally and not yet in the mirror (or deletes not yet mirrored).",
                "gauge",
                state.backlog_files,
            ),
            (
                "rest_server_mirror_backlog_bytes",
                "Bytes committed locally and not yet in the mirror.",
                "gauge",
                state.backlog_bytes,
            ),
            (
                "rest_server_mirror_oldest_unmirrored_seconds",
                "Age of the oldest file waiting for the mirror; 0 when none.",
                "gauge",
                oldest,
            ),
            (
                "rest_server_mirror_failed_files",
                "Files that could not be copied: corrupt on the local disk, or other content in the bucket under the name.",
                "gauge",
                state.failed.len() as u64,
            ),
            (
                "rest_server_mirror_compared",
                "1 once the startup comparison with the bucket has finished.",
                "gauge",
                u64::from(state.compared),
            ),
            (
                "rest_server_mirror_uploaded_files_total",
                "Files copied to the mirror since start.",
                "counter",
                t.uploaded_files,
            ),
            (
                "rest_server_mirror_uploaded_bytes_total",
                "Bytes copied to the mirror since start.",
                "counter",
                t.uploaded_bytes,
            ),
            (
                "rest_server_mirror_deleted_files_total",
                "Deletes mirrored since start.",
                "counter",
                t.deleted_files,
            ),
            (
                "rest_server_mirror_failures_total",
                "Failed mirror attempts (each is retried).",
                "counter",
                t.failures,
            ),
            (
                "rest_server_mirror_corrupt_files_total",
                "Local files that did not match their name when copied (not copied).",
                "counter",
                t.corrupt_files,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        }
    }
}

fn backoff(failures: u32) -> Duration {
    let secs = 1u64 << failures.saturating_sub(1).min(6);
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Appends a line to the delete journal and makes it durable.
fn append_journal(dir: &Path, line: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    ensure_dir(dir)?;
    let path = dir.join(DELETES_FILE);
    let new = !path.exists();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    file.write_all(line.as_bytes())?;
    file.sync_data()?;
    if new {
        // A new file's name is durable once its folder is.
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn read_journal(dir: &Path) -> std::io::Result<Vec<Item>> {
    match std::fs::read_to_string(dir.join(DELETES_FILE)) {
        Ok(text) => Ok(text.lines().filter_map(Item::from_journal_line).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn clear_journal(dir: &Path) -> std::io::Result<()> {
    remove_if_there(&dir.join(DELETES_FILE))
}

fn remove_if_there(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Replaces the status file (temp file and rename: a reader never sees
/// half). When that fails, an old status must not stay behind saying
/// current: it is removed (which needs no free space).
fn write_status(dir: &Path, text: &str) -> std::io::Result<()> {
    let temp = dir.join(".status.tmp");
    let written = ensure_dir(dir)
        .and_then(|()| std::fs::write(&temp, text))
        .and_then(|()| std::fs::rename(&temp, dir.join(STATUS_FILE)));
    if written.is_err() {
        let _ = remove_if_there(&temp);
        let _ = remove_if_there(&dir.join(STATUS_FILE));
    }
    written
}

/// A body that keeps to the bandwidth budget, in pieces small enough that
/// the store never sees a long pause: stores close a request whose body
/// stops for a while (AWS after about 20 s), and a 256 KiB read sent at
/// 10 KB/s would be followed by 25 s of silence.
struct Throttled<B> {
    inner: B,
    bucket: Option<Rc<RefCell<TokenBucket>>>,
    /// Largest piece sent at once (see [`paced_piece`]).
    piece: usize,
    /// What is left of the frame being sent.
    rest: Bytes,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// Smallest piece [`Throttled`] cuts: below it, the headers of each TLS
/// record and TCP segment would cost more than the pause saves.
const MIN_PACED_PIECE: usize = 1024;
/// Pieces at least this large go through the mirror's upload buffers: at
/// such rates the buffers' overlap of reading, hashing and sending pays,
/// and a buffer fills in about a second.
const BUFFERED_PIECE: usize = 192 * 1024;

/// The largest piece a paced upload sends at once: a quarter of a second
/// of its share of the rate, since all uploads take from one bucket (each
/// upload then pauses about a quarter of a second between pieces).
fn paced_piece(settings: &MirrorSettings) -> Option<usize> {
    let rate = settings.bandwidth?;
    let share = rate / (4 * settings.uploads.max(1) as u64);
    Some(
        usize::try_from(share)
            .unwrap_or(usize::MAX)
            .max(MIN_PACED_PIECE),
    )
}

impl<B> Throttled<B> {
    fn new(inner: B, pacing: Option<(usize, Rc<RefCell<TokenBucket>>)>) -> Throttled<B> {
        let (piece, bucket) = match pacing {
            Some((piece, bucket)) => (piece, Some(bucket)),
            None => (usize::MAX, None),
        };
        Throttled {
            inner,
            bucket,
            piece,
            rest: Bytes::new(),
            wait: None,
        }
    }
}

impl<B: http_body::Body<Data = Bytes> + Unpin> http_body::Body for Throttled<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        if let Some(wait) = self.wait.as_mut() {
            ready!(wait.as_mut().poll(cx));
            self.wait = None;
        }
        let Some(bucket) = self.bucket.clone() else {
            return Pin::new(&mut self.inner).poll_frame(cx);
        };
        if self.rest.is_empty() {
            match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.rest = data,
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                other => return Poll::Ready(other),
            }
        }
        let n = self.rest.len().min(self.piece);
        let piece = self.rest.split_to(n);
        let delay = bucket.borrow_mut().take(piece.len());
        if !delay.is_zero() {
            self.wait = Some(Box::pin(tokio::time::sleep(delay)));
        }
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let mut hint = self.inner.size_hint();
        let rest = self.rest.len() as u64;
        hint.set_lower(hint.lower() + rest);
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + rest);
        }
        hint
    }
}

/// Creates and locks the lock file; the lock lasts as long as the value.
fn hold_lock(dir: &Path) -> std::io::Result<nix::fcntl::Flock<std::fs::File>> {
    use nix::fcntl::{Flock, FlockArg};
    ensure_dir(dir)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| match errno {
        nix::errno::Errno::EWOULDBLOCK => {
            std::io::Error::other("another server mirrors this data directory")
        }
        errno => std::io::Error::from(errno),
    })
}

/// Whether a running server holds the lock file.
fn lock_held(dir: &Path) -> bool {
    use nix::fcntl::{Flock, FlockArg};
    let Ok(file) = std::fs::File::open(dir.join(LOCK_FILE)) else {
        return false;
    };
    matches!(
        Flock::lock(file, FlockArg::LockSharedNonblock),
        Err((_, nix::errno::Errno::EWOULDBLOCK))
    )
}

/// What `rest-server mirror status` says, from the status file the server
/// writes; Err when there is none.
pub fn status_report(data_dir: &Path) -> Result<(String, bool), String> {
    let path = data_dir.join(STATE_DIR).join(STATUS_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "no mirror status at {} ({e}): is the server running with --mirror and this --path?",
            path.display()
        )
    })?;
    let get = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or("")
    };
    let num = |name: &str| get(name).parse::<u64>().unwrap_or(0);
    let now = crate::time::unix_now();
    let age = now.saturating_sub(num("updated"));
    let files = num("backlog_files");
    let compared = get("compared") == "true";
    let stale = age > STATUS_STALE.as_secs();
    // The server that wrote it has stopped: it may have committed a file
    // after its last write (a kill -9 between the commit and the answer).
    let gone = !lock_held(&data_dir.join(STATE_DIR));
    let failed = num("failed_files");
    let current = !stale && !gone && compared && files == 0 && failed == 0;
    let mut out = String::new();
    let _ = writeln!(out, "mirror to {}", get("target"));
    let verdict = if stale {
        format!("UNKNOWN: the status is {age} s old; the server is not running or not mirroring")
    } else if gone {
        "UNKNOWN: no running server mirrors this data directory".to_string()
    } else if failed > 0 && files == 0 && compared {
        format!(
            "INCOMPLETE: {failed} file(s) could not be copied (see the log: a local file \
             that does not match its name, or other content in the bucket under the name)"
        )
    } else if !compared {
        "BEHIND: still comparing the data directory with the bucket".to_string()
    } else if files == 0 {
        "CURRENT: every committed file is in the bucket".to_string()
    } else {
        let oldest = num("oldest");
        format!(
            "BEHIND: {files} file(s), {} bytes waiting; the oldest for {} s",
            num("backlog_bytes"),
            now.saturating_sub(oldest)
        )
    };
    let _ = writeln!(out, "{verdict}");
    let _ = writeln!(
        out,
        "since start: {} file(s), {} bytes copied, {} delete(s), {} failed attempt(s), {} corrupt local file(s)",
        num("uploaded_files"),
        num("uploaded_bytes"),
        num("deleted_files"),
        num("failures"),
        num("corrupt_files")
    );
    let error = get("last_error");
    if !error.is_empty() {
        let _ = writeln!(out, "last error: {error}");
    }
    let _ = writeln!(out, "(status written {age} s ago)");
    Ok((out, current))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::route::{Route, Target};

    fn item(path: &str) -> Item {
        let route = Route::parse(path).unwrap();
        let name = match route.target {
            Target::Config => KeyBuf::Config,
            Target::Object(kind, id) => KeyBuf::Object(kind, id),
            _ => panic!("{path}"),
        };
        Item {
            repo: route.repo,
            name,
            size: 1,
            since: 0,
        }
    }

    #[test]
    fn snapshots_wait_for_packs_and_deletes_for_everything() {
        let id = |c: char| c.to_string().repeat(64);
        let mut state = State::default();
        state.queues[1].push_back(item(&format!("/r/snapshots/{}", id('a'))));
        // Nothing but packs before the startup comparison is done.
        assert!(state.take().is_none());
        state.compared = true;
        state.queues[2].push_back(item(&format!("/r/data/{}", id('b'))));
        state.queues[0].push_back(item(&format!("/r/data/{}", id('c'))));
        let (first, class) = state.take().unwrap();
        assert_eq!(
            (class, first.id()),
            (Class::First, format!("r/data/{}", id('c')))
        );
        // The pack is in flight: neither the snapshot nor the delete may go.
        assert!(state.take().is_none());
        state.in_flight[0] = 0;
        assert_eq!(state.take().unwrap().1, Class::Snapshot);
        assert!(state.take().is_none());
        state.in_flight[1] = 0;
        assert_eq!(state.take().unwrap().1, Class::Delete);
    }

    #[test]
    fn the_journal_round_trips_and_locks_are_not_mirrored() {
        for path in [
            "/config".to_string(),
            "/a/b/config".to_string(),
            format!("/a/index/{}", "d".repeat(64)),
        ] {
            let it = item(&path);
            let back = Item::from_journal_line(it.journal_line().trim_end()).unwrap();
            assert_eq!(back.id(), it.id());
        }
        assert!(Item::from_journal_line("../x\tconfig").is_none());
        assert_eq!(
            class_of(&item(&format!("/r/locks/{}", "e".repeat(64))).name),
            None
        );
        assert_eq!(RepoPath::from_label("a/b").unwrap().label(), "a/b");
        assert_eq!(RepoPath::from_label("").unwrap().label(), "");
        // Folder names as they are on disk: nothing is decoded.
        assert_eq!(RepoPath::from_label("50%").unwrap().label(), "50%");
        assert_eq!(RepoPath::from_label("a%41").unwrap().label(), "a%41");
        for bad in ["a/b/c", "data", "a/keys", ".hidden", "a//b", "../x"] {
            assert_eq!(RepoPath::from_label(bad), None, "{bad}");
        }
    }

    #[test]
    fn backoff_grows_to_its_cap_and_the_bucket_paces() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(30), MAX_BACKOFF);
        let mut bucket = TokenBucket::new(1000);
        assert_eq!(bucket.take(500), Duration::ZERO);
        let wait = bucket.take(1500);
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
    }
}
