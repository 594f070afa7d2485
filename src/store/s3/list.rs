//! A repository's listing from the bucket: [`S3Listing`] reads the
//! ListObjectsV2 pages one at a time, each a batch of names and sizes.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};

use super::bucket::Inner;
use super::xml;
use crate::repo::{ObjectId, ObjectType};
use crate::store::{Batch, StoreError};

type PageFuture = Pin<Box<dyn Future<Output = Result<xml::Page, StoreError>>>>;

/// A listing, a ListObjectsV2 page at a time: memory is one page whatever
/// the number of objects.
pub(crate) struct S3Listing {
    pub(super) store: Rc<Inner>,
    pub(super) kind: ObjectType,
    pub(super) prefix: String,
    pub(super) pending: Option<PageFuture>,
    /// The next page to ask for: Some(None) is the first; None when done.
    pub(super) next: Option<Option<String>>,
}

impl S3Listing {
    /// The object a listed key names, if it is one of this type in restic's
    /// layout.
    fn object(&self, key: &str) -> Option<ObjectId> {
        let relative = key.strip_prefix(self.prefix.as_str())?;
        let (folder, name) = match relative.split_once('/') {
            Some((folder, name)) => (Some(folder), name),
            None => (None, relative),
        };
        let id = ObjectId::parse(name)?;
        let expected = (self.kind == ObjectType::Data).then(|| id.prefix());
        (folder == expected).then_some(id)
    }
}

impl crate::store::Listing for S3Listing {
    fn poll_batch(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Batch, StoreError>>> {
        if self.pending.is_none() {
            let Some(token) = self.next.take() else {
                return Poll::Ready(None);
            };
            let (store, prefix) = (self.store.clone(), self.prefix.clone());
            self.pending = Some(Box::pin(async move {
                store.list_page(&prefix, token.as_deref()).await
            }));
        }
        let Some(pending) = self.pending.as_mut() else {
            return Poll::Ready(None);
        };
        let page = ready!(pending.as_mut().poll(cx));
        self.pending = None;
        let page = match page {
            Ok(page) => page,
            Err(e) => return Poll::Ready(Some(Err(e))),
        };
        self.next = page.next.map(Some);
        let batch = page
            .entries
            .iter()
            .filter_map(|e| Some((self.object(&e.key)?, e.size)))
            .collect();
        Poll::Ready(Some(Ok(batch)))
    }
}
