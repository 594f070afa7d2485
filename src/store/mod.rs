//! The repository store: what the REST endpoints need from storage, asked by
//! repository, object type and id — never by path.
//!
//! Two traits: [`Store`], the operations on objects (size, open, upload,
//! delete, list), and [`Lifecycle`], what is asked of a store as a whole
//! (the startup scan, what each repository holds, free space, health). They
//! are implemented by the local filesystem ([`fs::FsStore`], restic's local
//! layout), a bucket ([`s3::S3Store`]) and, for in-process tests, a
//! fault-injecting in-memory store. Handlers are generic over them, so a
//! backend costs nothing per call and nothing per chunk (no `dyn`); the
//! server runs on [`either::AnyStore`], one enum over the backends. Storage
//! knows nothing of HTTP or metrics: it returns its own error kinds and
//! statistics types.
//!
//! How to add a backend:
//!
//! 1. One module here (`store/<name>/`): a handle type that implements
//!    [`Store`] and [`Lifecycle`], with its reader, listing and upload types
//!    ([`ObjectReader`], [`Listing`], [`Upload`]). Its failures become
//!    [`StoreError`]s: the [`ErrorKind`] the client is answered by, and the
//!    backend's own error as the cause (`StoreError::new(kind, op, err)`),
//!    never its text.
//! 2. One line in the `backends!` list at the bottom of [`either`]; the enums
//!    and their match arms are written out from it.
//! 3. Where the server picks its store: the startup in `app` (and
//!    `commands/scrub.rs` if the scrub is to run on it), with its settings
//!    in `config`/`cli`.
//!
//! Nothing on the request path changes: it is generic over [`Store`], and
//! the server's one instantiation is [`either::AnyStore`]. Test it as the
//! S3 store is (the integration tests run the API and restic against it).

pub(crate) mod either;
pub(crate) mod fs;
#[cfg(test)]
pub(crate) mod memory;
mod noreplace;
pub(crate) mod s3;
pub(crate) mod trash;
mod writeback;

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::task::{Context, Poll};

use bytes::Bytes;

use crate::repo::range::{ByteRange, RangeError, Want};
use crate::repo::{Key, ObjectId, ObjectType, RepoPath};

/// What went wrong in a store, as far as a client needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    NotFound,
    AlreadyExists,
    /// ENOSPC or EDQUOT: the disk or the user's disk quota is full.
    NoSpace,
    Unexpected,
}

/// A failed store operation: the kind for the client, the cause for the log.
#[derive(Debug)]
pub(crate) struct StoreError {
    pub(crate) kind: ErrorKind,
    pub(crate) op: &'static str,
    /// Why, as the layer below said it: an OS error, or a backend's own
    /// error (a bucket's answer with its code and message, a lost task) kept
    /// whole inside an `io::Error` ([`io::Error::other`] boxes the error
    /// itself, not its text), where `source()` finds it. `io::Error` as the
    /// carrier rather than an `Option<Box<dyn Error>>` beside it: an OS
    /// error allocates nothing, and the struct stays 32 bytes; every
    /// `Result` on the request path carries one, and 48 bytes cost 7.5 KB of
    /// the aarch64 binary's budget.
    cause: io::Error,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.op, self.cause)
    }
}

impl std::error::Error for StoreError {
    /// The backend's own error when there is one, else the OS error.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self.cause.get_ref() {
            Some(inner) => Some(inner),
            None => Some(&self.cause),
        }
    }
}

// The constructors are `#[cold]` and out of line: they are on the failure
// paths of every store call, and inlined into each (opt-level 3) they cost
// 9 KB of the aarch64 binary's budget.
impl StoreError {
    /// A failure of kind `kind` that `cause` explains: the backend's own
    /// error, or a fixed text.
    #[cold]
    #[inline(never)]
    pub(crate) fn new(
        kind: ErrorKind,
        op: &'static str,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> StoreError {
        let cause = io::Error::other(cause);
        StoreError { kind, op, cause }
    }

