//! Uploads to the bucket: one streamed PUT when the length is known (what
//! restic sends), else a multipart upload ([`super::multipart`]).

use std::rc::Rc;

use bytes::Bytes;
use hyper::Method;
use hyper::Request;
use tokio::sync::{mpsc, oneshot};

use super::bucket::{Inner, check, unreachable_store};
use super::multipart::Multipart;
use super::sign;
use crate::client::{BODY_STALL_TIMEOUT, OutBody, Sent};
use crate::store::StoreError;

/// An upload in progress; dropped before commit, it leaves nothing.
pub(crate) enum S3Upload {
    /// Boxed: it carries its whole prepared request.
    Put(Box<StreamedPut>),
    Parts(Multipart),
}

impl crate::store::Upload for S3Upload {
    async fn push(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        match self {
            S3Upload::Put(put) => put.push(chunk).await,
            S3Upload::Parts(parts) => parts.push(chunk).await,
        }
    }

    async fn settled(&mut self) -> Result<(), StoreError> {
        match self {
            S3Upload::Put(put) => put.settled().await,
            S3Upload::Parts(_) => Ok(()),
        }
    }

    async fn commit(self) -> Result<(), StoreError> {
        match self {
            S3Upload::Put(put) => (*put).commit().await,
            S3Upload::Parts(parts) => parts.commit().await,
        }
    }

    /// A PUT broken off is gone at once; a multipart upload is aborted
    /// before this returns.
    async fn abort(self) {
        if let S3Upload::Parts(parts) = self {
            parts.abort().await;
        }
    }
}

/// One PUT, its body streamed from the pushed chunks, the body's last byte
/// held back until commit.
///
/// Only a copy of the last byte is held back, not the last chunk: the store
/// cannot complete a PUT one byte short of its declared length, and a chunk
/// handed to hyper comes back to its owner once written. `push` returns
/// once hyper is done with the chunk pushed before (as the filesystem's
/// upload returns once the write before is done), so the receiver gets that
/// buffer back to fill again: uploads to S3 reuse their two buffers instead
/// of allocating one per hand-over (on musl each was a fresh mmap, whose
/// page faults and munmap cost a quarter of the server's CPU per GiB).
pub(crate) struct StreamedPut {
    store: Rc<Inner>,
    /// The PUT, until the first chunk starts it.
    request: Option<Request<OutBody>>,
    sent: Option<Sent>,
    sender: Option<mpsc::Sender<Bytes>>,
    /// A copy of the last byte pushed.
    held: Option<Bytes>,
    /// Resolves once hyper has dropped the chunk sent last.
    in_flight: Option<oneshot::Receiver<()>>,
}

/// A chunk lent to hyper: when hyper drops it, `_returned` drops with it
/// and the upload hears that the chunk's buffer is free.
struct Lent {
    /// Declared first, so dropped first: the buffer is free before the
    /// upload hears so.
    chunk: Bytes,
    _returned: oneshot::Sender<()>,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.chunk
    }
}

