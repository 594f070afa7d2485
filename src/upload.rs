//! Streaming an upload to disk: temp file, SHA-256 on the way, fsync, rename.
//!
//! Body chunks are copied into one of two fixed buffers on the event loop; a
//! full buffer goes to the I/O pool, which hashes it and writes it while the
//! loop fills the other. Hashing on the pool keeps the event loop free for
//! other clients and lets a multi-core board hash and receive at once. Memory
//! per upload is two buffers, whatever the object size.
//!
//! Nothing is visible under the final name until the whole body has arrived,
//! matched its name and been fsynced. An [`Upload`] dropped before
//! [`Upload::commit`] removes its temp file.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use ring::digest;
use tokio::task::JoinHandle;

use crate::blocking;
use crate::storage::{self, Context as _, Modes, StorageError, StorageErrorKind};

/// Size of each of the two upload buffers. 8 concurrent uploads hold 2 MiB.
pub const UPLOAD_BUFFER_BYTES: usize = 128 * 1024;

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

/// The file and hash state, moved to the I/O pool for each write.
struct Sink {
    file: File,
    hasher: Option<digest::Context>,
}

type WriteResult = (Sink, Vec<u8>, Result<(), StorageError>);

pub struct Upload {
    final_path: PathBuf,
    /// Some until the temp file is renamed into place or removed.
    temp_path: Option<PathBuf>,
    /// None while a write is running on the pool.
    sink: Option<Sink>,
    in_flight: Option<JoinHandle<WriteResult>>,
    filling: Vec<u8>,
    spare: Vec<u8>,
    written: u64,
}

impl Upload {
    /// Creates the temp file beside `final_path`. `verify` turns on hashing.
    /// For data packs whose fan-out folder is missing (a repository made by
    /// other tools), `create_parent` lets the folder be made.
    pub async fn begin(
        final_path: PathBuf,
        modes: Modes,
        verify: bool,
        create_parent: bool,
    ) -> Result<Upload, StorageError> {
        let target = final_path.clone();
        let (file, temp_path) = blocking::run(move || match storage::create_temp(&target, modes) {
            Err(e) if e.kind == StorageErrorKind::NotFound && create_parent => {
                if let Some(parent) = target.parent() {
                    let mut builder = std::fs::DirBuilder::new();
                    std::os::unix::fs::DirBuilderExt::mode(&mut builder, modes.dir);
                    match builder.create(parent) {
                        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                            return Err(e).op("create fan-out folder");
                        }
                        _ => {}
                    }
                }
                storage::create_temp(&target, modes)
            }
            other => other,
        })
        .await?;
        Ok(Upload {
            final_path,
            temp_path: Some(temp_path),
            sink: Some(Sink {
                file,
                hasher: verify.then(|| digest::Context::new(&digest::SHA256)),
            }),
            in_flight: None,
            filling: Vec::with_capacity(UPLOAD_BUFFER_BYTES),
            spare: Vec::with_capacity(UPLOAD_BUFFER_BYTES),
            written: 0,
        })
    }

    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// Bytes accepted so far.
    pub fn len(&self) -> u64 {
        self.written
    }

    pub fn is_empty(&self) -> bool {
        self.written == 0
    }

    /// Takes the next piece of the body.
    pub async fn push(&mut self, mut chunk: &[u8]) -> Result<(), StorageError> {
        self.written += chunk.len() as u64;
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

    /// Waits for the write in flight, if any, and takes back its sink and buffer.
    async fn settle(&mut self) -> Result<(), StorageError> {
        let Some(handle) = self.in_flight.take() else {
            return Ok(());
        };
        let (sink, mut buffer, result) = handle.await.map_err(|e| StorageError {
            kind: StorageErrorKind::Unexpected,
            op: "blocking task",
            source: std::io::Error::other(e.to_string()),
        })?;
        buffer.clear();
        self.spare = buffer;
        self.sink = Some(sink);
        result
    }

    /// Hands the filled buffer to the pool, after the previous write finished
    /// (writes stay in order; at most one per upload runs at a time).
    async fn submit(&mut self) -> Result<(), StorageError> {
        self.settle().await?;
        let Some(mut sink) = self.sink.take() else {
            return Err(StorageError {
                kind: StorageErrorKind::Unexpected,
                op: "write",
                source: std::io::Error::other("upload sink lost after a failed write"),
            });
        };
        let next = std::mem::take(&mut self.spare);
        let buffer = std::mem::replace(&mut self.filling, next);
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            if let Some(hasher) = sink.hasher.as_mut() {
                hasher.update(&buffer);
            }
            let result = sink.file.write_all(&buffer).op("write");
            (sink, buffer, result)
        }));
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
        let mut sink = self.sink.take().ok_or(UploadError::Storage(StorageError {
            kind: StorageErrorKind::Unexpected,
            op: "commit",
            source: std::io::Error::other("upload sink missing"),
        }))?;
        if let (Some(hasher), Some(expected)) = (sink.hasher.take(), expected)
            && hasher.finish().as_ref() != expected
        {
            return Err(UploadError::HashMismatch);
        }
        let temp = self.temp_path.clone().unwrap_or_default();
        let target = self.final_path.clone();
        blocking::run(move || {
            match sink.file.sync_all() {
                Err(e) if !storage::is_unsupported(&e) => return Err(e).op("fsync"),
                _ => {}
            }
            drop(sink);
            storage::commit_temp(&temp, &target)
        })
        .await?;
        self.temp_path = None;
        Ok(self.written)
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
