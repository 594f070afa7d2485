//! The on-disk repository layout (restic's local backend layout) and the
//! blocking file operations on it.
//!
//! Every function here blocks; callers run them on the blocking pool through
//! [`crate::blocking::run`]. Paths are built only from typed routes, so they are
//! always inside the data directory.

use std::ffi::OsStr;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use std::collections::BTreeMap;

use crate::metrics::RepoStats;
use crate::route::{MAX_REPO_DEPTH, ObjectId, ObjectType, RepoPath};

/// Name prefix of our upload temp files. The leading dot keeps them out of
/// every listing and out of reach of any route (segments may not start with a dot).
pub const TEMP_PREFIX: &str = ".rest-server-tmp-";

/// Marker in the temp file names restic's Go rest-server leaves after a crash
/// (`{id}.rest-server-temp{random}`); removed at startup too, since users swap
/// that server for this one on the same data.
const GO_TEMP_MARKER: &str = ".rest-server-temp";

/// What went wrong in the storage layer, as far as a client needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageErrorKind {
    NotFound,
    AlreadyExists,
    /// ENOSPC or EDQUOT: the disk or the user's disk quota is full.
    NoSpace,
    Unexpected,
}

/// A failed storage operation: the kind for the client, the cause for the log.
#[derive(Debug)]
pub struct StorageError {
    pub kind: StorageErrorKind,
    pub op: &'static str,
    pub source: io::Error,
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.op, self.source)
    }
}

impl std::error::Error for StorageError {}

impl StorageError {
    /// Something that is not there in the form asked for (a folder where a
    /// file was expected, say): answered like a missing file.
    pub fn not_found(op: &'static str, kind: io::ErrorKind) -> StorageError {
        StorageError {
            kind: StorageErrorKind::NotFound,
            op,
            source: io::Error::from(kind),
        }
    }

    /// A broken invariant or a lost pool task: the server's fault.
    pub fn internal(op: &'static str, why: impl Into<String>) -> StorageError {
        StorageError {
            kind: StorageErrorKind::Unexpected,
            op,
            source: io::Error::other(why.into()),
        }
    }

    /// A blocking task that did not return (it panicked or was cancelled).
    pub fn lost_task(err: tokio::task::JoinError) -> StorageError {
        StorageError::internal("blocking task", err.to_string())
    }
}

/// The one place where OS errors become storage error kinds.
pub fn classify(err: &io::Error) -> StorageErrorKind {
    use nix::errno::Errno;
    match err.kind() {
        io::ErrorKind::NotFound => return StorageErrorKind::NotFound,
        io::ErrorKind::AlreadyExists => return StorageErrorKind::AlreadyExists,
        _ => {}
    }
    match err.raw_os_error().map(Errno::from_raw) {
        Some(Errno::ENOSPC) | Some(Errno::EDQUOT) => StorageErrorKind::NoSpace,
        Some(Errno::ENOTDIR) => StorageErrorKind::NotFound,
        _ => StorageErrorKind::Unexpected,
    }
}

/// Attaches the operation name and the classified kind to an `io::Error`.
pub trait Context<T> {
    fn op(self, op: &'static str) -> Result<T, StorageError>;
}

impl<T> Context<T> for io::Result<T> {
    fn op(self, op: &'static str) -> Result<T, StorageError> {
        self.map_err(|source| StorageError {
            kind: classify(&source),
            op,
            source,
        })
    }
}

/// Permission bits for what the server creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Modes {
    pub dir: u32,
    pub file: u32,
}

impl Modes {
    /// `--group-accessible-repos` lets the owning group in (0770/0660).
    pub fn new(group_accessible: bool) -> Modes {
        if group_accessible {
            Modes {
                dir: 0o770,
                file: 0o660,
            }
        } else {
            Modes {
                dir: 0o700,
                file: 0o600,
            }
        }
    }
}

/// The data directory. Cheap to clone into blocking closures.
#[derive(Debug, Clone)]
pub struct Storage {
    root: Arc<PathBuf>,
    pub modes: Modes,
}

