//! The one response body type: empty, static or owned bytes, a file range read
//! in chunks on the I/O pool, or an object listing streamed folder by folder.
//!
//! Streaming keeps memory flat: a 128 MiB pack or a listing of 100,000 packs
//! never sits in memory whole. Each body also carries the request's
//! [`Completion`], which counts the bytes sent and fires when hyper drops it.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::task::JoinHandle;

use crate::storage::{self, StorageError};

/// Size of one read when sending a file: large enough to keep syscalls and
/// thread hand-offs rare, small enough that 64 slow readers cost 4 MiB at most.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Something to run when the response is finished or abandoned (access log,
/// connection bookkeeping), told how many body bytes went out.
pub trait Completion {
    fn complete(&mut self, body_bytes: u64);
}

pub struct Body {
    kind: Kind,
    sent: u64,
    completion: Option<Box<dyn Completion>>,
}

enum Kind {
    Empty,
    Bytes(Option<Bytes>),
    File(FileChunks),
    Listing(ListingChunks),
}

impl Body {
    fn new(kind: Kind) -> Body {
        Body {
            kind,
            sent: 0,
            completion: None,
        }
    }

    pub fn empty() -> Body {
        Body::new(Kind::Empty)
    }

    /// Static text (error messages) does not allocate.
    pub fn from_static(text: &'static str) -> Body {
        Body::new(Kind::Bytes(Some(Bytes::from_static(text.as_bytes()))))
    }

    pub fn full(bytes: impl Into<Bytes>) -> Body {
        Body::new(Kind::Bytes(Some(bytes.into())))
    }

    /// `len` bytes of `file` from `offset` on.
    pub fn file_range(file: File, offset: u64, len: u64) -> Body {
        Body::new(Kind::File(FileChunks {
            file: Arc::new(file),
            offset,
            remaining: len,
            pending: None,
        }))
    }

    /// A JSON array of the objects in `dirs` (v1: names; v2: names and sizes).
    pub fn listing(dirs: Vec<PathBuf>, with_sizes: bool) -> Body {
        Body::new(Kind::Listing(ListingChunks {
            dirs: dirs.into(),
            with_sizes,
            state: ListingState::Open,
            pending: None,
        }))
    }

