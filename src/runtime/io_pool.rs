//! The file I/O pool: tokio's blocking pool, capped by `--io-threads`.
//!
//! The filesystem store's opens, reads, stats, listings, deletes and the start
//! of uploads, the startup scan, and the reading of watched files (htpasswd,
//! ACL, TLS) run here, never on the one event-loop thread: an fsync on an SD
//! card can take hundreds of milliseconds, and meanwhile every other
//! connection must keep moving. The cap keeps a burst of clients from
//! spawning a thread each on a board with 512 MiB of RAM. The bulk work has
//! pools of its own ([`crate::runtime::pool`]): uploads' writes and fsyncs, and the
//! CPU-heavy hashing and bcrypt, so that none of it can hold up a small read.
//! Nor do the S3 store's name lookups run here (tokio would put them here):
//! they have their own thread ([`crate::store::s3`]'s `resolve`).

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
