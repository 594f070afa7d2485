//! Receiving an upload: [`FsUpload`] hands each chunk to the upload writer
//! threads ([`super::writers`]), one write in flight at a time, and at the
//! commit has them fsync and move the file into place.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::commit::create_temp;
use super::layout::{ensure_dir, file_len, is_fanned_out};
use super::store::FsStore;
use super::writers::{UploadWrite, Writer, WriterPool};
use crate::config::Modes;
use crate::repo::{Key, RepoPath};
use crate::runtime::pool::PoolGone;
use crate::store::{ErrorKind, StoreError};

impl FsStore {
    pub(super) async fn upload_to(
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
            writer: Some(Writer::new(file, length)),
            in_flight: None,
            writers: self.writers.clone(),
        })
    }
}

/// Whether an upload may start while its object exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Existing {
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

/// An upload to a temp file. Each chunk is written by one job on the upload
/// writers; the next chunk waits for it, so writes stay in order while the
/// caller prepares the next chunk.
pub(crate) struct FsUpload {
    pub(super) final_path: PathBuf,
    /// Some until a commit has renamed or removed the temp file, or an abort
    /// has removed it.
    pub(super) temp_path: Option<PathBuf>,
    /// None while a write runs on the pool.
    pub(super) writer: Option<Writer>,
    in_flight: Option<oneshot::Receiver<(Writer, Result<(), StoreError>)>>,
    writers: WriterPool,
}

/// The upload writers are gone: only when a write panicked.
fn writers_gone() -> StoreError {
    StoreError::internal("write", "the upload writer threads are gone")
}

impl FsUpload {
    /// Waits for the write in flight and takes the file back.
    pub(super) async fn settle(&mut self) -> Result<(), StoreError> {
        let Some(write) = self.in_flight.take() else {
            return Ok(());
        };
        let (writer, result) = write.await.map_err(|_| writers_gone())?;
        self.writer = Some(writer);
        result
    }
}

impl crate::store::Upload for FsUpload {
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
