//! `renameat2(RENAME_NOREPLACE)`, the atomic "rename unless the name is
//! taken", and `renameat2(RENAME_EXCHANGE)`, the atomic swap a repair uses
//! (it fails if the damaged object was deleted meanwhile, instead of bringing
//! it back): the second module with `unsafe`, because nix offers `renameat2`
//! only on glibc and the release builds are static musl, so the syscall is
//! made directly.
//!
//! Sound: the one `unsafe` block passes two NUL-terminated strings that are
//! owned by this frame and outlive the call, `AT_FDCWD` and a flag word; the
//! kernel only reads the strings and writes no memory of ours. The number
//! and the flag come from the libc crate for the target (aarch64, arm and
//! x86_64, musl and glibc alike).

#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::libc;

/// Renames `from` to `to` unless `to` exists (then EEXIST, and nothing
/// changes). EINVAL when the file system does not take the flag (FUSE ones
/// that predate it), ENOSYS on kernels older than 3.15; the caller falls back.
pub(super) fn rename(from: &Path, to: &Path) -> io::Result<()> {
    renameat2(from, to, libc::RENAME_NOREPLACE)
}

/// Swaps `from` and `to`, both of which must exist (ENOENT otherwise, and
/// nothing changes). EINVAL, ENOSYS as for [`rename`].
pub(super) fn exchange(from: &Path, to: &Path) -> io::Result<()> {
    renameat2(from, to, libc::RENAME_EXCHANGE)
}

fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> io::Result<()> {
    let from = CString::new(from.as_os_str().as_bytes())?;
    let to = CString::new(to.as_os_str().as_bytes())?;
    // `syscall` is variadic and reads every argument as a long: the integers
    // are widened here, so no register half is left to chance (-100, 1 and
    // 2 fit a long on every target).
    let (cwd, flags) = (libc::AT_FDCWD as libc::c_long, flags as libc::c_long);
    // SAFETY: see the module comment: both pointers are valid C strings for
    // the duration of the call, and renameat2 reads nothing else of ours.
    let result = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            cwd,
            from.as_ptr(),
            cwd,
            to.as_ptr(),
            flags,
        )
    };
    nix::errno::Errno::result(result)
        .map(drop)
        .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_but_never_replaces() {
        let dir = std::env::temp_dir().join(format!("noreplace-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b, c) = (dir.join("a"), dir.join("b"), dir.join("c"));
        std::fs::write(&a, b"a").unwrap();
        std::fs::write(&b, b"b").unwrap();
        let taken = rename(&a, &b).unwrap_err();
        assert_eq!(taken.kind(), io::ErrorKind::AlreadyExists, "{taken}");
        assert_eq!(std::fs::read(&b).unwrap(), b"b");
        rename(&a, &c).unwrap();
        assert_eq!(std::fs::read(&c).unwrap(), b"a");
        assert!(!a.exists());
        exchange(&b, &c).unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), b"a");
        assert_eq!(std::fs::read(&c).unwrap(), b"b");
        let gone = exchange(&b, &a).unwrap_err();
        assert_eq!(gone.kind(), io::ErrorKind::NotFound, "{gone}");
        assert_eq!(std::fs::read(&b).unwrap(), b"a");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
