//! Multipart uploads, for bodies without a declared length (restic always
//! declares one; other clients may not) and bodies above `upload_cutoff`.
//! Parts of `chunk_size` (default 8 MiB) are buffered and sent one at a time; at most [`MULTIPART_SLOTS`] such uploads
//! run at once, so their memory is bounded by the product. An upload dropped
//! before its commit is aborted; one a crash left behind is removed by
//! `rest-server cleanup`.

use std::fmt::Write as _;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use hyper::Method;
use hyper::header::ETAG;
use tokio::sync::OwnedSemaphorePermit;

use super::bucket::{Inner, read_document};
use super::{sign, xml};
use crate::client::OutBody;
use crate::store::StoreError;

/// Multipart uploads buffering at once; more wait for a slot.
pub(crate) const MULTIPART_SLOTS: usize = 2;

pub(crate) struct Multipart {
    store: Rc<Inner>,
    name: String,
    upload_id: String,
    buffer: BytesMut,
    /// Size of each part but the last.
    part_bytes: usize,
    /// Part numbers and their ETags, in order.
    parts: Vec<(u32, String)>,
    /// Set once completed or aborted: nothing left to abort on drop.
    finished: bool,
    _slot: OwnedSemaphorePermit,
}

impl Multipart {
    /// Starts a multipart upload of `name` (CreateMultipartUpload), once a
    /// slot is free.
    pub(super) async fn begin(
        store: &Rc<Inner>,
        name: String,
        headers: Vec<(&'static str, String)>,
    ) -> Result<Multipart, StoreError> {
        let slot = store
            .multipart_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::internal("upload", "multipart slots closed"))?;
        let response = store
            .call("start multipart upload", &|| {
                store.request(
                    &Method::POST,
                    Some(&name),
                    &[("uploads", "")],
                    &headers,
                    sign::EMPTY_PAYLOAD,
                    OutBody::empty(),
                )
            })
            .await?;
        let body = read_document(response.into_body(), "start multipart upload").await?;
        let text = String::from_utf8_lossy(&body);
        let upload_id = xml::first(&text, "UploadId")
            .ok_or_else(|| StoreError::internal("start multipart upload", "no UploadId"))?
            .into_owned();
        log::debug!("multipart upload of {name} started");
        Ok(Multipart {
            store: store.clone(),
            name,
            upload_id,
            buffer: BytesMut::new(),
            part_bytes: store.settings.chunk_bytes as usize,
            parts: Vec::new(),
            finished: false,
            _slot: slot,
        })
    }

    pub(super) async fn push(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            let room = self.part_bytes - self.buffer.len();
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.buffer.extend_from_slice(now);
            rest = later;
            if self.buffer.len() == self.part_bytes {
                self.send_part().await?;
            }
        }
        Ok(())
    }

    async fn send_part(&mut self) -> Result<(), StoreError> {
        let part = self.buffer.split().freeze();
        let number = self.parts.len() as u32 + 1;
        let number_text = number.to_string();
        let mut headers = Vec::new();
        self.store.customer_key_headers(&mut headers);
        // A part of a locked object must carry a checksum (AWS).
        if self.store.settings.lock.is_some() {
            use base64::Engine as _;
            use md5::Digest as _;
            let digest = md5::Md5::digest(&part);
            headers.push((
                "content-md5",
                base64::engine::general_purpose::STANDARD.encode(digest),
            ));
        }
        let store = &self.store;
        let response = store
            .call("upload part", &|| {
                store.request(
                    &Method::PUT,
                    Some(&self.name),
                    &[("partNumber", &number_text), ("uploadId", &self.upload_id)],
                    &headers,
                    sign::UNSIGNED_PAYLOAD,
                    OutBody::Full(Some(part.clone())),
                )
            })
            .await?;
        let etag = response
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| StoreError::internal("upload part", "no ETag"))?
            .to_string();
        self.parts.push((number, etag));
        Ok(())
    }

    /// Sends the last part and completes the upload, never replacing an
    /// existing object where the store honours `If-None-Match`.
    pub(super) async fn commit(mut self) -> Result<(), StoreError> {
        if !self.buffer.is_empty() || self.parts.is_empty() {
            self.send_part().await?;
        }
        let mut body = String::from("<CompleteMultipartUpload>");
        for (number, etag) in &self.parts {
            let _ = write!(
                body,
                "<Part><PartNumber>{number}</PartNumber><ETag>{}</ETag></Part>",
                escape(etag)
            );
        }
        body.push_str("</CompleteMultipartUpload>");
        let body = Bytes::from(body);
        let payload = sign::hex(ring::digest::digest(&ring::digest::SHA256, &body).as_ref());
        let store = &self.store;
        let response = store
            .call("complete multipart upload", &|| {
                store.request(
                    &Method::POST,
                    Some(&self.name),
                    &[("uploadId", &self.upload_id)],
                    &[("if-none-match", "*".to_string())],
                    &payload,
                    OutBody::Full(Some(body.clone())),
                )
            })
            .await?;
        // S3 may answer 200 and still report an error in the body.
        let text = read_document(response.into_body(), "complete multipart upload").await?;
        let text = String::from_utf8_lossy(&text);
        if text.contains("<Error>") {
            let error = xml::error(&text);
            let refusal = super::refusal::Refusal {
                status: None,
                error,
                advice: None,
            };
            return Err(StoreError::internal("complete multipart upload", refusal));
        }
        self.finished = true;
        // Some stores (moto, Ceph) ignore the lock headers of a multipart
        // upload: the lock is set on the object made.
        if let Some(lock) = &self.store.settings.lock {
            let until = super::bucket::lock_until(lock);
            (self.store)
                .set_retention(&self.name, lock.mode, until)
                .await?;
        }
        Ok(())
    }
}

