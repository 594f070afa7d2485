//! Requests a browser sends on another site's behalf: refused when they
//! would change something.
//!
//! SECURITY: the status page invites the owner to sign in with a browser,
//! and a browser then attaches those Basic credentials to requests that
//! pages of other sites make here (a form POST, a `no-cors` fetch, a DELETE
//! from script). Such a request could plant junk index files, delete keys
//! or create repositories in the owner's name. Browsers mark where a request
//! comes from (`Sec-Fetch-Site`, and `Origin` on every POST or DELETE from a
//! page); restic sends neither header, and the status page only reads.

use std::fmt;

use hyper::HeaderMap;
use hyper::header::{HOST, HeaderName, HeaderValue, ORIGIN};

/// `Sec-Fetch-Site` (a constant: a name given as a string would pull in
/// http's runtime header-name parser).
const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// What marked a request as coming from another site, for the log.
#[derive(Debug)]
pub(crate) struct Foreign {
    origin: Option<HeaderValue>,
    fetch_site: Option<HeaderValue>,
}

impl fmt::Display for Foreign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<HeaderValue>| {
            v.as_ref().map_or("-".into(), |v| {
                String::from_utf8_lossy(v.as_bytes()).into_owned()
            })
        };
        write!(
            f,
            "a change asked by a page of another site (Origin: {}, Sec-Fetch-Site: {})",
            show(&self.origin),
            show(&self.fetch_site)
        )
    }
}

/// Some when the browser says the request comes from another site
/// (`Sec-Fetch-Site: cross-site` or `same-site`), or it names an `Origin`
/// that is not this server's own (its host and port, as in `Host`; `null`
/// is nobody's). Asked only of requests that change something.
pub(crate) fn foreign(headers: &HeaderMap) -> Option<Foreign> {
    let fetch_site = headers.get(SEC_FETCH_SITE);
    let other_site = fetch_site
        .is_some_and(|site| site.as_bytes() == b"cross-site" || site.as_bytes() == b"same-site");
    let origin = headers.get(ORIGIN);
    let other_origin = origin.is_some_and(|origin| !is_own(origin, headers.get(HOST)));
    (other_site || other_origin).then(|| Foreign {
        origin: origin.cloned(),
        fetch_site: fetch_site.cloned(),
    })
}

/// Whether `origin` (`scheme://host[:port]`) names the host the request was
/// sent to. The scheme is not compared: behind a proxy that ends TLS, the
/// page's `https` origin reaches a plain-http server at the same host.
fn is_own(origin: &HeaderValue, host: Option<&HeaderValue>) -> bool {
    let (Ok(origin), Some(Ok(host))) = (origin.to_str(), host.map(|h| h.to_str())) else {
        return false;
    };
    match origin.split_once("://") {
        Some((_, authority)) => !host.is_empty() && authority.eq_ignore_ascii_case(host),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        map
    }

    #[test]
    fn other_sites_are_foreign_the_server_itself_and_restic_are_not() {
        let host = ("host", "board.local:8000");
        for foreign in [
            vec![host, ("origin", "http://evil.example")],
            vec![host, ("sec-fetch-site", "cross-site")],
            vec![host, ("sec-fetch-site", "same-site")],
            vec![host, ("origin", "null")],
            vec![host, ("origin", "http://board.local:8001")],
            vec![host, ("origin", "http://board.local")],
            vec![("origin", "http://board.local:8000")],
            vec![
                host,
                ("origin", "http://board.local:8000"),
                ("sec-fetch-site", "cross-site"),
            ],
        ] {
            assert!(super::foreign(&headers(&foreign)).is_some(), "{foreign:?}");
        }
        for own in [
            vec![host],
            vec![host, ("origin", "http://board.local:8000")],
            vec![host, ("origin", "https://BOARD.local:8000")],
            vec![host, ("sec-fetch-site", "same-origin")],
            vec![host, ("sec-fetch-site", "none")],
        ] {
            assert!(super::foreign(&headers(&own)).is_none(), "{own:?}");
        }
    }
}
