//! restic's REST endpoints: the (target × method) table that picks one, and
//! one function per endpoint. Access has been decided before any of them
//! runs ([`crate::auth::policy`]); what they did is recorded after the response
//! ([`crate::http::request`]), from the [`Effect`] they return.

use hyper::header::{ACCEPT, ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};

use crate::auth::acl::Access;
use crate::http::body::Body;
use crate::http::error::ApiError;
use crate::http::route::Target;
use crate::repo::range::{ByteRange, Want};
use crate::repo::{Key, KeyBuf};
use crate::repo::{ObjectType, RepoPath};
use crate::state::AppState;
use crate::store::{ObjectReader as _, Store};
use crate::upload::{After, Checks, Received, Receiver, upload_body};

/// restic's media type for the v1 listing (names only).
pub(crate) const MIME_API_V1: &str = "application/vnd.x.restic.rest.v1";
/// restic's media type for the v2 listing (names and sizes).
pub(crate) const MIME_API_V2: &str = "application/vnd.x.restic.rest.v2";

/// A restic endpoint; for the file endpoints, `Key` says config or object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `POST /{repo}/?create=true`
    CreateRepo,
    /// `HEAD /{repo}/config`, `HEAD /{repo}/{type}/{id}`
    Check,
    /// `GET /{repo}/config`, `GET /{repo}/{type}/{id}`
    Get,
    /// `POST /{repo}/config`, `POST /{repo}/{type}/{id}`
    Save,
    /// `DELETE /{repo}/config`, `DELETE /{repo}/{type}/{id}`
    Delete,
    /// `GET /{repo}/{type}/`
    List,
}

impl Endpoint {
    /// The table: which endpoint serves `method` on `target`.
    pub(crate) fn select(target: &Target, method: &Method) -> Result<Endpoint, ApiError> {
        const FILE: &str = "HEAD, GET, POST, DELETE";
        let endpoint = match (target, method.as_str()) {
            (Target::Repo, "POST") => Endpoint::CreateRepo,
            (Target::Config | Target::Object(..), "HEAD") => Endpoint::Check,
            (Target::Config | Target::Object(..), "GET") => Endpoint::Get,
            (Target::Config | Target::Object(..), "POST") => Endpoint::Save,
            (Target::Config | Target::Object(..), "DELETE") => Endpoint::Delete,
            (Target::List(_), "GET") => Endpoint::List,
            (Target::Repo, _) => return Err(ApiError::MethodNotAllowed { allow: "POST" }),
            (Target::List(_), _) => return Err(ApiError::MethodNotAllowed { allow: "GET" }),
            (Target::Config | Target::Object(..), _) => {
                return Err(ApiError::MethodNotAllowed { allow: FILE });
            }
        };
        Ok(endpoint)
    }

    /// The access level the endpoint needs on `target`. Taking and releasing
    /// locks is reading: restic locks a repository even to list or restore it.
    pub(crate) fn needs(self, target: &Target) -> Access {
        match (self, target) {
            (Endpoint::Check | Endpoint::Get | Endpoint::List, _) => Access::Read,
            (_, Target::Object(ObjectType::Locks, _)) => Access::Read,
            (Endpoint::CreateRepo | Endpoint::Save, _) => Access::Append,
            (Endpoint::Delete, _) => Access::Full,
        }
    }
}

/// What an endpoint did, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    Nothing,
    /// A repository was created: it gets series of its own in the metrics.
    Created,
    /// A file is being sent; its bytes are counted as they go out.
    Read,
    Wrote(u64),
    Deleted(u64),
}

/// An endpoint's answer and what it did.
pub(crate) struct Reply<S: Store> {
    pub(crate) response: Response<Body<S>>,
    pub(crate) effect: Effect,
}

impl<S: Store> Reply<S> {
    fn ok(effect: Effect) -> Reply<S> {
        Reply {
            response: Response::new(Body::empty()),
            effect,
        }
    }
}

/// A request, as the endpoints need it.
pub(crate) struct Call<'a, B> {
    pub(crate) repo: &'a RepoPath,
    pub(crate) target: &'a Target,
    pub(crate) query: Option<&'a str>,
    pub(crate) headers: &'a HeaderMap,
    /// Some for uploads, the only endpoint that reads it.
    pub(crate) body: Option<B>,
    /// Who asks (None without authentication): a trash records who deleted.
    pub(crate) user: Option<&'a str>,
}

/// The file a target names, if it names one.
fn key(target: &Target) -> Result<Key<'_>, ApiError> {
    match target {
        Target::Object(kind, id) => Ok(Key::Object(*kind, id)),
        Target::Config => Ok(Key::Config),
        Target::Repo | Target::List(_) => Err(ApiError::NotFound("no such route")),
    }
}

