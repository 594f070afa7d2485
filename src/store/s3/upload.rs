//! Uploads to the bucket: one streamed PUT when the length is known (what
//! restic sends), else a multipart upload ([`super::multipart`]).

use std::rc::Rc;

use bytes::Bytes;
use hyper::Method;
use hyper::Request;
use tokio::sync::mpsc;

use super::http::{BODY_STALL_TIMEOUT, OutBody, Sent};
use super::multipart::Multipart;
use super::{Inner, StoreError, check, sign, unreachable_store};

/// An upload in progress; dropped before commit, it leaves nothing.
pub(crate) enum S3Upload {
    /// Boxed: it carries its whole prepared request.
    Put(Box<StreamedPut>),
    Parts(Multipart),
}

impl super::super::Upload for S3Upload {
    async fn push(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        match self {
            S3Upload::Put(put) => put.push(chunk).await,
            S3Upload::Parts(parts) => parts.push(chunk).await,
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

/// One PUT, its body streamed from the pushed chunks, the last chunk held
/// back until commit.
pub(crate) struct StreamedPut {
    store: Rc<Inner>,
    /// The PUT, until the first chunk starts it.
    request: Option<Request<OutBody>>,
    sent: Option<Sent>,
    sender: Option<mpsc::Sender<Bytes>>,
    held: Option<Bytes>,
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
                sign::hex(&digest)
            }
            None => sign::UNSIGNED_PAYLOAD.to_string(),
        };
        // One chunk waits in the channel while hyper writes the one before:
        // memory per upload stays at a few buffers.
        let (sender, chunks) = mpsc::channel(1);
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
    async fn push(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        match self.held.replace(chunk) {
            Some(previous) => self.send(previous).await,
            None => Ok(()),
        }
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
