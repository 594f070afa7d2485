//! The S3 store: repositories kept in a bucket of any S3-compatible object
//! store, in restic's own s3 layout, so `restic -r s3:<endpoint>/<bucket>/
//! <prefix>/<repo>` opens the same repository without this server.
//!
//! ```text
//! <prefix>/<repo segments...>/config
//! <prefix>/<repo segments...>/{keys,locks,snapshots,index}/<id>
//! <prefix>/<repo segments...>/data/<first two hex chars of id>/<id>
//! ```
//!
//! An upload is one PUT with the declared length, streamed as it arrives.
//! Its content cannot become visible unverified: the PUT carries the
//! object's SHA-256 (signed as the payload hash and as
//! `x-amz-checksum-sha256`) for stores that check it, and for those that do
//! not, the last byte of the body is held back until the server's own hash
//! matched; a mismatch breaks the request off short of its length, which no
//! store completes. `If-None-Match: *` keeps two servers on one bucket from
//! replacing each other's files where the store honours it.

mod advice;
mod bucket;
mod list;
mod lock;
mod multipart;
mod read;
mod refusal;
mod rewind;
mod settings;
mod sign;
mod trash;
mod upload;
mod versions;
mod xml;

use std::rc::Rc;

use hyper::{Method, StatusCode};

use self::bucket::{Inner, check, content_length, unreachable_store};
pub(crate) use self::list::S3Listing;
use self::multipart::Multipart;
pub(crate) use self::read::S3Reader;
use self::read::{content_range_start, total_size};
pub(crate) use self::settings::{Settings, SettingsError, is_location, parse_location};
pub(crate) use self::upload::S3Upload;
use self::upload::StreamedPut;
use super::{ErrorKind, Incoming, Key, OpenError, RepoStats, Repos, Scan, StoreError};
use crate::client::{Client, OutBody};
use crate::repo::range::{ByteRange, RangeError, Want};
use crate::repo::{ObjectType, RepoPath};

/// Repositories in a bucket.
#[derive(Clone)]
pub(crate) struct S3Store {
    inner: Rc<Inner>,
    /// `--trash-days`: a client's delete moves the object into the trash
    /// (see [`trash`]); None removes it.
    trash_days: Option<u64>,
}

impl S3Store {
    /// The store at `location`, set up from the settings file (if any) and
    /// the environment: how the server and every subcommand open a bucket.
    pub(crate) fn open(
        location: &crate::config::S3Location,
        settings_file: Option<&std::path::Path>,
    ) -> Result<S3Store, SettingsError> {
        S3Store::new(settings::load(location, settings_file)?)
    }

    /// The mirror's bucket, with its object lock if asked for.
    pub(crate) fn open_mirror(mirror: &crate::config::Mirror) -> Result<S3Store, SettingsError> {
        let mut settings = settings::load(&mirror.location, mirror.settings_file.as_deref())?;
        settings.lock = mirror.run.lock;
        S3Store::new(settings)
    }

    pub(crate) fn new(settings: Settings) -> Result<S3Store, SettingsError> {
        let roots = if settings.endpoint.https {
            Some(crate::client::Trust::Roots(load_roots(
                settings.ca_file.as_deref(),
            )?))
        } else {
            None
        };
        let client = Client::new(settings.endpoint.clone(), roots).map_err(SettingsError)?;
        Ok(S3Store {
            trash_days: None,
            inner: Rc::new(Inner {
                client,
                settings,
                multipart_slots: std::sync::Arc::new(tokio::sync::Semaphore::new(
                    multipart::MULTIPART_SLOTS,
                )),
            }),
        })
    }

    /// Aborts multipart uploads older than `min_age` seconds (`cleanup`).
    pub(crate) async fn cleanup(&self, min_age: u64) -> Result<u64, StoreError> {
        multipart::cleanup(&self.inner, min_age).await
    }

    /// Checks the bucket (creating it when missing and allowed).
    pub(crate) async fn prepare(&self) -> Result<(), StoreError> {
        self.inner.check_bucket().await
    }

    /// Moves the lock of `repo`'s `key` on to `until` (Unix seconds;
    /// nothing when no lock is asked for). NotFound: not in the bucket
    /// (yet).
    pub(crate) async fn renew_lock(
        &self,
        repo: &crate::repo::RepoPath,
        key: crate::repo::Key<'_>,
        until: u64,
    ) -> Result<(), StoreError> {
        let inner = &self.inner;
        match &inner.settings.lock {
            Some(lock) => {
                let name = inner.object_key(repo, key);
                inner.set_retention(&name, lock.mode, until).await
            }
            None => Ok(()),
        }
    }

    /// This store, keeping deleted objects for `days` days (`--trash-days`).
    pub(crate) fn with_trash(self, days: Option<u64>) -> S3Store {
        S3Store {
            trash_days: days,
            ..self
        }
    }

