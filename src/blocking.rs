//! The file I/O pool.
//!
//! Every open, write, fsync, rename and readdir runs on tokio's blocking pool,
//! never on the one event-loop thread: an fsync on an SD card can take hundreds
//! of milliseconds, and meanwhile every other connection must keep moving. We
//! use the runtime's own pool rather than one dedicated I/O thread so that a slow
//! fsync of one upload does not queue the reads of another client behind it;
//! the pool is capped (`--io-threads`) so that a burst of clients cannot spawn
//! a thread each on a board with 512 MiB of RAM.

use crate::storage::StorageError;

/// Runs a blocking storage operation on the pool and waits for it.
pub async fn run<T, F>(op: F) -> Result<T, StorageError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StorageError> + Send + 'static,
{
    match tokio::task::spawn_blocking(op).await {
        Ok(result) => result,
        Err(join) => Err(StorageError::lost_task(join)),
    }
}
