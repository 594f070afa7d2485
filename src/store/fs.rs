//! The filesystem store: restic's local backend layout under the data
//! directory, so that a repository served here opens with `restic -r /path`
//! and the other way round.
//!
//! ```text
//! <root>/<repo segments...>/config
//! <root>/<repo segments...>/{keys,locks,snapshots,index}/<id>
//! <root>/<repo segments...>/data/<first two hex chars of id>/<id>
//! ```
//!
//! Every path is built here, from typed routes, so it is always inside the
//! data directory. Nothing blocks the event loop: uploads are written by the
//! upload writer threads ([`WriterPool`]), everything else runs on the I/O
//! pool ([`crate::runtime::io_pool`]). Durability: an
//! upload goes to a temp file created with `create_new` beside its final name,
//! is fsynced, renamed into place (never replacing anything), and the folder
//! is fsynced; a delete fsyncs the folder too.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{
    Batch, ErrorKind, Incoming, Key, Op as _, OpenError, RepoStats, Repos, Scan, Space, StoreError,
    classify,
};
use crate::config::Modes;
use crate::repo::range::{ByteRange, Want};
use crate::repo::{MAX_REPO_DEPTH, ObjectId, ObjectType, RepoPath};
use crate::runtime::io_pool;
use crate::runtime::pool::{Job, Pool, PoolGone};

/// Name prefix of our upload temp files. The leading dot keeps them out of
/// every listing and out of reach of any route (segments may not start with a dot).
const TEMP_PREFIX: &str = ".rest-server-tmp-";

/// Marker in the temp file names restic's Go rest-server leaves after a crash
/// (`{id}.rest-server-temp{random}`); removed at startup too, since users swap
/// that server for this one on the same data.
const GO_TEMP_MARKER: &str = ".rest-server-temp";

/// Size of one read when sending a file, and of the piece read ahead: 64
/// slow readers hold 8 MiB at most (two pieces each).
const READ_CHUNK_BYTES: u64 = 64 * 1024;

/// The pieces of the readers that hold a [`ReadGrant`]: a quarter of the
/// thread hand-offs and syscalls per byte (download benchmark: 1.6 CPU s/GiB
/// instead of 2.4, 800 MB/s instead of 550).
const LARGE_READ_CHUNK_BYTES: u64 = 256 * 1024;

/// How many readers may read in large pieces at once: each holds two or three
/// buffers of [`LARGE_READ_CHUNK_BYTES`] while it reads (the one being sent,
/// the one read ahead, and one the connection has not let go of yet).
const LARGE_READERS: usize = 8;

/// Large piece buffers kept for the next read (1 MiB). A fresh buffer of
/// that size is a fresh mapping whose every page faults in zeroed: reusing
/// buffers took whole downloads from 1.6 to 0.5 CPU s/GiB.
const SPARE_PIECES: usize = 4;

/// How much an upload writes between two starts of writeback (see
/// [`Writer::write_back`]), so that the disk works while the body still
/// streams in and the final fsync only has the tail left.
const WRITEBACK_INTERVAL_BYTES: u64 = 8 << 20;

