//! Streaming an upload to disk: temp file, SHA-256 on the way, fsync, rename.
//!
//! Body chunks are copied into one of two fixed buffers on the event loop. A
//! full buffer goes to the I/O pool as two tasks that run at the same time:
//! one feeds it to the SHA-256 context, the other writes it to the file. Each
//! kind of task stays in order because the next buffer is only handed over
//! once both tasks of the previous one are done. So receiving, hashing and
//! writing overlap, and on a board where hashing and the disk are about as fast
//! as each other the upload runs at the slower of the two instead of at half
//! that (which is where read-hash-write-in-turn ends up).
//!
//! Every [`WRITEBACK_INTERVAL_BYTES`] the writer also flushes what it wrote
//! (`fdatasync`), so the disk works while the body still streams in and the
//! final fsync only has the tail left.
//!
//! Nothing is visible under the final name until the whole body has arrived,
//! matched its name and been fsynced. An [`Upload`] dropped before
//! [`Upload::commit`] removes its temp file.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use ring::digest;
use tokio::task::JoinHandle;

use crate::blocking;
use crate::storage::{self, Context as _, Modes, StorageError};

/// Size of each of the two upload buffers: 384 KiB per upload in flight.
/// Larger buffers mean fewer hand-offs to the I/O pool (each costs two thread
/// wake-ups); 8 uploads at once still fit the 8 MiB memory budget.
pub const UPLOAD_BUFFER_BYTES: usize = 192 * 1024;

/// How much an upload writes between two flushes to disk.
pub const WRITEBACK_INTERVAL_BYTES: u64 = 8 << 20;

/// Why an upload could not be stored.
#[derive(Debug)]
pub enum UploadError {
    HashMismatch,
    Storage(StorageError),
}

impl From<StorageError> for UploadError {
    fn from(err: StorageError) -> UploadError {
        UploadError::Storage(err)
    }
}

/// The temp file, moved to the I/O pool for each write.
struct Writer {
    file: File,
    unflushed: u64,
}

impl Writer {
    fn write(&mut self, buffer: &[u8]) -> Result<(), StorageError> {
        self.file.write_all(buffer).op("write")?;
        self.unflushed += buffer.len() as u64;
        if self.unflushed >= WRITEBACK_INTERVAL_BYTES {
            self.unflushed = 0;
            sync_data(&self.file)?;
        }
        Ok(())
    }
}

/// fdatasync, tolerating filesystems that cannot (some FUSE and network ones).
fn sync_data(file: &File) -> Result<(), StorageError> {
    match file.sync_data() {
        Err(e) if !storage::is_unsupported(&e) => Err(e).op("fsync"),
        _ => Ok(()),
    }
}

/// The tasks working on one buffer.
struct InFlight {
    buffer: Arc<Vec<u8>>,
    write: JoinHandle<(Writer, Result<(), StorageError>)>,
    hash: Option<JoinHandle<digest::Context>>,
}

pub struct Upload {
    final_path: PathBuf,
    /// Some until the temp file is renamed into place or removed.
    temp_path: Option<PathBuf>,
    /// None while a write runs on the pool.
    writer: Option<Writer>,
    /// None while hashing runs on the pool, or when not verifying.
    hasher: Option<digest::Context>,
    verify: bool,
    in_flight: Option<InFlight>,
    filling: Vec<u8>,
    spare: Vec<u8>,
    received: u64,
}

impl Upload {
    /// Creates the temp file beside `final_path` (see [`storage::begin_upload`];
    /// a taken name is AlreadyExists). `verify` turns on hashing.
    pub async fn begin(
        final_path: PathBuf,
        modes: Modes,
        verify: bool,
        create_parent: bool,
    ) -> Result<Upload, StorageError> {
        let target = final_path.clone();
        let (file, temp_path) =
            blocking::run(move || storage::begin_upload(&target, modes, create_parent)).await?;
        Ok(Upload {
            final_path,
            temp_path: Some(temp_path),
            writer: Some(Writer { file, unflushed: 0 }),
            hasher: verify.then(|| digest::Context::new(&digest::SHA256)),
            verify,
            in_flight: None,
            filling: Vec::with_capacity(UPLOAD_BUFFER_BYTES),
            spare: Vec::with_capacity(UPLOAD_BUFFER_BYTES),
            received: 0,
        })
    }

