//! The status file (`.mirror/status`) that `rest-server mirror status`
//! reads, and the lock (`.mirror/lock`) that says a running server writes
//! it: the server rewrites the file soon after every change and now and
//! then; the command trusts it only while the lock is held and the file is
//! fresh. The file says current only when it may: it is rewritten before a
//! client is answered for a file the bucket does not hold yet.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{Mirror, STATE_DIR, State, ensure_dir, remove_if_there};
use crate::store::Op as _;

/// What `rest-server mirror status` reads.
const STATUS_FILE: &str = "status";
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
const STATUS_STALE: Duration = Duration::from_secs(60);
/// How often a backlog is reported in the log.
const LOG_INTERVAL: Duration = Duration::from_secs(300);

/// The running server's side of the status file.
pub(super) struct StatusFile {
    /// The data directory's `.mirror` folder.
    dir: PathBuf,
    /// Held while the status file is written: each write takes the state as
    /// it is once it holds this, so an older text never lands last.
    lock: tokio::sync::Mutex<()>,
    /// What the status file says: the generation written, and whether it
    /// says current.
    published: Cell<(u64, bool)>,
    /// Held while the server runs (see [`LOCK_FILE`]).
    _running: Option<nix::fcntl::Flock<std::fs::File>>,
}

impl StatusFile {
    /// Takes the lock in `dir` (the `.mirror` folder) for as long as the
    /// value lives, and removes a status an earlier run left.
    pub(super) fn open(dir: PathBuf) -> StatusFile {
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
        StatusFile {
            dir,
            lock: tokio::sync::Mutex::new(()),
            published: Cell::new((u64::MAX, false)),
            _running: running,
        }
    }

    /// Rewrites the status file now, if it says current: called before a
    /// client is answered, so that `mirror status` never says current
    /// while a file the client was told is stored waits for the bucket.
    pub(super) async fn publish_if_current(&self, state: &RefCell<State>, target: &str) {
        // Looked at under the lock: a write of "current" under way now
        // lands before this one.
        let _held = self.lock.lock().await;
        if self.published.get().1 {
            self.write(state, target, false).await;
        }
    }

    /// Writes the status file from the state as it is once the status lock
    /// is held, if it changed since the last write (or `always`).
    async fn publish(&self, state: &RefCell<State>, target: &str, always: bool) {
        let _held = self.lock.lock().await;
        self.write(state, target, always).await;
    }

    /// [`StatusFile::publish`] with the status lock held.
    async fn write(&self, state: &RefCell<State>, target: &str, always: bool) {
        let (generation, text, current) = {
            let state = state.borrow();
            if !always && state.generation == self.published.get().0 {
                return;
            }
            (
                state.generation,
                status_text(&state, target),
                state.queue.current(),
            )
        };
        let dir = self.dir.clone();
        match crate::store::blocking(move || write_file(&dir, &text).op("write the status")).await {
            Ok(()) => self.published.set((generation, current)),
            Err(e) => {
                log::warn!("mirror: cannot write the status file: {e}");
                self.published.set((u64::MAX, false));
            }
        }
    }
}

impl Mirror {
    /// Writes the status file soon after each change (and now and then, so
    /// that its age shows the server runs), and logs a backlog now and then.
    pub(super) async fn report(self: Rc<Self>) {
        let mut logged = Instant::now();
        let mut refreshed = Instant::now();
        loop {
            let refresh = refreshed.elapsed() >= STATUS_REFRESH;
            if refresh {
                refreshed = Instant::now();
            }
            self.status
                .publish(&self.state, &self.target, refresh)
                .await;
            let backlog = self.state.borrow().queue.backlog_files;
            if backlog > 0 && logged.elapsed() >= LOG_INTERVAL {
                logged = Instant::now();
                let mut state = self.state.borrow_mut();
                state.said_current = false;
                log::info!(
                    "mirror: {} file(s), {} bytes waiting{}",
                    state.queue.backlog_files,
                    state.queue.backlog_bytes,
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
}

/// The status file's text: a `name value` line each, as [`status_report`]
/// reads them.
fn status_text(state: &State, target: &str) -> String {
    let now = crate::time::unix_now();
    let mut out = String::new();
    let _ = writeln!(out, "updated {now}");
    let _ = writeln!(out, "target {target}");
    let _ = writeln!(out, "compared {}", state.queue.compared);
    let _ = writeln!(out, "backlog_files {}", state.queue.backlog_files);
    let _ = writeln!(out, "backlog_bytes {}", state.queue.backlog_bytes);
    let _ = writeln!(out, "failed_files {}", state.queue.failed.len());
    let _ = writeln!(out, "oldest {}", state.queue.oldest().unwrap_or(0));
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

/// Replaces the status file (temp file and rename: a reader never sees
/// half). When that fails, an old status must not stay behind saying
/// current: it is removed (which needs no free space).
fn write_file(dir: &Path, text: &str) -> std::io::Result<()> {
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
pub(crate) fn status_report(data_dir: &Path) -> Result<(String, bool), String> {
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
