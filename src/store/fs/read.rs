//! Sending a stored file: [`FsReader`] reads the bytes a request wants in
//! pieces on the I/O pool, one piece ahead of the one being sent, so the
//! socket never waits a pool round trip per piece. A few readers at a time
//! read in large pieces into buffers the store keeps for reuse ([`Spares`]):
//! fewer hand-offs per byte, and no fresh zeroed mapping per piece.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::task::JoinHandle;

use crate::repo::range::{ByteRange, Want};
use crate::runtime::io_pool;
use crate::store::{ObjectReader, Op as _, OpenError, StoreError};

/// Size of one read when sending a file, and of the piece read ahead: 64
/// slow readers hold 8 MiB at most (two pieces each).
const READ_CHUNK_BYTES: u64 = 64 * 1024;

/// The pieces of the readers that hold a [`ReadGrant`]: a quarter of the
/// thread hand-offs and syscalls per byte (download benchmark: 1.6 CPU s/GiB
/// instead of 2.4, 800 MB/s instead of 550).
pub(super) const LARGE_READ_CHUNK_BYTES: u64 = 256 * 1024;

/// How many readers may read in large pieces at once: each holds two or three
/// buffers of [`LARGE_READ_CHUNK_BYTES`] while it reads (the one being sent,
/// the one read ahead, and one the connection has not let go of yet).
pub(super) const LARGE_READERS: usize = 8;

/// Large piece buffers kept for the next read (1 MiB). A fresh buffer of
/// that size is a fresh mapping whose every page faults in zeroed: reusing
/// buffers took whole downloads from 1.6 to 0.5 CPU s/GiB.
const SPARE_PIECES: usize = 4;

/// Opens `path` to send the bytes `want` asks for. The first piece is read
/// in the same trip to the pool as the open: a small object or range is then
/// one trip, not two.
pub(super) async fn open(
    path: std::path::PathBuf,
    want: Want,
    large_reads: Arc<AtomicUsize>,
    spares: Spares,
) -> Result<FsReader, OpenError> {
    let open = move || -> Result<FsReader, OpenError> {
        let (file, size) = open_read(&path)?;
        let range = want.resolve(size)?;
        let (offset, remaining) = range.span(size);
        let grant = (remaining > READ_CHUNK_BYTES)
            .then(|| ReadGrant::take(&large_reads))
            .flatten();
        let large = grant.map(|grant| (grant, spares));
        let mut reader = FsReader::new(file, (size, range), (offset, remaining), large);
        reader.read_first()?;
        Ok(reader)
    };
    io_pool::spawn(open)
        .await
        .unwrap_or_else(|e| Err(StoreError::lost_task(e).into()))
}

/// Opens a regular file for reading and returns it with its size.
fn open_read(path: &Path) -> Result<(File, u64), StoreError> {
    let file = File::open(path).op("open")?;
    let meta = file.metadata().op("stat")?;
    if !meta.is_file() {
        return Err(StoreError::not_found("open"));
    }
    Ok((file, meta.len()))
}

/// One of the [`LARGE_READERS`] grants, returned on drop.
struct ReadGrant(Arc<AtomicUsize>);

impl ReadGrant {
    fn take(left: &Arc<AtomicUsize>) -> Option<ReadGrant> {
        left.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .ok()
            .map(|_| ReadGrant(left.clone()))
    }
}

impl Drop for ReadGrant {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// A file being sent, read in pieces on the I/O pool, one piece ahead of the
/// one being sent.
pub(crate) struct FsReader {
    file: Arc<File>,
    size: u64,
    range: ByteRange,
    offset: u64,
    remaining: u64,
    /// With a grant, pieces of [`LARGE_READ_CHUNK_BYTES`] read into the
    /// store's spare buffers; else of [`READ_CHUNK_BYTES`] in fresh ones.
    large: Option<(ReadGrant, Spares)>,
    /// The first piece, read when the file was opened.
    first: Option<Bytes>,
    pending: Option<(u64, JoinHandle<Result<Bytes, StoreError>>)>,
}

impl ObjectReader for FsReader {
    fn size(&self) -> u64 {
        self.size
    }

    fn range(&self) -> ByteRange {
        self.range
    }

