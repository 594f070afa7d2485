//! Request errors and the one place that maps them to HTTP status codes.
//!
//! The client gets the fixed status text; the log gets the reason and, for
//! storage failures, the OS error.

use std::fmt;

use hyper::StatusCode;
use hyper::header::{ALLOW, CONTENT_RANGE, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};

use crate::auth::AuthError;
use crate::auth::policy::Denied;
use crate::http::body::Body;
use crate::runtime::pool::PoolGone;
use crate::store::{ErrorKind, StoreError};
use crate::upload::UploadError;

/// Why a request failed.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// No or wrong credentials.
    Unauthorized(AuthError),
    /// No such route, repository or object.
    NotFound(&'static str),
    /// Malformed request (bad encoding, `POST /` without `create=true`, short body).
    BadRequest(&'static str),
    /// The uploaded content does not hash to its name.
    HashMismatch,
    /// Forbidden because the object exists already.
    Forbidden(&'static str),
    /// Refused by the access policy. No grant at all (another user's
    /// repository under `--private-repos`, no ACL rule) is answered like bad
    /// credentials, so that it does not tell whether the repository exists;
    /// a grant too low for the request (ACL, `--append-only`) is a 403.
    NotAllowed(Denied),
    /// `/metrics` with `--private-repos`, asked by a user other than
    /// `metrics`.
    MetricsNotAllowed,
    /// A change a browser asks on behalf of another site's page (see
    /// [`crate::http::origin`]).
    CrossSite(crate::http::origin::Foreign),
    MethodNotAllowed {
        allow: &'static str,
    },
    /// Body larger than allowed for the object type.
    PayloadTooLarge,
    /// The Range header cannot be served for an object of this size.
    RangeNotSatisfiable {
        size: u64,
    },
    /// `--max-size` or a `--quota-file` budget would be passed.
    QuotaExceeded(crate::quota::Over),
    /// The client stopped sending the body.
    BodyTimeout,
    /// The body could not be read from the connection (client went away).
    BodyRead(Box<dyn std::error::Error + Send + Sync>),
    Storage(StoreError),
    /// The compute pool is gone (a hashing job panicked).
    Pool(PoolGone),
}

impl ApiError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_)
            | ApiError::NotAllowed(Denied::NoGrant)
            | ApiError::MetricsNotAllowed => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) | ApiError::HashMismatch | ApiError::BodyRead(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Forbidden(_)
            | ApiError::NotAllowed(Denied::TooLow { .. })
            | ApiError::CrossSite(_) => StatusCode::FORBIDDEN,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::QuotaExceeded(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Storage(e) => match e.kind {
                ErrorKind::NotFound => StatusCode::NOT_FOUND,
                ErrorKind::AlreadyExists => StatusCode::FORBIDDEN,
                ErrorKind::NoSpace => StatusCode::INSUFFICIENT_STORAGE,
                ErrorKind::Unexpected => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::Pool(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether this is the server's fault (logged as an error, not a warning).
    pub(crate) fn is_server_fault(&self) -> bool {
        self.status().is_server_error() && !matches!(self, ApiError::QuotaExceeded(_))
    }

    /// A missing file or object: normal in restic's traffic, not bad input.
    pub(crate) fn is_routine(&self) -> bool {
        matches!(self, ApiError::Storage(e) if e.kind == ErrorKind::NotFound)
    }

    pub(crate) fn into_response<S: crate::store::Store>(self) -> hyper::Response<Body<S>> {
        let status = self.status();
        let mut response = hyper::Response::new(Body::from_static(status_text(status)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        match self {
            ApiError::MethodNotAllowed { allow } => {
                headers.insert(ALLOW, HeaderValue::from_static(allow));
            }
            ApiError::Unauthorized(_)
            | ApiError::NotAllowed(Denied::NoGrant)
            | ApiError::MetricsNotAllowed => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"restic\""),
                );
            }
            ApiError::RangeNotSatisfiable { size } => {
                if let Ok(value) = HeaderValue::try_from(format!("bytes */{size}")) {
                    headers.insert(CONTENT_RANGE, value);
                }
            }
            _ => {}
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        ApiError::Storage(err)
    }
}

impl From<UploadError> for ApiError {
    fn from(err: UploadError) -> ApiError {
        match err {
            UploadError::Taken => {
                ApiError::Forbidden("object exists; objects are never overwritten")
            }
            UploadError::HashMismatch => ApiError::HashMismatch,
            UploadError::TooLarge => ApiError::PayloadTooLarge,
            UploadError::Quota(over) => ApiError::QuotaExceeded(over),
            UploadError::BodyRead(e) => ApiError::BodyRead(e),
            UploadError::BodyTimeout => ApiError::BodyTimeout,
            UploadError::Storage(e) => ApiError::Storage(e),
            UploadError::Open(e) => e.into(),
            UploadError::Pool(e) => ApiError::Pool(e),
        }
    }
}

impl From<PoolGone> for ApiError {
    fn from(err: PoolGone) -> ApiError {
        ApiError::Pool(err)
    }
}

impl From<crate::http::route::RouteError> for ApiError {
    fn from(err: crate::http::route::RouteError) -> ApiError {
        match err {
            crate::http::route::RouteError::NotFound => ApiError::NotFound("no such route"),
            crate::http::route::RouteError::BadEncoding => {
                ApiError::BadRequest("malformed percent-encoding in path")
            }
        }
    }
}

impl From<crate::store::OpenError> for ApiError {
    fn from(err: crate::store::OpenError) -> ApiError {
        match err {
            crate::store::OpenError::Store(e) => ApiError::Storage(e),
            crate::store::OpenError::Range(e) => e.into(),
        }
    }
}

impl From<crate::repo::range::RangeError> for ApiError {
    fn from(err: crate::repo::range::RangeError) -> ApiError {
        ApiError::RangeNotSatisfiable { size: err.size }
    }
}

impl std::error::Error for ApiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ApiError::Unauthorized(e) => Some(e),
            ApiError::BodyRead(e) => Some(e.as_ref()),
            ApiError::Storage(e) => Some(e),
            ApiError::Pool(e) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Unauthorized(e) => f.write_str(e.reason()),
            ApiError::NotFound(why) | ApiError::BadRequest(why) | ApiError::Forbidden(why) => {
                f.write_str(why)
            }
            ApiError::NotAllowed(Denied::NoGrant) => {
                f.write_str("no access to this repository for this user")
            }
            ApiError::MetricsNotAllowed => {
                f.write_str("with --private-repos only the user \"metrics\" may read /metrics")
            }
            ApiError::NotAllowed(Denied::TooLow { granted, needed }) => {
                write!(f, "needs {needed} access, has {granted}")
            }
            ApiError::HashMismatch => f.write_str("content does not match its name (SHA-256)"),
            ApiError::CrossSite(foreign) => write!(f, "{foreign}"),
            ApiError::MethodNotAllowed { allow } => {
                write!(f, "method not allowed (allow: {allow})")
            }
            ApiError::PayloadTooLarge => f.write_str("body larger than allowed for this type"),
            ApiError::RangeNotSatisfiable { size } => {
                write!(f, "range not satisfiable for size {size}")
            }
            ApiError::QuotaExceeded(over) => write!(f, "{over}"),
            ApiError::BodyTimeout => f.write_str("client stopped sending the body"),
            ApiError::BodyRead(e) => write!(f, "reading body: {e}"),
            ApiError::Storage(e) => write!(f, "{e}"),
            ApiError::Pool(e) => write!(f, "{e}"),
        }
    }
}

