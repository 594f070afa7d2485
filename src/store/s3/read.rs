//! Sending an object from the bucket: [`S3Reader`] passes the store's
//! response body on as it comes, each pause bounded.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::Body as _;
use hyper::Response;
use hyper::body::Incoming as IncomingBody;
use hyper::header::CONTENT_RANGE;

use crate::client::BODY_STALL_TIMEOUT;
use crate::repo::range::ByteRange;
use crate::store::StoreError;

/// The total size from a `Content-Range: bytes a-b/size` (or `*/size`).
pub(super) fn total_size(response: &Response<IncomingBody>) -> Option<u64> {
    let value = response.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    value.rsplit_once('/')?.1.trim().parse().ok()
}

pub(super) fn content_range_start(response: &Response<IncomingBody>) -> Option<u64> {
    let value = response.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    let span = value.trim().strip_prefix("bytes ")?.split_once('/')?.0;
    span.split_once('-')?.0.parse().ok()
}

/// An object being sent: the store's response body, passed on as it comes.
pub(crate) struct S3Reader {
    pub(super) body: IncomingBody,
    pub(super) size: u64,
    pub(super) range: ByteRange,
    pub(super) remaining: u64,
    pub(super) stall: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl crate::store::ObjectReader for S3Reader {
    fn size(&self) -> u64 {
        self.size
    }

    fn range(&self) -> ByteRange {
        self.range
    }

    fn remaining(&self) -> u64 {
        self.remaining
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, StoreError>>> {
        loop {
            match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    self.stall = None;
                    if let Ok(data) = frame.into_data() {
                        self.remaining = self.remaining.saturating_sub(data.len() as u64);
                        return Poll::Ready(Some(Ok(data)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Some(Err(StoreError::internal("read", e))));
                }
                Poll::Ready(None) if self.remaining > 0 => {
                    self.remaining = 0;
                    return Poll::Ready(Some(Err(StoreError::internal(
                        "read",
                        "the store's answer ended early",
                    ))));
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => {
                    let stall = self
                        .stall
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(BODY_STALL_TIMEOUT)));
                    ready!(stall.as_mut().poll(cx));
                    self.stall = None;
                    return Poll::Ready(Some(Err(StoreError::internal(
                        "read",
                        "the store stopped sending",
                    ))));
                }
            }
        }
    }
}