    fn remaining(&self) -> u64 {
        let first = self.first.as_ref().map_or(0, |piece| piece.len() as u64);
        self.remaining + first + self.pending.as_ref().map_or(0, |(len, _)| *len)
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, StoreError>>> {
        if let Some(piece) = self.first.take() {
            self.read_next();
            return Poll::Ready(Some(Ok(piece)));
        }
        if self.pending.is_none() {
            self.read_next();
        }
        let Some((_, handle)) = self.pending.as_mut() else {
            return Poll::Ready(None);
        };
        let result =
            ready!(Pin::new(handle).poll(cx)).unwrap_or_else(|e| Err(StoreError::lost_task(e)));
        self.pending = None;
        // Read ahead: the next piece is read while this one is sent, so
        // that the socket does not wait for a pool round trip per piece.
        if result.is_ok() {
            self.read_next();
        }
        Poll::Ready(Some(result))
    }
}

impl FsReader {
    /// A reader of `remaining` bytes at `offset` of `file` (the object's
    /// size and the range asked for), in large pieces when granted.
    fn new(
        file: File,
        (size, range): (u64, ByteRange),
        (offset, remaining): (u64, u64),
        large: Option<(ReadGrant, Spares)>,
    ) -> FsReader {
        FsReader {
            file: Arc::new(file),
            size,
            range,
            offset,
            remaining,
            large,
            first: None,
            pending: None,
        }
    }

    /// Reads the first piece here and now (on the I/O pool, at the open).
    fn read_first(&mut self) -> Result<(), StoreError> {
        if let Some((offset, len, spares)) = self.next_piece() {
            self.first = Some(read_piece(&self.file, offset, len, spares)?);
        }
        Ok(())
    }

    /// Starts reading the next piece on the I/O pool, if any is left.
    fn read_next(&mut self) {
        if let Some((offset, len, spares)) = self.next_piece() {
            let file = self.file.clone();
            let handle = io_pool::spawn(move || read_piece(&file, offset, len, spares));
            self.pending = Some((len as u64, handle));
        }
    }

    /// Where the next piece starts, its length, and the buffers to read it
    /// into; counted as read from here on.
    fn next_piece(&mut self) -> Option<(u64, usize, Option<Spares>)> {
        if self.remaining == 0 {
            return None;
        }
        let spares = self.large.as_ref().map(|(_, spares)| spares.clone());
        let piece = match spares {
            Some(_) => LARGE_READ_CHUNK_BYTES,
            None => READ_CHUNK_BYTES,
        };
        let len = self.remaining.min(piece);
        let offset = self.offset;
        self.offset += len;
        self.remaining -= len;
        Some((offset, len as usize, spares))
    }
}

/// Reads `len` bytes at `offset`: into one of `spares`' buffers when given
/// (`len` at most [`LARGE_READ_CHUNK_BYTES`]), else into a fresh buffer.
fn read_piece(
    file: &File,
    offset: u64,
    len: usize,
    spares: Option<Spares>,
) -> Result<Bytes, StoreError> {
    // Fails only if the file shrank under us (it never should: objects are
    // immutable).
    let Some(spares) = spares else {
        let mut buf = vec![0; len];
        file.read_exact_at(&mut buf, offset).op("read")?;
        return Ok(Bytes::from(buf));
    };
    let mut piece = SparePiece {
        buf: spares.take(),
        len,
        spares,
    };
    file.read_exact_at(&mut piece.buf[..len], offset)
        .op("read")?;
    Ok(Bytes::from_owner(piece))
}

/// The store's spare large buffers (at most [`SPARE_PIECES`]).
#[derive(Clone, Default)]
pub(super) struct Spares(Arc<Mutex<Vec<Vec<u8>>>>);

impl Spares {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A spare buffer, or a fresh one if none is left.
    fn take(&self) -> Vec<u8> {
        let spare = self.lock().pop();
        spare.unwrap_or_else(|| vec![0; LARGE_READ_CHUNK_BYTES as usize])
    }

