//! What to tell the user to check when the store refuses a request: the
//! store's error code (and the bucket's region, when the store names it)
//! turned into the setting or fact most likely wrong. A refusal alone
//! ("403 Forbidden") leaves the user to guess between a wrong key, a wrong
//! region, a skewed clock and a missing permission.

use hyper::StatusCode;

/// What to check, per S3 error code (a table: smaller code than a match).
const BY_CODE: &[(&str, &str)] = &[
    (
        "SignatureDoesNotMatch",
        "check the secret access key (the access key id was accepted) and the region",
    ),
    (
        "InvalidAccessKeyId",
        "check the access key id: the store knows no such key",
    ),
    (
        "RequestTimeTooSkewed",
        "check this machine's clock: it is too far from the store's",
    ),
    (
        "AccessDenied",
        "the credentials were accepted but lack a permission: check the key's policy \
         (list, read, write, delete; create the bucket unless no_check_bucket = true)",
    ),
    ("ExpiredToken", "the session token has expired"),
    ("InvalidToken", "check the session token"),
    (
        "AuthorizationHeaderMalformed",
        "the bucket is in another region: set region in the --s3-config file",
    ),
    (
        "PermanentRedirect",
        "the bucket is in another region: set region in the --s3-config file",
    ),
    ("NoSuchBucket", "check the bucket's name in --path"),
];

/// The hint for an error answer, if there is one worth giving.
pub(crate) fn advice(status: StatusCode, code: &str, region: Option<&str>) -> Option<String> {
    // A store that says where the bucket is: the region is what to fix,
    // whatever the code (AWS: 301 PermanentRedirect, 400
    // AuthorizationHeaderMalformed, or a bare 301/400 to a HEAD).
    if let Some(region) = region.filter(|r| is_region_name(r)) {
        return Some(format!(
            "the bucket is in region {region}: set region = {region} in the --s3-config file"
        ));
    }
    let hint = match BY_CODE.iter().find(|(c, _)| *c == code) {
        Some((_, hint)) => hint,
        None if code.is_empty() && status == StatusCode::FORBIDDEN => {
            "check the access key id and secret, the region, this machine's clock, \
             and the key's permissions on the bucket"
        }
        None => return None,
    };
    Some(hint.to_string())
}

/// A region name as AWS writes them (`eu-west-1`), not arbitrary text from
/// the network put into the advice.
fn is_region_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 32
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_region_is_what_to_fix() {
        let said = advice(
            StatusCode::BAD_REQUEST,
            "AuthorizationHeaderMalformed",
            Some("eu-west-1"),
        );
        assert!(said.unwrap().contains("region = eu-west-1"));
        let odd = advice(StatusCode::MOVED_PERMANENTLY, "", Some("<script>"));
        assert!(!odd.unwrap_or_default().contains("script"));
    }

    #[test]
    fn each_refusal_says_what_to_check() {
        let hint = |code| advice(StatusCode::FORBIDDEN, code, None).unwrap();
        assert!(hint("SignatureDoesNotMatch").contains("secret access key"));
        assert!(hint("InvalidAccessKeyId").contains("access key id"));
        assert!(hint("RequestTimeTooSkewed").contains("clock"));
        assert!(hint("AccessDenied").contains("permission"));
        assert!(hint("").contains("clock"));
        assert_eq!(advice(StatusCode::NOT_FOUND, "NoSuchKey", None), None);
    }
}
