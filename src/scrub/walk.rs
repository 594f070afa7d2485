//! [`Walk`]: every object of the repositories in [`Place`] order, resumable
//! after a place, a type folder listed a batch at a time (constant memory).

use std::collections::VecDeque;

use crate::repo::{ObjectId, RepoPath};
use crate::store::{ErrorKind, Store, StoreError};

use super::state::{ORDER, Place};

/// Every object of the repositories, in [`Place`] order, after a place; a
/// type folder listed a batch at a time (constant memory).
pub(super) struct Walk<S: Store> {
    repos: VecDeque<String>,
    kind: usize,
    listing: Option<(RepoPath, S::Listing)>,
    batch: VecDeque<(ObjectId, u64)>,
    after: Option<Place>,
}

impl<S: Store> Walk<S> {
    pub(super) fn new(repos: impl IntoIterator<Item = String>, after: Option<Place>) -> Walk<S> {
        let mut repos: Vec<String> = repos.into_iter().collect();
        repos.sort();
        Walk {
            repos: repos.into(),
            kind: 0,
            listing: None,
            batch: VecDeque::new(),
            after,
        }
    }

    pub(super) async fn next(
        &mut self,
        store: &S,
    ) -> Result<Option<(RepoPath, Place)>, StoreError> {
        loop {
            if let (Some((repo, _)), Some((id, _))) = (&self.listing, self.batch.pop_front()) {
                let place = Place {
                    repo: self.repos[0].clone(),
                    kind: self.kind,
                    id: id.as_str().to_string(),
                };
                if self.after.as_ref().is_some_and(|after| place <= *after) {
                    continue;
                }
                return Ok(Some((repo.clone(), place)));
            }
            if let Some((_, listing)) = &mut self.listing {
                match crate::store::next_batch(listing).await {
                    Some(batch) => {
                        let mut batch = batch?;
                        batch.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
                        self.batch = batch.into();
                    }
                    None => {
                        self.listing = None;
                        self.kind += 1;
                    }
                }
                continue;
            }
            let Some(label) = self.repos.front() else {
                return Ok(None);
            };
            let passed = self
                .after
                .as_ref()
                .is_some_and(|after| (label, self.kind) < (&after.repo, after.kind));
            let repo = RepoPath::from_label(label);
            if self.kind >= ORDER.len() || repo.is_none() {
                self.repos.pop_front();
                self.kind = 0;
                continue;
            }
            if passed {
                self.kind += 1;
                continue;
            }
            let repo = repo.expect("checked");
            match store.list(&repo, ORDER[self.kind]).await {
                Ok(listing) => self.listing = Some((repo, listing)),
                Err(e) if e.kind == ErrorKind::NotFound => self.kind += 1,
                Err(e) => return Err(e),
            }
        }
    }
}
