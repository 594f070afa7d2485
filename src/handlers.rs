//! The REST API: one handler per restic endpoint, dispatched from a typed route.

use std::path::PathBuf;
use std::rc::Rc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};

use crate::auth::acl::Access;
use crate::auth::{AclRules, Auth};
use crate::blocking;
use crate::body::Body;
use crate::config::Config;
use crate::error::ApiError;
use crate::metrics::{BlobOp, Metrics, repo_label};
use crate::quota::{Quota, Reservation};
use crate::range::{self, ByteRange};
use crate::route::{ObjectId, ObjectType, RepoPath, Route, RouteError, Target};
use crate::storage::{self, Storage, StorageErrorKind};
use crate::upload::{Upload, UploadError};

/// restic's media type for the v1 listing (names only).
pub const MIME_API_V1: &str = "application/vnd.x.restic.rest.v1";
/// restic's media type for the v2 listing (names and sizes).
pub const MIME_API_V2: &str = "application/vnd.x.restic.rest.v2";

const ALLOW_REPO: &str = "POST";
const ALLOW_FILE: &str = "HEAD, GET, POST, DELETE";
const ALLOW_LIST: &str = "GET";

/// What every handler needs; shared by all connections on the one thread.
pub struct AppState {
    pub config: Config,
    pub auth: Auth,
    pub storage: Storage,
    pub quota: Rc<Quota>,
    /// Some with `--prometheus`.
    pub metrics: Option<Metrics>,
    /// Some with `--acl`.
    pub acl: Option<AclRules>,
}

/// Authenticates a request and serves it; returns the user for the logs.
/// `/metrics` is answered here, before routing, as rest-server does.
pub async fn serve(
    state: &AppState,
    req: Request<Incoming>,
    peer: Option<std::net::IpAddr>,
) -> (Option<String>, Result<Response<Body>, ApiError>) {
    let (parts, body) = req.into_parts();
    let mut body = Some(body);
    let (user, result) = authorize_and_handle(state, &parts, &mut body, peer).await;
    if result.is_err()
        && let Some(body) = body
    {
        drain_small_body(body, &parts.headers, state.config.limits.body_timeout).await;
    }
    (user, result)
}

async fn authorize_and_handle(
    state: &AppState,
    parts: &Parts,
    body: &mut Option<Incoming>,
    peer: Option<std::net::IpAddr>,
) -> (Option<String>, Result<Response<Body>, ApiError>) {
    let metrics_request = state.metrics.is_some() && parts.uri.path() == "/metrics";
    if metrics_request && state.config.prometheus_no_auth {
        return (None, metrics(state, &parts.method).await);
    }
    let user = match state.auth.authenticate(&parts.headers, peer).await {
        Ok(user) => user,
        Err(e) => {
            if let Some(metrics) = &state.metrics {
                metrics.auth_failure(e.reason());
            }
            return (None, Err(ApiError::Unauthorized(e)));
        }
    };
    let result = if metrics_request {
        // rest-server's rule: with --private-repos only the user `metrics`
        // may read them, since they name every user and repository.
        if state.config.private_repos && user.as_deref().is_some_and(|u| u != METRICS_USER) {
            Err(ApiError::NotYourRepository)
        } else {
            metrics(state, &parts.method).await
        }
    } else {
        handle(state, parts, body, user.as_deref()).await
    };
    (user, result)
}

/// The `--acl` level a request needs. Taking and releasing locks is reading:
/// restic locks a repository even to list or restore it.
fn required_access(method: &Method, target: &Target) -> Access {
    let reads = *method == Method::GET || *method == Method::HEAD;
    match target {
        _ if reads => Access::Read,
        Target::Object(ObjectType::Locks, _) => Access::Read,
        Target::Repo => Access::Append,
        _ if *method == Method::POST => Access::Append,
        _ => Access::Full,
    }
}

/// Largest body read and thrown away after refusing a request.
const DRAIN_LIMIT_BYTES: u64 = 64 * 1024;

/// Reads the body of a refused request when it is small, so that closing the
/// connection does not leave unread bytes behind: the kernel would then reset
/// the connection, and the client could lose the answer before reading it.
/// Large or undeclared bodies are left to hyper, which closes the connection.
async fn drain_small_body(mut body: Incoming, headers: &HeaderMap, timeout: std::time::Duration) {
    let small = declared_length(headers)
        .ok()
        .flatten()
        .is_some_and(|n| n <= DRAIN_LIMIT_BYTES);
    if !small {
        return;
    }
    let drain = async { while let Some(Ok(_)) = body.frame().await {} };
    let _ = tokio::time::timeout(timeout, drain).await;
}

/// The user who may read `/metrics` under `--private-repos`.
pub const METRICS_USER: &str = "metrics";

