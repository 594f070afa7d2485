//! An in-memory store for in-process tests, with injectable faults: an OS
//! error on a given operation (mapped by the same [`super::classify`] the
//! filesystem store uses) and a slow commit, so that the request path's error
//! mapping and timeouts are tested without root, tmpfs or real waiting.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::{
    Batch, Incoming, Key, Lifecycle, Listing, ObjectReader, OpenError, Repos, Scan, Store,
    StoreError, Upload, classify,
};
use crate::repo::range::{ByteRange, Want};
use crate::repo::{ObjectId, ObjectType, RepoPath};

/// The operations a fault can be injected into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Op {
    Create,
    Size,
    Open,
    Begin,
    Push,
    Commit,
    Delete,
    List,
}

#[derive(Default)]
struct Inner {
    repos: BTreeSet<String>,
    files: BTreeMap<(String, String), Bytes>,
    /// errno to fail an operation with, every time until cleared.
    faults: HashMap<Op, i32>,
    commit_delay: Option<Duration>,
    delete_delay: Option<Duration>,
}

/// The store; clones share their content.
#[derive(Clone, Default)]
pub(crate) struct MemStore {
    inner: Rc<RefCell<Inner>>,
}

fn file_name(key: Key<'_>) -> String {
    match key {
        Key::Config => "config".into(),
        Key::Object(kind, id) => format!("{kind}/{id}"),
    }
}

impl MemStore {
    /// Makes `op` fail with the OS error `errno` until [`MemStore::heal`].
    pub(crate) fn fail(&self, op: Op, errno: i32) {
        self.inner.borrow_mut().faults.insert(op, errno);
    }

    pub(crate) fn heal(&self) {
        self.inner.borrow_mut().faults.clear();
    }

    /// Makes every commit take `delay` (tokio time, so paused time skips it).
    pub(crate) fn delay_commit(&self, delay: Duration) {
        self.inner.borrow_mut().commit_delay = Some(delay);
    }

    /// Makes every delete take `delay`, after the file is gone (as on
    /// disk, where the unlink runs on an I/O thread whatever becomes of
    /// the caller).
    pub(crate) fn delay_delete(&self, delay: Duration) {
        self.inner.borrow_mut().delete_delay = Some(delay);
    }

    /// What is stored under `key`, if anything.
    pub(crate) fn get(&self, repo: &RepoPath, key: Key<'_>) -> Option<Bytes> {
        let inner = self.inner.borrow();
        inner.files.get(&(repo.label(), file_name(key))).cloned()
    }

    /// How many files are stored, in all repositories.
    pub(crate) fn file_count(&self) -> usize {
        self.inner.borrow().files.len()
    }

    fn check(&self, op: Op, what: &'static str) -> Result<(), StoreError> {
        match self.inner.borrow().faults.get(&op) {
            Some(errno) => {
                let source = io::Error::from_raw_os_error(*errno);
                Err(StoreError::new(classify(&source), what, source))
            }
            None => Ok(()),
        }
    }

    fn has_repo(&self, repo: &RepoPath) -> bool {
        self.inner.borrow().repos.contains(&repo.label())
    }
}

impl Store for MemStore {
    type Reader = MemReader;
    type Listing = MemListing;
    type Upload = MemUpload;

    async fn create_repo(&self, repo: &RepoPath) -> Result<(), StoreError> {
        self.check(Op::Create, "create repository")?;
        self.inner.borrow_mut().repos.insert(repo.label());
        Ok(())
    }

    async fn size(&self, repo: &RepoPath, key: Key<'_>) -> Result<u64, StoreError> {
        self.check(Op::Size, "stat")?;
        self.get(repo, key)
            .map(|b| b.len() as u64)
            .ok_or(StoreError::not_found("stat"))
    }

    async fn open(
        &self,
        repo: &RepoPath,
        key: Key<'_>,
        want: Want,
    ) -> Result<MemReader, OpenError> {
        self.check(Op::Open, "open")?;
        let content = self.get(repo, key).ok_or(StoreError::not_found("open"))?;
        let range = want.resolve(content.len() as u64)?;
        let (start, len) = range.span(content.len() as u64);
        let remaining = content.slice(start as usize..(start + len) as usize);
        Ok(MemReader {
            content,
            range,
            remaining,
        })
    }