    fn give_back(&self, buf: Vec<u8>) {
        let mut spares = self.lock();
        if spares.len() < SPARE_PIECES && buf.len() as u64 == LARGE_READ_CHUNK_BYTES {
            spares.push(buf);
        }
    }
}

/// A piece read into a spare buffer, which goes back to the spares when the
/// piece is dropped: by the connection once it is sent, or on an error.
/// Every buffer comes back, whoever drops its piece last. When the reader
/// reused the buffer of the piece before the last itself, the connection
/// still held the last piece when the reader was dropped: each 1 MiB ranged
/// read took two spares and gave one back, and soon read into fresh,
/// zeroed buffers (a fifth of the CPU of ranged reads).
struct SparePiece {
    buf: Vec<u8>,
    len: usize,
    spares: Spares,
}

impl AsRef<[u8]> for SparePiece {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for SparePiece {
    fn drop(&mut self) {
        self.spares.give_back(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn reader(
        path: &Path,
        offset: u64,
        len: u64,
        grant: Option<ReadGrant>,
        spares: &Spares,
    ) -> FsReader {
        let (file, size) = open_read(path).unwrap();
        let whole = Want::All.resolve(size).unwrap();
        let large = grant.map(|grant| (grant, spares.clone()));
        let mut reader = FsReader::new(file, (size, whole), (offset, len), large);
        // As the store's open does.
        reader.read_first().unwrap();
        reader
    }

    /// Read ahead, in small or large pieces, buffers reused or not: the
    /// pieces add up to exactly the bytes asked for.
    #[tokio::test(flavor = "current_thread")]
    async fn pieces_add_up_to_the_range() {
        let dir = crate::testing::TempDir::new("reader");
        let path = dir.path().join("object");
        let content: Vec<u8> = (0..3 * LARGE_READ_CHUNK_BYTES as usize + 1000)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        fs::write(&path, &content).unwrap();
        let left = Arc::new(AtomicUsize::new(1));
        let spares = Spares::default();
        let whole = content.len() as u64;
        for (offset, len, large, keep_pieces) in [
            (0, whole, true, false),
            (0, whole, true, true),
            (0, whole, false, false),
            (12_345, 700_000, true, false),
            (whole - 10, 10, false, false),
            (5, 0, false, false),
        ] {
            let grant = if large {
                Some(ReadGrant::take(&left).expect("a grant"))
            } else {
                None
            };
            let mut reader = reader(&path, offset, len, grant, &spares);
            let mut got = Vec::new();
            // Kept pieces cannot be read into again: fresh buffers then.
            let mut kept = Vec::new();
            while let Some(piece) = std::future::poll_fn(|cx| reader.poll_chunk(cx)).await {
                let piece = piece.unwrap();
                got.extend_from_slice(&piece);
                if keep_pieces {
                    kept.push(piece);
                }
            }
            let (start, end) = (offset as usize, (offset + len) as usize);
            assert!(got == content[start..end], "{offset}+{len}");
            drop(reader);
            let kept = spares.lock().len();
            assert!(kept <= SPARE_PIECES);
            if large && !keep_pieces && len >= 2 * LARGE_READ_CHUNK_BYTES {
                assert!(kept > 0, "a large buffer is kept for the next reader");
            }
        }
    }

    /// The connection holds the last piece until after the reader is gone,
    /// as hyper does: its buffer still comes back, so ranged reads one after
    /// another keep reusing the same few buffers.
    #[tokio::test(flavor = "current_thread")]
    async fn ranged_reads_give_every_buffer_back() {
        let dir = crate::testing::TempDir::new("spares");
        let path = dir.path().join("object");
        fs::write(&path, vec![7u8; 4 * LARGE_READ_CHUNK_BYTES as usize]).unwrap();
        let left = Arc::new(AtomicUsize::new(1));
        let spares = Spares::default();
        for round in 0..5 {
            let grant = ReadGrant::take(&left);
            let mut reader = reader(&path, 100, 3 * LARGE_READ_CHUNK_BYTES, grant, &spares);
            let mut last = None;
            while let Some(piece) = std::future::poll_fn(|cx| reader.poll_chunk(cx)).await {
                last = Some(piece.unwrap());
            }
            drop(reader);
            // Two or three buffers go round (the one being sent, the one
            // read ahead, and one more when a read starts before the piece
            // before it is dropped).
            assert!(!spares.lock().is_empty(), "round {round}");
            drop(last);
            assert!(spares.lock().len() >= 2, "round {round}");
        }
    }

    #[test]
    fn large_read_grants_are_limited_and_returned() {
        let left = Arc::new(AtomicUsize::new(2));
        let (a, b) = (ReadGrant::take(&left), ReadGrant::take(&left));
        assert!(a.is_some() && b.is_some());
        assert!(ReadGrant::take(&left).is_none());
        drop(a);
        assert!(ReadGrant::take(&left).is_some());
        drop(b);
        assert_eq!(left.load(Ordering::Acquire), 2);
    }
}