/// Runs `endpoint`. The body is handed over by value: only uploads read it.
pub(crate) async fn call<S, B>(
    state: &AppState<S>,
    endpoint: Endpoint,
    call: Call<'_, B>,
) -> Result<Reply<S>, ApiError>
where
    S: Store,
    B: http_body::Body<Data = bytes::Bytes> + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match endpoint {
        Endpoint::CreateRepo => create_repo(state, call.repo, call.query).await,
        Endpoint::Check => check_file(state, call.repo, key(call.target)?).await,
        Endpoint::Get => get_file(state, call.repo, key(call.target)?, call.headers).await,
        Endpoint::Save => {
            let declared = declared_length(call.headers)?;
            let body = call
                .body
                .ok_or(ApiError::BadRequest("request body already taken"))?;
            save_file(state, call.repo, key(call.target)?, declared, body).await
        }
        Endpoint::Delete => delete_file(state, call.repo, key(call.target)?, call.user).await,
        Endpoint::List => match call.target {
            Target::List(kind) => list_blobs(state, call.repo, *kind, call.headers).await,
            _ => Err(ApiError::NotFound("no such route")),
        },
    }
}

/// `POST /{repo}/?create=true`: creates the repository.
async fn create_repo<S: Store>(
    state: &AppState<S>,
    repo: &RepoPath,
    query: Option<&str>,
) -> Result<Reply<S>, ApiError> {
    // As Go's `Query().Get("create")`: the first `create` parameter decides.
    let create = query
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("create="))
        == Some("true");
    if !create {
        return Err(ApiError::BadRequest(
            "repository creation needs ?create=true",
        ));
    }
    state.store.create_repo(repo).await?;
    state.usage.created(&repo.label());
    Ok(Reply::ok(Effect::Created))
}

/// `HEAD /{repo}/config` and `HEAD /{repo}/{type}/{id}`: the size, no body.
async fn check_file<S: Store>(
    state: &AppState<S>,
    repo: &RepoPath,
    key: Key<'_>,
) -> Result<Reply<S>, ApiError> {
    let len = state.store.size(repo, key).await?;
    let mut reply = Reply::ok(Effect::Nothing);
    reply
        .response
        .headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(len));
    Ok(reply)
}

/// `GET /{repo}/config` and `GET /{repo}/{type}/{id}`, with single byte ranges.
async fn get_file<S: Store>(
    state: &AppState<S>,
    repo: &RepoPath,
    key: Key<'_>,
    headers: &HeaderMap,
) -> Result<Reply<S>, ApiError> {
    let want = match headers.get(RANGE) {
        Some(text) => Want::parse(text.to_str().unwrap_or("invalid")),
        None => Want::All,
    };
    let reader = state.store.open(repo, key, want).await?;
    let (size, range) = (reader.size(), reader.range());
    let (start, len) = range.span(size);
    let mut response = Response::new(Body::object(reader));
    let out = response.headers_mut();
    out.insert(CONTENT_LENGTH, HeaderValue::from(len));
    out.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    out.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let ByteRange::Partial { .. } = range {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        let end = start + len - 1;
        if let Ok(value) = HeaderValue::try_from(format!("bytes {start}-{end}/{size}")) {
            response.headers_mut().insert(CONTENT_RANGE, value);
        }
    }
    Ok(Reply {
        response,
        effect: Effect::Read,
    })
}

/// `GET /{repo}/{type}/`: v1 (names) or, when asked for, v2 (names and sizes).
async fn list_blobs<S: Store>(
    state: &AppState<S>,
    repo: &RepoPath,
    kind: ObjectType,
    headers: &HeaderMap,
) -> Result<Reply<S>, ApiError> {
    let v2 = headers.get(ACCEPT).is_some_and(|v| v == MIME_API_V2);
    let listing = state.store.list(repo, kind).await?;
    let mut response = Response::new(Body::listing(listing, v2));
    let mime = if v2 { MIME_API_V2 } else { MIME_API_V1 };
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(mime));
    Ok(Reply {
        response,
        effect: Effect::Nothing,
    })
}

/// `DELETE /{repo}/config` and `DELETE /{repo}/{type}/{id}`; a missing file is
/// success, because restic retries deletes.
async fn delete_file<S: Store>(
    state: &AppState<S>,
    repo: &RepoPath,
    key: Key<'_>,
    user: Option<&str>,
) -> Result<Reply<S>, ApiError> {
    // The delete and what follows it run in a task of their own: a client
    // gone meanwhile (hyper then drops this future) must not leave a file
    // deleted that the quota still counts or the mirror never hears of.
    let store = state.store.clone();
    let (quota, usage) = (state.quota.clone(), state.usage.clone());
    let (mirror, scrub) = (state.mirror.clone(), state.scrub.clone());
    let (repo, key) = (repo.clone(), KeyBuf::of(key));
    let user = user.map(str::to_string);
    let freed = crate::upload::finish_detached(Box::pin(async move {
        let kept = store.keeps_deleted(key.key());
        let freed = store.delete(&repo, key.key(), user.as_deref()).await?;
        let label = repo.label();
        // A file kept in the trash still takes its room: its bytes leave
        // the budgets when the trash purges it.
        match kept {
            true => usage.trashed(&label, freed),
            false => quota.release(&label, freed),
        }
        usage.deleted(&label, key.key().kind(), freed);
        if let Some(mirror) = &mirror {
            mirror.deleted(&repo, key.key()).await;
        }
        if let Some(scrub) = &scrub {
            scrub.deleted(&repo, key.key());
        }
        Ok(freed)
    }))
    .await?;
    Ok(Reply::ok(Effect::Deleted(freed)))
}

