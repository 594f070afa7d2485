//! A store's error answer as the server keeps it: the HTTP status, the S3
//! error code and message from the body, and what to check
//! ([`super::advice`]). It is the cause of the [`StoreError`] that the
//! request fails with, kept as fields rather than flattened to text, so
//! that the log shows all of it and code can still ask for the code.
//!
//! [`StoreError`]: crate::store::StoreError

use std::fmt;

use hyper::StatusCode;

use super::xml::S3Error;

#[derive(Debug)]
pub(crate) struct Refusal {
    /// None for an error the store reported in a 200's body (a multipart
    /// upload's completion).
    pub(crate) status: Option<StatusCode>,
    pub(crate) error: S3Error,
    /// What the user should check, when the code suggests it.
    pub(crate) advice: Option<String>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let S3Error { code, message, .. } = &self.error;
        match self.status {
            Some(status) if code.is_empty() => write!(f, "the store answered {status}")?,
            Some(status) => write!(f, "the store answered {status} {code}: {message}")?,
            None => write!(f, "{code}: {message}")?,
        }
        match &self.advice {
            Some(advice) => write!(f, " => {advice}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for Refusal {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ErrorKind, StoreError};

    /// The log's text is as before, and the code is still there to read
    /// behind the store error (not flattened to text).
    #[test]
    fn the_code_and_message_survive_to_the_log() {
        let refusal = Refusal {
            status: Some(StatusCode::FORBIDDEN),
            error: S3Error {
                code: "AccessDenied".into(),
                message: "no".into(),
                region: None,
            },
            advice: Some("check the policy".into()),
        };
        let err = StoreError::new(ErrorKind::Unexpected, "list", refusal);
        assert_eq!(
            err.to_string(),
            "list: the store answered 403 Forbidden AccessDenied: no => check the policy"
        );
        let source = std::error::Error::source(&err).expect("the cause is kept");
        let kept = source
            .downcast_ref::<Refusal>()
            .expect("as the store said it");
        assert_eq!(kept.error.code, "AccessDenied");
        assert!(err.io().is_none());
    }
}
