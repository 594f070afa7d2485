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
//!
//! The parts: [`queue`] (the order and the bookkeeping per file name),
//! [`worker`] (copies and deletes, retries), [`pace`] (the bandwidth limit),
//! [`recover`] (the journal replay and the comparison at start), [`renew`]
//! (the object lock's renewal),
//! [`journal`] (the delete journal), [`status`] (the status file and
//! `rest-server mirror status`).

mod journal;
mod pace;
mod queue;
mod recover;
mod renew;
mod status;
mod worker;

use std::cell::RefCell;
use std::fmt::Write as _;
use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

use tokio::sync::Notify;

use crate::config::MirrorSettings;
use crate::quota::Quota;
use crate::repo::{Key, KeyBuf, ObjectType, RepoPath};
use crate::runtime::pool::ComputePool;
use crate::runtime::rate::TokenBucket;
use crate::store::fs::FsStore;
use crate::store::s3::S3Store;
use crate::upload::BufferBudget;
use journal::Journal;
use queue::{Class, Item, Queue, class_of};
use status::StatusFile;

pub(crate) use status::status_report;

/// The mirror's own files, in the data directory (a dot name: never served).
const STATE_DIR: &str = ".mirror";

/// The object types the mirror copies (locks never), in the order the
/// start's comparison and the lock's renewal go through them; with the
/// config, every file of a repository the bucket holds.
const COPIED: [ObjectType; 4] = [
    ObjectType::Keys,
    ObjectType::Data,
    ObjectType::Index,
    ObjectType::Snapshots,
];

/// Counts for the metrics, the log and the status file.
#[derive(Debug, Default, Clone)]
struct Totals {
    uploaded_files: u64,
    uploaded_bytes: u64,
    deleted_files: u64,
    failures: u64,
    corrupt_files: u64,
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

/// What the mirror's tasks share.
#[derive(Default)]
struct State {
    queue: Queue,
    /// Until when nothing is tried, after a failure.
    paused_until: Option<Instant>,
    failures_in_row: u32,
    last_error: Option<String>,
    totals: Totals,
    /// Bumped on every change, so the status file is only written then.
    generation: u64,
    /// Whether the log last said the mirror is current: it says so once per
    /// change, not after every file while the mirror keeps up.
    said_current: bool,
}

/// The running mirror: told of every commit and delete by the request
/// path, read by `/metrics` and the status page.
pub(crate) struct Mirror {
    local: FsStore,
    remote: S3Store,
    compute: ComputePool,
    settings: MirrorSettings,
    target: String,
    state: RefCell<State>,
    /// Wakes the workers.
    changed: Notify,
    /// Told of every change, for the status file.
    status_changed: Notify,
    bandwidth: Option<Rc<RefCell<TokenBucket>>>,
    /// No quota applies to the copy; the receiver wants one.
    unlimited: Rc<Quota>,
    /// The mirror's own upload buffers (see [`pace::buffer_grants`]).
    buffers: Rc<BufferBudget>,
    journal: Journal,
    /// The status file, and the lock that says this server runs.
    status: StatusFile,
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
        let status = StatusFile::open(dir.clone());
        let mirror = Rc::new(Mirror {
            local,
            remote,
            compute,
            settings,
            target,
            state: RefCell::new(State::default()),
            changed: Notify::new(),
            status_changed: Notify::new(),
            bandwidth: settings
                .bandwidth
                .map(|rate| Rc::new(RefCell::new(TokenBucket::new(rate)))),
            unlimited: Rc::new(Quota::new(None, 0)),
            buffers: BufferBudget::new(pace::buffer_grants(&settings)),
            journal: Journal::new(dir.clone()),
            status,
        });
        log::info!(
            "mirror: copying committed files to {} ({} uploads at once{}{}{})",
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
            },
            match settings.lock {
                Some(lock) => format!(
                    ", each object locked for {} day(s) ({})",
                    lock.days,
                    lock.mode.as_s3()
                ),
                None => String::new(),
            }
        );
        mirror.state.borrow_mut().queue.hold_until_compared = settings.lock.is_some();
        tokio::task::spawn_local(mirror.clone().prepare(repos, dir));
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
            if state.queue.cancel(Class::Delete, &item) {
                state.generation += 1;
            }
            // A file that failed is given another chance.
            state.queue.failed.remove(&item.id());
            if let Some(class) = class_of(&item.name) {
                state.queue.again_if_in_flight(class, &item);
            }
        }
        self.queue(item);
        self.status
            .publish_if_current(&self.state, &self.target)
            .await;
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
                if state.queue.cancel(class, &item) {
                    state.generation += 1;
                }
            }
            if state.queue.failed.remove(&item.id()) {
                state.generation += 1;
            }
            state.queue.again_if_in_flight(Class::Delete, &item);
        }
        // Queued before the journal write, so that a client that leaves
        // meanwhile does not take the delete with it; the journal lock keeps
        // a clearing of the journal from overtaking this write.
        let line = journal::line(&item);
        self.queue_class(item, Class::Delete);
        self.journal.append(line).await;
        self.status
            .publish_if_current(&self.state, &self.target)
            .await;
    }

    /// The files of `kind` in `repo` on the disk, with their sizes; none
    /// when its folder is not there.
    async fn local_files(
        &self,
        repo: &RepoPath,
        kind: ObjectType,
    ) -> Result<Vec<(crate::repo::ObjectId, u64)>, crate::store::StoreError> {
        match crate::store::Store::list(&self.local, repo, kind).await {
            Ok(listing) => crate::store::collect(listing).await,
            Err(e) if e.kind == crate::store::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Queues a copy of `item`'s file (none for a lock).
    fn queue(&self, item: Item) {
        if let Some(class) = class_of(&item.name) {
            self.queue_class(item, class);
        }
    }

    /// Queues `class`'s operation on `item` and wakes the workers and the
    /// status file, unless the same operation waits or runs already.
    fn queue_class(&self, item: Item, class: Class) {
        let mut state = self.state.borrow_mut();
        if !state.queue.push(class, item) {
            return;
        }
        state.generation += 1;
        drop(state);
        self.changed.notify_waiters();
        self.status_changed.notify_one();
    }

    /// What the status page shows.
    pub(crate) fn summary(&self) -> MirrorSummary {
        let state = self.state.borrow();
        MirrorSummary {
            backlog_files: state.queue.backlog_files,
            backlog_bytes: state.queue.backlog_bytes,
            waiting_since: state.queue.oldest(),
            compared: state.queue.compared,
            failed_files: state.queue.failed.len(),
            last_error: state.last_error.clone(),
        }
    }

    /// The mirror's part of `/metrics`.
    pub(crate) fn render_metrics(&self, out: &mut String) {
        let state = self.state.borrow();
        let now = crate::time::unix_now();
        let t = &state.totals;
        let oldest = state
            .queue
            .oldest()
            .map_or(0, |since| now.saturating_sub(since));
        for (name, help, kind, value) in [
            (
                "rest_server_mirror_backlog_files",
                "Files committed locally and not yet in the mirror (or deletes not yet mirrored).",
                "gauge",
                state.queue.backlog_files,
            ),
            (
                "rest_server_mirror_backlog_bytes",
                "Bytes committed locally and not yet in the mirror.",
                "gauge",
                state.queue.backlog_bytes,
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
                state.queue.failed.len() as u64,
            ),
            (
                "rest_server_mirror_compared",
                "1 once the startup comparison with the bucket has finished.",
                "gauge",
                u64::from(state.queue.compared),
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

fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn remove_if_there(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