/// `POST /{repo}/config` and `POST /{repo}/{type}/{id}`: streams the body
/// into the store, verified against the object's name (see [`crate::upload`]).
async fn save_file<S, B>(
    state: &AppState<S>,
    repo: &RepoPath,
    key: Key<'_>,
    declared: Option<u64>,
    body: B,
) -> Result<Reply<S>, ApiError>
where
    S: Store,
    B: http_body::Body<Data = bytes::Bytes> + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let receiver = Receiver {
        checks: Checks::for_key(key, &state.config),
        quota: &state.quota,
        compute: &state.compute,
        buffers: &state.upload_buffers,
        body_timeout: state.config.limits.body_timeout,
    };
    // Counted and queued for the mirror once committed, before the answer,
    // also if the client is gone by then (see Receiver::receive).
    let (usage, mirror) = (state.usage.clone(), state.mirror.clone());
    let (owned_repo, owned_key) = (repo.clone(), KeyBuf::of(key));
    let after: After = Box::new(move |bytes| {
        Box::pin(async move {
            usage.wrote(&owned_repo.label(), owned_key.key().kind(), bytes);
            if let Some(mirror) = mirror {
                mirror.committed(&owned_repo, owned_key.key(), bytes).await;
            }
        })
    });
    let body = upload_body(body);
    let stored = receiver
        .receive(&state.store, repo, key, declared, body, after)
        .await?;
    match stored {
        Received::Stored(bytes) => Ok(Reply::ok(Effect::Wrote(bytes))),
        Received::Same => {
            // restic retries an upload whose answer it did not get with the
            // same bytes: the first try may have been committed without its
            // answer, so the mirror is asked to make sure of it.
            if let Some(mirror) = &state.mirror
                && let Ok(size) = state.store.size(repo, key).await
            {
                mirror.committed(repo, key, size).await;
            }
            Ok(Reply::ok(Effect::Nothing))
        }
    }
}

/// The Content-Length header, when the request has a valid one.
pub(crate) fn declared_length(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    match headers.get(CONTENT_LENGTH) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or(ApiError::BadRequest("invalid Content-Length")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::route::Route;

    #[test]
    fn the_table_covers_every_target_and_method() {
        let id = "ab".repeat(32);
        let targets = [
            ("/r/", "POST"),
            ("/r/config", "HEAD, GET, POST, DELETE"),
            ("/r/keys/", "GET"),
            (&*format!("/r/data/{id}"), "HEAD, GET, POST, DELETE"),
        ];
        for (path, allowed) in targets {
            let target = Route::parse(path).unwrap().target;
            for method in ["HEAD", "GET", "POST", "DELETE", "PUT", "PATCH"] {
                let method = Method::from_bytes(method.as_bytes()).unwrap();
                let selected = Endpoint::select(&target, &method);
                let listed = allowed.split(", ").any(|m| m == method.as_str());
                match selected {
                    Ok(_) => assert!(listed, "{method} {path}"),
                    Err(ApiError::MethodNotAllowed { allow }) => {
                        assert!(!listed, "{method} {path}");
                        assert_eq!(allow, allowed);
                    }
                    Err(e) => panic!("{method} {path}: {e}"),
                }
            }
        }
    }

    #[test]
    fn locks_need_only_read_access() {
        let lock = Route::parse(&format!("/r/locks/{}", "cd".repeat(32)))
            .unwrap()
            .target;
        let data = Route::parse(&format!("/r/data/{}", "cd".repeat(32)))
            .unwrap()
            .target;
        assert_eq!(Endpoint::Delete.needs(&lock), Access::Read);
        assert_eq!(Endpoint::Save.needs(&lock), Access::Read);
        assert_eq!(Endpoint::Delete.needs(&data), Access::Full);
        assert_eq!(Endpoint::Save.needs(&data), Access::Append);
        assert_eq!(Endpoint::Delete.needs(&Target::Config), Access::Full);
        assert_eq!(Endpoint::CreateRepo.needs(&Target::Repo), Access::Append);
    }
}
