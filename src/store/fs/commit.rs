//! The commit protocol of the filesystem store, where its durability lives:
//! an upload is written to a temp file created with `create_new` beside its
//! final name, fsynced, moved into place without ever replacing an object
//! ([`commit_temp`]), and the folder is fsynced; a delete fsyncs its folder
//! too ([`remove`]). At any moment a name holds nothing or a whole object;
//! what a crash leaves is a temp file, known by [`TEMP_PREFIX`] and removed
//! by the startup scan.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::config::Modes;
use crate::store::{ErrorKind, Op as _, StoreError, classify};

/// Name prefix of our upload temp files. The leading dot keeps them out of
/// every listing and out of reach of any route (segments may not start with a dot).
pub(super) const TEMP_PREFIX: &str = ".rest-server-tmp-";

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Creates a fresh temp file beside `final_path`, never replacing anything.
pub(super) fn create_temp(final_path: &Path, modes: Modes) -> Result<(File, PathBuf), StoreError> {
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

/// Flushes a folder's entries (a rename or unlink in it) to disk.
pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
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
pub(super) fn sync(file: &File, data_only: bool) -> Result<(), StoreError> {
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

/// Makes a finished temp file visible under its final name without ever
/// replacing an existing object, then makes the change durable.
pub(super) fn commit_temp(temp: &Path, final_path: &Path) -> Result<(), StoreError> {
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
    match crate::store::noreplace::rename(temp, final_path) {
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

/// Removes an upload's temp file; one that is gone already (renamed into
/// place before a later step failed) is no error.
pub(super) fn remove_temp(temp: &Path) {
    match fs::remove_file(temp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            log::error!("could not remove temp file {}: {e}", temp.display());
        }
        _ => {}
    }
}

/// Removes a file and returns the bytes it freed (see [`crate::store::Store::delete`]).
pub(super) fn remove(path: &Path) -> Result<u64, StoreError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
