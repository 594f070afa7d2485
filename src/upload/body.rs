//! The request body as an upload reads it: piece by piece, and how much
//! of it hyper reads at once; and the small body of a refused request, read
//! and thrown away so that the answer reaches the client; and a stored file
//! as a body, for the mirror, which sends local files through the same
//! pipeline a client's upload takes.

use std::error::Error as StdError;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

use super::error::UploadError;
use crate::store::{ObjectReader, StoreError};

/// Most bytes hyper reads from a socket at once. Measured with the upload
/// benchmark: 128 and 256 KiB read no faster than 64 KiB once uploads are
/// pipelined (see `upload`'s buffers), nor 64 KiB than 32 KiB, but each costs memory on
/// every busy connection, stalled ones included (64 stalled uploads: 15.2 MiB
/// peak with 64 KiB, 12.3 MiB with 32 KiB).
pub(crate) const READ_BUFFER_BYTES: usize = 32 * 1024;

/// An upload's body, whatever it comes from (a client's request, a stored
/// file the mirror copies): one type, so that the whole pipeline is compiled
/// once. One allocation per upload and one indirect call per chunk (32 KiB or
/// more), against a second copy of the pipeline in a binary with a budget.
pub(crate) type UploadBody =
    Pin<Box<dyn http_body::Body<Data = Bytes, Error = Box<dyn StdError + Send + Sync>>>>;

/// What runs once an upload is committed, told its size (the request path
/// counts it and queues it for the mirror; the mirror does nothing): boxed
/// for the same reason as [`UploadBody`].
pub(crate) type After = Box<dyn FnOnce(u64) -> Pin<Box<dyn Future<Output = ()>>>>;

/// `body` as an [`UploadBody`].
pub(crate) fn upload_body<B>(body: B) -> UploadBody
where
    B: http_body::Body<Data = Bytes> + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    Box::pin(body.map_err(Into::into))
}

/// Largest body read and thrown away after refusing a request.
const DRAIN_LIMIT_BYTES: u64 = 64 * 1024;

/// The body's next piece of data (trailers carry nothing we store); None at
/// its end.
pub(super) async fn next_data(body: &mut UploadBody) -> Result<Option<Bytes>, UploadError> {
    while let Some(frame) = body.frame().await {
        match frame.map_err(UploadError::BodyRead)?.into_data() {
            Ok(data) => return Ok(Some(data)),
            Err(_trailers) => continue,
        }
    }
    Ok(None)
}

/// Reads the body of a refused request when it is small, so that closing the
/// connection does not leave unread bytes behind: the kernel would then reset
/// the connection, and the client could lose the answer before reading it.
/// Large or undeclared bodies are left to hyper, which closes the connection.
pub(crate) async fn drain_small_body<B>(
    mut body: B,
    declared: Option<u64>,
    timeout: std::time::Duration,
) where
    B: http_body::Body + Unpin,
{
    let small = declared.is_some_and(|n| n <= DRAIN_LIMIT_BYTES);
    if !small {
        return;
    }
    let drain = async { while let Some(Ok(_)) = body.frame().await {} };
    let _ = tokio::time::timeout(timeout, drain).await;
}

/// A stored file as an upload's body (the mirror's copy of a local file).
pub(crate) struct ReaderBody<R>(pub(crate) R);

impl<R: ObjectReader> http_body::Body for ReaderBody<R> {
    type Data = Bytes;
    type Error = StoreError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StoreError>>> {
        self.get_mut()
            .0
            .poll_chunk(cx)
            .map(|next| next.map(|chunk| chunk.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.0.remaining() == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.remaining())
    }
}
