//! A versioned bucket's history (ListObjectVersions) and the requests that
//! rewrite it: removing one version or delete marker, copying an old
//! version back on top (and, with [`Inner::remove`], hiding a key behind a
//! delete marker). Only `mirror recover` uses them ([`super::rewind`]).

use hyper::{Method, StatusCode};

use super::bucket::Inner;
use super::{sign, xml};
use crate::client::OutBody;
use crate::store::StoreError;

/// One version of a key, or one delete marker, as the bucket lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Version {
    pub(crate) key: String,
    pub(crate) id: String,
    pub(crate) marker: bool,
    /// The key's newest entry (`IsLatest`).
    pub(crate) latest: bool,
    /// When the store made it, in Unix milliseconds by the store's clock.
    pub(crate) modified_ms: u64,
}

/// A ListObjectVersions page: versions and markers in the bucket's order
/// (keys in order, each key's newest first).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct VersionPage {
    pub(crate) versions: Vec<Version>,
    /// The key and version markers the next page starts after.
    pub(crate) next: Option<(String, String)>,
}

/// How a versioned DELETE went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Removal {
    Removed,
    /// The store refused it (a version locked until a later date, or keys
    /// without `s3:DeleteObjectVersion`), with its reason.
    Refused(String),
}

impl Inner {
    /// One page of the versions under `prefix`.
    pub(super) async fn versions_page(
        &self,
        prefix: &str,
        after: Option<&(String, String)>,
    ) -> Result<VersionPage, StoreError> {
        let chunk = self.settings.list_chunk.to_string();
        let mut query = vec![
            ("versions", ""),
            ("prefix", prefix),
            ("encoding-type", "url"),
            ("max-keys", chunk.as_str()),
        ];
        if let Some((key, version)) = after {
            query.push(("key-marker", key));
            if !version.is_empty() {
                query.push(("version-id-marker", version));
            }
        }
        let text = self.bucket_document("list versions", &query).await?;
        parse_page(&text).map_err(|e| StoreError::internal("list versions", e))
    }

    /// Refuses a rewind where it would destroy rather than undo: on a
    /// bucket without versioning every object is its only version, and on
    /// a locked bucket what is copied back must be locked too.
    pub(super) async fn check_rewindable(&self) -> Result<(), StoreError> {
        const OP: &str = "check versioning";
        let text = self.bucket_document(OP, &[("versioning", "")]).await?;
        if xml::first(&text, "Status").is_none_or(|s| s.trim() != "Enabled") {
            return Err(StoreError::internal(
                OP,
                format!(
                    "bucket {:?} does not keep versions: there is no history to go back \
                     to, and removing what was made since would delete it for good",
                    self.settings.bucket
                ),
            ));
        }
        if self.settings.lock.is_none() && self.object_lock_enabled().await? {
            return Err(StoreError::internal(
                OP,
                format!(
                    "bucket {:?} has object lock: give --mirror-lock-days (and \
                     --mirror-lock-mode) as the server has them, so that what recover \
                     copies back is locked too",
                    self.settings.bucket
                ),
            ));
        }
        Ok(())
    }

    /// Removes one version or delete marker for good (a versioned DELETE).
    pub(super) async fn remove_version(&self, key: &str, id: &str) -> Result<Removal, StoreError> {
        let (status, checked) = self
            .call_with_status("remove a version", &|| {
                self.request(
                    &Method::DELETE,
                    Some(key),
                    &[("versionId", id)],
                    &[],
                    sign::EMPTY_PAYLOAD,
                    OutBody::empty(),
                )
            })
            .await?;
        match checked {
            Ok(_) => Ok(Removal::Removed),
            Err(e) if status == StatusCode::FORBIDDEN => Ok(Removal::Refused(e.to_string())),
            Err(e) => Err(e),
        }
    }

    /// Makes version `id` of `key` its newest again, by a server-side copy
    /// (locked like every object this store writes).
    pub(super) async fn copy_back(&self, key: &str, id: &str) -> Result<(), StoreError> {
        self.copy(key, Some(id), key).await
    }
}

