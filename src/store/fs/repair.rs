//! What the scrub's repair needs of the data directory: a replacement for a
//! damaged object, written like an upload ([`FsStore::begin_replacement`]),
//! then swapped in for the damaged copy only if that copy still does not
//! match its name ([`FsUpload::replace_damaged`]). Only the filesystem store
//! repairs: a bucket has no local copy to heal.

use std::fs::{self, File};
use std::path::Path;

use super::commit::{remove_temp, sync, sync_dir};
use super::read::LARGE_READ_CHUNK_BYTES;
use super::store::FsStore;
use super::write::{Existing, FsUpload};
use crate::repo::{Key, RepoPath};
use crate::store::{ErrorKind, Op as _, StoreError, classify};

impl FsStore {
    /// Starts writing a replacement for a damaged object (the scrub's
    /// repair); it is put in place by [`FsUpload::replace_damaged`].
    pub(crate) async fn begin_replacement(
        &self,
        repo: &RepoPath,
        key: Key<'_>,
    ) -> Result<FsUpload, StoreError> {
        self.upload_to(repo, key, Existing::Replace, None).await
    }
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
                match crate::store::noreplace::exchange(&temp, &target) {
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
