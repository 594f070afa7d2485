//! What every request needs, built once at startup (`app`) and shared by
//! all connections on the one thread. It sits below the request path and the
//! status page, so neither imports startup.

use std::rc::Rc;

use crate::auth::Auth;
use crate::auth::policy::Policy;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::mirror::Mirror;
use crate::quota::Quota;
use crate::quota::usage::Usage;
use crate::runtime::pool::ComputePool;
use crate::upload::BufferBudget;

/// What every request needs; shared by all connections on the one thread.
pub(crate) struct AppState<S> {
    pub(crate) config: Config,
    pub(crate) store: S,
    pub(crate) auth: Auth,
    /// Who may do what where.
    pub(crate) policy: Policy,
    pub(crate) quota: Rc<Quota>,
    /// Some with `--prometheus`.
    pub(crate) metrics: Option<Rc<Metrics>>,
    /// What each repository holds.
    pub(crate) usage: Rc<Usage>,
    /// Recent refused logins, for the status page.
    pub(crate) refused: crate::auth::refused::Refused,
    /// For the status page's uptime.
    pub(crate) started: std::time::Instant,
    /// The machine's name, for the status page.
    pub(crate) host: String,
    /// Hashing and bcrypt, apart from file I/O.
    pub(crate) compute: ComputePool,
    /// Some with `--mirror`: told of every commit and delete.
    pub(crate) mirror: Option<Rc<Mirror>>,
    /// Some when the background scrub runs: told of deletes.
    pub(crate) scrub: Option<Rc<crate::scrub::Status>>,
    /// Why `/health` said 503 last time: a change is logged once.
    pub(crate) unhealthy: std::cell::RefCell<Option<String>>,
    /// Shared by all uploads: bounds their memory.
    pub(crate) upload_buffers: Rc<BufferBudget>,
}