    async fn begin_upload(
        &self,
        repo: &RepoPath,
        key: Key<'_>,
        _incoming: Incoming,
    ) -> Result<MemUpload, StoreError> {
        self.check(Op::Begin, "create temp file")?;
        if !self.has_repo(repo) && key != Key::Config {
            return Err(StoreError::not_found("create temp file"));
        }
        if self.get(repo, key).is_some() {
            return Err(StoreError::exists("object exists"));
        }
        Ok(MemUpload {
            store: self.clone(),
            at: (repo.label(), file_name(key)),
            content: BytesMut::new(),
        })
    }

    async fn delete(
        &self,
        repo: &RepoPath,
        key: Key<'_>,
        _by: Option<&str>,
    ) -> Result<u64, StoreError> {
        self.check(Op::Delete, "remove")?;
        let (removed, delay) = {
            let mut inner = self.inner.borrow_mut();
            let removed = inner.files.remove(&(repo.label(), file_name(key)));
            (removed, inner.delete_delay)
        };
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        Ok(removed.map_or(0, |b| b.len() as u64))
    }

    async fn list(&self, repo: &RepoPath, kind: ObjectType) -> Result<MemListing, StoreError> {
        self.check(Op::List, "list")?;
        if !self.has_repo(repo) {
            return Err(StoreError::not_found("list"));
        }
        let label = repo.label();
        let prefix = format!("{kind}/");
        let batch = self
            .inner
            .borrow()
            .files
            .iter()
            .filter(|((r, name), _)| *r == label && name.starts_with(&prefix))
            .filter_map(|((_, name), content)| {
                let id = ObjectId::parse(&name[prefix.len()..])?;
                Some((id, content.len() as u64))
            })
            .collect();
        Ok(MemListing { batch: Some(batch) })
    }
}

impl Lifecycle for MemStore {
    async fn scan(&self) -> Result<Scan, StoreError> {
        let inner = self.inner.borrow();
        let mut scan = Scan::default();
        for ((repo, _), content) in &inner.files {
            scan.bytes += content.len() as u64;
            scan.repos.entry(repo.clone()).or_default().bytes += content.len() as u64;
        }
        Ok(scan)
    }

    async fn repos(&self) -> Result<Repos, StoreError> {
        Ok(self.scan().await?.repos)
    }
}

pub(crate) struct MemReader {
    content: Bytes,
    range: ByteRange,
    remaining: Bytes,
}

impl ObjectReader for MemReader {
    fn size(&self) -> u64 {
        self.content.len() as u64
    }

    fn range(&self) -> ByteRange {
        self.range
    }

    fn remaining(&self) -> u64 {
        self.remaining.len() as u64
    }

    fn poll_chunk(&mut self, _: &mut Context<'_>) -> Poll<Option<Result<Bytes, StoreError>>> {
        if self.remaining.is_empty() {
            return Poll::Ready(None);
        }
        Poll::Ready(Some(Ok(std::mem::take(&mut self.remaining))))
    }
}

pub(crate) struct MemListing {
    batch: Option<Batch>,
}

impl Listing for MemListing {
    fn poll_batch(&mut self, _: &mut Context<'_>) -> Poll<Option<Result<Batch, StoreError>>> {
        Poll::Ready(self.batch.take().map(Ok))
    }
}

pub(crate) struct MemUpload {
    store: MemStore,
    at: (String, String),
    content: BytesMut,
}

impl Upload for MemUpload {
    async fn push(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        self.store.check(Op::Push, "write")?;
        self.content.extend_from_slice(&chunk);
        Ok(())
    }

    /// In place at once, then the delay: as on disk, where the rename runs
    /// on a writer thread whatever becomes of the caller, and the folder's
    /// fsync after it is what takes time.
    async fn commit(self) -> Result<(), StoreError> {
        self.store.check(Op::Commit, "fsync")?;
        let delay = {
            let mut inner = self.store.inner.borrow_mut();
            if inner.files.contains_key(&self.at) {
                return Err(StoreError::exists("link"));
            }
            inner.files.insert(self.at, self.content.freeze());
            inner.commit_delay
        };
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        Ok(())
    }
}
