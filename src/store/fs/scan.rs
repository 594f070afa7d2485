//! Walking the data directory: the startup scan (which removes the temp
//! files of uploads a crash cut short and counts what is stored, per
//! repository) and the listings of one object type, read a folder at a
//! time.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::task::JoinHandle;

use super::commit::TEMP_PREFIX;
use super::layout::is_fanned_out;
use crate::repo::{MAX_REPO_DEPTH, ObjectId, ObjectType};
use crate::runtime::io_pool;
use crate::store::{Batch, ErrorKind, Listing, Op as _, RepoStats, Scan, StoreError, classify};

/// Marker in the temp file names restic's Go rest-server leaves after a crash
/// (`{id}.rest-server-temp{random}`); removed at startup too, since users swap
/// that server for this one on the same data.
const GO_TEMP_MARKER: &str = ".rest-server-temp";

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
pub(super) enum Tidy {
    RemoveTemps,
    Leave,
}

/// Walks the data directory: at startup removes upload temp files a crash
/// left behind, and counts the bytes stored (for `--max-size`).
pub(super) fn scan(root: &Path, tidy: Tidy) -> Result<Scan, StoreError> {
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
                    stats.snapshots += 1;
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

/// The folders whose files make up a listing of `kind`: the type folder itself,
/// or for data its existing two-hex-digit subfolders. Missing type folder: NotFound.
pub(super) fn listing_dirs(type_dir: &Path, kind: ObjectType) -> Result<Vec<PathBuf>, StoreError> {
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

/// A listing, read one folder at a time on the I/O pool.
pub(crate) struct FsListing {
    pub(super) dirs: VecDeque<PathBuf>,
    pub(super) pending: Option<JoinHandle<Result<Batch, StoreError>>>,
}

impl Listing for FsListing {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
