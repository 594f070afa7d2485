//! S3 Object Lock, for the mirror's `--mirror-lock-days`: the bucket must
//! have it on, and each object written is locked until a date that the
//! mirror moves on while the object is live (`x-amz-object-lock-*` headers
//! on a PUT; PutObjectRetention after a multipart upload, whose lock
//! headers some stores ignore, and for each renewal). The S3 store's
//! `renew_lock` is built on it.

use bytes::Bytes;
use hyper::Method;

use super::bucket::Inner;
use super::{sign, xml};
use crate::client::OutBody;
use crate::config::LockMode;
use crate::store::{ErrorKind, StoreError};

impl Inner {
    /// With a lock asked for, checks that the bucket has object lock on:
    /// a lock header on a bucket without it is refused by some stores and
    /// ignored by others, and an ignored lock protects nothing.
    pub(super) async fn check_object_lock(&self) -> Result<(), StoreError> {
        const OP: &str = "check object lock";
        if self.settings.lock.is_none() {
            return Ok(());
        }
        match self.object_lock_enabled().await? {
            true => Ok(()),
            false => Err(StoreError::internal(
                OP,
                format!(
                    "bucket {:?} has no object lock, which --mirror-lock-days needs: most \
                     stores turn it on only when a bucket is made, so let the server make a \
                     new bucket (or make one with object lock), or leave out \
                     --mirror-lock-days",
                    self.settings.bucket
                ),
            )),
        }
    }

    /// Whether the bucket has object lock on (`GET ?object-lock`).
    pub(super) async fn object_lock_enabled(&self) -> Result<bool, StoreError> {
        const OP: &str = "check object lock";
        match self.bucket_document(OP, &[("object-lock", "")]).await {
            Ok(text) => {
                Ok(xml::first(&text, "ObjectLockEnabled").is_some_and(|v| v.trim() == "Enabled"))
            }
            // AWS: ObjectLockConfigurationNotFoundError (404).
            Err(e) if e.kind == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Locks the newest version of `key` until `until` (Unix seconds;
    /// PutObjectRetention): a later date is always allowed, an earlier one
    /// never without the bypass permission the board's keys lack.
    pub(super) async fn set_retention(
        &self,
        key: &str,
        mode: LockMode,
        until: u64,
    ) -> Result<(), StoreError> {
        use base64::Engine as _;
        use md5::Digest as _;
        let body = Bytes::from(format!(
            "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>{}</Mode>\
             <RetainUntilDate>{}</RetainUntilDate></Retention>",
            mode.as_s3(),
            crate::time::iso8601(until)
        ));
        let payload = sign::hex(ring::digest::digest(&ring::digest::SHA256, &body).as_ref());
        // AWS wants the body's Content-MD5 on this request.
        let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&body));
        let headers = [("content-md5", md5)];
        self.call("lock", &|| {
            self.request(
                &Method::PUT,
                Some(key),
                &[("retention", "")],
                &headers,
                &payload,
                OutBody::Full(Some(body.clone())),
            )
        })
        .await
        .map(drop)
    }
}
