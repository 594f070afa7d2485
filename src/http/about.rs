//! The server's own endpoints, beside restic's: `/health`, `/metrics`, and
//! the status page at `/` for a browser. What they show is made elsewhere
//! (the store's health, `metrics`, `status`); here it becomes a response.

use std::rc::Rc;

use hyper::header::{
    ACCEPT, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderMap, HeaderValue,
    X_CONTENT_TYPE_OPTIONS,
};
use hyper::{Method, Response};

use crate::http::access_log::AccessLog;
use crate::http::body::Body;
use crate::http::error::ApiError;
use crate::metrics::render_budgets;
use crate::state::AppState;
use crate::store::Store;

/// `GET /health`: 200 `ok` when the server serves and the store can take
/// backups, 503 and the reason when it cannot; a change either way is
/// logged once, not at every probe.
pub(crate) async fn health<S: Store>(
    state: &AppState<S>,
    method: &Method,
) -> Result<Response<Body<S>>, ApiError> {
    if method != Method::GET && method != Method::HEAD {
        return Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" });
    }
    let reason = state.store.unhealthy(state.config.health_min_free).await;
    let before = state.unhealthy.replace(reason.clone());
    match (&before, &reason) {
        (_, Some(now)) if before.as_ref() != Some(now) => log::warn!("health: unhealthy: {now}"),
        (Some(_), None) => log::info!("health: healthy again"),
        _ => {}
    }
    let (status, text) = match reason {
        None => (hyper::StatusCode::OK, "ok\n".to_string()),
        Some(why) => (
            hyper::StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {why}\n"),
        ),
    };
    let mut response = Response::new(Body::full(text));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        hyper::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

/// `GET /metrics` (with `--prometheus`).
pub(crate) async fn metrics<S: Store>(
    state: &AppState<S>,
    access_log: Option<&Rc<AccessLog>>,
    method: &Method,
) -> Result<Response<Body<S>>, ApiError> {
    if method != Method::GET && method != Method::HEAD {
        return Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" });
    }
    let space = state.store.space().await;
    let mut logs = vec![crate::logging::health()];
    logs.extend(access_log.map(|log| log.health()));
    let mut text = state
        .metrics
        .as_ref()
        .map(|m| m.render(&state.usage, space, &logs))
        .unwrap_or_default();
    if let Some(mirror) = &state.mirror {
        mirror.render_metrics(&mut text);
    }
    if let Some(scrub) = &state.scrub {
        scrub.render_metrics(&mut text);
    }
    if state.quota.has_budgets() {
        render_budgets(&state.quota.budgets(), &mut text);
    }
    let mut response = Response::new(Body::full(text));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

/// Whether a request for `/` is a browser's asking for the page.
pub(crate) fn page_wanted(method: &Method, headers: &HeaderMap) -> bool {
    (method == Method::GET || method == Method::HEAD)
        && headers
            .get_all(ACCEPT)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.contains("text/html")))
}

/// `GET /` with `Accept: text/html`: the status page, for an authenticated
/// `user` (None without authentication).
pub(crate) async fn page<S: Store>(state: &AppState<S>, user: Option<&str>) -> Response<Body<S>> {
    let mut response = Response::new(Body::full(crate::status::page(state, user).await));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // SECURITY: no script, frame or outside resource, even if a name ever
    // slipped past the escaping; the page only needs its own inline style.
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_browsers_get_the_page() {
        let mut headers = HeaderMap::new();
        assert!(!page_wanted(&Method::GET, &headers));
        headers.insert(ACCEPT, HeaderValue::from_static("text/html,*/*;q=0.8"));
        assert!(page_wanted(&Method::GET, &headers));
        assert!(page_wanted(&Method::HEAD, &headers));
        assert!(!page_wanted(&Method::POST, &headers));
    }
}
