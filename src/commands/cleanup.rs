//! `rest-server cleanup`: aborts the multipart uploads a crash left in the
//! bucket. A data directory's leftovers need no command: the server removes
//! them when it starts.

use crate::commands::error::CommandError;
use crate::config::{CleanupTarget, Storage};
use crate::store::s3::S3Store;

/// Aborts the bucket's multipart uploads older than `min_age` seconds;
/// returns how many.
pub fn cleanup(target: &CleanupTarget, min_age: u64) -> Result<u64, CommandError> {
    let Storage::S3 { location, settings } = &target.0 else {
        return Ok(0);
    };
    let store = S3Store::open(location, settings.as_deref()).map_err(CommandError::S3Settings)?;
    crate::runtime::block_on(None, store.cleanup(min_age))
        .map_err(CommandError::Runtime)?
        .map_err(CommandError::Store)
}
