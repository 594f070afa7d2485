//! Files the server reloads while it runs: the htpasswd file, the `--acl`
//! file, the `--quota-file`, and the TLS certificate and key.
//!
//! Each is a [`Watched`] value: loaded at startup (a broken file stops the
//! server there), then checked every [`RELOAD_CHECK_INTERVAL`] and reloaded
//! when its files changed, or at once on SIGHUP; one task ([`watch_all`])
//! does that for all of them. A reload that fails keeps the value in use
//! and says why in the log. The watcher owns the value and swaps it; users
//! take the current one with [`Watched::get`].

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use std::future::Future;
use std::pin::Pin;

use crate::runtime::io_pool;

/// How often watched files are checked for changes.
pub(crate) const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(30);

/// Longest one file's check and reload may take before the others go on.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(20);

/// What a file parsed into, with warnings about lines that were skipped.
pub(crate) struct Loaded<T> {
    pub(crate) value: T,
    pub(crate) warnings: Vec<String>,
}

/// Where a reloadable value is read from.
pub(crate) trait Source: Clone + Send + 'static {
    /// The files whose changes trigger a reload.
    fn files(&self) -> Vec<PathBuf>;
    /// For log lines: the main file.
    fn describe(&self) -> String;
}

/// One file (htpasswd, ACL).
impl Source for PathBuf {
    fn files(&self) -> Vec<PathBuf> {
        vec![self.clone()]
    }

    fn describe(&self) -> String {
        self.display().to_string()
    }
}

/// A value read from files that may change.
pub(crate) trait Reloadable: Sized + Send + 'static {
    /// For log lines: "htpasswd", "acl", "TLS".
    const WHAT: &'static str;
    type Source: Source;
    type Error: std::error::Error + Send + 'static;
    /// Reads and parses the files. Blocking: runs on the I/O pool.
    fn load(source: &Self::Source) -> Result<Loaded<Self>, Self::Error>;
    /// For log lines: what a loaded value holds ("3 user(s)").
    fn summary(&self) -> String;
    /// For log lines: what is kept when a reload fails.
    fn kept(&self) -> String {
        self.summary()
    }
}

/// Reads a rule file and parses it with `parse` (the ACL, the quota file).
pub(crate) fn load_rules<T>(
    path: &Path,
    parse: fn(&str) -> (T, Vec<String>),
) -> io::Result<Loaded<T>> {
    let text = std::fs::read_to_string(path)?;
    let (value, warnings) = parse(&text);
    Ok(Loaded { value, warnings })
}

/// The rule files' common shape (the ACL, the quota file): one rule per
/// line, whitespace-separated fields, `#` to the end of a line a comment.
/// Each line's fields go to `rule`; a line it refuses is skipped with a
/// warning that names the line and shows `expected`.
pub(crate) fn parse_rules<R>(
    text: &str,
    expected: &str,
    mut rule: impl FnMut(&[&str]) -> Option<R>,
) -> (Vec<R>, Vec<String>) {
    let (mut rules, mut warnings) = (Vec::new(), Vec::new());
    for (index, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        match rule(&fields) {
            Some(parsed) => rules.push(parsed),
            None => warnings.push(format!(
                "line {}: expected {expected}; skipped: {line}",
                index + 1
            )),
        }
    }
    (rules, warnings)
}

/// A file's identity and version, to notice that it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamps(files: &[PathBuf]) -> io::Result<Vec<FileStamp>> {
    use std::os::unix::fs::MetadataExt;
    files
        .iter()
        .map(|path: &PathBuf| {
            let meta = std::fs::metadata(Path::new(path))?;
            Ok(FileStamp {
                modified: meta.modified().ok(),
                len: meta.len(),
                inode: meta.ino(),
            })
        })
        .collect()
}

/// Why loading failed.
#[derive(Debug)]
pub(crate) enum ReloadError<E> {
    /// A file could not be looked at.
    Stat(io::Error),
    Load(E),
    /// The I/O pool lost the task.
    Lost,
}

impl<E: fmt::Display> fmt::Display for ReloadError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadError::Stat(e) => write!(f, "{e}"),
            ReloadError::Load(e) => write!(f, "{e}"),
            ReloadError::Lost => f.write_str("the I/O pool lost the task"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for ReloadError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReloadError::Stat(e) => Some(e),
            ReloadError::Load(e) => Some(e),
            ReloadError::Lost => None,
        }
    }
}