impl Modes {
    /// `--group-accessible-repos` lets the owning group in (0770/0660).
    pub(crate) fn new(group_accessible: bool) -> Modes {
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

/// The data directory.
#[derive(Clone)]
pub(crate) struct FsStore {
    root: Arc<PathBuf>,
    modes: Modes,
    /// Large-piece grants left for readers (see [`LARGE_READERS`]).
    large_reads: Arc<AtomicUsize>,
    /// Large piece buffers for readers to reuse.
    spares: Spares,
    /// The threads that write and fsync uploads. Not the I/O pool: four
    /// large uploads that fsync would keep a pool of four busy, and every
    /// other client's small read would wait behind them.
    writers: WriterPool,
}

impl FsStore {
    pub(crate) fn new(root: PathBuf, modes: Modes, writers: WriterPool) -> FsStore {
        FsStore {
            root: Arc::new(root),
            modes,
            large_reads: Arc::new(AtomicUsize::new(LARGE_READERS)),
            spares: Spares::default(),
            writers,
        }
    }

    /// Starts writing a replacement for a damaged object (the scrub's
    /// repair); it is put in place by [`FsUpload::replace_damaged`].
    pub(crate) async fn begin_replacement(
        &self,
        repo: &RepoPath,
        key: Key<'_>,
    ) -> Result<FsUpload, StoreError> {
        self.upload_to(repo, key, Existing::Replace, None).await
    }

    async fn upload_to(
        &self,
        repo: &RepoPath,
        key: Key<'_>,
        existing: Existing,
        length: Option<u64>,
    ) -> Result<FsUpload, StoreError> {
        let final_path = self.path(repo, key);
        let create_parent = key.kind().is_some_and(is_fanned_out);
        let (target, modes) = (final_path.clone(), self.modes);
        let (file, temp_path) =
            crate::store::blocking(move || begin_upload(&target, modes, create_parent, existing))
                .await?;
        Ok(FsUpload {
            final_path,
            temp_path: Some(temp_path),
            writer: Some(Writer {
                file,
                written: 0,
                unflushed: 0,
                in_writeback: None,
                length,
                allocated: 0,
            }),
            in_flight: None,
            writers: self.writers.clone(),
        })
    }

    fn repo_dir(&self, repo: &RepoPath) -> PathBuf {
        let mut path = PathBuf::from(self.root.as_path());
        path.extend(repo.segments());
        path
    }

    fn type_dir(&self, repo: &RepoPath, kind: ObjectType) -> PathBuf {
        self.repo_dir(repo).join(kind.dir_name())
    }

    fn path(&self, repo: &RepoPath, key: Key<'_>) -> PathBuf {
        match key {
            Key::Config => self.repo_dir(repo).join("config"),
            Key::Object(kind, id) => {
                let mut path = self.type_dir(repo, kind);
                if is_fanned_out(kind) {
                    path.push(id.prefix());
                }
                path.push(id.as_str());
                path
            }
        }
    }
}

/// Data packs live one level deeper, in `data/{first two hex chars}/`, as
/// restic's local backend lays them out.
fn is_fanned_out(kind: ObjectType) -> bool {
    kind == ObjectType::Data
}

impl super::Store for FsStore {
    type Reader = FsReader;
    type Listing = FsListing;
    type Upload = FsUpload;

    async fn create_repo(&self, repo: &RepoPath) -> Result<(), StoreError> {
        let (dir, modes) = (self.repo_dir(repo), self.modes);
        log::info!("creating repository {repo} in {}", dir.display());
        crate::store::blocking(move || create_repo(&dir, modes)).await
    }

    async fn size(&self, repo: &RepoPath, key: Key<'_>) -> Result<u64, StoreError> {
        let path = self.path(repo, key);
        crate::store::blocking(move || file_len(&path)).await
    }

    async fn open(&self, repo: &RepoPath, key: Key<'_>, want: Want) -> Result<FsReader, OpenError> {
        let path = self.path(repo, key);
        let (large_reads, spares) = (self.large_reads.clone(), self.spares.clone());
        // The first piece is read in the same trip to the pool as the open:
        // a small object or range is then one trip, not two.
        let open = move || -> Result<FsReader, OpenError> {
            let (file, size) = open_read(&path)?;
            let range = want.resolve(size)?;
            let (offset, remaining) = range.span(size);
            let grant = (remaining > READ_CHUNK_BYTES)
                .then(|| ReadGrant::take(&large_reads))
                .flatten();
            let large = grant.map(|grant| (grant, spares));
            let mut reader = FsReader::new(file, (size, range), (offset, remaining), large);
            reader.read_first()?;
            Ok(reader)
        };
        io_pool::spawn(open)
            .await
            .unwrap_or_else(|e| Err(StoreError::lost_task(e).into()))
    }

    async fn begin_upload(
        &self,
        repo: &RepoPath,
        key: Key<'_>,
        incoming: Incoming,
    ) -> Result<FsUpload, StoreError> {
        self.upload_to(repo, key, Existing::Refuse, incoming.length)
            .await
    }

    async fn delete(&self, repo: &RepoPath, key: Key<'_>) -> Result<u64, StoreError> {
        let path = self.path(repo, key);
        crate::store::blocking(move || remove(&path)).await
    }

    async fn list(&self, repo: &RepoPath, kind: ObjectType) -> Result<FsListing, StoreError> {
        let type_dir = self.type_dir(repo, kind);
        let dirs = crate::store::blocking(move || listing_dirs(&type_dir, kind)).await?;
        Ok(FsListing {
            dirs: dirs.into(),
            pending: None,
        })
    }

    async fn scan(&self) -> Result<Scan, StoreError> {
        let (root, modes) = (self.root.clone(), self.modes);
        crate::store::blocking(move || {
            let mut builder = DirBuilder::new();
            builder.recursive(true).mode(modes.dir);
            builder.create(root.as_path()).op("create data directory")?;
            scan(&root, Tidy::RemoveTemps)
        })
        .await
    }

    async fn repos(&self) -> Result<Repos, StoreError> {
        let root = self.root.clone();
        crate::store::blocking(move || Ok(scan(&root, Tidy::Leave)?.repos)).await
    }

    async fn space(&self) -> Option<Space> {
        let root = self.root.clone();
        crate::store::blocking(move || Ok(fs_space(&root)))
            .await
            .ok()
            .flatten()
    }

    async fn unhealthy(&self, min_free: u64) -> Option<String> {
        let root = self.root.clone();
        crate::store::blocking(move || Ok(fs_unhealthy(&root, min_free)))
            .await
            .unwrap_or_else(|e| Some(e.to_string()))
    }
}

/// Why the data directory cannot take backups, if it cannot.
fn fs_unhealthy(root: &Path, min_free: u64) -> Option<String> {
    use nix::sys::statvfs::{FsFlags, statvfs};
    use nix::unistd::{AccessFlags, access};
    let stat = match statvfs(root) {
        Ok(stat) => stat,
        Err(e) => return Some(format!("the data directory cannot be read: {e}")),
    };
    // A disk with errors is often remounted read-only by the kernel.
    if stat.flags().contains(FsFlags::ST_RDONLY) {
        return Some("the data directory's file system is read-only".to_string());
    }
    if let Err(e) = access(root, AccessFlags::W_OK) {
        return Some(format!("the data directory is not writable: {e}"));
    }
    let free = stat.blocks_available() as u64 * stat.fragment_size() as u64;
    (free < min_free).then(|| {
        format!("{free} bytes free in the data directory, below --health-min-free {min_free}")
    })
}

/// Free and total bytes of the filesystem at `path`.
fn fs_space(path: &Path) -> Option<Space> {
    let stat = nix::sys::statvfs::statvfs(path).ok()?;
    let fragment = stat.fragment_size() as u64;
    Some(Space {
        free: stat.blocks_available() as u64 * fragment,
        total: stat.blocks() as u64 * fragment,
    })
}

/// Creates a repository's folders, including `data/00`..`data/ff`. Idempotent.
fn create_repo(dir: &Path, modes: Modes) -> Result<(), StoreError> {
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
fn ensure_dir(path: &Path, modes: Modes) -> Result<(), StoreError> {
    let mut builder = DirBuilder::new();
    builder.mode(modes.dir);
    match builder.create(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other.op("create folder"),
    }
}

/// Whether an upload may start while its object exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Existing {
    /// An upload: AlreadyExists (checked again at the commit).
    Refuse,
    /// A repair of a damaged object.
    Replace,
}

/// Starts an upload in one trip to the I/O pool: refuses a name that is taken
/// (AlreadyExists) unless it replaces a damaged object, and creates the temp
/// file beside it. With `create_parent` (data packs), a missing fan-out
/// folder is made, as long as `data/` exists.
fn begin_upload(
    final_path: &Path,
    modes: Modes,
    create_parent: bool,
    existing: Existing,
) -> Result<(File, PathBuf), StoreError> {
    match file_len(final_path) {
        Ok(_) if existing == Existing::Refuse => return Err(StoreError::exists("object exists")),
        Ok(_) => {}
        Err(e) if e.kind == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    match create_temp(final_path, modes) {
        Err(e) if e.kind == ErrorKind::NotFound && create_parent => {
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
fn file_len(path: &Path) -> Result<u64, StoreError> {
    let meta = fs::metadata(path).op("stat")?;
    if !meta.is_file() {
        return Err(StoreError::not_found("stat"));
    }
    Ok(meta.len())
}

/// Opens a regular file for reading and returns it with its size.
fn open_read(path: &Path) -> Result<(File, u64), StoreError> {
    let file = File::open(path).op("open")?;
    let meta = file.metadata().op("stat")?;
    if !meta.is_file() {
        return Err(StoreError::not_found("open"));
    }
    Ok((file, meta.len()))
}

/// Removes a file and returns the bytes it freed (see [`super::Store::delete`]).
fn remove(path: &Path) -> Result<u64, StoreError> {
    let len = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => return Err(StoreError::not_found("remove")),
        Ok(meta) => meta.len(),
        Err(e) if classify(&e) == ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).op("stat"),
    };
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if classify(&e) == ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).op("remove"),
    }
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(len)
}

/// The folders whose files make up a listing of `kind`: the type folder itself,
/// or for data its existing two-hex-digit subfolders. Missing type folder: NotFound.
fn listing_dirs(type_dir: &Path, kind: ObjectType) -> Result<Vec<PathBuf>, StoreError> {
    let meta = fs::metadata(type_dir).op("stat")?;
    if !meta.is_dir() {
        return Err(StoreError::not_found("list"));
    }
    if !is_fanned_out(kind) {
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
/// sizes. Temp files and anything else are skipped; a folder removed while
/// listing holds nothing.
fn list_objects(dir: &Path) -> Result<Batch, StoreError> {
    let entries = match fs::read_dir(dir) {
        Err(e) if classify(&e) == ErrorKind::NotFound => return Ok(Vec::new()),
        other => other.op("list")?,
    };
    // In a fan-out folder (`data/ab`), only ids that start with its name:
    // a file in the wrong folder cannot be fetched by its name, and would
    // break the order the scrub resumes in.
    let fan_out = dir
        .file_name()
        .and_then(|name| name.to_str())
        .filter(|name| name.len() == 2 && name.bytes().all(|b| b.is_ascii_hexdigit()));
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.op("list")?;
        let Some(id) = entry.file_name().to_str().and_then(ObjectId::parse) else {
            continue;
        };
        if fan_out.is_some_and(|fan| !id.as_str().starts_with(fan)) {
            continue;
        }
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            // Deleted between readdir and stat: simply not there any more.
            Err(e) if classify(&e) == ErrorKind::NotFound => continue,
            Err(e) => return Err(e).op("stat"),
        };
        if meta.is_file() {
            out.push((id, meta.len()));
        }
    }
    Ok(out)
}

/// Flushes a folder's entries (a rename or unlink in it) to disk.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    let handle = File::open(dir).op("open folder for fsync")?;
    match handle.sync_all() {
        Ok(()) => Ok(()),
        // Some filesystems (FAT on USB sticks, some FUSE) cannot fsync folders.
        Err(e) if is_unsupported(&e) => Ok(()),
        Err(e) => Err(e).op("fsync folder"),
    }
}

fn is_unsupported(err: &io::Error) -> bool {
    use nix::errno::Errno;
    matches!(
        err.raw_os_error().map(Errno::from_raw),
        Some(Errno::EINVAL) | Some(Errno::ENOTSUP)
    )
}

/// fsync or fdatasync, tolerating filesystems that cannot (some FUSE and
/// network ones).
fn sync(file: &File, data_only: bool) -> Result<(), StoreError> {
    let result = if data_only {
        file.sync_data()
    } else {
        file.sync_all()
    };
    match result {
        Err(e) if !is_unsupported(&e) => Err(e).op("fsync"),
        _ => Ok(()),
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Creates a fresh temp file beside `final_path`, never replacing anything.
fn create_temp(final_path: &Path, modes: Modes) -> Result<(File, PathBuf), StoreError> {
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
fn commit_temp(temp: &Path, final_path: &Path) -> Result<(), StoreError> {
    place(temp, final_path)?;
    sync_dir(final_path.parent().unwrap_or(Path::new(".")))
}

/// Moves `temp` to `final_path` unless that name is taken (AlreadyExists),
/// by the first way the file system offers:
///
/// 1. [`rename_noreplace`]: ext4, xfs, btrfs, f2fs, tmpfs, and vfat and exfat
///    on current kernels;
/// 2. [`link_then_unlink`], where the flag is not taken (FUSE file systems
///    that predate it, kernels before 3.15);
/// 3. [`rename_if_free`], where there are no hard links either (a FAT image
///    under FUSE, say).
///
/// Each step is tried anew for every commit rather than remembered: a failed
/// syscall costs microseconds beside the fsync every commit makes, and one
/// data directory can span file systems (a USB disk mounted below it).
fn place(temp: &Path, final_path: &Path) -> Result<(), StoreError> {
    if let Tried::Placed = rename_noreplace(temp, final_path)? {
        return Ok(());
    }
    if let Tried::Placed = link_then_unlink(temp, final_path)? {
        return Ok(());
    }
    rename_if_free(temp, final_path)
}

/// What came of one way of [`place`].
#[derive(Debug, PartialEq, Eq)]
enum Tried {
    Placed,
    /// The file system (or kernel) does not offer this way; nothing changed.
    Unsupported,
}

/// `renameat2(RENAME_NOREPLACE)`: atomic, and one syscall.
fn rename_noreplace(temp: &Path, final_path: &Path) -> Result<Tried, StoreError> {
    use nix::errno::Errno;
    match super::noreplace::rename(temp, final_path) {
        Ok(()) => Ok(Tried::Placed),
        // EINVAL: the file system does not take the flag; ENOSYS: the kernel
        // lacks the syscall; EPERM: a seccomp filter refuses syscalls it does
        // not know (older container profiles). The next ways are as safe.
        Err(e)
            if matches!(
                e.raw_os_error().map(Errno::from_raw),
                Some(Errno::EINVAL | Errno::ENOSYS | Errno::EPERM)
            ) =>
        {
            Ok(Tried::Unsupported)
        }
        // EEXIST among them: AlreadyExists, which the caller answers as before.
        Err(e) => Err(e).op("rename"),
    }
}

/// `link` fails with EEXIST when the name is taken, so linking the final
/// name, then removing the temp one, never replaces an object either.
fn link_then_unlink(temp: &Path, final_path: &Path) -> Result<Tried, StoreError> {
    match fs::hard_link(temp, final_path) {
        Ok(()) => {
            fs::remove_file(temp).op("remove temp link")?;
            Ok(Tried::Placed)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e).op("link"),
        // No hard links here (EPERM on FAT, and so on).
        Err(_) => Ok(Tried::Unsupported),
    }
}

/// Check-then-rename, for file systems that have neither of the atomic ways.
/// One lock, held from the check to the rename, serialises these commits in
/// the process, so that two uploads of one name on the server's writer
/// threads can never replace each other. What remains is another process
/// writing the same folder between check and rename; the kernel's own vfat
/// and exfat never come here, as they take `renameat2`.
fn rename_if_free(temp: &Path, final_path: &Path) -> Result<(), StoreError> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    // The lock guards no data, so a panic while it was held harms nothing.
    let _held = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    match fs::symlink_metadata(final_path) {
        Ok(_) => Err(StoreError::exists("rename")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::rename(temp, final_path).op("rename"),
        Err(e) => Err(e).op("check name"),
    }
}

/// The repository a file below the data directory belongs to, and whether it
/// is a snapshot: the path up to the first type folder (or a final `config`).
fn repo_of(relative: &Path) -> Option<(String, Option<ObjectType>)> {
    let parts: Vec<&str> = relative.iter().filter_map(OsStr::to_str).collect();
    for (i, part) in parts.iter().enumerate().take(MAX_REPO_DEPTH + 1) {
        let last = i + 1 == parts.len();
        let kind = ObjectType::from_segment(part);
        if (last && *part == "config") || (!last && kind.is_some()) {
            return Some((parts[..i].join("/"), kind));
        }
    }
    None
}

/// Whether a walk of the data directory removes temp files: only the one at
/// startup may (later, they belong to uploads in progress).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tidy {
    RemoveTemps,
    Leave,
}

/// Walks the data directory: at startup removes upload temp files a crash
/// left behind, and counts the bytes stored (for `--max-size`).
fn scan(root: &Path, tidy: Tidy) -> Result<Scan, StoreError> {
    let mut report = Scan::default();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            // A folder below the data directory that the service user may not
            // read (every ext4 disk has a root-owned lost+found) holds
            // nothing we serve: say so once and go on.
            Err(e) if dir != root && e.kind() == io::ErrorKind::PermissionDenied => {
                log::warn!("skipping {}: {e}", dir.display());
                continue;
            }
            other => other.op("scan")?,
        };
        for entry in entries {
            let entry = entry.op("scan")?;
            let file_type = entry.file_type().op("scan")?;
            if file_type.is_dir() {
                // No repository lives in a dot folder (no path may name
                // one): those are the server's own (`.scrub`, `.mirror`),
                // not stored data, and do not count against --max-size.
                if !entry.file_name().as_encoded_bytes().starts_with(b".") {
                    pending.push(entry.path());
                }
                continue;
            }
            if !file_type.is_file() {
                continue;
            }
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(TEMP_PREFIX) || name.contains(GO_TEMP_MARKER) {
                if tidy == Tidy::RemoveTemps {
                    fs::remove_file(entry.path()).op("remove stale temp file")?;
                    report.temps_removed += 1;
                }
                continue;
            }
            let meta = entry.metadata().op("scan")?;
            report.bytes += meta.len();
            let path = entry.path();
            if let Some((repo, kind)) = path.strip_prefix(root).ok().and_then(repo_of) {
                let stats: &mut RepoStats = report.repos.entry(repo).or_default();
                stats.bytes += meta.len();
                stats.objects += u64::from(kind.is_some());
                if kind == Some(ObjectType::Snapshots) {
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

/// One of the [`LARGE_READERS`] grants, returned on drop.
struct ReadGrant(Arc<AtomicUsize>);

impl ReadGrant {
    fn take(left: &Arc<AtomicUsize>) -> Option<ReadGrant> {
        left.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .ok()
            .map(|_| ReadGrant(left.clone()))
    }
}

impl Drop for ReadGrant {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// A file being sent, read in pieces on the I/O pool, one piece ahead of the
/// one being sent.
pub(crate) struct FsReader {
    file: Arc<File>,
    size: u64,
    range: ByteRange,
    offset: u64,
    remaining: u64,
    /// With a grant, pieces of [`LARGE_READ_CHUNK_BYTES`] read into the
    /// store's spare buffers; else of [`READ_CHUNK_BYTES`] in fresh ones.
    large: Option<(ReadGrant, Spares)>,
    /// The first piece, read when the file was opened.
    first: Option<Bytes>,
    pending: Option<(u64, JoinHandle<Result<Bytes, StoreError>>)>,
}

impl super::ObjectReader for FsReader {
    fn size(&self) -> u64 {
        self.size
    }

    fn range(&self) -> ByteRange {
        self.range
    }

    fn remaining(&self) -> u64 {
        let first = self.first.as_ref().map_or(0, |piece| piece.len() as u64);
        self.remaining + first + self.pending.as_ref().map_or(0, |(len, _)| *len)
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, StoreError>>> {
        if let Some(piece) = self.first.take() {
            self.read_next();
            return Poll::Ready(Some(Ok(piece)));
        }
        if self.pending.is_none() {
            self.read_next();
        }
        let Some((_, handle)) = self.pending.as_mut() else {
            return Poll::Ready(None);
        };
        let result =
            ready!(Pin::new(handle).poll(cx)).unwrap_or_else(|e| Err(StoreError::lost_task(e)));
        self.pending = None;
        // Read ahead: the next piece is read while this one is sent, so
        // that the socket does not wait for a pool round trip per piece.
        if result.is_ok() {
            self.read_next();
        }
        Poll::Ready(Some(result))
    }
}

impl FsReader {
    /// A reader of `remaining` bytes at `offset` of `file` (the object's
    /// size and the range asked for), in large pieces when granted.
    fn new(
        file: File,
        (size, range): (u64, ByteRange),
        (offset, remaining): (u64, u64),
        large: Option<(ReadGrant, Spares)>,
    ) -> FsReader {
        FsReader {
            file: Arc::new(file),
            size,
            range,
            offset,
            remaining,
            large,
            first: None,
            pending: None,
        }
    }

    /// Reads the first piece here and now (on the I/O pool, at the open).
    fn read_first(&mut self) -> Result<(), StoreError> {
        if let Some((offset, len, spares)) = self.next_piece() {
            self.first = Some(read_piece(&self.file, offset, len, spares)?);
        }
        Ok(())
    }

    /// Starts reading the next piece on the I/O pool, if any is left.
    fn read_next(&mut self) {
        if let Some((offset, len, spares)) = self.next_piece() {
            let file = self.file.clone();
            let handle = io_pool::spawn(move || read_piece(&file, offset, len, spares));
            self.pending = Some((len as u64, handle));
        }
    }

    /// Where the next piece starts, its length, and the buffers to read it
    /// into; counted as read from here on.
    fn next_piece(&mut self) -> Option<(u64, usize, Option<Spares>)> {
        if self.remaining == 0 {
            return None;
        }
        let spares = self.large.as_ref().map(|(_, spares)| spares.clone());
        let piece = match spares {
            Some(_) => LARGE_READ_CHUNK_BYTES,
            None => READ_CHUNK_BYTES,
        };
        let len = self.remaining.min(piece);
        let offset = self.offset;
        self.offset += len;
        self.remaining -= len;
        Some((offset, len as usize, spares))
    }
}

/// Reads `len` bytes at `offset`: into one of `spares`' buffers when given
/// (`len` at most [`LARGE_READ_CHUNK_BYTES`]), else into a fresh buffer.
fn read_piece(
    file: &File,
    offset: u64,
    len: usize,
    spares: Option<Spares>,
) -> Result<Bytes, StoreError> {
    // Fails only if the file shrank under us (it never should: objects are
    // immutable).
    let Some(spares) = spares else {
        let mut buf = vec![0; len];
        file.read_exact_at(&mut buf, offset).op("read")?;
        return Ok(Bytes::from(buf));
    };
    let mut piece = SparePiece {
        buf: spares.take(),
        len,
        spares,
    };
    file.read_exact_at(&mut piece.buf[..len], offset)
        .op("read")?;
    Ok(Bytes::from_owner(piece))
}

/// The store's spare large buffers (at most [`SPARE_PIECES`]).
#[derive(Clone, Default)]
pub(crate) struct Spares(Arc<Mutex<Vec<Vec<u8>>>>);

impl Spares {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A spare buffer, or a fresh one if none is left.
    fn take(&self) -> Vec<u8> {
        let spare = self.lock().pop();
        spare.unwrap_or_else(|| vec![0; LARGE_READ_CHUNK_BYTES as usize])
    }

    fn give_back(&self, buf: Vec<u8>) {
        let mut spares = self.lock();
        if spares.len() < SPARE_PIECES && buf.len() as u64 == LARGE_READ_CHUNK_BYTES {
            spares.push(buf);
        }
    }
}

/// A piece read into a spare buffer, which goes back to the spares when the
/// piece is dropped: by the connection once it is sent, or on an error.
/// Every buffer comes back, whoever drops its piece last. When the reader
/// reused the buffer of the piece before the last itself, the connection
/// still held the last piece when the reader was dropped: each 1 MiB ranged
/// read took two spares and gave one back, and soon read into fresh,
/// zeroed buffers (a fifth of the CPU of ranged reads).
struct SparePiece {
    buf: Vec<u8>,
    len: usize,
    spares: Spares,
}

impl AsRef<[u8]> for SparePiece {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for SparePiece {
    fn drop(&mut self) {
        self.spares.give_back(std::mem::take(&mut self.buf));
    }
}

/// A listing, read one folder at a time on the I/O pool.
pub(crate) struct FsListing {
    dirs: VecDeque<PathBuf>,
    pending: Option<JoinHandle<Result<Batch, StoreError>>>,
}

impl super::Listing for FsListing {
    fn poll_batch(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Batch, StoreError>>> {
        if self.pending.is_none() {
            let Some(dir) = self.dirs.pop_front() else {
                return Poll::Ready(None);
            };
            self.pending = Some(io_pool::spawn(move || list_objects(&dir)));
        }
        let Some(handle) = self.pending.as_mut() else {
            return Poll::Ready(None);
        };
        let result = ready!(Pin::new(handle).poll(cx));
        self.pending = None;
        let batch = result.unwrap_or_else(|e| Err(StoreError::lost_task(e)));
        if batch.is_err() {
            self.dirs.clear();
        }
        Poll::Ready(Some(batch))
    }
}

/// The temp file of an upload, moved to a writer thread for each write.
pub(crate) struct Writer {
    file: File,
    /// Bytes written so far.
    written: u64,
    /// Bytes written since writeback was last started.
    unflushed: u64,
    /// The window whose writeback was started last (offset, length).
    in_writeback: Option<(u64, u64)>,
    /// The declared length, when there is one.
    length: Option<u64>,
    /// Bytes from the start of the file the file system has allocated.
    allocated: u64,
}

/// The work of the upload writer threads ([`WriterPool`]).
pub(crate) enum UploadWrite {
    /// Appends a chunk; the reply brings the file back.
    Chunk {
        writer: Writer,
        chunk: Bytes,
        done: oneshot::Sender<(Writer, Result<(), StoreError>)>,
    },
    /// fsync, then rename into place (see [`commit_temp`]); on failure the
    /// temp file is removed before the reply.
    Commit {
        writer: Writer,
        temp: PathBuf,
        target: PathBuf,
        done: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Removes the temp file of an aborted upload, after its last write;
    /// says when done, if asked.
    Remove {
        temp: PathBuf,
        done: Option<oneshot::Sender<()>>,
    },
}

impl Job for UploadWrite {
    fn run(self) {
        match self {
            UploadWrite::Chunk {
                mut writer,
                chunk,
                done,
            } => {
                let result = writer.write(&chunk);
                // Before the reply: the caller reuses the buffer once it has it.
                drop(chunk);
                let _ = done.send((writer, result));
            }
            UploadWrite::Commit {
                writer,
                temp,
                target,
                done,
            } => {
                let result = sync(&writer.file, false);
                drop(writer);
                let result = result.and_then(|()| commit_temp(&temp, &target));
                // Before the reply, as for an abort: a refused commit (the
                // name was taken meanwhile) leaves nothing once it is answered.
                if result.is_err() {
                    remove_temp(&temp);
                }
                let _ = done.send(result);
            }
            UploadWrite::Remove { temp, done } => {
                remove_temp(&temp);
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
        }
    }
}

/// Removes an upload's temp file; one that is gone already (renamed into
/// place before a later step failed) is no error.
fn remove_temp(temp: &Path) {
    match fs::remove_file(temp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            log::error!("could not remove temp file {}: {e}", temp.display());
        }
        _ => {}
    }
}

/// The threads that write and fsync uploads.
pub(crate) type WriterPool = Pool<UploadWrite>;

impl Writer {
    fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        self.allocate(chunk.len() as u64);
        self.file.write_all(chunk).op("write")?;
        self.written += chunk.len() as u64;
        self.unflushed += chunk.len() as u64;
        if self.unflushed >= WRITEBACK_INTERVAL_BYTES {
            let window = (self.written - self.unflushed, self.unflushed);
            self.unflushed = 0;
            self.write_back(window)?;
        }
        Ok(())
    }

    /// Has the file system allocate the next writeback window ahead of the
    /// writes, up to the declared length: ext4 then writes into blocks it
    /// has rather than reserving each page as it comes (a twentieth of an
    /// upload's CPU), and lays the object out in one piece. Never beyond
    /// what the client declared, nor more than one window ahead of what it
    /// sent, so a length that is a lie costs no more than a window. Where the
    /// file system cannot, the writes allocate as before.
    fn allocate(&mut self, next: u64) {
        let Some(length) = self.length else { return };
        let end = self.written + next;
        if end <= self.allocated || self.allocated >= length {
            return;
        }
        let upto = end
            .max(self.allocated + WRITEBACK_INTERVAL_BYTES)
            .min(length);
        // off_t: 32 bits on some 32-bit targets, where this stops at 2 GiB.
        let (Ok(offset), Ok(len)) = (
            nix::libc::off_t::try_from(self.allocated),
            nix::libc::off_t::try_from(upto - self.allocated),
        ) else {
            return;
        };
        let keep_size = nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE;
        match nix::fcntl::fallocate(&self.file, keep_size, offset, len) {
            Ok(()) => self.allocated = upto,
            // Not supported here, or no room (which the write then reports):
            // no more tries for this upload.
            Err(_) => self.length = None,
        }
    }

    /// Waits for the previous window to reach the disk (usually long done),
    /// then starts writing this one without waiting: at most two windows of
    /// an upload are dirty, and receiving does not pause for the disk.
    /// Where the file system cannot, an fdatasync, which waits.
    fn write_back(&mut self, (offset, len): (u64, u64)) -> Result<(), StoreError> {
        let previous = self.in_writeback.take();
        let started = previous
            .map_or(Ok(()), |(o, l)| super::writeback::wait(&self.file, o, l))
            .and_then(|()| super::writeback::start(&self.file, offset, len));
        match started {
            Ok(()) => {
                self.in_writeback = Some((offset, len));
                Ok(())
            }
            Err(_) => sync(&self.file, true),
        }
    }
}

/// An upload to a temp file. Each chunk is written by one job on the upload
/// writers; the next chunk waits for it, so writes stay in order while the
/// caller prepares the next chunk.
pub(crate) struct FsUpload {
    final_path: PathBuf,
    /// Some until a commit has renamed or removed the temp file, or an abort
    /// has removed it.
    temp_path: Option<PathBuf>,
    /// None while a write runs on the pool.
    writer: Option<Writer>,
    in_flight: Option<oneshot::Receiver<(Writer, Result<(), StoreError>)>>,
    writers: WriterPool,
}

/// What [`FsUpload::replace_damaged`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replaced {
    Done,
    /// The local copy matched its name after all: left alone.
    WasIntact,
    /// The local copy was deleted meanwhile: not brought back.
    Gone,
}

impl FsUpload {
    /// Puts a verified replacement in place of a damaged object: it takes
    /// the damaged file's owner and mode (a repair run as root must not
    /// leave a file the service user cannot read), fsync, then, if the local
    /// copy still does not hash to `digest` (it is read again, so good data
    /// is never replaced), an atomic swap with it (an object a client
    /// deleted meanwhile stays deleted), the damaged copy removed, and an
    /// fsync of the folder. The temp file is gone when this returns.
    pub(crate) async fn replace_damaged(
        mut self,
        digest: [u8; 32],
    ) -> Result<Replaced, StoreError> {
        self.settle().await?;
        let writer = self
            .writer
            .take()
            .ok_or_else(|| StoreError::internal("replace", "upload file missing"))?;
        let temp = self.temp_path.take().unwrap_or_default();
        let target = self.final_path.clone();
        crate::store::blocking(move || {
            let replace = || {
                match take_over(&writer.file, &target) {
                    Err(e) if e.kind == ErrorKind::NotFound => return Ok(Replaced::Gone),
                    other => other?,
                }
                sync(&writer.file, false)?;
                match sha256_of(&target) {
                    Err(e) if e.kind == ErrorKind::NotFound => return Ok(Replaced::Gone),
                    Ok(local) if local == digest => return Ok(Replaced::WasIntact),
                    // Damaged, or unreadable: replaced.
                    _ => {}
                }
                // A swap, not a rename: if a client deleted the object since
                // it was hashed, the swap fails and nothing comes back.
                match super::noreplace::exchange(&temp, &target) {
                    // The temp name now holds the damaged copy.
                    Ok(()) => remove_temp(&temp),
                    Err(e) if classify(&e) == ErrorKind::NotFound => return Ok(Replaced::Gone),
                    // No swap on this file system (FUSE ones that predate
                    // it): a rename over it, the window left open.
                    Err(e)
                        if matches!(
                            e.raw_os_error().map(nix::errno::Errno::from_raw),
                            Some(
                                nix::errno::Errno::EINVAL
                                    | nix::errno::Errno::ENOSYS
                                    | nix::errno::Errno::EPERM
                            )
                        ) =>
                    {
                        fs::rename(&temp, &target).op("rename")?
                    }
                    Err(e) => return Err(e).op("exchange"),
                }
                sync_dir(target.parent().unwrap_or(Path::new(".")))?;
                Ok(Replaced::Done)
            };
            let result = replace();
            drop(writer);
            if !matches!(result, Ok(Replaced::Done)) {
                remove_temp(&temp);
            }
            result
        })
        .await
    }
}

/// Gives `file` the owner and mode of `original`; NotFound when that is
/// gone.
fn take_over(file: &File, original: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = fs::metadata(original).op("stat")?;
    let ours = file.metadata().op("stat")?;
    if (ours.uid(), ours.gid()) != (meta.uid(), meta.gid()) {
        std::os::unix::fs::fchown(file, Some(meta.uid()), Some(meta.gid())).op("chown")?;
    }
    file.set_permissions(meta.permissions()).op("chmod")
}

/// The SHA-256 of a file, read in large pieces (for a repair, on the I/O
/// pool: rare, and the caller waits for it).
fn sha256_of(path: &Path) -> Result<[u8; 32], StoreError> {
    use std::io::Read as _;
    let mut file = File::open(path).op("open")?;
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0; LARGE_READ_CHUNK_BYTES as usize];
    loop {
        match file.read(&mut buf).op("read")? {
            0 => break,
            n => context.update(&buf[..n]),
        }
    }
    let mut out = [0; 32];
    out.copy_from_slice(context.finish().as_ref());
    Ok(out)
}

/// The upload writers are gone: only when a write panicked.
fn writers_gone() -> StoreError {
    StoreError::internal("write", "the upload writer threads are gone")
}

impl FsUpload {
    /// Waits for the write in flight and takes the file back.
    async fn settle(&mut self) -> Result<(), StoreError> {
        let Some(write) = self.in_flight.take() else {
            return Ok(());
        };
        let (writer, result) = write.await.map_err(|_| writers_gone())?;
        self.writer = Some(writer);
        result
    }
}

impl super::Upload for FsUpload {
    async fn push(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        self.settle().await?;
        let Some(writer) = self.writer.take() else {
            return Err(StoreError::internal("write", "upload file lost"));
        };
        let (done, reply) = oneshot::channel();
        let job = UploadWrite::Chunk {
            writer,
            chunk,
            done,
        };
        self.writers.send(job).map_err(|_| writers_gone())?;
        self.in_flight = Some(reply);
        Ok(())
    }

    async fn settled(&mut self) -> Result<(), StoreError> {
        self.settle().await
    }

    async fn commit(mut self) -> Result<(), StoreError> {
        self.settle().await?;
        let writer = self
            .writer
            .take()
            .ok_or_else(|| StoreError::internal("commit", "upload file missing"))?;
        let (done, reply) = oneshot::channel();
        let job = UploadWrite::Commit {
            writer,
            temp: self.temp_path.clone().unwrap_or_default(),
            target: self.final_path.clone(),
            done,
        };
        self.writers.send(job).map_err(|_| writers_gone())?;
        let result = reply.await.map_err(|_| writers_gone())?;
        // The job renamed the temp file into place or removed it.
        self.temp_path = None;
        result
    }

    /// Removes the temp file before it returns, so that the refusal that
    /// follows is sent with nothing of the upload left on disk.
    async fn abort(mut self) {
        let _ = self.settle().await;
        let Some(temp) = self.temp_path.take() else {
            return;
        };
        let (done, removed) = oneshot::channel();
        let job = UploadWrite::Remove {
            temp: temp.clone(),
            done: Some(done),
        };
        match self.writers.send(job) {
            Ok(()) => {
                let _ = removed.await;
            }
            Err(PoolGone) => {
                let _ = fs::remove_file(&temp);
            }
        }
    }
}

impl Drop for FsUpload {
    fn drop(&mut self) {
        let Some(temp) = self.temp_path.take() else {
            return;
        };
        // Queued behind this upload's last write, off the event loop. Should
        // the process end first, the startup scan removes the file.
        let job = UploadWrite::Remove {
            temp: temp.clone(),
            done: None,
        };
        if let Err(PoolGone) = self.writers.send(job) {
            let _ = fs::remove_file(&temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ObjectReader as _;

    fn reader(
        path: &Path,
        offset: u64,
        len: u64,
        grant: Option<ReadGrant>,
        spares: &Spares,
    ) -> FsReader {
        let (file, size) = open_read(path).unwrap();
        let whole = Want::All.resolve(size).unwrap();
        let large = grant.map(|grant| (grant, spares.clone()));
        let mut reader = FsReader::new(file, (size, whole), (offset, len), large);
        // As the store's open does.
        reader.read_first().unwrap();
        reader
    }

    /// Read ahead, in small or large pieces, buffers reused or not: the
    /// pieces add up to exactly the bytes asked for.
    #[tokio::test(flavor = "current_thread")]
    async fn pieces_add_up_to_the_range() {
        let dir = crate::testing::TempDir::new("reader");
        let path = dir.path().join("object");
        let content: Vec<u8> = (0..3 * LARGE_READ_CHUNK_BYTES as usize + 1000)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        fs::write(&path, &content).unwrap();
        let left = Arc::new(AtomicUsize::new(1));
        let spares = Spares::default();
        let whole = content.len() as u64;
        for (offset, len, large, keep_pieces) in [
            (0, whole, true, false),
            (0, whole, true, true),
            (0, whole, false, false),
            (12_345, 700_000, true, false),
            (whole - 10, 10, false, false),
            (5, 0, false, false),
        ] {
            let grant = if large {
                Some(ReadGrant::take(&left).expect("a grant"))
            } else {
                None
            };
            let mut reader = reader(&path, offset, len, grant, &spares);
            let mut got = Vec::new();
            // Kept pieces cannot be read into again: fresh buffers then.
            let mut kept = Vec::new();
            while let Some(piece) = std::future::poll_fn(|cx| reader.poll_chunk(cx)).await {
                let piece = piece.unwrap();
                got.extend_from_slice(&piece);
                if keep_pieces {
                    kept.push(piece);
                }
            }
            let (start, end) = (offset as usize, (offset + len) as usize);
            assert!(got == content[start..end], "{offset}+{len}");
            drop(reader);
            let kept = spares.lock().len();
            assert!(kept <= SPARE_PIECES);
            if large && !keep_pieces && len >= 2 * LARGE_READ_CHUNK_BYTES {
                assert!(kept > 0, "a large buffer is kept for the next reader");
            }
        }
    }

    /// The connection holds the last piece until after the reader is gone,
    /// as hyper does: its buffer still comes back, so ranged reads one after
    /// another keep reusing the same few buffers.
    #[tokio::test(flavor = "current_thread")]
    async fn ranged_reads_give_every_buffer_back() {
        let dir = crate::testing::TempDir::new("spares");
        let path = dir.path().join("object");
        fs::write(&path, vec![7u8; 4 * LARGE_READ_CHUNK_BYTES as usize]).unwrap();
        let left = Arc::new(AtomicUsize::new(1));
        let spares = Spares::default();
        for round in 0..5 {
            let grant = ReadGrant::take(&left);
            let mut reader = reader(&path, 100, 3 * LARGE_READ_CHUNK_BYTES, grant, &spares);
            let mut last = None;
            while let Some(piece) = std::future::poll_fn(|cx| reader.poll_chunk(cx)).await {
                last = Some(piece.unwrap());
            }
            drop(reader);
            // Two or three buffers go round (the one being sent, the one
            // read ahead, and one more when a read starts before the piece
            // before it is dropped).
            assert!(!spares.lock().is_empty(), "round {round}");
            drop(last);
            assert!(spares.lock().len() >= 2, "round {round}");
        }
    }

    #[test]
    fn large_read_grants_are_limited_and_returned() {
        let left = Arc::new(AtomicUsize::new(2));
        let (a, b) = (ReadGrant::take(&left), ReadGrant::take(&left));
        assert!(a.is_some() && b.is_some());
        assert!(ReadGrant::take(&left).is_none());
        drop(a);
        assert!(ReadGrant::take(&left).is_some());
        drop(b);
        assert_eq!(left.load(Ordering::Acquire), 2);
    }

    /// The file system allocates one window ahead of the writes, never past
    /// the declared length: a client that declares 1 GiB and sends 1 MiB
    /// costs the disk at most a window more.
    #[test]
    fn uploads_are_allocated_a_window_ahead_up_to_their_length() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = crate::testing::TempDir::new("allocate");
        let on_disk = |writer: &Writer| writer.file.metadata().unwrap().blocks() * 512;
        let writer = |name: &str, length: u64| Writer {
            file: File::create(dir.path().join(name)).unwrap(),
            written: 0,
            unflushed: 0,
            in_writeback: None,
            length: Some(length),
            allocated: 0,
        };
        let window = WRITEBACK_INTERVAL_BYTES;
        let mut lying = writer("lying", 1 << 30);
        lying.write(&[1u8; 1 << 20]).unwrap();
        assert_eq!(lying.allocated, window);
        let allocated = on_disk(&lying);
        assert!((window..=window + 4096).contains(&allocated), "{allocated}");
        assert_eq!(lying.file.metadata().unwrap().len(), 1 << 20);

        let length = 2 * window + 5;
        let mut honest = writer("honest", length);
        let chunk = vec![2u8; 3 << 20];
        let mut left = length as usize;
        while left > 0 {
            let n = left.min(chunk.len());
            honest.write(&chunk[..n]).unwrap();
            left -= n;
        }
        assert_eq!(honest.allocated, length);
        let allocated = on_disk(&honest);
        assert!(allocated <= length.next_multiple_of(4096), "{allocated}");
        assert_eq!(
            fs::read(dir.path().join("honest")).unwrap(),
            vec![2u8; length as usize]
        );
    }

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
            (
                format!("data/ab/{id}"),
                Some(("".to_string(), Some(ObjectType::Data))),
            ),
            ("config".to_string(), Some(("".to_string(), None))),
            (
                format!("alice/snapshots/{id}"),
                Some(("alice".to_string(), Some(ObjectType::Snapshots))),
            ),
            (
                "alice/laptop/config".to_string(),
                Some(("alice/laptop".to_string(), None)),
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
        assert_eq!(classify(&err), ErrorKind::NoSpace);
        let err = io::Error::from_raw_os_error(nix::libc::EDQUOT);
        assert_eq!(classify(&err), ErrorKind::NoSpace);
        let err = io::Error::from_raw_os_error(nix::libc::EIO);
        assert_eq!(classify(&err), ErrorKind::Unexpected);
    }

    #[test]
    fn lists_only_valid_object_names() {
        let dir = std::env::temp_dir().join(format!("rs-fs-list-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let id = "ab".repeat(32);
        std::fs::write(dir.join(&id), b"12345").unwrap();
        std::fs::write(dir.join("not-an-id"), b"x").unwrap();
        std::fs::write(dir.join(format!("{TEMP_PREFIX}{id}-1-1")), b"x").unwrap();
        let listed = list_objects(&dir).unwrap();
        assert_eq!(listed, vec![(ObjectId::parse(&id).unwrap(), 5)]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(list_objects(&dir).unwrap(), vec![]);
    }

    /// A fresh folder for one test.
    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rs-fs-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn each_way_of_placing_refuses_a_taken_name() {
        type Way = fn(&Path, &Path) -> Result<(), StoreError>;
        let ways: [(&str, Way); 3] = [
            ("renameat2", |t, f| {
                assert_eq!(rename_noreplace(t, f)?, Tried::Placed);
                Ok(())
            }),
            ("link", |t, f| {
                assert_eq!(link_then_unlink(t, f)?, Tried::Placed);
                Ok(())
            }),
            ("check then rename", rename_if_free),
        ];
        let dir = scratch("place");
        for (name, way) in ways {
            let (temp, target) = (dir.join("temp"), dir.join(name));
            std::fs::write(&temp, b"first").unwrap();
            way(&temp, &target).unwrap();
            assert_eq!(std::fs::read(&target).unwrap(), b"first", "{name}");
            assert!(!temp.exists(), "{name}");
            std::fs::write(&temp, b"second").unwrap();
            let taken = way(&temp, &target).unwrap_err();
            assert_eq!(taken.kind, ErrorKind::AlreadyExists, "{name}");
            assert_eq!(std::fs::read(&target).unwrap(), b"first", "{name}");
            // The temp file is the caller's to remove.
            assert!(temp.exists(), "{name}");
            std::fs::remove_file(&temp).unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Plain `rename` replaces: only the lock in [`rename_if_free`] keeps two
    /// threads from both finding the name free.
    #[test]
    fn racing_checked_renames_keep_one() {
        const THREADS: usize = 8;
        let dir = scratch("checked");
        for round in 0..50 {
            let target = dir.join(format!("object-{round}"));
            let start = std::sync::Barrier::new(THREADS);
            let results: Vec<bool> = std::thread::scope(|scope| {
                let threads: Vec<_> = (0..THREADS)
                    .map(|i| {
                        let (dir, target, start) = (&dir, &target, &start);
                        scope.spawn(move || {
                            let temp = dir.join(format!("temp-{i}"));
                            std::fs::write(&temp, i.to_string()).unwrap();
                            start.wait();
                            match rename_if_free(&temp, target) {
                                Ok(()) => true,
                                Err(e) => {
                                    assert_eq!(e.kind, ErrorKind::AlreadyExists);
                                    std::fs::remove_file(&temp).unwrap();
                                    false
                                }
                            }
                        })
                    })
                    .collect();
                threads.into_iter().map(|t| t.join().unwrap()).collect()
            });
            let winners: Vec<usize> = (0..THREADS).filter(|&i| results[i]).collect();
            assert_eq!(winners.len(), 1, "round {round}: {results:?}");
            let stored = std::fs::read_to_string(&target).unwrap();
            assert_eq!(stored, winners[0].to_string(), "round {round}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
