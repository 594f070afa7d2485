//! AWS Signature Version 4 for S3 requests, in the `Authorization` header,
//! with ring's HMAC-SHA256 (already in the binary for TLS and uploads).
//!
//! Written here rather than taken from a crate: the one sans-IO signer that
//! fitted (rusty-s3) added 590 KB to a static aarch64 binary (url, ICU,
//! jiff, a second SHA-256), a fifth of the 3 MiB budget, for about a hundred
//! lines of canonical-request code.

use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use ring::{digest, hmac};

/// The payload hash of a request without a body.
pub(crate) const EMPTY_PAYLOAD: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// The payload hash of a body whose SHA-256 is not known before sending.
pub(crate) const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// An access key and its secret. The secret never appears in `Debug` output,
/// so it cannot reach a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) access_key: String,
    pub(crate) secret_key: String,
    pub(crate) session_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<hidden>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<hidden>"),
            )
            .finish()
    }
}

/// What is signed of a request. Header names are lowercase; `query` is
/// already canonical (sorted, encoded) and is sent as it is.
pub(crate) struct Canonical<'a> {
    pub(crate) method: &'a str,
    /// The path, encoded with [`encode`] (slashes kept).
    pub(crate) path: &'a str,
    pub(crate) query: &'a str,
    /// Every header to sign (host, x-amz-date, x-amz-content-sha256 among
    /// them), sorted by name.
    pub(crate) headers: &'a [(&'a str, &'a str)],
    /// Hex SHA-256 of the body, or [`UNSIGNED_PAYLOAD`].
    pub(crate) payload: &'a str,
}

/// The `Authorization` header value for `request`, signed at `amz_date`
/// (see [`amz_date`]) for `region`.
pub(crate) fn authorization(
    credentials: &Credentials,
    region: &str,
    amz_date: &str,
    request: &Canonical<'_>,
) -> String {
    let mut canonical = String::with_capacity(512);
    let mut signed = String::with_capacity(96);
    canonical.push_str(request.method);
    canonical.push('\n');
    canonical.push_str(request.path);
    canonical.push('\n');
    canonical.push_str(request.query);
    canonical.push('\n');
    for (name, value) in request.headers {
        canonical.push_str(name);
        canonical.push(':');
        canonical.push_str(value.trim());
        canonical.push('\n');
        if !signed.is_empty() {
            signed.push(';');
        }
        signed.push_str(name);
    }
    canonical.push('\n');
    canonical.push_str(&signed);
    canonical.push('\n');
    canonical.push_str(request.payload);

    let day = &amz_date[..8];
    let scope = format!("{day}/{region}/s3/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
    );
    let mut key = hmac_sha256(
        format!("AWS4{}", credentials.secret_key).as_bytes(),
        day.as_bytes(),
    );
    for part in [region, "s3", "aws4_request"] {
        key = hmac_sha256(&key, part.as_bytes());
    }
    let signature = hex(&hmac_sha256(&key, to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
        credentials.access_key
    )
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hmac::sign(&key, data).as_ref().to_vec()
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Appends `s` URI-encoded as SigV4 wants it: everything but unreserved
/// characters as `%XX`; `/` kept when `keep_slash` (object key paths).
pub(crate) fn encode(s: &str, keep_slash: bool, out: &mut String) {
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
}

/// A canonical query string from unsorted `(name, value)` pairs.
pub(crate) fn query(pairs: &[(&str, &str)]) -> String {
    let mut encoded: Vec<(String, String)> = pairs
        .iter()
        .map(|(name, value)| {
            let (mut n, mut v) = (String::new(), String::new());
            encode(name, false, &mut n);
            encode(value, false, &mut v);
            (n, v)
        })
        .collect();
    crate::small_sort::sort_short_by(&mut encoded, |a, b| a < b);
    let mut out = String::new();
    for (name, value) in encoded {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&name);
        out.push('=');
        out.push_str(&value);
    }
    out
}

/// `YYYYMMDDTHHMMSSZ` for `time`, in UTC.
pub(crate) fn amz_date(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = crate::time::civil_from_days(days as i64);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Credentials {
        // The example credentials of AWS's SigV4 documentation.
        Credentials {
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        }
    }

    #[test]
    fn signs_aws_documented_get_object() {
        let headers = [
            ("host", "examplebucket.s3.amazonaws.com"),
            ("range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY_PAYLOAD),
            ("x-amz-date", "20130524T000000Z"),
        ];
        let request = Canonical {
            method: "GET",
            path: "/test.txt",
            query: "",
            headers: &headers,
            payload: EMPTY_PAYLOAD,
        };
        assert_eq!(
            authorization(&example(), "us-east-1", "20130524T000000Z", &request),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn signs_aws_documented_list_objects() {
        let headers = [
            ("host", "examplebucket.s3.amazonaws.com"),
            ("x-amz-content-sha256", EMPTY_PAYLOAD),
            ("x-amz-date", "20130524T000000Z"),
        ];
        let query = query(&[("prefix", "J"), ("max-keys", "2")]);
        assert_eq!(query, "max-keys=2&prefix=J");
        let request = Canonical {
            method: "GET",
            path: "/",
            query: &query,
            headers: &headers,
            payload: EMPTY_PAYLOAD,
        };
        let auth = authorization(&example(), "us-east-1", "20130524T000000Z", &request);
        assert!(
            auth.ends_with(
                "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
            ),
            "{auth}"
        );
    }

    #[test]
    fn encodes_as_sigv4_wants() {
        let mut out = String::new();
        encode("a b/c~d+e=f%", true, &mut out);
        assert_eq!(out, "a%20b/c~d%2Be%3Df%25");
        out.clear();
        encode("x/y", false, &mut out);
        assert_eq!(out, "x%2Fy");
    }

    #[test]
    fn formats_and_reads_dates() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_369_353_600);
        assert_eq!(amz_date(t), "20130524T000000Z");
        let t = UNIX_EPOCH + std::time::Duration::from_secs(951_825_599);
        assert_eq!(amz_date(t), "20000229T115959Z");
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let mut creds = example();
        creds.session_token = Some("TOKEN123".into());
        let shown = format!("{creds:?}");
        assert!(!shown.contains("EXAMPLEKEY") && !shown.contains("TOKEN123"));
        assert!(shown.contains("AKIAIOSFODNN7EXAMPLE"));
    }
}