impl Storage {
    pub fn new(root: PathBuf, modes: Modes) -> Storage {
        Storage {
            root: Arc::new(root),
            modes,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn repo_dir(&self, repo: &RepoPath) -> PathBuf {
        let mut path = PathBuf::from(self.root.as_path());
        path.extend(repo.segments());
        path
    }

    pub fn config_path(&self, repo: &RepoPath) -> PathBuf {
        self.repo_dir(repo).join("config")
    }

    pub fn type_dir(&self, repo: &RepoPath, kind: ObjectType) -> PathBuf {
        self.repo_dir(repo).join(kind.dir_name())
    }

    pub fn object_path(&self, repo: &RepoPath, kind: ObjectType, id: &ObjectId) -> PathBuf {
        let mut path = self.type_dir(repo, kind);
        if kind.is_fanned_out() {
            path.push(id.prefix());
        }
        path.push(id.as_str());
        path
    }
}

/// Creates a repository's folders, including `data/00`..`data/ff`. Idempotent.
pub fn create_repo(dir: &Path, modes: Modes) -> Result<(), StorageError> {
    let mut builder = DirBuilder::new();
    builder.mode(modes.dir).recursive(true);
    builder.create(dir).op("create repository")?;
    for kind in ObjectType::ALL {
        ensure_dir(&dir.join(kind.dir_name()), modes)?;
    }
    let data = dir.join(ObjectType::Data.dir_name());
    let mut name = [0u8; 2];
    for byte in 0..=255u8 {
        let hex = hex_pair(byte, &mut name);
        ensure_dir(&data.join(hex), modes)?;
    }
    Ok(())
}

/// Makes `path` a folder with the server's mode (its parent must exist); an
/// existing folder is fine.
pub fn ensure_dir(path: &Path, modes: Modes) -> Result<(), StorageError> {
    let mut builder = DirBuilder::new();
    builder.mode(modes.dir);
    match builder.create(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other.op("create folder"),
    }
}

/// Starts an upload in one trip to the I/O pool: refuses a name that is taken
/// (AlreadyExists) and creates the temp file beside it. With `create_parent`
/// (data packs), a missing fan-out folder is made, as long as `data/` exists.
pub fn begin_upload(
    final_path: &Path,
    modes: Modes,
    create_parent: bool,
) -> Result<(File, PathBuf), StorageError> {
    match file_len(final_path) {
        Ok(_) => return Err(io::Error::from(io::ErrorKind::AlreadyExists)).op("object exists"),
        Err(e) if e.kind == StorageErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    match create_temp(final_path, modes) {
        Err(e) if e.kind == StorageErrorKind::NotFound && create_parent => {
            if let Some(parent) = final_path.parent() {
                ensure_dir(parent, modes)?;
            }
            create_temp(final_path, modes)
        }
        other => other,
    }
}

fn hex_pair(byte: u8, out: &mut [u8; 2]) -> &str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out[0] = DIGITS[usize::from(byte >> 4)];
    out[1] = DIGITS[usize::from(byte & 0xf)];
    std::str::from_utf8(out).unwrap_or("00")
}

/// Size of a regular file; a folder or anything else counts as missing.
pub fn file_len(path: &Path) -> Result<u64, StorageError> {
    let meta = fs::metadata(path).op("stat")?;
    if !meta.is_file() {
        return Err(StorageError::not_found("stat", io::ErrorKind::NotFound));
    }
    Ok(meta.len())
}

/// Opens a regular file for reading and returns it with its size.
pub fn open_read(path: &Path) -> Result<(File, u64), StorageError> {
    let file = File::open(path).op("open")?;
    let meta = file.metadata().op("stat")?;
    if !meta.is_file() {
        return Err(StorageError::not_found("open", io::ErrorKind::NotFound));
    }
    Ok((file, meta.len()))
}

/// Removes a file and returns the bytes it freed; a missing file frees nothing
/// and is no error, because restic retries deletes.
pub fn remove(path: &Path) -> Result<u64, StorageError> {
    let len = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            return Err(StorageError::not_found(
                "remove",
                io::ErrorKind::IsADirectory,
            ));
        }
        Ok(meta) => meta.len(),
        Err(e) if classify(&e) == StorageErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).op("stat"),
    };
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if classify(&e) == StorageErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).op("remove"),
    }
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(len)
}

