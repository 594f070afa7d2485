//! [`FsStore`]: the handle on the data directory, and what all its
//! operations share (the permission bits, the readers' large-piece grants
//! and spare buffers, the upload writer threads). Cheap to clone.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};

use super::read::{LARGE_READERS, Spares};
use super::writers::WriterPool;
use crate::config::Modes;

/// The data directory.
#[derive(Clone)]
pub(crate) struct FsStore {
    pub(super) root: Arc<PathBuf>,
    pub(super) modes: Modes,
    /// Large-piece grants left for readers (see [`LARGE_READERS`]).
    pub(super) large_reads: Arc<AtomicUsize>,
    /// Large piece buffers for readers to reuse.
    pub(super) spares: Spares,
    /// The threads that write and fsync uploads. Not the I/O pool: four
    /// large uploads that fsync would keep a pool of four busy, and every
    /// other client's small read would wait behind them.
    pub(super) writers: WriterPool,
    /// `--trash-days`: a client's delete moves the file into the trash
    /// (see [`super::trash`]); None removes it.
    pub(super) trash_days: Option<u64>,
    /// Files and bytes in the trash: counted at the startup scan, then kept
    /// by deletes and purges (a scrape of `/metrics` walks nothing).
    pub(super) trash_count: Arc<[AtomicU64; 2]>,
}

impl FsStore {
    pub(crate) fn new(root: PathBuf, modes: Modes, writers: WriterPool) -> FsStore {
        FsStore {
            root: Arc::new(root),
            modes,
            large_reads: Arc::new(AtomicUsize::new(LARGE_READERS)),
            spares: Spares::default(),
            writers,
            trash_days: None,
            trash_count: Default::default(),
        }
    }

    /// This store, keeping deleted files for `days` days (`--trash-days`).
    pub(crate) fn with_trash(self, days: Option<u64>) -> FsStore {
        FsStore {
            trash_days: days,
            ..self
        }
    }
}
