//! Pacing of the mirror's uploads to `--mirror-bandwidth`: one token bucket
//! shared by all uploads, and a body that sends what it reads in pieces small
//! enough that the bucket's pauses never look like a stalled client to the
//! store.

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::Frame;

use crate::config::MirrorSettings;
use crate::runtime::rate::TokenBucket;

/// A body that keeps to the bandwidth budget, in pieces small enough that
/// the store never sees a long pause: stores close a request whose body
/// stops for a while (AWS after about 20 s), and a 256 KiB read sent at
/// 10 KB/s would be followed by 25 s of silence.
pub(super) struct Throttled<B> {
    inner: B,
    bucket: Option<Rc<RefCell<TokenBucket>>>,
    /// Largest piece sent at once (see [`paced_piece`]).
    piece: usize,
    /// What is left of the frame being sent.
    rest: Bytes,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// Smallest piece [`Throttled`] cuts: below it, the headers of each TLS
/// record and TCP segment would cost more than the pause saves.
const MIN_PACED_PIECE: usize = 1024;
/// Pieces at least this large go through the mirror's upload buffers: at
/// such rates the buffers' overlap of reading, hashing and sending pays,
/// and a buffer fills in about a second.
const BUFFERED_PIECE: usize = 192 * 1024;

/// The largest piece a paced upload sends at once: a quarter of a second
/// of its share of the rate, since all uploads take from one bucket (each
/// upload then pauses about a quarter of a second between pieces).
pub(super) fn paced_piece(settings: &MirrorSettings) -> Option<usize> {
    let rate = settings.bandwidth?;
    let share = rate / (4 * settings.uploads.max(1) as u64);
    Some(
        usize::try_from(share)
            .unwrap_or(usize::MAX)
            .max(MIN_PACED_PIECE),
    )
}

/// How many upload buffers the mirror keeps: one per upload it runs at
/// once; none with a low bandwidth limit, so that the paced pieces go on to
/// the store as they come instead of gathering into 192 KiB bursts.
pub(super) fn buffer_grants(settings: &MirrorSettings) -> usize {
    match paced_piece(settings) {
        Some(piece) if piece < BUFFERED_PIECE => 0,
        _ => settings.uploads,
    }
}

impl<B> Throttled<B> {
    pub(super) fn new(inner: B, pacing: Option<(usize, Rc<RefCell<TokenBucket>>)>) -> Throttled<B> {
        let (piece, bucket) = match pacing {
            Some((piece, bucket)) => (piece, Some(bucket)),
            None => (usize::MAX, None),
        };
        Throttled {
            inner,
            bucket,
            piece,
            rest: Bytes::new(),
            wait: None,
        }
    }
}

impl<B: http_body::Body<Data = Bytes> + Unpin> http_body::Body for Throttled<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        if let Some(wait) = self.wait.as_mut() {
            ready!(wait.as_mut().poll(cx));
            self.wait = None;
        }
        let Some(bucket) = self.bucket.clone() else {
            return Pin::new(&mut self.inner).poll_frame(cx);
        };
        if self.rest.is_empty() {
            match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.rest = data,
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                other => return Poll::Ready(other),
            }
        }
        let n = self.rest.len().min(self.piece);
        let piece = self.rest.split_to(n);
        let delay = bucket.borrow_mut().take(piece.len());
        if !delay.is_zero() {
            self.wait = Some(Box::pin(tokio::time::sleep(delay)));
        }
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let mut hint = self.inner.size_hint();
        let rest = self.rest.len() as u64;
        hint.set_lower(hint.lower() + rest);
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + rest);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_bucket_paces() {
        let mut bucket = TokenBucket::new(1000);
        assert_eq!(bucket.take(500), Duration::ZERO);
        let wait = bucket.take(1500);
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
    }
}