impl StreamedPut {
    /// Prepares the PUT of `name`; it starts with the first chunk.
    pub(super) fn begin(
        store: &Rc<Inner>,
        name: &str,
        mut headers: Vec<(&'static str, String)>,
        sha256: Option<[u8; 32]>,
        length: u64,
    ) -> Result<StreamedPut, StoreError> {
        headers.push(("if-none-match", "*".to_string()));
        let payload = match sha256 {
            Some(digest) => {
                use base64::Engine as _;
                headers.push((
                    "x-amz-checksum-sha256",
                    base64::engine::general_purpose::STANDARD.encode(digest),
                ));
                // A locked object's PUT must say it has a checksum: moto
                // (as AWS's rule reads) looks for this header, not the
                // checksum's own.
                if store.settings.lock.is_some() {
                    headers.push(("x-amz-sdk-checksum-algorithm", "SHA256".into()));
                }
                sign::hex(&digest)
            }
            None => sign::UNSIGNED_PAYLOAD.to_string(),
        };
        // Room for the byte held back and the chunk after it, so that hyper
        // takes both at once and writes them with one `writev` (with room
        // for one, it wrote the lone byte in a call and a TCP segment of its
        // own). Memory stays at one chunk in hyper's hands: `push` waits
        // until the chunk before is written.
        let (sender, chunks) = mpsc::channel(2);
        let request = store
            .request(
                &Method::PUT,
                Some(name),
                &[],
                &headers,
                &payload,
                OutBody::Stream {
                    chunks,
                    left: length,
                },
            )
            .map_err(|e| unreachable_store("upload", e))?;
        Ok(StreamedPut {
            store: store.clone(),
            request: Some(request),
            sent: None,
            sender: Some(sender),
            held: None,
            in_flight: None,
        })
    }

    /// Starts the PUT if it has not started yet.
    async fn start(&mut self) -> Result<(), StoreError> {
        if let Some(request) = self.request.take() {
            let sent = self
                .store
                .client
                .stream(request)
                .await
                .map_err(|e| unreachable_store("upload", e))?;
            self.sent = Some(sent);
        }
        Ok(())
    }

    /// Hands `chunk` to the request body; when the store has stopped reading
    /// it (it answered early, or the connection broke) the store's answer is
    /// the error.
    async fn send(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        self.start().await?;
        let sender = self
            .sender
            .as_ref()
            .ok_or_else(|| StoreError::internal("upload", "already sent"))?;
        // A store that stops reading (a full TCP window that never opens)
        // must not hold the upload forever.
        match tokio::time::timeout(BODY_STALL_TIMEOUT, sender.send(chunk)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(self.failure().await),
            Err(_) => Err(StoreError::internal(
                "upload",
                "the store stopped reading the body",
            )),
        }
    }

    /// Why the store stopped taking the body.
    async fn failure(&mut self) -> StoreError {
        let Some(sent) = self.sent.take() else {
            return StoreError::internal("upload", "the upload was not started");
        };
        match sent.finish(&self.store.client).await {
            Ok(response) => match check("upload", response).await {
                Err(e) => e,
                Ok(_) => StoreError::internal("upload", "the store answered before the body ended"),
            },
            Err(e) => unreachable_store("upload", e),
        }
    }
}

impl StreamedPut {
    async fn push(&mut self, mut chunk: Bytes) -> Result<(), StoreError> {
        let Some(&last) = chunk.last() else {
            return Ok(());
        };
        self.settled().await?;
        if let Some(byte) = self.held.take() {
            self.send(byte).await?;
        }
        chunk.truncate(chunk.len() - 1);
        self.held = Some(Bytes::copy_from_slice(&[last]));
        if !chunk.is_empty() {
            let (returned, in_flight) = oneshot::channel();
            self.in_flight = Some(in_flight);
            self.send(Bytes::from_owner(Lent {
                chunk,
                _returned: returned,
            }))
            .await?;
        }
        Ok(())
    }

    /// Returns once hyper is done with every chunk pushed: written to the
    /// socket, or dropped with a broken request.
    pub(super) async fn settled(&mut self) -> Result<(), StoreError> {
        if let Some(in_flight) = self.in_flight.take() {
            // Dropped, never sent: the result says nothing.
            tokio::time::timeout(BODY_STALL_TIMEOUT, in_flight)
                .await
                .map_err(|_| StoreError::internal("upload", "the store stopped reading the body"))?
                .ok();
        }
        Ok(())
    }

    async fn commit(mut self) -> Result<(), StoreError> {
        if let Some(last) = self.held.take() {
            self.send(last).await?;
        } else {
            self.start().await?;
        }
        drop(self.sender.take());
        let sent = self
            .sent
            .take()
            .ok_or_else(|| StoreError::internal("upload", "the upload was not started"))?;
        let response = sent
            .finish(&self.store.client)
            .await
            .map_err(|e| unreachable_store("upload", e))?;
        check("upload", response).await.map(|_| ())
    }
}
