//! Receiving an upload: the request body streamed into a store upload,
//! hashed on the way, within the size limit and the `--max-size` quota.
//!
//! What is uploaded decides the rules ([`Rules::for_key`]): keys, locks,
//! snapshots and the config are small metadata, capped at
//! `--max-metadata-size`; objects are verified against their name (the
//! SHA-256 of their content) unless `--no-verify-upload`.
//!
//! Body chunks are gathered into one of two buffers of [`UPLOAD_BUFFER_BYTES`]
//! on the event loop. A full buffer goes at once to the store (for the
//! filesystem, a write on the upload writer threads) and to the hasher (the
//! compute pool); the next one is handed over when both are done with the
//! previous, and that previous buffer is then filled again. So receiving,
//! hashing and writing overlap, with two buffers per upload; per buffer, only
//! the two replies are allocated.
//!
//! Nothing is visible under the name until the whole body has arrived,
//! matched its name and been committed: on any error the store upload is
//! aborted, and the refusal is sent once nothing of it is left.
//!
//! A name that is taken is no error when the content is the same: restic
//! retries an upload whose answer was lost ([`Receiver::compare`]).

use std::error::Error as StdError;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

use crate::config::Config;
use crate::error::ApiError;
use crate::pool::{ComputePool, Sha256};
use crate::quota::{Quota, Reservation};
use crate::range::Want;
use crate::route::RepoPath;
use crate::store::{Incoming, Key, ObjectReader as _, Store, Upload};

/// Size of each of the two upload buffers: 384 KiB per upload in flight.
/// Larger buffers mean fewer hand-offs to the pools (each costs thread
/// wake-ups); 8 uploads at once still fit the 8 MiB memory budget.
pub(crate) const UPLOAD_BUFFER_BYTES: usize = 192 * 1024;

/// What applies to an upload, from what it targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rules {
    /// Largest body accepted.
    pub(crate) max_bytes: Option<u64>,
    /// The SHA-256 the content must have.
    pub(crate) expected: Option<[u8; 32]>,
}

impl Rules {
    pub(crate) fn for_key(key: Key<'_>, config: &Config) -> Rules {
        let small = config.limits.max_metadata_bytes;
        match key {
            Key::Config => Rules {
                max_bytes: Some(small),
                expected: None,
            },
            Key::Object(kind, id) => Rules {
                max_bytes: kind.is_small().then_some(small),
                expected: config.verify_upload.then(|| id.digest()),
            },
        }
    }
}

/// The request side of an upload.
pub(crate) struct Receiver<'a> {
    pub(crate) rules: Rules,
    pub(crate) quota: &'a Rc<Quota>,
    pub(crate) compute: &'a ComputePool,
    /// Longest pause allowed between two pieces of the body.
    pub(crate) body_timeout: Duration,
}

