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
mod multipart;
mod refusal;
mod settings;
mod sign;
mod upload;
mod xml;

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use http_body::Body as _;
use hyper::body::Incoming as IncomingBody;
use hyper::header::{CONTENT_LENGTH, CONTENT_RANGE, HOST, HeaderName};
use hyper::{Method, Request, Response, StatusCode};

use self::multipart::Multipart;
pub(crate) use self::settings::{Encryption, Settings, SettingsError, is_location, parse_location};
pub(crate) use self::upload::S3Upload;
use self::upload::StreamedPut;
use super::{Batch, ErrorKind, Incoming, Key, OpenError, RepoStats, Repos, Scan, StoreError};
use crate::client::{BODY_STALL_TIMEOUT, Client, ClientError, OutBody};
use crate::repo::range::{ByteRange, RangeError, Want};
use crate::repo::{ObjectId, ObjectType, RepoPath};

/// Largest error or listing body read into memory: a ListObjectsV2 page of
/// 1000 keys is about 300 KB.
const MAX_DOCUMENT_BYTES: usize = 4 * 1024 * 1024;

/// Repositories in a bucket.
#[derive(Clone)]
pub(crate) struct S3Store {
    inner: Rc<Inner>,
}

struct Inner {
    client: Client,
    settings: Settings,
    /// Multipart uploads that may buffer a part at once.
    multipart_slots: std::sync::Arc<tokio::sync::Semaphore>,
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

impl Inner {
    /// The key of a repository's folder, with a trailing slash (or empty).
    fn repo_prefix(&self, repo: &RepoPath) -> String {
        let mut key = String::new();
        for segment in std::iter::once(self.settings.prefix.as_str())
            .filter(|p| !p.is_empty())
            .chain(repo.segments())
        {
            key.push_str(segment);
            key.push('/');
        }
        key
    }

    fn object_key(&self, repo: &RepoPath, key: Key<'_>) -> String {
        let mut name = self.repo_prefix(repo);
        match key {
            Key::Config => name.push_str("config"),
            Key::Object(kind, id) => {
                name.push_str(kind.dir_name());
                name.push('/');
                if kind == ObjectType::Data {
                    name.push_str(id.prefix());
                    name.push('/');
                }
                name.push_str(id.as_str());
            }
        }
        name
    }

