//! Small file systems mounted for a test (root): a tmpfs of a few MiB that
//! fills up at once, remounted read-only at will, unmounted when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted for the test's lifetime; needs root.
pub struct SmallDisk(PathBuf);

impl SmallDisk {
    /// A tmpfs of `size` (mount's units: `2m`) at `at`, made if missing;
    /// None if it cannot be mounted (root without the right to mount: a
    /// container without CAP_SYS_ADMIN).
    pub fn mount(at: &Path, size: &str) -> Option<SmallDisk> {
        SmallDisk::mount_with(at, &format!("size={size}"))
    }

    /// A tmpfs with mount `options` (`size=4m,uid=1000,mode=0700`) at `at`.
    pub fn mount_with(at: &Path, options: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk(at.to_path_buf()))
    }

    /// Mounts it again with `options` (`ro`, `rw`): the file system's own
    /// flag, so every mount of it, a container's bind mount too, follows.
    pub fn remount(&self, options: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mount -o remount,{options} {}", self.0.display());
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}