    /// What the log says of where repositories are.
    pub(crate) fn describe(&self) -> String {
        let s = &self.inner.settings;
        format!(
            "s3 bucket {:?} at {}://{} (prefix {:?}, region {}, {} addressing, credentials from {})",
            s.bucket,
            if s.endpoint.https { "https" } else { "http" },
            s.endpoint.authority(),
            s.prefix,
            s.region,
            if s.path_style {
                "path-style"
            } else {
                "virtual-host"
            },
            s.credentials_from
        )
    }
}

/// CA certificates: a given PEM file, else the system's bundle.
fn load_roots(ca_file: Option<&std::path::Path>) -> Result<rustls::RootCertStore, SettingsError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    const SYSTEM_BUNDLES: &[&str] = &[
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ];
    let from_env = std::env::var_os("SSL_CERT_FILE").map(std::path::PathBuf::from);
    let path = match (ca_file, from_env) {
        (Some(path), _) => path.to_path_buf(),
        (None, Some(path)) => path,
        (None, None) => SYSTEM_BUNDLES
            .iter()
            .map(std::path::Path::new)
            .find(|p| p.exists())
            .ok_or_else(|| {
                SettingsError(
                    "no CA certificates found for the https endpoint: set ca_file in the \
                     S3 settings file"
                        .into(),
                )
            })?
            .to_path_buf(),
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&path)
        .map_err(|e| SettingsError(format!("CA file {}: {e}", path.display())))?;
    for cert in certs {
        let cert = cert.map_err(|e| SettingsError(format!("CA file {}: {e}", path.display())))?;
        // A bundle may hold certificates webpki cannot use; skip those.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(SettingsError(format!(
            "CA file {}: no usable certificate",
            path.display()
        )));
    }
    Ok(roots)
}

/// The repository a key belongs to (relative to the store's prefix), and
/// whether it is a snapshot.
fn repo_of(relative: &str) -> Option<(String, Option<ObjectType>)> {
    let parts: Vec<&str> = relative.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let kind = ObjectType::from_segment(part);
        if (*part == "config" && last) || (!last && kind.is_some()) {
            return Some((parts[..i].join("/"), kind));
        }
    }
    None
}

impl super::Store for S3Store {
    type Reader = S3Reader;
    type Listing = S3Listing;
    type Upload = S3Upload;

    /// Folders do not exist in a bucket: a repository is there once its
    /// config is.
    async fn create_repo(&self, repo: &RepoPath) -> Result<(), StoreError> {
        log::info!("creating repository {repo} in {}", self.describe());
        Ok(())
    }

    async fn size(&self, repo: &RepoPath, key: Key<'_>) -> Result<u64, StoreError> {
        let name = self.inner.object_key(repo, key);
        self.inner.head(&name, "stat").await
    }

    async fn open(&self, repo: &RepoPath, key: Key<'_>, want: Want) -> Result<S3Reader, OpenError> {
        let inner = &self.inner;
        let name = inner.object_key(repo, key);
        let range = match want {
            Want::All => None,
            Want::From(start) => Some(format!("bytes={start}-")),
            Want::Span(start, end) => Some(format!("bytes={start}-{end}")),
            Want::Suffix(n) => Some(format!("bytes=-{n}")),
            Want::Invalid => {
                let size = inner.head(&name, "stat").await?;
                return Err(OpenError::Range(RangeError { size }));
            }
        };
        let mut headers = Vec::new();
        inner.customer_key_headers(&mut headers);
        if let Some(range) = range {
            headers.push(("range", range));
        }
        let response = inner
            .client
            .send(&|| {
                inner.request(
                    &Method::GET,
                    Some(&name),
                    &[],
                    &headers,
                    sign::EMPTY_PAYLOAD,
                    OutBody::empty(),
                )
            })
            .await
            .map_err(|e| unreachable_store("read", e))?;
        if response.status() == StatusCode::RANGE_NOT_SATISFIABLE {
            let size = match total_size(&response) {
                Some(size) => size,
                None => inner.head(&name, "stat").await?,
            };
            return Err(OpenError::Range(RangeError { size }));
        }
        let response = check("read", response).await?;
        let length = content_length(&response)
            .ok_or_else(|| StoreError::internal("read", "GET without Content-Length"))?;
        let (size, range) = if response.status() == StatusCode::PARTIAL_CONTENT {
            let size = total_size(&response)
                .ok_or_else(|| StoreError::internal("read", "206 without a Content-Range"))?;
            let start = content_range_start(&response)
                .ok_or_else(|| StoreError::internal("read", "206 without a Content-Range"))?;
            (size, ByteRange::Partial { start, len: length })
        } else {
            // The whole object: also what a store that ignores Range sends.
            let range = want.resolve(length)?;
            if range != ByteRange::Full {
                return Err(
                    StoreError::internal("read", "the store ignored the Range header").into(),
                );
            }
            (length, ByteRange::Full)
        };
        Ok(S3Reader {
            body: response.into_body(),
            size,
            range,
            remaining: length,
            stall: None,
        })
    }