    /// A signed request for `key` (None: the bucket itself). `headers` are
    /// lowercase extra headers, all signed.
    fn request(
        &self,
        method: &Method,
        key: Option<&str>,
        query: &[(&str, &str)],
        headers: &[(&'static str, String)],
        payload: &str,
        body: OutBody,
    ) -> Result<Request<OutBody>, ClientError> {
        let s = &self.settings;
        let mut path = String::with_capacity(128);
        path.push('/');
        let host = if s.path_style {
            sign::encode(&s.bucket, false, &mut path);
            if key.is_some() {
                path.push('/');
            }
            s.endpoint.authority()
        } else {
            format!("{}.{}", s.bucket, s.endpoint.authority())
        };
        if let Some(key) = key {
            sign::encode(key, true, &mut path);
        }
        let query = sign::query(query);
        let date = sign::amz_date(SystemTime::now());
        let mut signed: Vec<(&'static str, &str)> = vec![
            ("host", &host),
            ("x-amz-content-sha256", payload),
            ("x-amz-date", &date),
        ];
        let token = s
            .credentials
            .as_ref()
            .and_then(|c| c.session_token.as_deref());
        if let Some(token) = token {
            signed.push(("x-amz-security-token", token));
        }
        for (name, value) in headers {
            signed.push((name, value));
        }
        signed.sort_by(|a, b| a.0.cmp(b.0));
        let uri = if query.is_empty() {
            path.clone()
        } else {
            format!("{path}?{query}")
        };
        let mut builder = Request::builder().method(method.clone()).uri(uri);
        if let Some(credentials) = &s.credentials {
            let canonical = sign::Canonical {
                method: method.as_str(),
                path: &path,
                query: &query,
                headers: &signed,
                payload,
            };
            builder = builder.header(
                "authorization",
                sign::authorization(credentials, &s.region, &date, &canonical),
            );
        }
        for (name, value) in &signed {
            if !value
                .bytes()
                .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
            {
                return Err(ClientError::BadHeader(name));
            }
            builder = builder.header(if *name == "host" { HOST.as_str() } else { name }, *value);
        }
        if method == Method::PUT || method == Method::POST {
            builder = builder.header(CONTENT_LENGTH, http_body::Body::size_hint(&body).lower());
        }
        // A request that cannot be built is an error: sent as something
        // else (an unsigned `GET /`, as a default request would be), a 200
        // to it would pass for the success of a DELETE or a HEAD.
        builder.body(body).map_err(|_| ClientError::BadRequest)
    }

    /// The headers a new object is created with: storage class (data packs
    /// only), encryption, ACL.
    fn object_headers(&self, key: Key<'_>) -> Vec<(&'static str, String)> {
        let s = &self.settings;
        let mut headers = Vec::new();
        if let (Some(class), Some(ObjectType::Data)) = (&s.storage_class, key.kind()) {
            headers.push(("x-amz-storage-class", class.clone()));
        }
        match &s.encryption {
            Some(Encryption::Aes256) => {
                headers.push(("x-amz-server-side-encryption", "AES256".into()))
            }
            Some(Encryption::Kms(id)) => {
                headers.push(("x-amz-server-side-encryption", "aws:kms".into()));
                if let Some(id) = id {
                    headers.push(("x-amz-server-side-encryption-aws-kms-key-id", id.clone()));
                }
            }
            Some(Encryption::Customer(_)) => self.customer_key_headers(&mut headers),
            None => {}
        }
        if let Some(acl) = &s.acl {
            headers.push(("x-amz-acl", acl.clone()));
        }
        headers
    }

    /// The SSE-C headers, which every read and write of an object needs.
    fn customer_key_headers(&self, headers: &mut Vec<(&'static str, String)>) {
        use base64::Engine as _;
        if let Some(Encryption::Customer(key)) = &self.settings.encryption {
            let b64 = base64::engine::general_purpose::STANDARD;
            let md5 = {
                use md5::Digest as _;
                md5::Md5::digest(key)
            };
            headers.push((
                "x-amz-server-side-encryption-customer-algorithm",
                "AES256".into(),
            ));
            headers.push(("x-amz-server-side-encryption-customer-key", b64.encode(key)));
            headers.push((
                "x-amz-server-side-encryption-customer-key-md5",
                b64.encode(md5),
            ));
        }
    }

    /// Sends a request without a body to send in pieces, and checks its
    /// status; an error status becomes a store error with the store's reason.
    async fn call(
        &self,
        op: &'static str,
        make: &dyn Fn() -> Result<Request<OutBody>, ClientError>,
    ) -> Result<Response<IncomingBody>, StoreError> {
        let response = self
            .client
            .send(make)
            .await
            .map_err(|e| unreachable_store(op, e))?;
        check(op, response).await
    }

    async fn head(&self, key: &str, op: &'static str) -> Result<u64, StoreError> {
        let mut headers = Vec::new();
        self.customer_key_headers(&mut headers);
        let response = self
            .call(op, &|| {
                self.request(
                    &Method::HEAD,
                    Some(key),
                    &[],
                    &headers,
                    sign::EMPTY_PAYLOAD,
                    OutBody::empty(),
                )
            })
            .await?;
        content_length(&response)
            .ok_or_else(|| StoreError::internal(op, "HEAD without Content-Length"))
    }

    /// One ListObjectsV2 page under `prefix`.
    async fn list_page(&self, prefix: &str, token: Option<&str>) -> Result<xml::Page, StoreError> {
        let chunk = self.settings.list_chunk.to_string();
        let mut query = vec![
            ("list-type", "2"),
            ("prefix", prefix),
            ("encoding-type", "url"),
            ("max-keys", chunk.as_str()),
        ];
        if let Some(token) = token {
            query.push(("continuation-token", token));
        }
        let text = self.bucket_document("list", &query).await?;
        xml::list_page(&text).map_err(|e| StoreError::internal("list", e))
    }

    /// A GET on the bucket with `query`, its XML answer read whole.
    async fn bucket_document(
        &self,
        op: &'static str,
        query: &[(&str, &str)],
    ) -> Result<String, StoreError> {
        let response = self
            .call(op, &|| {
                self.request(
                    &Method::GET,
                    None,
                    query,
                    &[],
                    sign::EMPTY_PAYLOAD,
                    OutBody::empty(),
                )
            })
            .await?;
        let body = read_document(response.into_body(), op).await?;
        String::from_utf8(body.to_vec())
            .map_err(|_| StoreError::internal(op, "answer is not UTF-8"))
    }

    /// Checks that the bucket is there and the credentials work; creates
    /// the bucket when it is missing (unless told not to).
    async fn check_bucket(&self) -> Result<(), StoreError> {
        const OP: &str = "check bucket";
        let response = self
            .client
            .send(&|| {
                self.request(
                    &Method::HEAD,
                    None,
                    &[],
                    &[],
                    sign::EMPTY_PAYLOAD,
                    OutBody::empty(),
                )
            })
            .await
            .map_err(|e| unreachable_store(OP, e))?;
        let status = response.status();
        match check(OP, response).await {
            Ok(_) => Ok(()),
            // The answer to a HEAD has no body, so no S3 error code: a
            // refusal is asked once more as a one-key listing, whose answer
            // names the code (SignatureDoesNotMatch, AccessDenied...).
            Err(e) if status.is_client_error() && status != StatusCode::NOT_FOUND => {
                match self
                    .bucket_document(OP, &[("list-type", "2"), ("max-keys", "1")])
                    .await
                {
                    Err(listed) => Err(listed),
                    Ok(_) => Err(e),
                }
            }
            Err(e) if e.kind == ErrorKind::NotFound && !self.settings.no_check_bucket => {
                let body = match &self.settings.location_constraint {
                    None => Bytes::new(),
                    Some(location) => Bytes::from(format!(
                        "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                         <LocationConstraint>{location}</LocationConstraint></CreateBucketConfiguration>"
                    )),
                };
                let payload =
                    sign::hex(ring::digest::digest(&ring::digest::SHA256, &body).as_ref());
                let mut headers = Vec::new();
                if let Some(acl) = &self.settings.acl {
                    headers.push(("x-amz-acl", acl.clone()));
                }
                let created = self
                    .call("create bucket", &|| {
                        self.request(
                            &Method::PUT,
                            None,
                            &[],
                            &headers,
                            &payload,
                            OutBody::Full(Some(body.clone())),
                        )
                    })
                    .await;
                match created {
                    Ok(_) => log::info!("created bucket {:?}", self.settings.bucket),
                    // Another server (or this one's mirror) created it since
                    // the HEAD: it is ours all the same.
                    Err(e) if e.kind == ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// A request that got no answer: the store could not be reached or did
/// not answer in time, or the request could not be made.
fn unreachable_store(op: &'static str, err: crate::client::ClientError) -> StoreError {
    StoreError::new(ErrorKind::Unexpected, op, err)
}

fn content_length(response: &Response<IncomingBody>) -> Option<u64> {
    response
        .headers()
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Passes a success through; turns an error status into a store error that
/// carries the store's code and message.
async fn check(
    op: &'static str,
    response: Response<IncomingBody>,
) -> Result<Response<IncomingBody>, StoreError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    // AWS names the bucket's region in this header on a wrong-region
    // answer, also to a HEAD, which has no body. (A constant name: a
    // `&str` key would be parsed at run time, and that parser is large.)
    const BUCKET_REGION: HeaderName = HeaderName::from_static("x-amz-bucket-region");
    let (parts, body) = response.into_parts();
    let body = read_document(body, op).await.unwrap_or_default();
    let error = xml::error(&String::from_utf8_lossy(&body));
    let region = error.region.as_deref().or(parts
        .headers
        .get(BUCKET_REGION)
        .and_then(|v| v.to_str().ok()));
    let kind = match (status, error.code.as_str()) {
        (_, "NoSuchBucket") => ErrorKind::Unexpected,
        (StatusCode::NOT_FOUND, _) => ErrorKind::NotFound,
        (StatusCode::PRECONDITION_FAILED, _) => ErrorKind::AlreadyExists,
        (_, "BucketAlreadyOwnedByYou") => ErrorKind::AlreadyExists,
        (StatusCode::INSUFFICIENT_STORAGE, _) => ErrorKind::NoSpace,
        (_, "QuotaExceeded" | "XMinioStorageFull" | "StorageFull") => ErrorKind::NoSpace,
        _ => ErrorKind::Unexpected,
    };
    let advice = advice::advice(status, &error.code, region);
    let refusal = refusal::Refusal {
        status: Some(status),
        error,
        advice,
    };
    Err(StoreError::new(kind, op, refusal))
}

/// Reads a small response body whole (bounded in size and in pauses).
async fn read_document(mut body: IncomingBody, op: &'static str) -> Result<Bytes, StoreError> {
    let mut out = BytesMut::new();
    loop {
        let frame = tokio::time::timeout(
            BODY_STALL_TIMEOUT,
            http_body_util::BodyExt::frame(&mut body),
        )
        .await
        .map_err(|_| StoreError::internal(op, "the store stopped sending"))?;
        match frame {
            None => return Ok(out.freeze()),
            Some(Err(e)) => return Err(StoreError::internal(op, e)),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if out.len() + data.len() > MAX_DOCUMENT_BYTES {
                        return Err(StoreError::internal(op, "answer too large"));
                    }
                    out.extend_from_slice(&data);
                }
            }
        }
    }
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
        match incoming.length {
            Some(length) if length <= inner.settings.upload_cutoff => Ok(S3Upload::Put(Box::new(
                StreamedPut::begin(&self.inner, &name, headers, incoming.sha256, length)?,
            ))),
            _ => Ok(S3Upload::Parts(
                Multipart::begin(&self.inner, name, headers).await?,
            )),
        }
    }

    async fn delete(&self, repo: &RepoPath, key: Key<'_>) -> Result<u64, StoreError> {
        let inner = &self.inner;
        let name = inner.object_key(repo, key);
        let size = match inner.head(&name, "stat").await {
            Ok(size) => size,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        inner
            .call("remove", &|| {
                inner.request(
                    &Method::DELETE,
                    Some(&name),
                    &[],
                    &[],
                    sign::EMPTY_PAYLOAD,
                    OutBody::empty(),
                )
            })
            .await?;
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
}

impl S3Store {
    /// What is stored under the prefix, per repository: the bucket's
    /// listing, read a page at a time.
    async fn tally(&self) -> Result<Scan, StoreError> {
        let inner = &self.inner;
        let prefix = inner.repo_prefix(&RepoPath::default());
        let mut scan = Scan::default();
        let mut token: Option<String> = None;
        loop {
            let page = inner.list_page(&prefix, token.as_deref()).await?;
            for entry in page.entries {
                let Some((repo, kind)) = entry.key.strip_prefix(prefix.as_str()).and_then(repo_of)
                else {
                    continue;
                };
                scan.bytes += entry.size;
                let stats: &mut RepoStats = scan.repos.entry(repo).or_default();
                stats.bytes += entry.size;
                stats.objects += u64::from(kind.is_some());
                if kind == Some(ObjectType::Snapshots) {
                    stats.newest_snapshot = stats.newest_snapshot.max(entry.modified);
                }
            }
            match page.next {
                Some(next) => token = Some(next),
                None => return Ok(scan),
            }
        }
    }
}

/// The total size from a `Content-Range: bytes a-b/size` (or `*/size`).
fn total_size(response: &Response<IncomingBody>) -> Option<u64> {
    let value = response.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    value.rsplit_once('/')?.1.trim().parse().ok()
}

fn content_range_start(response: &Response<IncomingBody>) -> Option<u64> {
    let value = response.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    let span = value.trim().strip_prefix("bytes ")?.split_once('/')?.0;
    span.split_once('-')?.0.parse().ok()
}

/// An object being sent: the store's response body, passed on as it comes.
pub(crate) struct S3Reader {
    body: IncomingBody,
    size: u64,
    range: ByteRange,
    remaining: u64,
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl super::ObjectReader for S3Reader {
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

type PageFuture = Pin<Box<dyn Future<Output = Result<xml::Page, StoreError>>>>;

/// A listing, a ListObjectsV2 page at a time: memory is one page whatever
/// the number of objects.
pub(crate) struct S3Listing {
    store: Rc<Inner>,
    kind: ObjectType,
    prefix: String,
    pending: Option<PageFuture>,
    /// The next page to ask for: Some(None) is the first; None when done.
    next: Option<Option<String>>,
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

impl super::Listing for S3Listing {
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
