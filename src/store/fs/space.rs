//! How much room the data directory has and whether it can take backups
//! (`/health`, `/metrics`, the status page): statvfs and access only, so
//! that a probe every few seconds writes nothing to an SD card.

use std::path::Path;

use crate::store::Space;

/// Why the data directory cannot take backups, if it cannot.
pub(super) fn fs_unhealthy(root: &Path, min_free: u64) -> Option<String> {
    use nix::sys::statvfs::{FsFlags, statvfs};
    use nix::unistd::{AccessFlags, access};
    let stat = match statvfs(root) {
        Ok(stat) => stat,
        Err(e) => return Some(format!("the data directory cannot be read: {e}")),
    };
    // A disk with errors is often remounted read-only by the kernel.
    if stat.flags().contains(FsFlags::ST_RDONLY) {
        return Some("the data directory's file system is read-only".to_string());
    }
    if let Err(e) = access(root, AccessFlags::W_OK) {
        return Some(format!("the data directory is not writable: {e}"));
    }
    let free = stat.blocks_available() as u64 * stat.fragment_size() as u64;
    (free < min_free).then(|| {
        format!("{free} bytes free in the data directory, below --health-min-free {min_free}")
    })
}

/// Free and total bytes of the filesystem at `path`.
pub(super) fn fs_space(path: &Path) -> Option<Space> {
    let stat = nix::sys::statvfs::statvfs(path).ok()?;
    let fragment = stat.fragment_size() as u64;
    Some(Space {
        free: stat.blocks_available() as u64 * fragment,
        total: stat.blocks() as u64 * fragment,
        trash: None,
    })
}
