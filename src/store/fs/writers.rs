//! The upload writer threads: they write each chunk to its upload's temp
//! file while the next chunk arrives, start writeback as they go (so the
//! final fsync has only the tail left), allocate a window ahead, and at the
//! commit fsync and move the file into place by the protocol in
//! [`super::commit`]. Not the I/O pool: four large uploads that fsync would
//! keep a pool of four busy, and every other client's small read would wait
//! behind them.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::commit::{commit_temp, remove_temp, sync};
use crate::runtime::pool::{Job, Pool};
use crate::store::{Op as _, StoreError};

/// How much an upload writes between two starts of writeback (see
/// [`Writer::write_back`]), so that the disk works while the body still
/// streams in and the final fsync only has the tail left.
const WRITEBACK_INTERVAL_BYTES: u64 = 8 << 20;

/// The temp file of an upload, moved to a writer thread for each write.
pub(crate) struct Writer {
    pub(super) file: File,
    /// Bytes written so far.
    written: u64,
    /// Bytes written since writeback was last started.
    unflushed: u64,
    /// The window whose writeback was started last (offset, length).
    in_writeback: Option<(u64, u64)>,
    /// The declared length, when there is one.
    length: Option<u64>,
    /// Bytes from the start of the file the file system has allocated.
    allocated: u64,
}

/// The work of the upload writer threads ([`WriterPool`]).
pub(crate) enum UploadWrite {
    /// Appends a chunk; the reply brings the file back.
    Chunk {
        writer: Writer,
        chunk: Bytes,
        done: oneshot::Sender<(Writer, Result<(), StoreError>)>,
    },
    /// fsync, then rename into place (see [`commit_temp`]); on failure the
    /// temp file is removed before the reply.
    Commit {
        writer: Writer,
        temp: PathBuf,
        target: PathBuf,
        done: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Removes the temp file of an aborted upload, after its last write;
    /// says when done, if asked.
    Remove {
        temp: PathBuf,
        done: Option<oneshot::Sender<()>>,
    },
}

impl Job for UploadWrite {
    fn run(self) {
        match self {
            UploadWrite::Chunk {
                mut writer,
                chunk,
                done,
            } => {
                let result = writer.write(&chunk);
                // Before the reply: the caller reuses the buffer once it has it.
                drop(chunk);
                let _ = done.send((writer, result));
            }
            UploadWrite::Commit {
                writer,
                temp,
                target,
                done,
            } => {
                let result = sync(&writer.file, false);
                drop(writer);
                let result = result.and_then(|()| commit_temp(&temp, &target));
                // Before the reply, as for an abort: a refused commit (the
                // name was taken meanwhile) leaves nothing once it is answered.
                if result.is_err() {
                    remove_temp(&temp);
                }
                let _ = done.send(result);
            }
            UploadWrite::Remove { temp, done } => {
                remove_temp(&temp);
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
        }
    }
}

/// The threads that write and fsync uploads.
pub(crate) type WriterPool = Pool<UploadWrite>;

impl Writer {
    /// The temp file of a new upload of `length` bytes, when declared.
    #[inline]
    pub(super) fn new(file: File, length: Option<u64>) -> Writer {
        Writer {
            file,
            written: 0,
            unflushed: 0,
            in_writeback: None,
            length,
            allocated: 0,
        }
    }

    fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        self.allocate(chunk.len() as u64);
        self.file.write_all(chunk).op("write")?;
        self.written += chunk.len() as u64;
        self.unflushed += chunk.len() as u64;
        if self.unflushed >= WRITEBACK_INTERVAL_BYTES {
            let window = (self.written - self.unflushed, self.unflushed);
            self.unflushed = 0;
            self.write_back(window)?;
        }
        Ok(())
    }

    /// Has the file system allocate the next writeback window ahead of the
    /// writes, up to the declared length: ext4 then writes into blocks it
    /// has rather than reserving each page as it comes (a twentieth of an
    /// upload's CPU), and lays the object out in one piece. Never beyond
    /// what the client declared, nor more than one window ahead of what it
    /// sent, so a length that is a lie costs no more than a window. Where the
    /// file system cannot, the writes allocate as before.
    fn allocate(&mut self, next: u64) {
        let Some(length) = self.length else { return };
        let end = self.written + next;
        if end <= self.allocated || self.allocated >= length {
            return;
        }
        let upto = end
            .max(self.allocated + WRITEBACK_INTERVAL_BYTES)
            .min(length);
        // off_t: 32 bits on some 32-bit targets, where this stops at 2 GiB.
        let (Ok(offset), Ok(len)) = (
            nix::libc::off_t::try_from(self.allocated),
            nix::libc::off_t::try_from(upto - self.allocated),
        ) else {
            return;
        };
        let keep_size = nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE;
        match nix::fcntl::fallocate(&self.file, keep_size, offset, len) {
            Ok(()) => self.allocated = upto,
            // Not supported here, or no room (which the write then reports):
            // no more tries for this upload.
            Err(_) => self.length = None,
        }
    }

    /// Waits for the previous window to reach the disk (usually long done),
    /// then starts writing this one without waiting: at most two windows of
    /// an upload are dirty, and receiving does not pause for the disk.
    /// Where the file system cannot, an fdatasync, which waits.
    fn write_back(&mut self, (offset, len): (u64, u64)) -> Result<(), StoreError> {
        let previous = self.in_writeback.take();
        let started = previous
            .map_or(Ok(()), |(o, l)| {
                crate::store::writeback::wait(&self.file, o, l)
            })
            .and_then(|()| crate::store::writeback::start(&self.file, offset, len));
        match started {
            Ok(()) => {
                self.in_writeback = Some((offset, len));
                Ok(())
            }
            Err(_) => sync(&self.file, true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file system allocates one window ahead of the writes, never past
    /// the declared length: a client that declares 1 GiB and sends 1 MiB
    /// costs the disk at most a window more.
    #[test]
    fn uploads_are_allocated_a_window_ahead_up_to_their_length() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = crate::testing::TempDir::new("allocate");
        let on_disk = |writer: &Writer| writer.file.metadata().unwrap().blocks() * 512;
        let writer = |name: &str, length: u64| Writer {
            file: File::create(dir.path().join(name)).unwrap(),
            written: 0,
            unflushed: 0,
            in_writeback: None,
            length: Some(length),
            allocated: 0,
        };
        let window = WRITEBACK_INTERVAL_BYTES;
        let mut lying = writer("lying", 1 << 30);
        lying.write(&[1u8; 1 << 20]).unwrap();
        assert_eq!(lying.allocated, window);
        let allocated = on_disk(&lying);
        assert!((window..=window + 4096).contains(&allocated), "{allocated}");
        assert_eq!(lying.file.metadata().unwrap().len(), 1 << 20);

        let length = 2 * window + 5;
        let mut honest = writer("honest", length);
        let chunk = vec![2u8; 3 << 20];
        let mut left = length as usize;
        while left > 0 {
            let n = left.min(chunk.len());
            honest.write(&chunk[..n]).unwrap();
            left -= n;
        }
        assert_eq!(honest.allocated, length);
        let allocated = on_disk(&honest);
        assert!(allocated <= length.next_multiple_of(4096), "{allocated}");
        assert_eq!(
            std::fs::read(dir.path().join("honest")).unwrap(),
            vec![2u8; length as usize]
        );
    }
}