impl Receiver<'_> {
    /// Streams `body` into a new upload of `key` and commits it; returns the
    /// bytes stored. `declared` is the Content-Length, checked before
    /// anything is written.
    pub(crate) async fn receive<S, B>(
        &self,
        store: &S,
        repo: &RepoPath,
        key: Key<'_>,
        declared: Option<u64>,
        body: B,
    ) -> Result<Received, ApiError>
    where
        S: Store,
        B: http_body::Body<Data = Bytes> + Unpin,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let upload = match self.begin(store, repo, key, declared).await {
            Ok(upload) => upload,
            Err(Begin::Exists) => {
                return self.compare(store, repo, key, declared, body).await;
            }
            Err(Begin::Refused(e)) => {
                // Refused before a byte was read: see drain_small_body.
                crate::request::drain_small_body(body, declared, self.body_timeout).await;
                return Err(e);
            }
        };
        let mut sending = Sending {
            upload,
            hash: self
                .rules
                .expected
                .map(|_| Sha256::new(self.compute.clone())),
            filling: BytesMut::with_capacity(UPLOAD_BUFFER_BYTES),
            sent: None,
        };
        let mut reservation = Reservation::new(self.quota.clone());
        let filled = self.fill(&mut sending, &mut reservation, body).await;
        let Sending { upload, .. } = sending;
        let refusal = match filled {
            Ok((received, hash)) => match (self.rules.expected, hash) {
                (Some(expected), Some(digest)) if expected != digest => ApiError::HashMismatch,
                _ => {
                    upload.commit().await?;
                    reservation.keep();
                    return Ok(Received::Stored(received));
                }
            },
            Err(e) => e,
        };
        // Nothing of the upload is left once the refusal is sent.
        upload.abort().await;
        Err(refusal)
    }

    /// Streams the body into the upload and the hasher; returns the bytes
    /// received and the digest (when hashed).
    async fn fill<U, B>(
        &self,
        sending: &mut Sending<U>,
        reservation: &mut Reservation,
        mut body: B,
    ) -> Result<(u64, Option<[u8; 32]>), ApiError>
    where
        U: Upload,
        B: http_body::Body<Data = Bytes> + Unpin,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let mut received = 0u64;
        while let Some(data) = self.next_chunk(&mut body).await? {
            let len = data.len() as u64;
            if self.rules.max_bytes.is_some_and(|max| received + len > max) {
                return Err(ApiError::PayloadTooLarge);
            }
            if !reservation.grow(len) {
                return Err(ApiError::QuotaExceeded);
            }
            received += len;
            sending.take(&data).await?;
        }
        let hash = sending.finish().await?;
        Ok((received, hash))
    }

    /// The body's next piece of data (trailers carry nothing we store), each
    /// within the body timeout; None at its end.
    async fn next_chunk<B>(&self, body: &mut B) -> Result<Option<Bytes>, ApiError>
    where
        B: http_body::Body<Data = Bytes> + Unpin,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        loop {
            let frame = match tokio::time::timeout(self.body_timeout, body.frame()).await {
                Err(_) => return Err(ApiError::BodyTimeout),
                Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => return Err(ApiError::BodyRead(e.into())),
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data() {
                return Ok(Some(data));
            }
        }
    }

    /// The name is taken: a retry of an upload whose answer was lost (restic
    /// retries) is answered 200 when its content is what is stored — it
    /// verifies against the name, or, unverified (`config`,
    /// `--no-verify-upload`), is byte-identical to the stored file. The
    /// stored file is never touched; anything else is 403.
    async fn compare<S, B>(
        &self,
        store: &S,
        repo: &RepoPath,
        key: Key<'_>,
        declared: Option<u64>,
        mut body: B,
    ) -> Result<Received, ApiError>
    where
        S: Store,
        B: http_body::Body<Data = Bytes> + Unpin,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        const TAKEN: ApiError = ApiError::Forbidden("object exists; objects are never overwritten");
        let mut stored = match self.rules.expected {
            Some(_) => None,
            None => Some(store.open(repo, key, Want::All).await?),
        };
        if let (Some(stored), Some(len)) = (&stored, declared)
            && stored.size() != len
        {
            crate::request::drain_small_body(body, declared, self.body_timeout).await;
            return Err(TAKEN);
        }
        let mut hash = self
            .rules
            .expected
            .map(|_| Sha256::new(self.compute.clone()));
        // Stored bytes read but not yet compared.
        let mut pending = Bytes::new();
        let mut same = true;
        let mut received = 0u64;
        while let Some(mut data) = self.next_chunk(&mut body).await? {
            received += data.len() as u64;
            if self.rules.max_bytes.is_some_and(|max| received > max) {
                return Err(ApiError::PayloadTooLarge);
            }
            if let Some(hash) = hash.as_mut() {
                hash.push(data).await?;
                continue;
            }
            let Some(reader) = stored.as_mut() else {
                continue;
            };
            // Compare with the stored file as far as both go.
            while same && !data.is_empty() {
                if pending.is_empty() {
                    match std::future::poll_fn(|cx| reader.poll_chunk(cx)).await {
                        Some(chunk) => pending = chunk?,
                        None => {
                            same = false;
                            break;
                        }
                    }
                }
                let n = pending.len().min(data.len());
                same = pending[..n] == data[..n];
                pending = pending.slice(n..);
                data = data.slice(n..);
            }
        }
        if let Some(hash) = hash {
            same = self.rules.expected == Some(hash.finish().await?);
        } else if let Some(mut reader) = stored
            && same
        {
            // The stored file must not go on past the body.
            same = pending.is_empty()
                && std::future::poll_fn(|cx| reader.poll_chunk(cx))
                    .await
                    .is_none();
        }
        if same {
            log::debug!("{repo}: re-upload of a stored file with the same content");
            Ok(Received::Same)
        } else {
            Err(TAKEN)
        }
    }

    /// What can be refused before the body is read: a declared length over
    /// the limits, a name that is taken, a store that cannot start.
    async fn begin<S: Store>(
        &self,
        store: &S,
        repo: &RepoPath,
        key: Key<'_>,
        declared: Option<u64>,
    ) -> Result<S::Upload, Begin> {
        if let (Some(len), Some(max)) = (declared, self.rules.max_bytes)
            && len > max
        {
            return Err(Begin::Refused(ApiError::PayloadTooLarge));
        }
        let incoming = Incoming {
            length: declared,
            sha256: self.rules.expected,
        };
        let upload = store.begin_upload(repo, key, incoming).await;
        match upload {
            Err(e) if e.kind == crate::store::ErrorKind::AlreadyExists => Err(Begin::Exists),
            Err(e) => Err(Begin::Refused(ApiError::Storage(e))),
            // The quota after the name: a retry of a stored upload takes no
            // new space.
            Ok(upload) if declared.is_some_and(|len| self.quota.would_exceed(len)) => {
                upload.abort().await;
                Err(Begin::Refused(ApiError::QuotaExceeded))
            }
            Ok(upload) => Ok(upload),
        }
    }
}

