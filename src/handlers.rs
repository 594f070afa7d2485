//! The REST API: one handler per restic endpoint, dispatched from a typed route.

use std::path::PathBuf;
use std::rc::Rc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use crate::auth::Auth;
use crate::blocking;
use crate::body::Body;
use crate::config::Config;
use crate::error::ApiError;
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
}

/// Routes a request from `user` (None without authentication) to its handler.
pub async fn handle(
    state: &AppState,
    req: Request<Incoming>,
    user: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let route = Route::parse(req.uri().path()).map_err(|e| match e {
        RouteError::NotFound => ApiError::NotFound("no such route"),
        RouteError::BadEncoding => ApiError::BadRequest("malformed percent-encoding in path"),
    })?;
    let Route { repo, target } = route;
    // SECURITY: checked before anything touches the disk, and answered like a
    // failed login so that it does not tell whether the repository exists.
    if state.config.private_repos
        && let Some(user) = user
        && repo.segments().next() != Some(user)
    {
        return Err(ApiError::NotYourRepository);
    }
    let method = req.method().clone();
    match target {
        Target::Repo => match method {
            Method::POST => create_repo(state, &repo, req.uri().query()).await,
            _ => Err(ApiError::MethodNotAllowed { allow: ALLOW_REPO }),
        },
        Target::Config => {
            let path = state.storage.config_path(&repo);
            match method {
                Method::HEAD => head_file(path).await,
                Method::GET => get_file(path, req.headers()).await,
                Method::POST => save(state, req, path, None, true, false).await,
                Method::DELETE if state.config.append_only => {
                    Err(ApiError::Forbidden("append-only: config cannot be deleted"))
                }
                Method::DELETE => delete(state, path).await,
                _ => Err(ApiError::MethodNotAllowed { allow: ALLOW_FILE }),
            }
        }
        Target::List(kind) => match method {
            Method::GET => list(state, &repo, kind, req.headers()).await,
            _ => Err(ApiError::MethodNotAllowed { allow: ALLOW_LIST }),
        },
        Target::Object(kind, id) => {
            let path = state.storage.object_path(&repo, kind, &id);
            match method {
                Method::HEAD => head_file(path).await,
                Method::GET => get_file(path, req.headers()).await,
                Method::POST => {
                    let fan_out = kind.is_fanned_out();
                    save(state, req, path, Some(id), kind.is_small(), fan_out).await
                }
                Method::DELETE if state.config.append_only && kind != ObjectType::Locks => Err(
                    ApiError::Forbidden("append-only: only locks can be deleted"),
                ),
                Method::DELETE => delete(state, path).await,
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
async fn get_file(path: PathBuf, headers: &HeaderMap) -> Result<Response<Body>, ApiError> {
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
    Ok(response)
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
async fn delete(state: &AppState, path: PathBuf) -> Result<Response<Body>, ApiError> {
    let freed = blocking::run(move || storage::remove(&path)).await?;
    state.quota.release(freed);
    Ok(ok(Body::empty()))
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
    req: Request<Incoming>,
    path: PathBuf,
    id: Option<ObjectId>,
    small: bool,
    fan_out: bool,
) -> Result<Response<Body>, ApiError> {
    let limits = &state.config.limits;
    let declared = declared_length(req.headers())?;
    if let Some(len) = declared {
        if small && len > limits.max_metadata_bytes {
            return Err(ApiError::PayloadTooLarge);
        }
        if state.quota.would_exceed(len) {
            return Err(ApiError::QuotaExceeded);
        }
    }
    let probe = path.clone();
    match blocking::run(move || storage::file_len(&probe)).await {
        Ok(_) => {
            return Err(ApiError::Forbidden(
                "object exists; objects are never overwritten",
            ));
        }
        Err(e) if e.kind == StorageErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    let verify = state.config.verify_upload && id.is_some();
    let mut upload = Upload::begin(path, state.storage.modes, verify, fan_out).await?;
    let mut reservation = Reservation::new(state.quota.clone());
    let mut body = req.into_body();
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
        Ok(_) => {
            reservation.keep();
            Ok(ok(Body::empty()))
        }
        Err(UploadError::HashMismatch) => Err(ApiError::HashMismatch),
        Err(UploadError::Storage(e)) => Err(e.into()),
    }
}
