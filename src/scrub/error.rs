//! [`ScrubError`]: why a pass stopped short (as opposed to damage, which a
//! pass reports and goes on); and the one mapping of the state file's I/O
//! errors into the store's error.

use crate::store::StoreError;

/// Why a pass stopped short.
#[derive(Debug)]
pub(crate) enum ScrubError {
    Store(StoreError),
    /// The compute pool is gone (the server is stopping).
    Stopping,
    /// `rest-server scrub --repo` of a repository that is not there.
    NoSuchRepo(String),
    /// Not one repository where one was required: nothing to verify.
    NoRepos,
}

impl std::fmt::Display for ScrubError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScrubError::Store(e) => write!(f, "store: {e}"),
            ScrubError::Stopping => f.write_str("stopping"),
            ScrubError::NoSuchRepo(repo) => write!(f, "no repository {repo:?} here"),
            ScrubError::NoRepos => f.write_str("no repository here: nothing to verify"),
        }
    }
}

impl std::error::Error for ScrubError {}

impl From<StoreError> for ScrubError {
    fn from(e: StoreError) -> ScrubError {
        ScrubError::Store(e)
    }
}

/// The state file's I/O errors, as the store's error (`scrub state`).
pub(super) trait OpState<T> {
    fn op_state(self) -> Result<T, StoreError>;
}

impl<T> OpState<T> for std::io::Result<T> {
    fn op_state(self) -> Result<T, StoreError> {
        use crate::store::Op as _;
        self.op("scrub state")
    }
}