/// `GET /metrics`.
async fn metrics(state: &AppState, method: &Method) -> Result<Response<Body>, ApiError> {
    if method != Method::GET && method != Method::HEAD {
        return Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" });
    }
    let root = state.storage.root().to_path_buf();
    let space = blocking::run(move || Ok(crate::metrics::fs_space(&root)))
        .await
        .ok()
        .flatten();
    let text = state
        .metrics
        .as_ref()
        .map(|m| m.render(space))
        .unwrap_or_default();
    let mut response = ok(Body::full(text));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

/// Counts a blob operation for `/metrics`.
fn count(
    state: &AppState,
    op: BlobOp,
    user: Option<&str>,
    repo: &RepoPath,
    kind: ObjectType,
    bytes: u64,
) {
    if let Some(metrics) = &state.metrics {
        metrics.blob(op, user.unwrap_or(""), &repo_label(repo), kind, bytes);
    }
}

/// Routes a request from `user` (None without authentication) to its handler.
pub async fn handle(
    state: &AppState,
    req: &Parts,
    body: &mut Option<Incoming>,
    user: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let route = Route::parse(req.uri.path()).map_err(|e| match e {
        RouteError::NotFound => ApiError::NotFound("no such route"),
        RouteError::BadEncoding => ApiError::BadRequest("malformed percent-encoding in path"),
    })?;
    let Route { repo, target } = route;
    // SECURITY: checked before anything touches the disk, and answered like a
    // failed login so that it does not tell whether the repository exists.
    // An --acl file, when given, decides instead.
    if state.config.private_repos
        && state.acl.is_none()
        && let Some(user) = user
        && repo.segments().next() != Some(user)
    {
        return Err(ApiError::NotYourRepository);
    }
    let method = req.method.clone();
    if let Some(acl) = &state.acl {
        // SECURITY: decided before any file is opened. No rule: the same 401
        // as a wrong password, so the answer does not tell what exists.
        let granted = acl.rules.borrow().access(user.unwrap_or(""), &repo);
        match granted {
            None => return Err(ApiError::NotYourRepository),
            Some(level) if level < required_access(&method, &target) => {
                return Err(ApiError::Forbidden("the ACL does not allow this here"));
            }
            Some(_) => {}
        }
    }
    match target {
        Target::Repo => match method {
            Method::POST => create_repo(state, &repo, req.uri.query()).await,
            _ => Err(ApiError::MethodNotAllowed { allow: ALLOW_REPO }),
        },
        Target::Config => {
            let path = state.storage.config_path(&repo);
            match method {
                Method::HEAD => head_file(path).await,
                Method::GET => get_file(path, &req.headers).await.map(|(r, _)| r),
                Method::POST => {
                    let written = save(state, req, body, path, None, true, false).await?;
                    if let Some(metrics) = &state.metrics {
                        metrics.config_size_changed(&repo_label(&repo), written, 0);
                    }
                    Ok(ok(Body::empty()))
                }
                Method::DELETE if state.config.append_only => {
                    Err(ApiError::Forbidden("append-only: config cannot be deleted"))
                }
                Method::DELETE => {
                    let freed = delete(state, path).await?;
                    if let Some(metrics) = &state.metrics {
                        metrics.config_size_changed(&repo_label(&repo), 0, freed);
                    }
                    Ok(ok(Body::empty()))
                }
                _ => Err(ApiError::MethodNotAllowed { allow: ALLOW_FILE }),
            }
        }
        Target::List(kind) => match method {
            Method::GET => list(state, &repo, kind, &req.headers).await,
            _ => Err(ApiError::MethodNotAllowed { allow: ALLOW_LIST }),
        },
        Target::Object(kind, id) => {
            let path = state.storage.object_path(&repo, kind, &id);
            match method {
                Method::HEAD => head_file(path).await,
                Method::GET => {
                    let (response, sent) = get_file(path, &req.headers).await?;
                    count(state, BlobOp::Read, user, &repo, kind, sent);
                    Ok(response)
                }
                Method::POST => {
                    let fan_out = kind.is_fanned_out();
                    let saved =
                        save(state, req, body, path, Some(id), kind.is_small(), fan_out).await;
                    if let (Err(ApiError::HashMismatch), Some(metrics)) = (&saved, &state.metrics) {
                        metrics.verification_failure();
                    }
                    count(state, BlobOp::Write, user, &repo, kind, saved?);
                    Ok(ok(Body::empty()))
                }
                Method::DELETE if state.config.append_only && kind != ObjectType::Locks => Err(
                    ApiError::Forbidden("append-only: only locks can be deleted"),
                ),
                Method::DELETE => {
                    let freed = delete(state, path).await?;
                    count(state, BlobOp::Delete, user, &repo, kind, freed);
                    Ok(ok(Body::empty()))
                }
                _ => Err(ApiError::MethodNotAllowed { allow: ALLOW_FILE }),
            }
        }
    }
}

fn ok(body: Body) -> Response<Body> {
    Response::new(body)
}

/// `POST /{repo}/?create=true`: creates the repository's folders.
async fn create_repo(
    state: &AppState,
    repo: &RepoPath,
    query: Option<&str>,
) -> Result<Response<Body>, ApiError> {
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
    let dir = state.storage.repo_dir(repo);
    let modes = state.storage.modes;
    log::info!("creating repository {repo} in {}", dir.display());
    blocking::run(move || storage::create_repo(&dir, modes)).await?;
    Ok(ok(Body::empty()))
}

/// `HEAD /{repo}/config` and `HEAD /{repo}/{type}/{id}`: the size, no body.
async fn head_file(path: PathBuf) -> Result<Response<Body>, ApiError> {
    let len = blocking::run(move || storage::file_len(&path)).await?;
    let mut response = ok(Body::empty());
    response
        .headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(len));
    Ok(response)
}