/// The current value of a reloadable file, and what is needed to reload it.
pub(crate) struct Watched<T: Reloadable> {
    source: T::Source,
    current: RefCell<Rc<T>>,
    stamps: RefCell<Vec<FileStamp>>,
    /// Counts the values loaded, so users can drop what they derived from an
    /// older one (cached credentials, say).
    version: Cell<u64>,
}

/// Reads the files on the I/O pool: their stamps first, so that a change
/// made while reading is seen at the next check.
async fn read<T: Reloadable>(
    source: &T::Source,
) -> Result<(Loaded<T>, Vec<FileStamp>), ReloadError<T::Error>> {
    let source = source.clone();
    let task = io_pool::spawn(move || {
        let stamps = stamps(&source.files()).map_err(ReloadError::Stat)?;
        let loaded = T::load(&source).map_err(ReloadError::Load)?;
        Ok((loaded, stamps))
    });
    task.await.map_err(|_| ReloadError::Lost)?
}

impl<T: Reloadable> Watched<T> {
    /// Loads the value now (startup), logging its warnings.
    pub(crate) async fn load(source: T::Source) -> Result<Rc<Watched<T>>, ReloadError<T::Error>> {
        let (loaded, stamps) = read::<T>(&source).await?;
        let watched = Watched {
            current: RefCell::new(Rc::new(loaded.value)),
            source,
            stamps: RefCell::new(stamps),
            version: Cell::new(0),
        };
        watched.report(&loaded.warnings);
        Ok(Rc::new(watched))
    }

    fn report(&self, warnings: &[String]) {
        let shown = self.source.describe();
        for warning in warnings {
            log::warn!("{} {shown}: {warning}", T::WHAT);
        }
        log::info!("{} {shown}: loaded {}", T::WHAT, self.get().summary());
    }

    /// The value in use now.
    pub(crate) fn get(&self) -> Rc<T> {
        self.current.borrow().clone()
    }

    /// Changes with every value loaded.
    pub(crate) fn version(&self) -> u64 {
        self.version.get()
    }

    /// Loads the files again and puts the new value in use; on failure,
    /// keeps the current one and logs why.
    pub(crate) async fn reload(&self) {
        match read::<T>(&self.source).await {
            Ok((loaded, stamps)) => {
                *self.current.borrow_mut() = Rc::new(loaded.value);
                *self.stamps.borrow_mut() = stamps;
                self.version.set(self.version.get() + 1);
                self.report(&loaded.warnings);
            }
            Err(e) => log::error!(
                "{} {}: reload failed ({e}); keeping the {} loaded",
                T::WHAT,
                self.source.describe(),
                self.get().kept()
            ),
        }
    }

    /// Whether the files differ from those last loaded; a file that cannot
    /// be looked at counts as changed, so that the reload says why.
    async fn changed(&self) -> bool {
        let files = self.source.files();
        match io_pool::spawn(move || stamps(&files)).await {
            Ok(Ok(now)) => now != *self.stamps.borrow(),
            _ => true,
        }
    }
}

/// A watched value of any type, as the one watcher task sees it.
pub(crate) trait Watch {
    /// Reloads the files when they changed since the last load, or always
    /// when `forced`.
    fn check(self: Rc<Self>, forced: bool) -> Pin<Box<dyn Future<Output = ()>>>;
}

impl<T: Reloadable> Watch for Watched<T> {
    fn check(self: Rc<Self>, forced: bool) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(async move {
            if forced || self.changed().await {
                self.reload().await;
            }
        })
    }
}

/// Watches every file on one task (a task per type of file would cost
/// about 10 KiB of binary each): each is checked every
/// [`RELOAD_CHECK_INTERVAL`], and all are reloaded at once on SIGHUP, so
/// the htpasswd file, the ACL, the quota file and the TLS files can be
/// changed together. Runs until the server stops.
pub(crate) fn watch_all(files: Vec<Rc<dyn Watch>>) -> io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup())?;
    tokio::task::spawn_local(async move {
        loop {
            let forced = tokio::select! {
                _ = tokio::time::sleep(RELOAD_CHECK_INTERVAL) => false,
                Some(()) = hangup.recv() => {
                    log::info!("received SIGHUP: reloading");
                    true
                }
            };
            for file in &files {
                // A read stuck on a hung mount must not hold up the others'
                // reloads: given up on (its pool task finishes on its own).
                let check = file.clone().check(forced);
                if tokio::time::timeout(RELOAD_TIMEOUT, check).await.is_err() {
                    log::error!(
                        "a watched file took over {RELOAD_TIMEOUT:?} to read; skipped this time"
                    );
                }
            }
        }
    });
    Ok(())
}