/// Why an upload did not start.
enum Begin {
    /// The name is taken: see [`Receiver::compare`].
    Exists,
    Refused(ApiError),
}

/// What came of an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Received {
    /// Stored, this many bytes.
    Stored(u64),
    /// The name was taken by the same content; nothing was written.
    Same,
}

/// The buffers and the two consumers of an upload's bytes.
struct Sending<U> {
    upload: U,
    hash: Option<Sha256>,
    filling: BytesMut,
    /// The buffer handed over last, filled again once both are done with it.
    sent: Option<Bytes>,
}

impl<U: Upload> Sending<U> {
    async fn take(&mut self, mut data: &[u8]) -> Result<(), ApiError> {
        while !data.is_empty() {
            let room = UPLOAD_BUFFER_BYTES - self.filling.len();
            let (now, later) = data.split_at(room.min(data.len()));
            self.filling.extend_from_slice(now);
            data = later;
            if self.filling.len() == UPLOAD_BUFFER_BYTES {
                self.hand_over().await?;
            }
        }
        Ok(())
    }

    /// Gives the filled buffer to the store and the hasher (each first waits
    /// until it is done with the previous buffer), then takes that previous
    /// buffer back to fill next.
    async fn hand_over(&mut self) -> Result<(), ApiError> {
        let full = std::mem::take(&mut self.filling).freeze();
        let hashed = async {
            match self.hash.as_mut() {
                Some(hash) => hash.push(full.clone()).await,
                None => Ok(()),
            }
        };
        let (stored, hashed) = tokio::join!(self.upload.push(full.clone()), hashed);
        stored?;
        hashed?;
        self.filling = match self.sent.replace(full).map(Bytes::try_into_mut) {
            Some(Ok(mut previous)) => {
                previous.clear();
                previous
            }
            _ => BytesMut::with_capacity(UPLOAD_BUFFER_BYTES),
        };
        Ok(())
    }

    /// Hands over what is left; the digest, when hashed.
    async fn finish(&mut self) -> Result<Option<[u8; 32]>, ApiError> {
        if !self.filling.is_empty() {
            self.hand_over().await?;
        }
        match self.hash.take() {
            Some(hash) => Ok(Some(hash.finish().await?)),
            None => Ok(None),
        }
    }
}
