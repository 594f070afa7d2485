//! A small AWS Signature V4 client for the test stores: to set a store up
//! (moto's IAM and STS calls) and to ask it the questions the table of
//! stores in docs/s3.md answers (does it check the payload hash, the checksum,
//! `If-None-Match`), with requests the server itself never sends.

use std::io::Write as _;
use std::net::TcpStream;
use std::time::SystemTime;

use ring::hmac;

use super::{IO_TIMEOUT, Response, read_response, sha256_hex};

/// Who signs, and for which region and service.
#[derive(Debug, Clone)]
pub struct Signer {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
    pub region: String,
    pub service: &'static str,
}

/// One request to sign and send.
#[derive(Debug, Clone)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// The `Host` header (a virtual host, say); the connection goes to the
    /// address given to [`Signer::send`].
    pub host: &'a str,
    /// Already URI-encoded.
    pub path: &'a str,
    /// Already encoded and sorted (`a=1&b=2`), or empty.
    pub query: &'a str,
    /// Extra headers, lowercase names; all signed.
    pub headers: Vec<(&'a str, String)>,
    pub body: Vec<u8>,
    /// The `x-amz-content-sha256` to sign and send; None: the body's real
    /// hash.
    pub payload_hash: Option<String>,
}

impl<'a> SignedRequest<'a> {
    pub fn new(method: &'a str, host: &'a str, path: &'a str) -> SignedRequest<'a> {
        SignedRequest {
            method,
            host,
            path,
            query: "",
            headers: Vec::new(),
            body: Vec::new(),
            payload_hash: None,
        }
    }
}

impl Signer {
    /// Signs `request` now and sends it to `addr` (`127.0.0.1:PORT`) on a
    /// fresh connection.
    pub fn send(&self, addr: &str, request: &SignedRequest<'_>) -> Response {
        let payload = request
            .payload_hash
            .clone()
            .unwrap_or_else(|| sha256_hex(&request.body));
        let date = amz_date(SystemTime::now());
        let mut headers: Vec<(String, String)> = vec![
            ("host".into(), request.host.into()),
            ("x-amz-content-sha256".into(), payload.clone()),
            ("x-amz-date".into(), date.clone()),
        ];
        if let Some(token) = &self.session_token {
            headers.push(("x-amz-security-token".into(), token.clone()));
        }
        for (name, value) in &request.headers {
            headers.push((name.to_string(), value.clone()));
        }
        headers.sort();
        let signed_names = headers
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(";");
        let canonical = format!(
            "{}\n{}\n{}\n{}\n{signed_names}\n{payload}",
            request.method,
            request.path,
            request.query,
            headers
                .iter()
                .map(|(n, v)| format!("{n}:{}\n", v.trim()))
                .collect::<String>(),
        );
        let scope = format!(
            "{}/{}/{}/aws4_request",
            &date[..8],
            self.region,
            self.service
        );
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
            sha256_hex(canonical.as_bytes())
        );
        let mut key = format!("AWS4{}", self.secret_key).into_bytes();
        for part in [&date[..8], &self.region, self.service, "aws4_request"] {
            key = hmac_sha256(&key, part.as_bytes());
        }
        let signature: String = hmac_sha256(&key, to_sign.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_names}, Signature={signature}",
            self.access_key
        );

        let target = if request.query.is_empty() {
            request.path.to_string()
        } else {
            format!("{}?{}", request.path, request.query)
        };
        let mut head = format!("{} {target} HTTP/1.1\r\n", request.method);
        for (name, value) in &headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!(
            "authorization: {authorization}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            request.body.len()
        ));
        let mut stream = TcpStream::connect(addr).expect("connect to the store");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(&request.body).unwrap();
        read_response(&mut stream, request.method == "HEAD")
    }
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
        .as_ref()
        .to_vec()
}

/// `YYYYMMDDTHHMMSSZ` in UTC.
fn amz_date(now: SystemTime) -> String {
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// The text between `<tag>` and `</tag>` in an XML answer.
pub fn xml_value<'t>(text: &'t str, tag: &str) -> Option<&'t str> {
    let start = text.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = start + text[start..].find(&format!("</{tag}>"))?;
    Some(&text[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_are_utc_calendar_dates() {
        let at = |secs| amz_date(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "19700101T000000Z");
        assert_eq!(at(951_782_400), "20000229T000000Z");
        assert_eq!(at(1_440_938_160), "20150830T123600Z");
    }
}