/// The folders whose files make up a listing of `kind`: the type folder itself,
/// or for data its existing two-hex-digit subfolders. Missing type folder: NotFound.
pub fn listing_dirs(type_dir: &Path, kind: ObjectType) -> Result<Vec<PathBuf>, StorageError> {
    let meta = fs::metadata(type_dir).op("stat")?;
    if !meta.is_dir() {
        return Err(StorageError::not_found(
            "list",
            io::ErrorKind::NotADirectory,
        ));
    }
    if !kind.is_fanned_out() {
        return Ok(vec![type_dir.to_path_buf()]);
    }
    let mut dirs = Vec::with_capacity(256);
    for entry in fs::read_dir(type_dir).op("list")? {
        let entry = entry.op("list")?;
        let name = entry.file_name();
        let is_fan_dir = name.len() == 2
            && name
                .as_encoded_bytes()
                .iter()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        // Unexpected files directly in data/ are ignored.
        if is_fan_dir && entry.file_type().op("list")?.is_dir() {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// The objects in one folder: regular files with valid object names and their
/// sizes. Temp files and anything else are skipped.
pub fn list_objects(dir: &Path) -> Result<Vec<(ObjectId, u64)>, StorageError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).op("list")? {
        let entry = entry.op("list")?;
        let Some(id) = entry.file_name().to_str().and_then(ObjectId::parse) else {
            continue;
        };
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            // Deleted between readdir and stat: simply not there any more.
            Err(e) if classify(&e) == StorageErrorKind::NotFound => continue,
            Err(e) => return Err(e).op("stat"),
        };
        if meta.is_file() {
            out.push((id, meta.len()));
        }
    }
    Ok(out)
}

/// Flushes a folder's entries (a rename or unlink in it) to disk.
pub fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    let handle = File::open(dir).op("open folder for fsync")?;
    match handle.sync_all() {
        Ok(()) => Ok(()),
        // Some filesystems (FAT on USB sticks, some FUSE) cannot fsync folders.
        Err(e) if is_unsupported(&e) => Ok(()),
        Err(e) => Err(e).op("fsync folder"),
    }
}

pub fn is_unsupported(err: &io::Error) -> bool {
    use nix::errno::Errno;
    matches!(
        err.raw_os_error().map(Errno::from_raw),
        Some(Errno::EINVAL) | Some(Errno::ENOTSUP)
    )
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Creates a fresh temp file beside `final_path`, never replacing anything.
pub fn create_temp(final_path: &Path, modes: Modes) -> Result<(File, PathBuf), StorageError> {
    let dir = final_path.parent().unwrap_or(Path::new("."));
    let base = final_path
        .file_name()
        .and_then(OsStr::to_str)
        .unwrap_or("object");
    loop {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{TEMP_PREFIX}{base}-{}-{n}", std::process::id()));
        let opened = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(modes.file)
            .open(&path);
        match opened {
            Ok(file) => return Ok((file, path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).op("create temp file"),
        }
    }
}

/// Makes a finished temp file visible under its final name without ever
/// replacing an existing object, then makes the change durable.
///
/// `link` fails with EEXIST when the name is taken, which makes it an atomic
/// "rename unless it exists" that also works on musl (whose libc crate lacks
/// renameat2). Filesystems without hard links (FAT, exFAT on USB disks) fall
/// back to check-then-rename: two uploads of one name carry identical,
/// verified content, so the remaining race cannot change what is stored.
pub fn commit_temp(temp: &Path, final_path: &Path) -> Result<(), StorageError> {
    match fs::hard_link(temp, final_path) {
        Ok(()) => fs::remove_file(temp).op("remove temp link")?,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(e).op("link"),
        Err(_) => {
            if fs::symlink_metadata(final_path).is_ok() {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists)).op("rename");
            }
            fs::rename(temp, final_path).op("rename")?;
        }
    }
    sync_dir(final_path.parent().unwrap_or(Path::new(".")))
}

