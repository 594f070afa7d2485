//! Request path → typed route. Nothing that fails to parse here can name a file.
//!
//! The URL layout is restic's REST backend as rest-server 0.14 serves it:
//! `/{repo}/` (create), `/{repo}/config`, `/{repo}/{type}/` (list) and
//! `/{repo}/{type}/{id}`, where `{repo}` is zero, one or two path segments.

use std::fmt;

use crate::repo::{MAX_REPO_DEPTH, ObjectId, ObjectType, RepoPath, is_reserved_name};

/// What a request addresses, before the method is looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// `/{repo}/`: only `POST ?create=true`.
    Repo,
    /// `/{repo}/config`.
    Config,
    /// `/{repo}/{type}/`.
    List(ObjectType),
    /// `/{repo}/{type}/{id}`.
    Object(ObjectType, ObjectId),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    pub(crate) repo: RepoPath,
    pub(crate) target: Target,
}

/// Why a path did not parse into a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RouteError {
    /// No such resource: unknown layout, bad id, or a segment that must never
    /// reach the filesystem (`.`, `..`, hidden names, NUL, slashes, backslashes).
    NotFound,
    /// The percent-encoding itself is broken or does not decode to UTF-8.
    BadEncoding,
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RouteError::NotFound => "no such route",
            RouteError::BadEncoding => "malformed percent-encoding in path",
        })
    }
}

impl std::error::Error for RouteError {}

impl Route {
    /// Parses the path part of a request URI (still percent-encoded).
    pub(crate) fn parse(raw_path: &str) -> Result<Route, RouteError> {
        let rest = raw_path.strip_prefix('/').ok_or(RouteError::NotFound)?;
        // SECURITY: every segment is decoded once, before it is classified,
        // so an encoded name means what the plain name means: `%6beys` is
        // `keys`, and cannot become a repository folder named like one of
        // restic's (which would shadow that repository's own `keys/`).
        let mut decoded = rest
            .split('/')
            .map(percent_decode)
            .collect::<Result<Vec<String>, RouteError>>()?
            .into_iter()
            .peekable();
        let mut repo = RepoPath::default();
        // As rest-server does: leading segments up to the first type name (or
        // `config`) belong to the repository; the last segment never does.
        while repo.depth() < MAX_REPO_DEPTH {
            let Some(segment) = decoded.next_if(|s| !is_reserved_name(s)) else {
                break;
            };
            if decoded.peek().is_none() {
                // The last segment: not part of the repository after all.
                return Route::target(repo, &[segment]);
            }
            repo.push(segment).ok_or(RouteError::NotFound)?;
        }
        let rest: Vec<String> = decoded.collect();
        Route::target(repo, &rest)
    }

    /// What the segments after the repository's own address.
    fn target(repo: RepoPath, rest: &[String]) -> Result<Route, RouteError> {
        let target = match rest {
            [empty] if empty.is_empty() => Target::Repo,
            [config] if config == "config" => Target::Config,
            [kind, id] => {
                let kind = ObjectType::from_segment(kind).ok_or(RouteError::NotFound)?;
                if id.is_empty() {
                    Target::List(kind)
                } else {
                    Target::Object(kind, ObjectId::parse(id).ok_or(RouteError::NotFound)?)
                }
            }
            _ => return Err(RouteError::NotFound),
        };
        Ok(Route { repo, target })
    }
}

/// Percent-decodes one path segment; broken escapes or invalid UTF-8 are
/// [`RouteError::BadEncoding`].
fn percent_decode(raw: &str) -> Result<String, RouteError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).and_then(|b| (*b as char).to_digit(16));
            let lo = bytes.get(i + 2).and_then(|b| (*b as char).to_digit(16));
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
                _ => return Err(RouteError::BadEncoding),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| RouteError::BadEncoding)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn repo(segments: &[&str]) -> RepoPath {
        let mut repo = RepoPath::default();
        for s in segments {
            repo.push(s.to_string()).unwrap();
        }
        repo
    }

    #[test]
    fn parses_every_layout() {
        let id = ObjectId::parse(ID).unwrap();
        let cases = [
            ("/", repo(&[]), Target::Repo),
            ("/a/", repo(&["a"]), Target::Repo),
            ("/a/b/", repo(&["a", "b"]), Target::Repo),
            ("/config", repo(&[]), Target::Config),
            ("/a/b/config", repo(&["a", "b"]), Target::Config),
            ("/data/", repo(&[]), Target::List(ObjectType::Data)),
            ("/a/keys/", repo(&["a"]), Target::List(ObjectType::Keys)),
        ];
        for (path, repo, target) in cases {
            assert_eq!(Route::parse(path), Ok(Route { repo, target }), "{path}");
        }
        let route = Route::parse(&format!("/a/b/data/{ID}")).unwrap();
        assert_eq!(route.repo, repo(&["a", "b"]));
        assert_eq!(route.target, Target::Object(ObjectType::Data, id));
    }

    #[test]
    fn rejects_what_must_not_reach_the_disk() {
        let not_found = [
            "",
            "a",
            "/a",
            "/a/b/c/",
            "/a/b/c/config",
            "/../config",
            "/%2e%2e/config",
            "/%2E%2E/data/",
            "/./config",
            "/a%2fb/config",
            "/a%2Fb/config",
            "/a%5cb/config",
            "/a%00/config",
            "/.htpasswd/config",
            "//config",
            "/a//config",
            "/data",
            "/data/x",
            "/data/ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
            "/data/0123",
            "/config/",
        ];
        for path in not_found {
            assert_eq!(Route::parse(path), Err(RouteError::NotFound), "{path}");
        }
        for path in ["/%zz/config", "/%ff/config", "/a%2/config"] {
            assert_eq!(Route::parse(path), Err(RouteError::BadEncoding), "{path}");
        }
    }

    #[test]
    fn an_encoded_name_means_the_plain_name() {
        for (encoded, plain) in [
            (format!("/%6beys/{ID}"), format!("/keys/{ID}")),
            ("/%63onfig".to_string(), "/config".to_string()),
            ("/a/%64ata/".to_string(), "/a/data/".to_string()),
            (
                format!("/a/b/%6C%6F%63%6B%73/{ID}"),
                format!("/a/b/locks/{ID}"),
            ),
        ] {
            assert_eq!(Route::parse(&encoded), Route::parse(&plain), "{encoded}");
            assert!(Route::parse(&plain).is_ok(), "{plain}");
        }
        // Not a repository named `keys` holding a folder: nothing at all.
        assert_eq!(
            Route::parse(&format!("/%6beys/{ID}/")),
            Err(RouteError::NotFound)
        );
        assert_eq!(Route::parse("/%6beys/"), Route::parse("/keys/"));
    }

    #[test]
    fn decodes_percent_escapes_in_repo_names() {
        let route = Route::parse("/my%20laptop/config").unwrap();
        assert_eq!(route.repo, repo(&["my laptop"]));
        assert_eq!(route.repo.to_string(), "/my laptop");
    }

    #[test]
    fn object_id_digest_roundtrips() {
        let id = ObjectId::parse(ID).unwrap();
        let digest = id.digest();
        assert_eq!(digest[0], 0x01);
        assert_eq!(digest[31], 0xef);
        assert_eq!(id.prefix(), "01");
    }
}
