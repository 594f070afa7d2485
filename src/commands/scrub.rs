//! `rest-server scrub`: one pass now over a data directory's or a bucket's
//! repositories, and `scrub --status`: the last pass's report.

use std::path::Path;

use crate::commands::error::CommandError;
use crate::config::{Modes, ScrubTarget, Storage};
use crate::runtime::pool::ComputePool;
use crate::scrub::repair::Healer;
use crate::scrub::state::Files;
use crate::store::either::AnyStore;
use crate::store::fs::{FsStore, WriterPool};
use crate::store::s3::S3Store;

/// One pass over the target's repositories (or `repo` alone), at most
/// `rate_mb` MB/s; returns how many objects are damaged.
pub fn scrub(
    target: &ScrubTarget,
    repo: Option<&str>,
    rate_mb: Option<u64>,
) -> Result<u64, CommandError> {
    let compute = ComputePool::compute().map_err(CommandError::Threads)?;
    let rate = rate_mb.unwrap_or(0).saturating_mul(1_000_000);
    let outcome = match &target.storage {
        Storage::Local(dir) => {
            data_dir_exists(dir)?;
            let writers = WriterPool::start("upload-write", 1).map_err(CommandError::Threads)?;
            let store = FsStore::new(dir.clone(), Modes::new(false), writers);
            let healer = match &target.mirror {
                None => None,
                Some(mirror) => Some(Healer {
                    local: store.clone(),
                    remote: S3Store::open_mirror(mirror).map_err(CommandError::S3Settings)?,
                    compute: compute.clone(),
                }),
            };
            let store = AnyStore::Fs(store);
            let files = Some(Files::new(dir));
            crate::runtime::block_on(
                None,
                crate::scrub::once(&store, files, compute, rate, repo, healer.as_ref(), false),
            )
        }
        Storage::S3 { location, settings } => {
            let store = AnyStore::S3(
                S3Store::open(location, settings.as_deref()).map_err(CommandError::S3Settings)?,
            );
            // A bucket location with no repository verified nothing: not
            // "clean" (a mistyped prefix).
            crate::runtime::block_on(
                None,
                crate::scrub::once(&store, None, compute, rate, repo, None, true),
            )
        }
    };
    outcome
        .map_err(CommandError::Runtime)?
        .map(|outcome| outcome.still_damaged)
        .map_err(CommandError::Scrub)
}

/// `scrub --status`: the report, and whether damage is known.
pub fn status(target: &ScrubTarget) -> Result<(String, bool), CommandError> {
    match &target.storage {
        Storage::Local(dir) => {
            data_dir_exists(dir)?;
            crate::scrub::status_report(&Files::new(dir)).map_err(CommandError::ScrubSetup)
        }
        Storage::S3 { .. } => Err(CommandError::NoScrubState),
    }
}

/// A mistyped `--path` is an error for `scrub`, not an empty data directory.
fn data_dir_exists(dir: &Path) -> Result<(), CommandError> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        _ => Err(CommandError::ScrubSetup(format!(
            "no data directory at {}",
            dir.display()
        ))),
    }
}
