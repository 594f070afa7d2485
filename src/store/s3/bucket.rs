//! One bucket as the store talks to it ([`Inner`]): the settings and the
//! HTTP client, signed requests, and what is made of an answer (its status
//! checked, a small XML document read). The store's operations, its uploads
//! and its listings are all built on it.

use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use hyper::body::Incoming as IncomingBody;
use hyper::header::{CONTENT_LENGTH, HOST, HeaderName};
use hyper::{Method, Request, Response, StatusCode};

use super::settings::{Encryption, Settings};
use super::{advice, refusal, sign, xml};
use crate::client::{BODY_STALL_TIMEOUT, Client, ClientError, OutBody};
use crate::repo::{Key, ObjectType, RepoPath};
use crate::store::{ErrorKind, StoreError};

/// Largest error or listing body read into memory: a ListObjectsV2 page of
/// 1000 keys is about 300 KB.
const MAX_DOCUMENT_BYTES: usize = 4 * 1024 * 1024;

pub(super) struct Inner {
    pub(super) client: Client,
    pub(super) settings: Settings,
    /// Multipart uploads that may buffer a part at once.
    pub(super) multipart_slots: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Inner {
    /// The key of a repository's folder, with a trailing slash (or empty).
    pub(super) fn repo_prefix(&self, repo: &RepoPath) -> String {
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

    pub(super) fn object_key(&self, repo: &RepoPath, key: Key<'_>) -> String {
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
    pub(super) fn request(
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
        crate::small_sort::sort_short_by(&mut signed, |a, b| a.0 < b.0);
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
    pub(super) fn object_headers(&self, key: Key<'_>) -> Vec<(&'static str, String)> {
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
        if let Some(lock) = &s.lock {
            headers.push(("x-amz-object-lock-mode", lock.mode.as_s3().into()));
            headers.push(("x-amz-object-lock-retain-until-date", retain_until(lock)));
        }
        headers
    }

    /// The SSE-C headers, which every read and write of an object needs.
    pub(super) fn customer_key_headers(&self, headers: &mut Vec<(&'static str, String)>) {
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

    /// The SSE-C headers a server-side copy needs to read its source.
    pub(super) fn copy_source_key_headers(&self, headers: &mut Vec<(&'static str, String)>) {
        let mut own = Vec::new();
        self.customer_key_headers(&mut own);
        for (name, value) in own {
            let name = match name {
                "x-amz-server-side-encryption-customer-algorithm" => {
                    "x-amz-copy-source-server-side-encryption-customer-algorithm"
                }
                "x-amz-server-side-encryption-customer-key" => {
                    "x-amz-copy-source-server-side-encryption-customer-key"
                }
                _ => "x-amz-copy-source-server-side-encryption-customer-key-md5",
            };
            headers.push((name, value));
        }
    }

    /// Sends a request without a body to send in pieces, and checks its
    /// status; an error status becomes a store error with the store's reason.
    pub(super) async fn call(
        &self,
        op: &'static str,
        make: &dyn Fn() -> Result<Request<OutBody>, ClientError>,
    ) -> Result<Response<IncomingBody>, StoreError> {
        self.call_with_status(op, make).await?.1
    }

    /// [`Inner::call`], with the answer's status beside its check, for a
    /// caller that tells one refusal from another; the outer error is a
    /// request that got no answer.
    pub(super) async fn call_with_status(
        &self,
        op: &'static str,
        make: &dyn Fn() -> Result<Request<OutBody>, ClientError>,
    ) -> Result<(StatusCode, Result<Response<IncomingBody>, StoreError>), StoreError> {
        let response = self
            .client
            .send(make)
            .await
            .map_err(|e| unreachable_store(op, e))?;
        let status = response.status();
        Ok((status, check(op, response).await))
    }

    /// Copies `from` (its version `version`, or its newest) to `to` inside
    /// the bucket, written as this store writes a new object (encryption,
    /// ACL, lock); the bytes never leave the store.
    pub(super) async fn copy(
        &self,
        from: &str,
        version: Option<&str>,
        to: &str,
    ) -> Result<(), StoreError> {
        const OP: &str = "copy";
        let mut source = String::from("/");
        sign::encode(&self.settings.bucket, false, &mut source);
        source.push('/');
        sign::encode(from, true, &mut source);
        if let Some(id) = version {
            source.push_str("?versionId=");
            sign::encode(id, false, &mut source);
        }
        let mut headers = self.object_headers(Key::Config);
        self.copy_source_key_headers(&mut headers);
        headers.push(("x-amz-copy-source", source));
        // As on a locked PUT (moto asks for it on a locked copy too).
        if self.settings.lock.is_some() {
            headers.push(("x-amz-sdk-checksum-algorithm", "SHA256".into()));
        }
        let response = self
            .call(OP, &|| {
                self.request(
                    &Method::PUT,
                    Some(to),
                    &[],
                    &headers,
                    sign::EMPTY_PAYLOAD,
                    OutBody::empty(),
                )
            })
            .await?;
        // A copy may answer 200 and report its failure in the body.
        let text = read_document(response.into_body(), OP).await?;
        let text = String::from_utf8_lossy(&text);
        if text.contains("<Error>") {
            let refusal = refusal::Refusal {
                status: None,
                error: xml::error(&text),
                advice: None,
            };
            return Err(StoreError::internal(OP, refusal));
        }
        Ok(())
    }

    /// Removes `key` (a plain DELETE).
    pub(super) async fn remove(&self, key: &str) -> Result<(), StoreError> {
        self.call("remove", &|| {
            self.request(
                &Method::DELETE,
                Some(key),
                &[],
                &[],
                sign::EMPTY_PAYLOAD,
                OutBody::empty(),
            )
        })
        .await
        .map(drop)
    }

    pub(super) async fn head(&self, key: &str, op: &'static str) -> Result<u64, StoreError> {
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
    pub(super) async fn list_page(
        &self,
        prefix: &str,
        token: Option<&str>,
    ) -> Result<xml::Page, StoreError> {
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
    pub(super) async fn bucket_document(
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
    pub(super) async fn check_bucket(&self) -> Result<(), StoreError> {
        const OP: &str = "check bucket";
        let (status, checked) = self
            .call_with_status(OP, &|| {
                self.request(
                    &Method::HEAD,
                    None,
                    &[],
                    &[],
                    sign::EMPTY_PAYLOAD,
                    OutBody::empty(),
                )
            })
            .await?;
        match checked {
            Ok(_) => self.check_object_lock().await,
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
                // Only a bucket made with object lock can have it (which
                // also turns on its versioning).
                if self.settings.lock.is_some() {
                    headers.push(("x-amz-bucket-object-lock-enabled", "true".into()));
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
                self.check_object_lock().await
            }
            Err(e) => Err(e),
        }
    }
}

/// `x-amz-object-lock-retain-until-date` for an object locked now.
pub(super) fn retain_until(lock: &crate::config::ObjectLock) -> String {
    crate::time::iso8601(lock_until(lock))
}

/// Until when (Unix seconds) an object locked now is locked.
pub(crate) fn lock_until(lock: &crate::config::ObjectLock) -> u64 {
    crate::time::unix_now() + u64::from(lock.days) * 86_400
}

/// A request that got no answer: the store could not be reached or did
/// not answer in time, or the request could not be made.
pub(super) fn unreachable_store(op: &'static str, err: crate::client::ClientError) -> StoreError {
    StoreError::new(ErrorKind::Unexpected, op, err)
}

pub(super) fn content_length(response: &Response<IncomingBody>) -> Option<u64> {
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
pub(super) async fn check(
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
pub(super) async fn read_document(
    mut body: IncomingBody,
    op: &'static str,
) -> Result<Bytes, StoreError> {
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
