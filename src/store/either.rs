//! The store the server runs on, chosen at startup: the filesystem or a
//! bucket. An enum rather than a second instantiation of the generic request
//! path: the whole server is compiled once (the binary has a size budget),
//! and a match per store call costs nothing next to the I/O behind it.
//!
//! The backends are named once, in the `backends!` list at the bottom; the
//! four enums ([`AnyStore`] and its reader, listing and upload) and their
//! trait impls, one match arm per backend, are written out from it. A new
//! backend is one line there, not an arm in each of fifteen matches.

use std::task::{Context, Poll};

use bytes::Bytes;

use super::fs::FsStore;
use super::s3::S3Store;
use super::{
    Batch, Incoming, Key, Lifecycle, Listing, ObjectReader, OpenError, Repos, Scan, Space, Store,
    StoreError, Upload,
};
use crate::repo::range::{ByteRange, Want};
use crate::repo::{ObjectType, RepoPath};

/// Writes out the enums and the impls that pass each call to the backend
/// the store holds; `Name(StoreType)` per backend.
macro_rules! backends {
    ($($name:ident($store:ty)),+ $(,)?) => {
        #[derive(Clone)]
        pub(crate) enum AnyStore {
            $($name($store)),+
        }

        pub(crate) enum AnyReader {
            $($name(<$store as Store>::Reader)),+
        }

        pub(crate) enum AnyListing {
            $($name(<$store as Store>::Listing)),+
        }

        pub(crate) enum AnyUpload {
            $($name(<$store as Store>::Upload)),+
        }

        impl Store for AnyStore {
            type Reader = AnyReader;
            type Listing = AnyListing;
            type Upload = AnyUpload;

            async fn create_repo(&self, repo: &RepoPath) -> Result<(), StoreError> {
                match self {
                    $(AnyStore::$name(s) => s.create_repo(repo).await),+
                }
            }

            async fn size(&self, repo: &RepoPath, key: Key<'_>) -> Result<u64, StoreError> {
                match self {
                    $(AnyStore::$name(s) => s.size(repo, key).await),+
                }
            }

            async fn open(
                &self,
                repo: &RepoPath,
                key: Key<'_>,
                want: Want,
            ) -> Result<AnyReader, OpenError> {
                match self {
                    $(AnyStore::$name(s) => s.open(repo, key, want).await.map(AnyReader::$name)),+
                }
            }

            async fn begin_upload(
                &self,
                repo: &RepoPath,
                key: Key<'_>,
                incoming: Incoming,
            ) -> Result<AnyUpload, StoreError> {
                match self {
                    $(AnyStore::$name(s) => {
                        s.begin_upload(repo, key, incoming).await.map(AnyUpload::$name)
                    })+
                }
            }

            async fn delete(
                &self,
                repo: &RepoPath,
                key: Key<'_>,
                by: Option<&str>,
            ) -> Result<u64, StoreError> {
                match self {
                    $(AnyStore::$name(s) => s.delete(repo, key, by).await),+
                }
            }

            async fn list(
                &self,
                repo: &RepoPath,
                kind: ObjectType,
            ) -> Result<AnyListing, StoreError> {
                match self {
                    $(AnyStore::$name(s) => s.list(repo, kind).await.map(AnyListing::$name)),+
                }
            }
        }

        impl Lifecycle for AnyStore {
            async fn scan(&self) -> Result<Scan, StoreError> {
                match self {
                    $(AnyStore::$name(s) => s.scan().await),+
                }
            }

            async fn repos(&self) -> Result<Repos, StoreError> {
                match self {
                    $(AnyStore::$name(s) => s.repos().await),+
                }
            }

            async fn space(&self) -> Option<Space> {
                match self {
                    $(AnyStore::$name(s) => s.space().await),+
                }
            }

            async fn unhealthy(&self, min_free: u64) -> Option<String> {
                match self {
                    $(AnyStore::$name(s) => s.unhealthy(min_free).await),+
                }
            }

            fn keeps_deleted(&self, key: Key<'_>) -> bool {
                match self {
                    $(AnyStore::$name(s) => s.keeps_deleted(key)),+
                }
            }

            async fn purge_trash(&self) -> Vec<(String, u64)> {
                match self {
                    $(AnyStore::$name(s) => s.purge_trash().await),+
                }
            }
        }

        impl ObjectReader for AnyReader {
            fn size(&self) -> u64 {
                match self {
                    $(AnyReader::$name(r) => r.size()),+
                }
            }

            fn range(&self) -> ByteRange {
                match self {
                    $(AnyReader::$name(r) => r.range()),+
                }
            }

            fn remaining(&self) -> u64 {
                match self {
                    $(AnyReader::$name(r) => r.remaining()),+
                }
            }

            fn poll_chunk(
                &mut self,
                cx: &mut Context<'_>,
            ) -> Poll<Option<Result<Bytes, StoreError>>> {
                match self {
                    $(AnyReader::$name(r) => r.poll_chunk(cx)),+
                }
            }
        }

        impl Listing for AnyListing {
            fn poll_batch(
                &mut self,
                cx: &mut Context<'_>,
            ) -> Poll<Option<Result<Batch, StoreError>>> {
                match self {
                    $(AnyListing::$name(l) => l.poll_batch(cx)),+
                }
            }
        }

        impl Upload for AnyUpload {
            async fn push(&mut self, chunk: Bytes) -> Result<(), StoreError> {
                match self {
                    $(AnyUpload::$name(u) => u.push(chunk).await),+
                }
            }

            async fn settled(&mut self) -> Result<(), StoreError> {
                match self {
                    $(AnyUpload::$name(u) => u.settled().await),+
                }
            }

            async fn commit(self) -> Result<(), StoreError> {
                match self {
                    $(AnyUpload::$name(u) => u.commit().await),+
                }
            }

            async fn abort(self) {
                match self {
                    $(AnyUpload::$name(u) => u.abort().await),+
                }
            }
        }
    };
}

// Every store the server can run on: `Variant(Type)`, the type implementing
// `Store` and `Lifecycle` in a module of its own.
backends! {
    Fs(FsStore),
    S3(S3Store),
}
