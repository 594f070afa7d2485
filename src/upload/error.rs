//! Why an upload was not stored: the upload pipeline's own error, which the
//! request path maps to an HTTP status (`http::error`, the one place) and
//! the mirror reads as what to do next. Neither needs the other's terms.

use std::error::Error as StdError;
use std::fmt;

use crate::quota::Over;
use crate::runtime::pool::PoolGone;
use crate::store::{OpenError, StoreError};

#[derive(Debug)]
pub(crate) enum UploadError {
    /// The name is taken by other content; objects are never overwritten.
    Taken,
    /// The content does not match its name.
    HashMismatch,
    /// Longer than its kind may be (`--max-metadata-size`).
    TooLarge,
    /// It would not fit in a quota.
    Quota(Over),
    /// The body could not be read: the client's connection failed.
    BodyRead(Box<dyn StdError + Send + Sync>),
    /// The body paused for longer than `--body-timeout`.
    BodyTimeout,
    /// The store failed.
    Storage(StoreError),
    /// The stored file of a taken name could not be opened to compare.
    Open(OpenError),
    /// The hashing threads are gone.
    Pool(PoolGone),
}

impl fmt::Display for UploadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UploadError::Taken => f.write_str("object exists; objects are never overwritten"),
            UploadError::HashMismatch => f.write_str("content does not match its name (SHA-256)"),
            UploadError::TooLarge => f.write_str("body larger than allowed for this type"),
            UploadError::Quota(over) => write!(f, "{over}"),
            UploadError::BodyRead(e) => write!(f, "reading body: {e}"),
            UploadError::BodyTimeout => f.write_str("client stopped sending the body"),
            UploadError::Storage(e) => write!(f, "{e}"),
            UploadError::Open(e) => write!(f, "{e}"),
            UploadError::Pool(e) => write!(f, "{e}"),
        }
    }
}

impl From<StoreError> for UploadError {
    fn from(e: StoreError) -> UploadError {
        UploadError::Storage(e)
    }
}

impl From<OpenError> for UploadError {
    fn from(e: OpenError) -> UploadError {
        UploadError::Open(e)
    }
}

impl From<PoolGone> for UploadError {
    fn from(e: PoolGone) -> UploadError {
        UploadError::Pool(e)
    }
}
