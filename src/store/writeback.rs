//! `sync_file_range`: starting the disk writes of what an upload has written
//! so far without waiting for them, so that receiving goes on while the disk
//! works. A third small module with `unsafe`, because nix does not wrap the
//! call. It is not a durability guarantee (no metadata, no disk cache flush):
//! the commit's fsync is; this only keeps the dirty data of one upload to a
//! window or two, so that the final fsync has little left and a board with
//! little RAM is not filled with dirty pages.
//!
//! Sound: the one `unsafe` block passes the descriptor of a `File` borrowed
//! for the call, and integers; the kernel writes no memory of ours.

#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use nix::libc;

/// Starts writeback of `len` bytes at `offset`, and returns at once.
pub(super) fn start(file: &File, offset: u64, len: u64) -> io::Result<()> {
    call(file, offset, len, libc::SYNC_FILE_RANGE_WRITE)
}

/// Returns once the bytes at `offset..offset + len` are written to the disk
/// (as far as the drive's own cache).
pub(super) fn wait(file: &File, offset: u64, len: u64) -> io::Result<()> {
    call(
        file,
        offset,
        len,
        libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER,
    )
}

fn call(file: &File, offset: u64, len: u64, flags: libc::c_uint) -> io::Result<()> {
    let (offset, len) = (
        i64::try_from(offset).map_err(io::Error::other)?,
        i64::try_from(len).map_err(io::Error::other)?,
    );
    // SAFETY: see the module comment: a descriptor that stays open for the
    // call (borrowed from `file`) and plain integers.
    let result = unsafe { libc::sync_file_range(file.as_raw_fd(), offset as _, len as _, flags) };
    nix::errno::Errno::result(result)
        .map(drop)
        .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn starts_and_waits_for_writeback() {
        let dir = crate::testing::TempDir::new("writeback");
        let mut file = File::create(dir.path().join("f")).unwrap();
        file.write_all(&[7u8; 1 << 16]).unwrap();
        start(&file, 0, 1 << 16).unwrap();
        wait(&file, 0, 1 << 16).unwrap();
        // Not a file or folder: refused, so the caller falls back.
        let device = File::open("/dev/null").unwrap();
        assert!(start(&device, 0, 1).is_err());
    }
}