    /// Bytes accepted so far.
    pub fn len(&self) -> u64 {
        self.received
    }

    pub fn is_empty(&self) -> bool {
        self.received == 0
    }

    /// Takes the next piece of the body.
    pub async fn push(&mut self, mut chunk: &[u8]) -> Result<(), StorageError> {
        self.received += chunk.len() as u64;
        while !chunk.is_empty() {
            let room = UPLOAD_BUFFER_BYTES - self.filling.len();
            let take = room.min(chunk.len());
            self.filling.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if self.filling.len() == UPLOAD_BUFFER_BYTES {
                self.submit().await?;
            }
        }
        Ok(())
    }

    /// Waits for the tasks of the previous buffer and takes back the file,
    /// the hash context and the buffer.
    async fn settle(&mut self) -> Result<(), StorageError> {
        let Some(in_flight) = self.in_flight.take() else {
            return Ok(());
        };
        if let Some(hash) = in_flight.hash {
            self.hasher = Some(hash.await.map_err(StorageError::lost_task)?);
        }
        let (writer, result) = in_flight.write.await.map_err(StorageError::lost_task)?;
        self.writer = Some(writer);
        // Both tasks have dropped their handles to the buffer by now.
        if let Ok(mut buffer) = Arc::try_unwrap(in_flight.buffer) {
            buffer.clear();
            self.spare = buffer;
        }
        result
    }

    /// Hands the filled buffer to the pool once the previous one is done.
    async fn submit(&mut self) -> Result<(), StorageError> {
        self.settle().await?;
        let Some(mut writer) = self.writer.take() else {
            return Err(StorageError::internal(
                "write",
                "upload file lost after a failed write",
            ));
        };
        let mut next = std::mem::take(&mut self.spare);
        next.reserve(UPLOAD_BUFFER_BYTES);
        let buffer = Arc::new(std::mem::replace(&mut self.filling, next));
        let hash = self.hasher.take().map(|mut hasher| {
            let buffer = buffer.clone();
            tokio::task::spawn_blocking(move || {
                hasher.update(&buffer);
                hasher
            })
        });
        let to_write = buffer.clone();
        let write = tokio::task::spawn_blocking(move || {
            let result = writer.write(&to_write);
            (writer, result)
        });
        self.in_flight = Some(InFlight {
            buffer,
            write,
            hash,
        });
        Ok(())
    }

    /// Writes what is left, checks the hash against `expected` (when
    /// verifying), fsyncs, and renames the file into place without replacing
    /// an existing one.
    pub async fn commit(mut self, expected: Option<[u8; 32]>) -> Result<u64, UploadError> {
        if !self.filling.is_empty() {
            self.submit().await?;
        }
        self.settle().await?;
        if let (Some(expected), true) = (expected, self.verify) {
            let hasher = self
                .hasher
                .take()
                .ok_or_else(|| StorageError::internal("commit", "hash context missing"))?;
            if hasher.finish().as_ref() != expected {
                return Err(UploadError::HashMismatch);
            }
        }
        let writer = self
            .writer
            .take()
            .ok_or_else(|| StorageError::internal("commit", "upload file missing"))?;
        let temp = self.temp_path.clone().unwrap_or_default();
        let target = self.final_path.clone();
        blocking::run(move || {
            match writer.file.sync_all() {
                Err(e) if !storage::is_unsupported(&e) => return Err(e).op("fsync"),
                _ => {}
            }
            drop(writer);
            storage::commit_temp(&temp, &target)
        })
        .await?;
        self.temp_path = None;
        Ok(self.received)
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(temp) = self.temp_path.take() {
            // A write may still run on the pool; unlinking under it is fine on
            // Unix: the bytes go to an inode that no name points to.
            if let Err(e) = std::fs::remove_file(&temp) {
                log::error!("could not remove temp file {}: {e}", temp.display());
            }
        }
    }
}