    async fn begin_upload(
        &self,
        repo: &RepoPath,
        key: Key<'_>,
        incoming: Incoming,
    ) -> Result<S3Upload, StoreError> {
        let inner = &self.inner;
        let name = inner.object_key(repo, key);
        match inner.head(&name, "stat").await {
            Ok(_) => return Err(StoreError::exists("upload")),
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let headers = inner.object_headers(key);
        // A locked object's PUT must carry a checksum (AWS refuses it
        // otherwise): without the body's SHA-256 in advance, the upload
        // goes in parts, each with its Content-MD5.
        let checksummed = incoming.sha256.is_some() || inner.settings.lock.is_none();
        match incoming.length {
            Some(length) if length <= inner.settings.upload_cutoff && checksummed => {
                Ok(S3Upload::Put(Box::new(StreamedPut::begin(
                    &self.inner,
                    &name,
                    headers,
                    incoming.sha256,
                    length,
                )?)))
            }
            _ => Ok(S3Upload::Parts(
                Multipart::begin(&self.inner, name, headers).await?,
            )),
        }
    }

    async fn delete(
        &self,
        repo: &RepoPath,
        key: Key<'_>,
        by: Option<&str>,
    ) -> Result<u64, StoreError> {
        let inner = &self.inner;
        let name = inner.object_key(repo, key);
        let size = match inner.head(&name, "stat").await {
            Ok(size) => size,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        match super::Lifecycle::keeps_deleted(self, key) {
            true => self.keep(repo, key, &name, by).await?,
            false => inner.remove(&name).await?,
        }
        Ok(size)
    }

    async fn list(&self, repo: &RepoPath, kind: ObjectType) -> Result<S3Listing, StoreError> {
        let prefix = format!("{}{}/", self.inner.repo_prefix(repo), kind.dir_name());
        Ok(S3Listing {
            store: self.inner.clone(),
            kind,
            prefix,
            pending: None,
            next: Some(None),
        })
    }
}

/// Only what a bucket can answer: `space` and `unhealthy` keep their
/// defaults (a bucket has no free space to run out of, and its reachability
/// shows in every request's answer and in the log).
impl super::Lifecycle for S3Store {
    /// Creates the bucket when missing (and allowed): the server starts
    /// on a new bucket.
    async fn scan(&self) -> Result<Scan, StoreError> {
        self.inner.check_bucket().await?;
        self.tally().await
    }

    /// Never creates the bucket: the listing of a missing one is the
    /// store's NoSuchBucket (`rest-server scrub` of a mistyped location
    /// must change nothing).
    async fn repos(&self) -> Result<Repos, StoreError> {
        Ok(self.tally().await?.repos)
    }

    fn keeps_deleted(&self, key: Key<'_>) -> bool {
        crate::store::trash::keeps(self.trash_days, key)
    }

    async fn purge_trash(&self) -> Vec<(String, u64)> {
        self.purge_expired().await
    }
}

impl S3Store {
    /// What is stored under the prefix, per repository: the bucket's
    /// listing, read a page at a time.
    async fn tally(&self) -> Result<Scan, StoreError> {
        let inner = &self.inner;
        let prefix = inner.repo_prefix(&RepoPath::default());
        let mut scan = Scan::default();
        let mut trashed: Vec<(String, u64)> = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = inner.list_page(&prefix, token.as_deref()).await?;
            for entry in page.entries {
                let Some(relative) = entry.key.strip_prefix(prefix.as_str()) else {
                    continue;
                };
                // The trash: in the bucket's bytes (--max-size) and in its
                // repository's budgets, never a repository of its own.
                if S3Store::in_trash(relative) {
                    scan.bytes += entry.size;
                    let repo = relative
                        .split_once(crate::store::trash::SLASH_TRASHED)
                        .map_or("", |(repo, _)| repo);
                    let repo = repo.strip_prefix(".trash/").unwrap_or("");
                    // Listed before the repositories ('.' sorts first):
                    // given to them at the end.
                    trashed.push((repo.to_string(), entry.size));
                    continue;
                }
                let Some((repo, kind)) = repo_of(relative) else {
                    continue;
                };
                scan.bytes += entry.size;
                let stats: &mut RepoStats = scan.repos.entry(repo).or_default();
                stats.bytes += entry.size;
                stats.objects += u64::from(kind.is_some());
                if kind == Some(ObjectType::Snapshots) {
                    stats.snapshots += 1;
                    stats.newest_snapshot = stats.newest_snapshot.max(entry.modified);
                }
            }
            match page.next {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        for (repo, bytes) in trashed {
            if let Some(stats) = scan.repos.get_mut(&repo) {
                stats.trash_bytes += bytes;
            }
        }
        Ok(scan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_attributed_to_their_repository() {
        assert_eq!(repo_of("config"), Some((String::new(), None)));
        assert_eq!(repo_of("a/b/config"), Some(("a/b".into(), None)));
        assert_eq!(
            repo_of("a/data/ab/abcd"),
            Some(("a".into(), Some(ObjectType::Data)))
        );
        assert_eq!(
            repo_of("a/snapshots/x"),
            Some(("a".into(), Some(ObjectType::Snapshots)))
        );
        assert_eq!(repo_of("a/config/x"), None);
        assert_eq!(repo_of("a/b"), None);
    }
}
