//! The few S3 XML documents the store reads: a ListObjectsV2 page and an
//! error body. S3 answers are flat and well-formed, so finding elements by
//! name is enough; no general XML parser is pulled in for them.

use std::borrow::Cow;

/// The inner text of every `<tag>…</tag>` in `xml`, in order (not nested
/// inside one another, as S3 never nests an element in itself).
pub(crate) fn elements<'a>(xml: &'a str, tag: &str) -> impl Iterator<Item = &'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut rest = xml;
    std::iter::from_fn(move || {
        let start = rest.find(&open)? + open.len();
        let len = rest[start..].find(&close)?;
        let inner = &rest[start..start + len];
        rest = &rest[start + len + close.len()..];
        Some(inner)
    })
}

/// The first `<tag>` of `xml`, unescaped.
pub(crate) fn first<'a>(xml: &'a str, tag: &str) -> Option<Cow<'a, str>> {
    elements(xml, tag).next().map(unescape)
}

/// Replaces XML's five entities and numeric character references.
pub(crate) fn unescape(text: &str) -> Cow<'_, str> {
    if !text.contains('&') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let Some(end) = rest.find(';') else { break };
        let entity = &rest[1..end];
        let c = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .map(|hex| u32::from_str_radix(hex, 16))
                .or_else(|| entity.strip_prefix('#').map(str::parse))
                .and_then(Result::ok)
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Decodes `%XX` (keys of a listing asked for with `encoding-type=url`).
/// None when the result is not UTF-8 or an escape is broken.
pub(crate) fn url_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// One object of a listing page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) key: String,
    pub(crate) size: u64,
    /// Unix seconds, when the store gave a readable `LastModified`.
    pub(crate) modified: Option<u64>,
}

/// A ListObjectsV2 page.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Page {
    pub(crate) entries: Vec<Entry>,
    /// Where the next page starts; None on the last page.
    pub(crate) next: Option<String>,
}

/// Parses a ListObjectsV2 answer asked for with `encoding-type=url`.
pub(crate) fn list_page(xml: &str) -> Result<Page, &'static str> {
    if !xml.contains("<ListBucketResult") {
        return Err("not a ListBucketResult");
    }
    let mut page = Page::default();
    for contents in elements(xml, "Contents") {
        let key = first(contents, "Key").ok_or("an entry without Key")?;
        let key = url_decode(&key).ok_or("an undecodable Key")?;
        let size = first(contents, "Size")
            .and_then(|s| s.trim().parse().ok())
            .ok_or("an entry without a valid Size")?;
        let modified = first(contents, "LastModified").and_then(|t| unix_time(&t));
        page.entries.push(Entry {
            key,
            size,
            modified,
        });
    }
    let truncated = first(xml, "IsTruncated").is_some_and(|t| t.trim() == "true");
    if truncated {
        let token = first(xml, "NextContinuationToken").ok_or("truncated without a token")?;
        page.next = Some(token.into_owned());
    }
    Ok(page)
}

/// Seconds since the epoch of an ISO 8601 UTC time (`2024-01-02T03:04:05.000Z`).
pub(crate) fn unix_time(text: &str) -> Option<u64> {
    let t = text.trim().as_bytes();
    if t.len() < 19 || t[4] != b'-' || t[7] != b'-' || t[10] != b'T' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        std::str::from_utf8(&t[range]).ok()?.parse().ok()
    };
    let days = crate::time::days_from_civil(i64::from(num(0..4)?), num(5..7)?, num(8..10)?);
    let secs = days * 86_400
        + i64::from(num(11..13)?) * 3600
        + i64::from(num(14..16)?) * 60
        + i64::from(num(17..19)?);
    u64::try_from(secs).ok()
}

/// Milliseconds since the epoch of an ISO 8601 UTC time, its fraction of a
/// second kept (`2024-01-02T03:04:05.123Z`).
pub(crate) fn unix_time_ms(text: &str) -> Option<u64> {
    let secs = unix_time(text)?;
    let fraction = text.trim().get(19..).unwrap_or("");
    let millis = match fraction.strip_prefix('.') {
        Some(digits) => {
            let digits: String = digits
                .chars()
                .take_while(char::is_ascii_digit)
                .chain("000".chars())
                .take(3)
                .collect();
            digits.parse::<u64>().ok()?
        }
        None => 0,
    };
    Some(secs * 1000 + millis)
}

/// An S3 error body's code and message.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct S3Error {
    pub(crate) code: String,
    pub(crate) message: String,
    /// The bucket's region, which AWS names in an
    /// AuthorizationHeaderMalformed answer to a wrong region.
    pub(crate) region: Option<String>,
}

pub(crate) fn error(xml: &str) -> S3Error {
    S3Error {
        code: first(xml, "Code").unwrap_or_default().into_owned(),
        message: first(xml, "Message").unwrap_or_default().into_owned(),
        region: first(xml, "Region").map(Cow::into_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_listing_page() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name>
<Prefix>r/keys/</Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys><EncodingType>url</EncodingType>
<IsTruncated>true</IsTruncated>
<Contents><Key>r/keys/a%20b</Key><LastModified>2013-05-24T00:00:00.000Z</LastModified><ETag>&quot;x&quot;</ETag><Size>12</Size></Contents>
<Contents><Key>r%2Fkeys/c</Key><Size>0</Size></Contents>
<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=&amp;x</NextContinuationToken>
</ListBucketResult>"#;
        let page = list_page(xml).unwrap();
        assert_eq!(
            page.entries,
            vec![
                Entry {
                    key: "r/keys/a b".into(),
                    size: 12,
                    modified: Some(1_369_353_600)
                },
                Entry {
                    key: "r/keys/c".into(),
                    size: 0,
                    modified: None
                },
            ]
        );
        assert_eq!(
            page.next.as_deref(),
            Some("1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=&x")
        );
    }

    #[test]
    fn the_last_page_has_no_next() {
        let xml = "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>";
        assert_eq!(list_page(xml).unwrap(), Page::default());
        assert!(list_page("<Error><Code>AccessDenied</Code></Error>").is_err());
        let broken = "<ListBucketResult><Contents><Key>k</Key></Contents></ListBucketResult>";
        assert!(list_page(broken).is_err());
    }

    #[test]
    fn reads_error_bodies_and_entities() {
        let e = error(
            "<Error><Code>NoSuchKey</Code><Message>a &lt;b&gt; &#233;&#x41;&bogus;</Message></Error>",
        );
        assert_eq!(e.code, "NoSuchKey");
        assert_eq!(e.message, "a <b> éA&bogus;");
        assert_eq!(error("garbage"), S3Error::default());
        assert_eq!(url_decode("%zz"), None);
        assert_eq!(url_decode("a%2"), None);
    }
}
