//! `rest-server mirror status`: whether the offsite copy is current, from
//! the status file the running server keeps.

use std::path::Path;

use crate::commands::error::CommandError;

/// The report, and whether the mirror is current.
pub fn status(data_dir: &Path) -> Result<(String, bool), CommandError> {
    crate::mirror::status_report(data_dir).map_err(CommandError::NoMirrorStatus)
}
