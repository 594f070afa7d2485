//! The store the server runs on, chosen at startup: the filesystem or a
//! bucket. An enum rather than a second instantiation of the generic request
//! path: the whole server is compiled once (the binary has a size budget),
//! and a match per store call costs nothing next to the I/O behind it.

use std::task::{Context, Poll};

use bytes::Bytes;

use super::fs::{FsListing, FsReader, FsStore, FsUpload};
use super::s3::{S3Listing, S3Reader, S3Store, S3Upload};
use super::{
    Batch, Incoming, Key, Listing, ObjectReader, OpenError, Repos, Scan, Space, Store, StoreError,
    Upload,
};
use crate::repo::range::{ByteRange, Want};
use crate::repo::{ObjectType, RepoPath};

#[derive(Clone)]
pub(crate) enum AnyStore {
    Fs(FsStore),
    S3(S3Store),
}

pub(crate) enum AnyReader {
    Fs(FsReader),
    S3(S3Reader),
}

pub(crate) enum AnyListing {
    Fs(FsListing),
    S3(S3Listing),
}

pub(crate) enum AnyUpload {
    Fs(FsUpload),
    S3(S3Upload),
}

impl Store for AnyStore {
    type Reader = AnyReader;
    type Listing = AnyListing;
    type Upload = AnyUpload;

    async fn create_repo(&self, repo: &RepoPath) -> Result<(), StoreError> {
        match self {
            AnyStore::Fs(s) => s.create_repo(repo).await,
            AnyStore::S3(s) => s.create_repo(repo).await,
        }
    }

    async fn size(&self, repo: &RepoPath, key: Key<'_>) -> Result<u64, StoreError> {
        match self {
            AnyStore::Fs(s) => s.size(repo, key).await,
            AnyStore::S3(s) => s.size(repo, key).await,
        }
    }

    async fn open(
        &self,
        repo: &RepoPath,
        key: Key<'_>,
        want: Want,
    ) -> Result<AnyReader, OpenError> {
        match self {
            AnyStore::Fs(s) => s.open(repo, key, want).await.map(AnyReader::Fs),
            AnyStore::S3(s) => s.open(repo, key, want).await.map(AnyReader::S3),
        }
    }

    async fn begin_upload(
        &self,
        repo: &RepoPath,
        key: Key<'_>,
        incoming: Incoming,
    ) -> Result<AnyUpload, StoreError> {
        match self {
            AnyStore::Fs(s) => s.begin_upload(repo, key, incoming).await.map(AnyUpload::Fs),
            AnyStore::S3(s) => s.begin_upload(repo, key, incoming).await.map(AnyUpload::S3),
        }
    }

    async fn delete(&self, repo: &RepoPath, key: Key<'_>) -> Result<u64, StoreError> {
        match self {
            AnyStore::Fs(s) => s.delete(repo, key).await,
            AnyStore::S3(s) => s.delete(repo, key).await,
        }
    }

    async fn list(&self, repo: &RepoPath, kind: ObjectType) -> Result<AnyListing, StoreError> {
        match self {
            AnyStore::Fs(s) => s.list(repo, kind).await.map(AnyListing::Fs),
            AnyStore::S3(s) => s.list(repo, kind).await.map(AnyListing::S3),
        }
    }

    async fn scan(&self) -> Result<Scan, StoreError> {
        match self {
            AnyStore::Fs(s) => s.scan().await,
            AnyStore::S3(s) => s.scan().await,
        }
    }

    async fn repos(&self) -> Result<Repos, StoreError> {
        match self {
            AnyStore::Fs(s) => s.repos().await,
            AnyStore::S3(s) => s.repos().await,
        }
    }

    async fn space(&self) -> Option<Space> {
        match self {
            AnyStore::Fs(s) => s.space().await,
            AnyStore::S3(s) => s.space().await,
        }
    }

    async fn unhealthy(&self, min_free: u64) -> Option<String> {
        match self {
            AnyStore::Fs(s) => s.unhealthy(min_free).await,
            AnyStore::S3(s) => s.unhealthy(min_free).await,
        }
    }
}

impl ObjectReader for AnyReader {
    fn size(&self) -> u64 {
        match self {
            AnyReader::Fs(r) => r.size(),
            AnyReader::S3(r) => r.size(),
        }
    }

    fn range(&self) -> ByteRange {
        match self {
            AnyReader::Fs(r) => r.range(),
            AnyReader::S3(r) => r.range(),
        }
    }

    fn remaining(&self) -> u64 {
        match self {
            AnyReader::Fs(r) => r.remaining(),
            AnyReader::S3(r) => r.remaining(),
        }
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, StoreError>>> {
        match self {
            AnyReader::Fs(r) => r.poll_chunk(cx),
            AnyReader::S3(r) => r.poll_chunk(cx),
        }
    }
}

impl Listing for AnyListing {
    fn poll_batch(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Batch, StoreError>>> {
        match self {
            AnyListing::Fs(l) => l.poll_batch(cx),
            AnyListing::S3(l) => l.poll_batch(cx),
        }
    }
}

impl Upload for AnyUpload {
    async fn push(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        match self {
            AnyUpload::Fs(u) => u.push(chunk).await,
            AnyUpload::S3(u) => u.push(chunk).await,
        }
    }

    async fn settled(&mut self) -> Result<(), StoreError> {
        match self {
            AnyUpload::Fs(u) => u.settled().await,
            AnyUpload::S3(u) => u.settled().await,
        }
    }

    async fn commit(self) -> Result<(), StoreError> {
        match self {
            AnyUpload::Fs(u) => u.commit().await,
            AnyUpload::S3(u) => u.commit().await,
        }
    }

    async fn abort(self) {
        match self {
            AnyUpload::Fs(u) => u.abort().await,
            AnyUpload::S3(u) => u.abort().await,
        }
    }
}
