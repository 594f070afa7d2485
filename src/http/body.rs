//! The one response body type: empty, static or owned bytes, a stored file
//! streamed from the store, or an object listing streamed batch by batch.
//!
//! Streaming keeps memory flat: a 128 MiB pack or a listing of 100,000 packs
//! never sits in memory whole. Each body also carries the request's
//! [`Completion`], which is told the bytes sent when hyper drops the body.

use std::fmt::Write as _;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::store::{Listing, ObjectReader, Store, StoreError};

/// Something to run when the response is finished or abandoned (metrics,
/// access log, connection bookkeeping), told how many body bytes went out.
pub(crate) trait Completion {
    fn complete(&mut self, body_bytes: u64);
}

pub(crate) struct Body<S: Store> {
    kind: Kind<S>,
    sent: u64,
    /// Boxed: one per request, not per chunk.
    completion: Option<Box<dyn Completion>>,
}

enum Kind<S: Store> {
    Empty,
    Bytes(Option<Bytes>),
    Object(S::Reader),
    Listing(Json<S::Listing>),
}

impl<S: Store> Body<S> {
    fn new(kind: Kind<S>) -> Body<S> {
        Body {
            kind,
            sent: 0,
            completion: None,
        }
    }

    pub(crate) fn empty() -> Body<S> {
        Body::new(Kind::Empty)
    }

    /// Static text (error messages) does not allocate.
    pub(crate) fn from_static(text: &'static str) -> Body<S> {
        Body::new(Kind::Bytes(Some(Bytes::from_static(text.as_bytes()))))
    }

    pub(crate) fn full(bytes: impl Into<Bytes>) -> Body<S> {
        Body::new(Kind::Bytes(Some(bytes.into())))
    }

    /// The range the reader was given.
    pub(crate) fn object(reader: S::Reader) -> Body<S> {
        Body::new(Kind::Object(reader))
    }

    /// A JSON array of the listed objects (v1: names; v2: names and sizes).
    pub(crate) fn listing(listing: S::Listing, with_sizes: bool) -> Body<S> {
        Body::new(Kind::Listing(Json {
            listing,
            with_sizes,
            state: JsonState::Open,
        }))
    }

    pub(crate) fn set_completion(&mut self, completion: Box<dyn Completion>) {
        self.completion = Some(completion);
    }
}

impl<S: Store> Drop for Body<S> {
    fn drop(&mut self) {
        if let Some(mut completion) = self.completion.take() {
            completion.complete(self.sent);
        }
    }
}

impl<S: Store> http_body::Body for Body<S> {
    type Data = Bytes;
    type Error = StoreError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StoreError>>> {
        let this = &mut *self;
        let next = match &mut this.kind {
            Kind::Empty => None,
            Kind::Bytes(bytes) => bytes.take().map(Ok),
            Kind::Object(reader) => ready!(reader.poll_chunk(cx)),
            Kind::Listing(json) => ready!(json.poll_next(cx)),
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
            Kind::Object(reader) => reader.remaining() == 0,
            Kind::Listing(json) => matches!(json.state, JsonState::Done),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Bytes(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Kind::Object(reader) => SizeHint::with_exact(reader.remaining()),
            Kind::Listing(_) => SizeHint::default(),
        }
    }
}

enum JsonState {
    /// Nothing sent yet: the opening bracket goes out first.
    Open,
    /// Between batches; `any` says whether an entry was written already.
    Batches {
        any: bool,
    },
    Done,
}

/// A listing, written as restic's JSON as its batches arrive.
struct Json<L> {
    listing: L,
    with_sizes: bool,
    state: JsonState,
}

impl<L: Listing> Json<L> {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, StoreError>>> {
        loop {
            let any = match self.state {
                JsonState::Open => {
                    self.state = JsonState::Batches { any: false };
                    return Poll::Ready(Some(Ok(Bytes::from_static(b"["))));
                }
                JsonState::Batches { any } => any,
                JsonState::Done => return Poll::Ready(None),
            };
            match ready!(self.listing.poll_batch(cx)) {
                None => {
                    self.state = JsonState::Done;
                    return Poll::Ready(Some(Ok(Bytes::from_static(b"]"))));
                }
                Some(Err(e)) => {
                    self.state = JsonState::Done;
                    return Poll::Ready(Some(Err(e)));
                }
                Some(Ok(batch)) => {
                    let (json, any) = to_json(&batch, self.with_sizes, any);
                    self.state = JsonState::Batches { any };
                    if !json.is_empty() {
                        return Poll::Ready(Some(Ok(Bytes::from(json))));
                    }
                }
            }
        }
    }
}

/// One batch as a JSON array fragment. Names are validated hex, so they need
/// no escaping. Returns whether any entry has been written so far.
fn to_json(
    batch: &[(crate::repo::ObjectId, u64)],
    with_sizes: bool,
    mut any: bool,
) -> (String, bool) {
    let per_entry = if with_sizes { 96 } else { 68 };
    let mut json = String::with_capacity(batch.len() * per_entry);
    for (id, size) in batch {
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
    (json, any)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::ObjectId;

    #[test]
    fn batches_join_into_json() {
        let id = ObjectId::parse(&"ab".repeat(32)).unwrap();
        let batch = [(id.clone(), 5)];
        let (v1, any) = to_json(&batch, false, false);
        assert_eq!(v1, format!("\"{id}\""));
        assert!(any);
        let (v2, _) = to_json(&batch, true, true);
        assert_eq!(v2, format!(",{{\"name\":\"{id}\",\"size\":5}}"));
        assert_eq!(to_json(&[], true, true), (String::new(), true));
    }
}
