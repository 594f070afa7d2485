//! The request path, in one place: authenticate → authorize → dispatch →
//! endpoint → record.
//!
//! `/metrics` is answered before routing, as rest-server does. Everything a
//! request leaves behind — the server log line for a failure, the metrics,
//! the access log line — is recorded once, by [`Record`], when the response
//! body is finished or dropped (so the bytes actually sent are known).

use std::net::IpAddr;
use std::rc::Rc;
use std::time::SystemTime;

use hyper::{Method, Request, Response};

use crate::http::about;
use crate::http::access_log::{AccessLog, Entry};
use crate::http::api::{self, Call, Effect, Endpoint};
use crate::http::body::{Body, Completion};
use crate::http::error::ApiError;
use crate::http::route::Route;
use crate::metrics::{BlobOp, Metrics};
use crate::repo::ObjectType;
use crate::state::AppState;
use crate::store::Store;
use crate::upload::drain_small_body;

/// What a finished request leaves to record.
pub(crate) struct Record {
    metrics: Option<(Rc<Metrics>, Counted)>,
    access_log: Option<(Rc<AccessLog>, Entry)>,
}

/// A blob operation to count in the metrics.
struct Counted {
    user: String,
    repo: String,
    kind: Option<ObjectType>,
    effect: Effect,
}

impl Completion for Record {
    fn complete(&mut self, body_bytes: u64) {
        if let Some((metrics, counted)) = self.metrics.take() {
            counted.count(&metrics, body_bytes);
        }
        if let Some((log, mut entry)) = self.access_log.take() {
            entry.bytes = body_bytes;
            log.write(&entry);
        }
    }
}

impl Counted {
    /// A read counts the bytes that went out; writes and deletes what the
    /// store reported.
    fn count(&self, metrics: &Metrics, body_bytes: u64) {
        let (op, bytes) = match self.effect {
            Effect::Nothing => return,
            Effect::Created => {
                metrics.repo_exists(&self.repo);
                return;
            }
            Effect::Read => (BlobOp::Read, body_bytes),
            Effect::Wrote(n) => (BlobOp::Write, n),
            Effect::Deleted(n) => (BlobOp::Delete, n),
        };
        match self.kind {
            Some(kind) => metrics.blob(op, &self.user, &self.repo, kind, bytes),
            // A config is no blob; its upload makes the repository known.
            None => {
                if op == BlobOp::Write {
                    metrics.repo_exists(&self.repo);
                }
            }
        }
    }
}

/// Who is asking, for the logs.
pub(crate) struct Client<'a> {
    /// None on a Unix socket.
    pub(crate) ip: Option<IpAddr>,
    /// The address, or `-` on a Unix socket.
    pub(crate) name: &'a str,
}

/// Serves one request and returns the response and what to record once it
/// has been sent.
pub(crate) async fn serve<S, B>(
    state: &AppState<S>,
    access_log: Option<&Rc<AccessLog>>,
    req: Request<B>,
    client: &Client<'_>,
) -> (Response<Body<S>>, Record)
where
    S: Store,
    B: http_body::Body<Data = bytes::Bytes> + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let entry = access_log.map(|_| Entry::from_request(&req, client.name, SystemTime::now()));
    let (parts, body) = req.into_parts();
    let mut body = Some(body);
    let mut user = None;
    let mut counted = None;
    let result = handle(
        state,
        access_log,
        &parts,
        &mut body,
        client.ip,
        &mut user,
        &mut counted,
    )
    .await;
    let method = &parts.method;
    let path = parts.uri.path();
    let who = user.as_deref().unwrap_or("-");
    let response = match result {
        Ok(response) => response,
        Err(e) => {
            let status = e.status().as_u16();
            let peer = client.name;
            if e.is_server_fault() {
                log::error!("{method} {path} from {peer} ({who}): {status} ({e})");
            } else if e.is_routine() {
                // restic asks for things that are not there as part of its
                // normal work (HEAD config before init, lock checks): a line
                // each would bury what matters. The access log has them.
                log::debug!("{method} {path} from {peer} ({who}): {status} ({e})");
            } else {
                log::warn!("{method} {path} from {peer} ({who}): {status} ({e})");
            }
            if let Some(metrics) = &state.metrics {
                match &e {
                    ApiError::Unauthorized(why) => metrics.auth_failed(why.reason()),
                    ApiError::HashMismatch => metrics.verification_failed(),
                    _ => {}
                }
            }
            if let ApiError::Unauthorized(why) = e {
                state
                    .refused
                    .record(client.ip, why, crate::time::unix_now());
            }
            if let Some(body) = body {
                let declared = api::declared_length(&parts.headers).ok().flatten();
                drain_small_body(body, declared, state.config.limits.body_timeout).await;
            }
            e.into_response()
        }
    };
    if state.config.debug {
        log::debug!(
            "{method} {path} from {} ({who}): {}",
            client.name,
            response.status().as_u16()
        );
    }
    let record = Record {
        metrics: state.metrics.clone().zip(counted),
        access_log: access_log.cloned().zip(entry).map(|(log, mut entry)| {
            entry.status = response.status().as_u16();
            entry.user = user;
            (log, entry)
        }),
    };
    (response, record)
}