/// What the startup scan of the data directory found.
#[derive(Debug, Default, Clone)]
pub struct ScanReport {
    /// Bytes in all regular files left after removing temp files.
    pub bytes: u64,
    /// Temp files a crash left behind, now removed.
    pub temps_removed: u64,
    /// Bytes and newest snapshot per repository (label: `alice/laptop`).
    pub repos: BTreeMap<String, RepoStats>,
}

/// The repository a file below the data directory belongs to, and whether it
/// is a snapshot: the path up to the first type folder (or a final `config`).
fn repo_of(relative: &Path) -> Option<(String, bool)> {
    let parts: Vec<&str> = relative.iter().filter_map(OsStr::to_str).collect();
    for (i, part) in parts.iter().enumerate().take(MAX_REPO_DEPTH + 1) {
        let last = i + 1 == parts.len();
        let kind = ObjectType::from_segment(part);
        if (last && *part == "config") || (!last && kind.is_some()) {
            return Some((parts[..i].join("/"), kind == Some(ObjectType::Snapshots)));
        }
    }
    None
}

/// Walks the data directory once at startup: removes upload temp files a
/// crash left behind and counts the bytes stored (for `--max-size`).
pub fn scan(root: &Path) -> Result<ScanReport, StorageError> {
    let mut report = ScanReport::default();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).op("scan")? {
            let entry = entry.op("scan")?;
            let file_type = entry.file_type().op("scan")?;
            if file_type.is_dir() {
                pending.push(entry.path());
                continue;
            }
            if !file_type.is_file() {
                continue;
            }
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(TEMP_PREFIX) || name.contains(GO_TEMP_MARKER) {
                fs::remove_file(entry.path()).op("remove stale temp file")?;
                report.temps_removed += 1;
                continue;
            }
            let meta = entry.metadata().op("scan")?;
            report.bytes += meta.len();
            let path = entry.path();
            if let Some((repo, is_snapshot)) = path.strip_prefix(root).ok().and_then(repo_of) {
                let stats = report.repos.entry(repo).or_default();
                stats.bytes += meta.len();
                if is_snapshot {
                    let modified = meta
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_secs());
                    stats.newest_snapshot = stats.newest_snapshot.max(modified);
                }
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_pairs_cover_all_bytes() {
        let mut buf = [0u8; 2];
        assert_eq!(hex_pair(0, &mut buf), "00");
        assert_eq!(hex_pair(0xa7, &mut buf), "a7");
        assert_eq!(hex_pair(0xff, &mut buf), "ff");
    }

    #[test]
    fn files_are_attributed_to_their_repository() {
        let id = "ab".repeat(32);
        let cases = [
            (format!("data/ab/{id}"), Some(("".to_string(), false))),
            ("config".to_string(), Some(("".to_string(), false))),
            (
                format!("alice/snapshots/{id}"),
                Some(("alice".to_string(), true)),
            ),
            (
                "alice/laptop/config".to_string(),
                Some(("alice/laptop".to_string(), false)),
            ),
            (".htpasswd".to_string(), None),
            ("a/b/c/config".to_string(), None),
        ];
        for (path, expected) in cases {
            assert_eq!(repo_of(Path::new(&path)), expected, "{path}");
        }
    }

    #[test]
    fn classifies_space_errors() {
        let err = io::Error::from_raw_os_error(nix::libc::ENOSPC);
        assert_eq!(classify(&err), StorageErrorKind::NoSpace);
        let err = io::Error::from_raw_os_error(nix::libc::EDQUOT);
        assert_eq!(classify(&err), StorageErrorKind::NoSpace);
        let err = io::Error::from_raw_os_error(nix::libc::EIO);
        assert_eq!(classify(&err), StorageErrorKind::Unexpected);
    }
}
