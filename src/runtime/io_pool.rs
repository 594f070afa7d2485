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
//! they have their own thread (`client::resolve`).

use tokio::task::JoinHandle;

/// Starts a blocking file operation on the pool. The store waits on it
/// through `store::blocking`, which makes a lost task a store error.
pub(crate) fn spawn<T, F>(op: F) -> JoinHandle<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    tokio::task::spawn_blocking(op)
}