    /// An OS error, of the kind [`classify`] gives it.
    #[cold]
    #[inline(never)]
    pub(crate) fn os(op: &'static str, cause: io::Error) -> StoreError {
        let kind = classify(&cause);
        StoreError { kind, op, cause }
    }

    /// Something that is not there in the form asked for (a folder where a
    /// file was expected, say): answered like a missing file.
    #[cold]
    #[inline(never)]
    pub(crate) fn not_found(op: &'static str) -> StoreError {
        let cause = io::ErrorKind::NotFound.into();
        StoreError {
            kind: ErrorKind::NotFound,
            op,
            cause,
        }
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn exists(op: &'static str) -> StoreError {
        let cause = io::ErrorKind::AlreadyExists.into();
        StoreError {
            kind: ErrorKind::AlreadyExists,
            op,
            cause,
        }
    }

    /// A broken invariant or a lost pool task: the server's fault. `why` is
    /// a fixed text or the error that says it.
    pub(crate) fn internal(
        op: &'static str,
        why: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> StoreError {
        StoreError::new(ErrorKind::Unexpected, op, why)
    }

    /// A pool task that did not return (it panicked or was cancelled).
    #[cold]
    #[inline(never)]
    pub(crate) fn lost_task(err: tokio::task::JoinError) -> StoreError {
        StoreError::internal("blocking task", err)
    }

    /// The OS error behind this one, if that is its cause (the scrub tells
    /// damage on the disk from a passing trouble by it).
    pub(crate) fn io(&self) -> Option<&io::Error> {
        match self.cause.get_ref() {
            None => Some(&self.cause),
            Some(inner) => inner.downcast_ref(),
        }
    }
}

/// Runs a blocking file operation on the file-I/O pool
/// ([`crate::runtime::io_pool`]) and waits for it; a lost task (it panicked,
/// or the runtime is stopping) is a store error.
pub(crate) async fn blocking<T, F>(op: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    match crate::runtime::io_pool::spawn(op).await {
        Ok(result) => result,
        Err(join) => Err(StoreError::lost_task(join)),
    }
}

/// The one place where OS errors become store error kinds.
pub(crate) fn classify(err: &io::Error) -> ErrorKind {
    use nix::errno::Errno;
    match err.kind() {
        io::ErrorKind::NotFound => return ErrorKind::NotFound,
        io::ErrorKind::AlreadyExists => return ErrorKind::AlreadyExists,
        _ => {}
    }
    match err.raw_os_error().map(Errno::from_raw) {
        Some(Errno::ENOSPC) | Some(Errno::EDQUOT) => ErrorKind::NoSpace,
        Some(Errno::ENOTDIR) => ErrorKind::NotFound,
        _ => ErrorKind::Unexpected,
    }
}

/// Attaches the operation name and the classified kind to an `io::Error`.
pub(crate) trait Op<T> {
    fn op(self, op: &'static str) -> Result<T, StoreError>;
}

impl<T> Op<T> for io::Result<T> {
    fn op(self, op: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::os(op, source))
    }
}

/// Why a file cannot be opened for reading.
#[derive(Debug)]
pub(crate) enum OpenError {
    Store(StoreError),
    /// The asked-for range lies outside the file.
    Range(RangeError),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Store(e) => e.fmt(f),
            OpenError::Range(e) => e.fmt(f),
        }
    }
}

impl From<StoreError> for OpenError {
    fn from(err: StoreError) -> OpenError {
        OpenError::Store(err)
    }
}

impl From<RangeError> for OpenError {
    fn from(err: RangeError) -> OpenError {
        OpenError::Range(err)
    }
}

/// What a store is told about an upload before its first byte: a remote
/// store needs the length up front and can have the content checked on
/// arrival.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Incoming {
    /// The body's length, when the client declared it.
    pub(crate) length: Option<u64>,
    /// The SHA-256 the content must have, when uploads are verified.
    pub(crate) sha256: Option<[u8; 32]>,
}