/// Go's `http.Error` text, so clients and scripts see what rest-server sends.
fn status_text(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "Bad Request\n",
        StatusCode::UNAUTHORIZED => "Unauthorized\n",
        StatusCode::FORBIDDEN => "Forbidden\n",
        StatusCode::NOT_FOUND => "Not Found\n",
        StatusCode::METHOD_NOT_ALLOWED => "Method Not Allowed\n",
        StatusCode::REQUEST_TIMEOUT => "Request Timeout\n",
        StatusCode::PAYLOAD_TOO_LARGE => "Request Entity Too Large\n",
        StatusCode::RANGE_NOT_SATISFIABLE => "Requested Range Not Satisfiable\n",
        StatusCode::INSUFFICIENT_STORAGE => "Insufficient Storage\n",
        _ => "Internal Server Error\n",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemStore;
    use std::io;

    fn storage(kind: ErrorKind) -> ApiError {
        ApiError::Storage(StoreError::new(kind, "test", io::Error::other("x")))
    }

    #[test]
    fn maps_each_error_to_its_status() {
        assert_eq!(storage(ErrorKind::NotFound).status(), 404);
        assert_eq!(storage(ErrorKind::AlreadyExists).status(), 403);
        assert_eq!(storage(ErrorKind::NoSpace).status(), 507);
        assert_eq!(storage(ErrorKind::Unexpected).status(), 500);
        assert_eq!(ApiError::HashMismatch.status(), 400);
        let over = ApiError::QuotaExceeded(crate::quota::Over::MaxSize);
        assert_eq!(over.status(), 507);
        assert!(!over.is_server_fault());
        assert!(storage(ErrorKind::Unexpected).is_server_fault());
    }

    #[test]
    fn method_not_allowed_names_the_allowed_methods() {
        let response = ApiError::MethodNotAllowed { allow: "GET" }.into_response::<MemStore>();
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()[ALLOW], "GET");
    }
}