    pub fn set_completion(&mut self, completion: Box<dyn Completion>) {
        self.completion = Some(completion);
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        if let Some(mut completion) = self.completion.take() {
            completion.complete(self.sent);
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = StorageError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StorageError>>> {
        let this = &mut *self;
        let next = match &mut this.kind {
            Kind::Empty => None,
            Kind::Bytes(bytes) => bytes.take().map(Ok),
            Kind::File(chunks) => ready!(chunks.poll_next(cx)),
            Kind::Listing(listing) => ready!(listing.poll_next(cx)),
        };
        match &next {
            Some(Ok(bytes)) => this.sent += bytes.len() as u64,
            // The status line is gone already; all that is left is to cut the
            // connection (hyper does) and say why.
            Some(Err(e)) => log::error!("response body aborted after {} bytes: {e}", this.sent),
            None => {}
        }
        Poll::Ready(next.map(|r| r.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Bytes(bytes) => bytes.is_none(),
            Kind::File(chunks) => chunks.remaining == 0 && chunks.pending.is_none(),
            Kind::Listing(listing) => matches!(listing.state, ListingState::Done),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Bytes(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Kind::File(chunks) => SizeHint::with_exact(
                chunks.remaining + chunks.pending.as_ref().map_or(0, |p| p.len),
            ),
            Kind::Listing(_) => SizeHint::default(),
        }
    }
}

struct PendingRead {
    len: u64,
    handle: JoinHandle<Result<Bytes, StorageError>>,
}

struct FileChunks {
    file: Arc<File>,
    offset: u64,
    remaining: u64,
    pending: Option<PendingRead>,
}

impl FileChunks {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, StorageError>>> {
        if self.pending.is_none() {
            if self.remaining == 0 {
                return Poll::Ready(None);
            }
            let len = self.remaining.min(READ_CHUNK_BYTES as u64);
            let (file, offset) = (self.file.clone(), self.offset);
            self.offset += len;
            self.remaining -= len;
            let handle = tokio::task::spawn_blocking(move || read_exact_at(&file, offset, len));
            self.pending = Some(PendingRead { len, handle });
        }
        let pending = self.pending.as_mut().map(|p| &mut p.handle);
        let Some(handle) = pending else {
            return Poll::Ready(None);
        };
        let result = ready!(Pin::new(handle).poll(cx));
        self.pending = None;
        Poll::Ready(Some(
            result.unwrap_or_else(|e| Err(StorageError::lost_task(e))),
        ))
    }
}

fn read_exact_at(file: &File, offset: u64, len: u64) -> Result<Bytes, StorageError> {
    use storage::Context as _;
    let mut buf = vec![0u8; len as usize];
    match file.read_exact_at(&mut buf, offset) {
        Ok(()) => Ok(Bytes::from(buf)),
        // The file shrank under us (it never should: objects are immutable).
        Err(e) => Err(e).op("read"),
    }
}

enum ListingState {
    /// Nothing sent yet: the opening bracket goes out first.
    Open,
    /// Between folders; `any` says whether an entry was written already.
    Folders {
        any: bool,
    },
    Done,
}

struct ListingChunks {
    dirs: VecDeque<PathBuf>,
    with_sizes: bool,
    state: ListingState,
    pending: Option<JoinHandle<Result<(String, bool), StorageError>>>,
}

impl ListingChunks {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, StorageError>>> {
        loop {
            if let Some(handle) = self.pending.as_mut() {
                let result = ready!(Pin::new(handle).poll(cx));
                self.pending = None;
                let (json, any) = match result.unwrap_or_else(|e| Err(StorageError::lost_task(e))) {
                    Ok(part) => part,
                    Err(e) => {
                        self.state = ListingState::Done;
                        return Poll::Ready(Some(Err(e)));
                    }
                };
                self.state = ListingState::Folders { any };
                if !json.is_empty() {
                    return Poll::Ready(Some(Ok(Bytes::from(json))));
                }
                continue;
            }
            match self.state {
                ListingState::Open => {
                    self.state = ListingState::Folders { any: false };
                    return Poll::Ready(Some(Ok(Bytes::from_static(b"["))));
                }
                ListingState::Folders { any } => match self.dirs.pop_front() {
                    Some(dir) => {
                        let with_sizes = self.with_sizes;
                        self.pending = Some(tokio::task::spawn_blocking(move || {
                            list_as_json(&dir, with_sizes, any)
                        }));
                    }
                    None => {
                        self.state = ListingState::Done;
                        return Poll::Ready(Some(Ok(Bytes::from_static(b"]"))));
                    }
                },
                ListingState::Done => return Poll::Ready(None),
            }
        }
    }
}

/// One folder's entries as a JSON array fragment. Names are validated hex, so
/// they need no escaping. Returns whether any entry has been written so far.
fn list_as_json(
    dir: &std::path::Path,
    with_sizes: bool,
    mut any: bool,
) -> Result<(String, bool), StorageError> {
    let objects = match storage::list_objects(dir) {
        Ok(objects) => objects,
        // A fan-out folder removed while listing holds nothing.
        Err(e) if e.kind == storage::StorageErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let per_entry = if with_sizes { 96 } else { 68 };
    let mut json = String::with_capacity(objects.len() * per_entry);
    for (id, size) in objects {
        if any {
            json.push(',');
        }
        any = true;
        if with_sizes {
            let _ = write!(json, "{{\"name\":\"{id}\",\"size\":{size}}}");
        } else {
            let _ = write!(json, "\"{id}\"");
        }
    }
    Ok((json, any))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_fragments_join_into_json() {
        let dir = std::env::temp_dir().join(format!("rs-body-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let id = "ab".repeat(32);
        std::fs::write(dir.join(&id), b"12345").unwrap();
        std::fs::write(dir.join("not-an-id"), b"x").unwrap();
        let (v1, any) = list_as_json(&dir, false, false).unwrap();
        assert_eq!(v1, format!("\"{id}\""));
        assert!(any);
        let (v2, _) = list_as_json(&dir, true, true).unwrap();
        assert_eq!(v2, format!(",{{\"name\":\"{id}\",\"size\":5}}"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