/// `GET /{repo}/config` and `GET /{repo}/{type}/{id}`, with single byte ranges.
/// Returns the response and the number of body bytes it will send.
async fn get_file(path: PathBuf, headers: &HeaderMap) -> Result<(Response<Body>, u64), ApiError> {
    let (file, size) = blocking::run(move || storage::open_read(&path)).await?;
    let requested = headers.get(RANGE).map(|v| v.to_str().unwrap_or("invalid"));
    let range = match requested {
        Some(text) => range::parse(text, size)?,
        None => ByteRange::Full,
    };
    let (start, len) = range.span(size);
    let mut response = ok(Body::file_range(file, start, len));
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
    Ok((response, len))
}

/// `GET /{repo}/{type}/`: v1 (names) or, when asked for, v2 (names and sizes).
async fn list(
    state: &AppState,
    repo: &RepoPath,
    kind: ObjectType,
    headers: &HeaderMap,
) -> Result<Response<Body>, ApiError> {
    let v2 = headers.get(ACCEPT).is_some_and(|v| v == MIME_API_V2);
    let type_dir = state.storage.type_dir(repo, kind);
    let dirs = blocking::run(move || storage::listing_dirs(&type_dir, kind)).await?;
    let mut response = ok(Body::listing(dirs, v2));
    let mime = if v2 { MIME_API_V2 } else { MIME_API_V1 };
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(mime));
    Ok(response)
}

/// `DELETE /{repo}/config` and `DELETE /{repo}/{type}/{id}`; a missing file is
/// success, because restic retries deletes.
async fn delete(state: &AppState, path: PathBuf) -> Result<u64, ApiError> {
    let freed = blocking::run(move || storage::remove(&path)).await?;
    state.quota.release(freed);
    Ok(freed)
}

fn declared_length(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
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

/// `POST /{repo}/config` and `POST /{repo}/{type}/{id}`: streams the body to a
/// temp file, verifies it against `id` (unless `--no-verify-upload`), and makes
/// it visible only when complete. `small` caps the body at `--max-metadata-size`.
async fn save(
    state: &AppState,
    req: &Parts,
    body: &mut Option<Incoming>,
    path: PathBuf,
    id: Option<ObjectId>,
    small: bool,
    fan_out: bool,
) -> Result<u64, ApiError> {
    let limits = &state.config.limits;
    let declared = declared_length(&req.headers)?;
    if let Some(len) = declared {
        if small && len > limits.max_metadata_bytes {
            return Err(ApiError::PayloadTooLarge);
        }
        if state.quota.would_exceed(len) {
            return Err(ApiError::QuotaExceeded);
        }
    }
    let verify = state.config.verify_upload && id.is_some();
    let begun = Upload::begin(path, state.storage.modes, verify, fan_out).await;
    let mut upload = match begun {
        Ok(upload) => upload,
        Err(e) if e.kind == StorageErrorKind::AlreadyExists => {
            return Err(ApiError::Forbidden(
                "object exists; objects are never overwritten",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let mut reservation = Reservation::new(state.quota.clone());
    let Some(mut body) = body.take() else {
        return Err(ApiError::BadRequest("request body already taken"));
    };
    loop {
        let frame = match tokio::time::timeout(limits.body_timeout, body.frame()).await {
            Err(_) => return Err(ApiError::BodyTimeout),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(ApiError::BodyRead(e)),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers carry nothing we store
        };
        let len = data.len() as u64;
        if small && upload.len() + len > limits.max_metadata_bytes {
            return Err(ApiError::PayloadTooLarge);
        }
        if !reservation.grow(len) {
            return Err(ApiError::QuotaExceeded);
        }
        upload.push(&data).await?;
    }
    let expected = if verify {
        id.map(|id| id.digest())
    } else {
        None
    };
    match upload.commit(expected).await {
        Ok(written) => {
            reservation.keep();
            Ok(written)
        }
        Err(UploadError::HashMismatch) => Err(ApiError::HashMismatch),
        Err(UploadError::Storage(e)) => Err(e.into()),
    }
}