/// Parses a ListObjectVersions answer asked for with `encoding-type=url`,
/// keeping the order of `<Version>` and `<DeleteMarker>` entries.
pub(crate) fn parse_page(text: &str) -> Result<VersionPage, &'static str> {
    if !text.contains("<ListVersionsResult") {
        return Err("not a ListVersionsResult");
    }
    let mut page = VersionPage::default();
    let mut rest = text;
    loop {
        let version = rest.find("<Version>");
        let marker = rest.find("<DeleteMarker>");
        let (at, tag, is_marker) = match (version, marker) {
            (Some(v), Some(m)) if m < v => (m, "DeleteMarker", true),
            (Some(v), _) => (v, "Version", false),
            (None, Some(m)) => (m, "DeleteMarker", true),
            (None, None) => break,
        };
        let inner_start = at + tag.len() + 2;
        let close = format!("</{tag}>");
        let len = rest[inner_start..]
            .find(&close)
            .ok_or("an unclosed entry")?;
        let entry = &rest[inner_start..inner_start + len];
        rest = &rest[inner_start + len + close.len()..];
        let key = xml::first(entry, "Key").ok_or("an entry without Key")?;
        page.versions.push(Version {
            key: xml::url_decode(&key).ok_or("an undecodable Key")?,
            id: xml::first(entry, "VersionId")
                .ok_or("an entry without VersionId")?
                .into_owned(),
            marker: is_marker,
            latest: xml::first(entry, "IsLatest").is_some_and(|t| t.trim() == "true"),
            modified_ms: xml::first(entry, "LastModified")
                .and_then(|t| xml::unix_time_ms(&t))
                .ok_or("an entry without a valid LastModified")?,
        });
    }
    // AWS lists each key's entries together, newest first; moto lists a
    // page's versions, then its markers. In order again, the newest first
    // (`IsLatest` decides between entries of the same second): linear on a
    // page already in order.
    crate::small_sort::sort_short_by(&mut page.versions, |a, b| {
        (&a.key, !a.latest, std::cmp::Reverse(a.modified_ms))
            < (&b.key, !b.latest, std::cmp::Reverse(b.modified_ms))
    });
    if xml::first(text, "IsTruncated").is_some_and(|t| t.trim() == "true") {
        let key = xml::first(text, "NextKeyMarker").ok_or("truncated without a key marker")?;
        let version = xml::first(text, "NextVersionIdMarker").unwrap_or_default();
        page.next = Some((
            xml::url_decode(&key).ok_or("an undecodable NextKeyMarker")?,
            version.into_owned(),
        ));
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_versions_and_markers_in_order() {
        let text = "<?xml version=\"1.0\"?><ListVersionsResult><IsTruncated>true</IsTruncated>\
            <NextKeyMarker>b%2Bc</NextKeyMarker><NextVersionIdMarker>v9</NextVersionIdMarker>\
            <Version><Key>a</Key><VersionId>v1</VersionId><IsLatest>false</IsLatest>\
            <LastModified>2026-12-06T14:47:48Z</LastModified><Size>5</Size></Version>\
            <DeleteMarker><Key>a</Key><VersionId>m1</VersionId><IsLatest>true</IsLatest>\
            <LastModified>2026-12-06T14:47:49.250Z</LastModified></DeleteMarker>\
            </ListVersionsResult>";
        let page = parse_page(text).unwrap();
        assert_eq!(page.versions.len(), 2);
        assert!(page.versions[0].marker && page.versions[0].id == "m1");
        assert!(!page.versions[1].marker && page.versions[1].id == "v1");
        assert_eq!(
            page.versions[0].modified_ms - page.versions[1].modified_ms,
            1250
        );
        assert_eq!(page.next, Some(("b+c".to_string(), "v9".to_string())));
        assert!(parse_page("<ListBucketResult/>").is_err());
    }
}
