//! The file I/O pool: tokio's blocking pool, capped by `--io-threads`.
//!
//! Every open, write, fsync, rename and readdir of the filesystem store, and
//! the reading of watched files (htpasswd, ACL, TLS), runs here, never on the
//! one event-loop thread: an fsync on an SD card can take hundreds of
//! milliseconds, and meanwhile every other connection must keep moving. The
//! cap keeps a burst of clients from spawning a thread each on a board with
//! 512 MiB of RAM. CPU-heavy work (hashing, bcrypt) has its own pool
//! ([`crate::pool`]) so that it cannot starve file I/O, nor file I/O it.

use tokio::task::JoinHandle;

use crate::store::StoreError;

/// Runs a blocking file operation on the pool and waits for it.
pub(crate) async fn run<T, F>(op: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    match spawn(op).await {
        Ok(result) => result,
        Err(join) => Err(StoreError::lost_task(join)),
    }
}

/// Starts a blocking file operation on the pool; for code that polls.
pub(crate) fn spawn<T, F>(op: F) -> JoinHandle<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    tokio::task::spawn_blocking(op)
}
