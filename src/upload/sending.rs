//! An upload's two consumers, the store upload and the hasher, fed from two
//! buffers in turn while the upload holds a grant from the budget, and
//! chunk by chunk when it does not.

use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use super::budget::{BufferBudget, Grant, MIN_BUFFER_BYTES, Waiting};
use super::error::UploadError;
use crate::runtime::pool::Sha256;
use crate::store::Upload;

/// hyper's largest read, unless `--max-header-size` is larger: a buffer
/// goes out once it has less room than this left, so that no part of a
/// chunk (a view of hyper's read buffer) is held through a hand-over. One
/// held then kept hyper from reusing its buffer while it read ahead, and
/// it allocated a fresh one for each of ours (docs/benchmarks.md, "Where an upload's CPU goes").
pub(super) const CHUNK_ROOM: usize = super::body::READ_BUFFER_BYTES;

// Else a buffer could be handed over empty.
const _: () = assert!(CHUNK_ROOM < MIN_BUFFER_BYTES);

/// The two consumers of an upload's bytes, and its buffers while it holds a
/// grant from the budget.
pub(super) struct Sending<U> {
    pub(super) upload: U,
    pub(super) hash: Option<Sha256>,
    pub(super) budget: Rc<BufferBudget>,
    pub(super) buffers: Option<Buffers>,
    /// Some while the upload found no room in the budget.
    pub(super) waiting: Option<Waiting>,
}

/// An upload's two buffers: one being filled, the other handed over last
/// (filled again once both consumers are done with it).
pub(super) struct Buffers {
    pub(super) filling: BytesMut,
    /// The capacity of `filling`, which is handed over once it has less
    /// than [`CHUNK_ROOM`] left.
    pub(super) filling_size: usize,
    pub(super) sent: Option<Bytes>,
    /// The size of the other buffer (`sent`, or the one not yet made).
    pub(super) other_size: usize,
    pub(super) grant: Grant,
}

impl<U: Upload> Sending<U> {
    /// The upload alone: the buffers, their room in the budget and a place
    /// among the waiting are given back now.
    pub(super) fn into_upload(self) -> U {
        self.upload
    }

    pub(super) fn new(upload: U, hash: Option<Sha256>, budget: Rc<BufferBudget>) -> Sending<U> {
        Sending {
            upload,
            hash,
            budget,
            buffers: None,
            waiting: None,
        }
    }

    pub(super) async fn take(&mut self, data: Bytes) -> Result<(), UploadError> {
        if self.buffers.is_none() {
            match self.budget.grant(&mut self.waiting) {
                Some(grant) => {
                    let size = grant.held / 2;
                    self.buffers = Some(Buffers {
                        filling: BytesMut::with_capacity(size),
                        filling_size: size,
                        sent: None,
                        other_size: size,
                        grant,
                    })
                }
                None => return self.pass_through(data).await,
            }
        }
        let mut data = data;
        while !data.is_empty() {
            let Some(buffers) = self.buffers.as_mut() else {
                // Not reached (a hand-over keeps the buffers), but no byte
                // may ever be dropped.
                return self.pass_through(data).await;
            };
            let room = buffers.filling_size - buffers.filling.len();
            // Dropped before any await: it is a view of hyper's read buffer.
            buffers
                .filling
                .extend_from_slice(&data.split_to(room.min(data.len())));
            let full = buffers.filling_size - buffers.filling.len() < CHUNK_ROOM;
            // With an upload waiting for room, a buffer over the new share
            // goes now, full or not, so that it shrinks at once: else a
            // client sending a byte now and then would keep large buffers.
            let oversized = || {
                let larger = buffers.filling_size.max(buffers.other_size);
                !buffers.filling.is_empty() && buffers.grant.over_share(larger)
            };
            if full || oversized() {
                self.hand_over().await?;
                // Let the other connections have the event loop: with its
                // body's bytes always ready, an upload would otherwise run
                // through tokio's whole cooperative budget (128 socket reads,
                // 4 MiB) before a small GET got a turn.
                tokio::task::yield_now().await;
            }
        }
        Ok(())
    }

    /// Gives `chunk` to the store and the hasher, each once it is done with
    /// the previous one.
    async fn push(&mut self, chunk: Bytes) -> Result<(), UploadError> {
        let hashed = async {
            match self.hash.as_mut() {
                Some(hash) => hash.push(chunk.clone()).await,
                None => Ok(()),
            }
        };
        let (stored, hashed) = tokio::join!(self.upload.push(chunk.clone()), hashed);
        stored?;
        hashed?;
        Ok(())
    }

    /// Without buffers: hyper's chunk goes on as it is, and is done with
    /// before the next is read, so that the upload pins at most one chunk
    /// besides hyper's read buffer.
    async fn pass_through(&mut self, chunk: Bytes) -> Result<(), UploadError> {
        self.push(chunk).await?;
        self.settled().await
    }

    /// Returns once neither consumer holds a chunk.
    async fn settled(&mut self) -> Result<(), UploadError> {
        let hashed = async {
            match self.hash.as_mut() {
                Some(hash) => hash.settled().await,
                None => Ok(()),
            }
        };
        let (stored, hashed) = tokio::join!(self.upload.settled(), hashed);
        stored?;
        hashed?;
        Ok(())
    }

    /// Hands over the buffer being filled, then takes the previous buffer
    /// (which both consumers are done with by then) back to fill next, at
    /// the size the budget's share is now.
    async fn hand_over(&mut self) -> Result<(), UploadError> {
        let Some(buffers) = self.buffers.as_mut() else {
            return Ok(());
        };
        let full = std::mem::take(&mut buffers.filling).freeze();
        let previous = buffers.sent.replace(full.clone());
        let previous_size = std::mem::replace(&mut buffers.other_size, buffers.filling_size);
        self.push(full).await?;
        if let Some(buffers) = self.buffers.as_mut() {
            let size = buffers.grant.resize(previous_size);
            buffers.filling = match previous.map(Bytes::try_into_mut) {
                Some(Ok(mut previous)) if size == previous_size => {
                    previous.clear();
                    previous
                }
                _ => BytesMut::with_capacity(size),
            };
            buffers.filling_size = size;
        }
        Ok(())
    }

    /// The body paused: hands over what is gathered and gives the buffers
    /// back (each is freed once its consumers are done with it).
    pub(super) async fn release(&mut self) -> Result<(), UploadError> {
        // Nor does a paused upload keep the others at a smaller share.
        self.waiting = None;
        let Some(buffers) = self.buffers.take() else {
            return Ok(());
        };
        let Buffers { filling, .. } = buffers;
        if !filling.is_empty() {
            self.push(filling.freeze()).await?;
        }
        Ok(())
    }

    /// Hands over what is left; the digest, when hashed.
    pub(super) async fn finish(&mut self) -> Result<Option<[u8; 32]>, UploadError> {
        self.release().await?;
        match self.hash.take() {
            Some(hash) => Ok(Some(hash.finish().await?)),
            None => Ok(None),
        }
    }
}