/// Authenticates, authorizes and dispatches; fills in the user and what to
/// count as soon as they are known.
async fn handle<S, B>(
    state: &AppState<S>,
    access_log: Option<&Rc<AccessLog>>,
    parts: &hyper::http::request::Parts,
    body: &mut Option<B>,
    peer: Option<IpAddr>,
    user: &mut Option<String>,
    counted: &mut Option<Counted>,
) -> Result<Response<Body<S>>, ApiError>
where
    S: Store,
    B: http_body::Body<Data = bytes::Bytes> + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // Unauthenticated, for init scripts and watchdogs; restic never asks
    // for it, and a repository named `health` is `/health/...`.
    if parts.uri.path() == "/health" {
        return about::health(state, &parts.method).await;
    }
    // SECURITY: see crate::http::origin. Before the credentials are checked: the
    // refusal needs none, and costs no bcrypt check.
    if !matches!(parts.method, Method::GET | Method::HEAD)
        && let Some(foreign) = crate::http::origin::foreign(&parts.headers)
    {
        return Err(ApiError::CrossSite(foreign));
    }
    let metrics_request = state.metrics.is_some() && parts.uri.path() == "/metrics";
    if !(metrics_request && state.config.prometheus_no_auth) {
        *user = state
            .auth
            .authenticate(&parts.headers, peer)
            .await
            .map_err(ApiError::Unauthorized)?;
        if metrics_request && !state.policy.may_read_metrics(user.as_deref()) {
            return Err(ApiError::MetricsNotAllowed);
        }
    }
    if metrics_request {
        return about::metrics(state, access_log, &parts.method).await;
    }
    if parts.uri.path() == "/" && about::page_wanted(&parts.method, &parts.headers) {
        return Ok(about::page(state, user.as_deref()).await);
    }
    let Route { repo, target } = Route::parse(parts.uri.path())?;
    let endpoint = Endpoint::select(&target, &parts.method)?;
    // SECURITY: decided before the store is asked anything.
    state
        .policy
        .authorize(user.as_deref(), &repo, endpoint.needs(&target))
        .map_err(ApiError::NotAllowed)?;
    let call = Call {
        repo: &repo,
        target: &target,
        query: parts.uri.query(),
        headers: &parts.headers,
        // Only uploads read the body; any other refused request's body is
        // drained above.
        body: if endpoint == Endpoint::Save {
            body.take()
        } else {
            None
        },
        user: user.as_deref(),
    };
    let reply = api::call(state, endpoint, call).await?;
    if state.metrics.is_none() {
        return Ok(reply.response);
    }
    *counted = Some(Counted {
        user: user.clone().unwrap_or_default(),
        repo: repo.label(),
        kind: match target {
            crate::http::route::Target::Object(kind, _) => Some(kind),
            _ => None,
        },
        effect: reply.effect,
    });
    Ok(reply.response)
}