/// What is stored in one repository.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RepoStats {
    pub(crate) bytes: u64,
    /// Objects of every type (the config is not one).
    pub(crate) objects: u64,
    /// Modification time (Unix seconds) of the newest snapshot.
    pub(crate) newest_snapshot: Option<u64>,
    /// Snapshot files: what the deletion alarm weighs deletes against.
    pub(crate) snapshots: u64,
    /// Bytes of its deleted files the trash keeps (`--trash-days`): they
    /// count in its budgets until purged, so that deleting and uploading
    /// again cannot fill the disk past them.
    pub(crate) trash_bytes: u64,
}

/// Per repository, by label (`alice/laptop`; empty for the root one).
pub(crate) type Repos = BTreeMap<String, RepoStats>;

/// What the startup scan found.
#[derive(Debug, Default, Clone)]
pub(crate) struct Scan {
    /// Bytes in every stored file.
    pub(crate) bytes: u64,
    /// Unfinished uploads a crash left behind, now removed.
    pub(crate) temps_removed: u64,
    pub(crate) repos: Repos,
}

/// Free and total bytes where the store keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Space {
    pub(crate) free: u64,
    pub(crate) total: u64,
    /// With `--trash-days`: what the trash holds (part of the used bytes).
    pub(crate) trash: Option<TrashUse>,
}

/// What the trash holds, and for how long it keeps a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TrashUse {
    pub(crate) files: u64,
    pub(crate) bytes: u64,
    pub(crate) days: u64,
}

/// A repository store. Every method is asynchronous and never blocks the
/// event loop; a store that does blocking I/O runs it on the I/O pool.
/// `Clone`: a handle (shared state inside), so that work which must finish
/// once started (a commit, a delete and what follows them) can run in a
/// task of its own.
pub(crate) trait Store: Lifecycle + Clone + 'static {
    type Reader: ObjectReader;
    type Listing: Listing;
    type Upload: Upload;

    /// Creates the repository (its folders, where the layout has any).
    /// Idempotent.
    async fn create_repo(&self, repo: &RepoPath) -> Result<(), StoreError>;

    /// The size of a stored file; NotFound when it is not there.
    async fn size(&self, repo: &RepoPath, key: Key<'_>) -> Result<u64, StoreError>;

    /// Opens a stored file to send the bytes `want` asks for (a remote store
    /// asks for just those); the reader knows the file's size.
    async fn open(
        &self,
        repo: &RepoPath,
        key: Key<'_>,
        want: Want,
    ) -> Result<Self::Reader, OpenError>;

    /// Starts an upload; AlreadyExists when the name is taken. Nothing is
    /// visible under the name until [`Upload::commit`]; an upload dropped
    /// before that leaves nothing behind.
    async fn begin_upload(
        &self,
        repo: &RepoPath,
        key: Key<'_>,
        incoming: Incoming,
    ) -> Result<Self::Upload, StoreError>;

    /// Removes a stored file and returns the bytes it freed; a missing file
    /// frees nothing and is no error, because restic retries deletes. A
    /// store with a trash keeps the file there, as deleted by `by` (the
    /// user; None without authentication, or for the mirror's deletes).
    async fn delete(
        &self,
        repo: &RepoPath,
        key: Key<'_>,
        by: Option<&str>,
    ) -> Result<u64, StoreError>;

    /// The objects of one type, streamed in batches; NotFound when the
    /// repository (or its type folder) does not exist.
    async fn list(&self, repo: &RepoPath, kind: ObjectType) -> Result<Self::Listing, StoreError>;
}

/// What is asked of a store as a whole rather than of one object: at
/// startup, by the status page, `/metrics` and `/health`, and by the scrub.
///
/// A supertrait of [`Store`] rather than a second bound beside it: every
/// store the server runs on is scanned at startup and counted, so none goes
/// without it, and the request path keeps its one bound (`S: Store`) instead
/// of carrying `+ Lifecycle` through every generic function from the listener
/// to `/health`. What only a disk can answer has a default (None), so a
/// bucket implements `scan` and `repos` alone.
pub(crate) trait Lifecycle {
    /// Runs once at startup: prepares the store, removes what crashed uploads
    /// left, and counts what is stored.
    async fn scan(&self) -> Result<Scan, StoreError>;

    /// What is stored now, per repository (by label); changes nothing.
    async fn repos(&self) -> Result<Repos, StoreError>;