impl Multipart {
    /// AbortMultipartUpload, waited for.
    pub(super) async fn abort(mut self) {
        self.finished = true;
        if let Err(e) = abort(&self.store, &self.name, &self.upload_id).await {
            log::warn!("could not abort the multipart upload of {}: {e}", self.name);
        }
    }
}

impl Drop for Multipart {
    /// Aborts the upload in the background, so the store drops its parts.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let (store, name, id) = (
            self.store.clone(),
            self.name.clone(),
            self.upload_id.clone(),
        );
        tokio::task::spawn_local(async move {
            if let Err(e) = abort(&store, &name, &id).await {
                log::warn!("could not abort the multipart upload of {name}: {e}");
            }
        });
    }
}

/// AbortMultipartUpload.
pub(super) async fn abort(store: &Inner, name: &str, upload_id: &str) -> Result<(), StoreError> {
    store
        .call("abort multipart upload", &|| {
            store.request(
                &Method::DELETE,
                Some(name),
                &[("uploadId", upload_id)],
                &[],
                sign::EMPTY_PAYLOAD,
                OutBody::empty(),
            )
        })
        .await
        .map(|_| ())
}

/// Aborts the multipart uploads under the store's prefix that started more
/// than `min_age` seconds ago (a crash left them; a running server's are
/// younger); returns how many.
pub(super) async fn cleanup(store: &Inner, min_age: u64) -> Result<u64, StoreError> {
    let prefix = store.repo_prefix(&crate::repo::RepoPath::default());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut markers: Option<(String, String)> = None;
    let mut aborted = 0;
    loop {
        let mut query = vec![("uploads", ""), ("prefix", prefix.as_str())];
        if let Some((key, id)) = &markers {
            query.push(("key-marker", key));
            query.push(("upload-id-marker", id));
        }
        let text = store
            .bucket_document("list multipart uploads", &query)
            .await?;
        for upload in xml::elements(&text, "Upload") {
            let (Some(key), Some(id)) = (xml::first(upload, "Key"), xml::first(upload, "UploadId"))
            else {
                continue;
            };
            let started = xml::first(upload, "Initiated").and_then(|t| xml::unix_time(&t));
            if started.is_some_and(|t| now.saturating_sub(t) < min_age) {
                continue;
            }
            abort(store, &key, &id).await?;
            log::info!("aborted the unfinished multipart upload of {key}");
            aborted += 1;
        }
        let truncated = xml::first(&text, "IsTruncated").is_some_and(|t| t.trim() == "true");
        match (
            truncated,
            xml::first(&text, "NextKeyMarker"),
            xml::first(&text, "NextUploadIdMarker"),
        ) {
            (true, Some(key), Some(id)) => markers = Some((key.into_owned(), id.into_owned())),
            _ => return Ok(aborted),
        }
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