    /// Free and total bytes, when the store can tell (a bucket cannot).
    async fn space(&self) -> Option<Space> {
        None
    }

    /// Why the store cannot take backups now, if it cannot (`/health`):
    /// read-only, not writable, or under `min_free` bytes free. Writes
    /// nothing (an SD card is probed every few seconds).
    ///
    /// A store with no disk of its own (a bucket) has nothing to say here:
    /// its reachability shows in every request's answer and in the log.
    async fn unhealthy(&self, _min_free: u64) -> Option<String> {
        None
    }

    /// Whether a delete of `key` keeps the file in the trash (its bytes
    /// stay on the disk) rather than removing it.
    fn keeps_deleted(&self, _key: Key<'_>) -> bool {
        false
    }

    /// Removes from the trash what is older than its window; returns the
    /// bytes removed per repository (by label).
    async fn purge_trash(&self) -> Vec<(String, u64)> {
        Vec::new()
    }
}

/// A stored file being read, chunk by chunk.
pub(crate) trait ObjectReader: Unpin + 'static {
    /// The whole file's size.
    fn size(&self) -> u64;
    /// The bytes being sent.
    fn range(&self) -> ByteRange;
    /// Bytes still to send.
    fn remaining(&self) -> u64;
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, StoreError>>>;
}

/// Object names and sizes, as a listing yields them.
pub(crate) type Batch = Vec<(ObjectId, u64)>;

/// A listing being read, batch by batch (a folder at a time, say).
pub(crate) trait Listing: Unpin + 'static {
    fn poll_batch(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Batch, StoreError>>>;
}

/// The next batch of a listing; None at its end.
pub(crate) async fn next_batch(listing: &mut impl Listing) -> Option<Result<Batch, StoreError>> {
    std::future::poll_fn(|cx| listing.poll_batch(cx)).await
}

/// A whole listing at once (for listings known to be short, or compared whole).
pub(crate) async fn collect(mut listing: impl Listing) -> Result<Batch, StoreError> {
    let mut all = Vec::new();
    while let Some(batch) = next_batch(&mut listing).await {
        all.extend(batch?);
    }
    Ok(all)
}

/// An upload in progress. Dropped before [`Upload::commit`], it is aborted
/// and leaves nothing visible.
pub(crate) trait Upload: 'static {
    /// Takes the next chunk of the content. May return before the chunk is
    /// written (pipelining); errors show up at the latest in `commit`.
    async fn push(&mut self, chunk: Bytes) -> Result<(), StoreError>;

    /// Returns once the upload holds no pushed chunk (an S3 upload keeps
    /// only a copy of the last byte), so that the caller can bound the
    /// memory its chunks pin.
    async fn settled(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Makes the content durable and visible under its name, without ever
    /// replacing an existing file (AlreadyExists).
    async fn commit(self) -> Result<(), StoreError>;

    /// Gives the upload up and returns once nothing of it is left (dropping
    /// it does the same in the background).
    async fn abort(self)
    where
        Self: Sized,
    {
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_space_errors() {
        let err = io::Error::from_raw_os_error(nix::libc::ENOSPC);
        assert_eq!(classify(&err), ErrorKind::NoSpace);
        let err = io::Error::from_raw_os_error(nix::libc::EDQUOT);
        assert_eq!(classify(&err), ErrorKind::NoSpace);
        let err = io::Error::from_raw_os_error(nix::libc::EIO);
        assert_eq!(classify(&err), ErrorKind::Unexpected);
    }

    /// An OS error stays one: the kind classified, the errno readable.
    #[test]
    fn os_errors_keep_their_errno() {
        let err = StoreError::os("read", io::Error::from_raw_os_error(nix::libc::EIO));
        assert_eq!(err.kind, ErrorKind::Unexpected);
        assert_eq!(
            err.io().and_then(io::Error::raw_os_error),
            Some(nix::libc::EIO)
        );
        assert!(std::error::Error::source(&err).is_some());
        assert_eq!(
            std::mem::size_of::<StoreError>(),
            32,
            "see StoreError::cause"
        );
    }
}
