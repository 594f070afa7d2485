//! Startup and lifecycle: runtime, data directory, listener, signals.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::access::Policy;
use crate::access_log::AccessLog;
use crate::auth::acl::Acl;
use crate::auth::htpasswd::Users;
use crate::auth::{Auth, BasicAuth};
use crate::config::Storage;
use crate::config::{AuthMode, Config};
use crate::connection::{Registry, Shared};
use crate::listener::Listener;
use crate::metrics::Metrics;
use crate::mirror::Mirror;
use crate::pool::ComputePool;
use crate::quota::Quota;
use crate::quota::rules::QuotaRules;
use crate::reload::{ReloadError, Watch, Watched};
use crate::server;
use crate::store::either::AnyStore;
use crate::store::fs::{FsStore, WriterPool};
use crate::store::s3::{self, S3Store};
use crate::store::{Store, StoreError};
use crate::tls::{TlsConfig, TlsError};
use crate::upload::{BUFFERED_UPLOADS, BufferBudget};
use crate::usage::Usage;

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
    pub(crate) refused: crate::status::refused::Refused,
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

/// Why the server could not start or run.
#[derive(Debug)]
pub struct AppError(Cause);

#[derive(Debug)]
enum Cause {
    Runtime(io::Error),
    /// The compute or upload writer threads could not be started.
    Threads(io::Error),
    /// The store cannot be used at startup (data directory or bucket).
    Store(StoreError),
    S3Settings(String),
    Listen(io::Error),
    AccessLog(io::Error),
    Tls(ReloadError<TlsError>),
    /// The htpasswd file cannot be read; the server never serves without it.
    Htpasswd(PathBuf, ReloadError<io::Error>),
    Acl(PathBuf, ReloadError<io::Error>),
    QuotaFile(PathBuf, ReloadError<io::Error>),
    Signals(io::Error),
    Scrub(crate::scrub::ScrubError),
    /// `scrub --status` of a bucket: its state is not kept.
    NoScrubState,
    /// `scrub` of a data directory that is not there, or whose state file
    /// cannot be read.
    ScrubSetup(String),
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Cause::Runtime(e) => write!(f, "cannot start the runtime: {e}"),
            Cause::Threads(e) => write!(f, "cannot start the worker threads: {e}"),
            Cause::Store(e) => write!(f, "storage: {e}"),
            Cause::S3Settings(e) => write!(f, "S3 settings: {e}"),
            Cause::Listen(e) => write!(f, "cannot listen: {e}"),
            Cause::AccessLog(e) => write!(f, "cannot open the access log: {e}"),
            Cause::Tls(e) => write!(f, "TLS: {e}"),
            Cause::Acl(path, e) => write!(f, "cannot read the ACL file {}: {e}", path.display()),
            Cause::QuotaFile(path, e) => {
                write!(f, "cannot read the quota file {}: {e}", path.display())
            }
            Cause::Htpasswd(path, e) => write!(
                f,
                "cannot read the password file {}: {e}. Create a user with \
                 `rest-server --path <data directory> user add <name>` (or \
                 `--htpasswd-file {} user add <name>`), or start with --no-auth \
                 on a network you trust",
                path.display(),
                path.display()
            ),
            Cause::Signals(e) => write!(f, "cannot install signal handlers: {e}"),
            Cause::Scrub(e) => write!(f, "scrub: {e}"),
            Cause::ScrubSetup(why) => write!(f, "scrub: {why}"),
            Cause::NoScrubState => f.write_str(
                "scrub --status reads the state file of a data directory; a bucket's \
                 scrub keeps none (run `rest-server scrub` for its result)",
            ),
        }
    }
}

impl std::error::Error for AppError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0 {
            Cause::Runtime(e)
            | Cause::Threads(e)
            | Cause::Listen(e)
            | Cause::AccessLog(e)
            | Cause::Signals(e) => Some(e),
            Cause::Store(e) => Some(e),
            Cause::S3Settings(_) | Cause::NoScrubState | Cause::ScrubSetup(_) => None,
            Cause::Scrub(e) => Some(e),
            Cause::Tls(e) => Some(e),
            Cause::Htpasswd(_, e) | Cause::Acl(_, e) | Cause::QuotaFile(_, e) => Some(e),
        }
    }
}

/// Runs the server until SIGINT or SIGTERM.
pub fn run(config: Config) -> Result<(), AppError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(config.limits.io_threads)
        .build()
        .map_err(|e| AppError(Cause::Runtime(e)))?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, serve(config))
}

async fn serve(config: Config) -> Result<(), AppError> {
    log_modes(&config);
    match &config.storage {
        Storage::Local(dir) => {
            let writers = WriterPool::start("upload-write", config.limits.upload_writers())
                .map_err(|e| AppError(Cause::Threads(e)))?;
            let store = FsStore::new(dir.clone(), config.modes, writers);
            let mirror = match &config.mirror {
                None => None,
                Some(mirror) => {
                    let settings = s3_settings(&mirror.location, mirror.settings_file.as_deref())
                        .map_err(|e| AppError(Cause::S3Settings(e)))?;
                    let remote =
                        S3Store::new(settings).map_err(|e| AppError(Cause::S3Settings(e.0)))?;
                    Some(MirrorParts {
                        dir: dir.clone(),
                        local: store.clone(),
                        remote,
                        run: mirror.run,
                    })
                }
            };
            let scrub = config.scrub.map(|schedule| ScrubParts {
                files: crate::scrub::state::Files::new(dir),
                store: store.clone(),
                schedule,
            });
            serve_store(config, AnyStore::Fs(store), mirror, scrub).await
        }
        Storage::S3 { location, settings } => {
            let settings = s3_settings(location, settings.as_deref())
                .map_err(|e| AppError(Cause::S3Settings(e)))?;
            let store = S3Store::new(settings).map_err(|e| AppError(Cause::S3Settings(e.0)))?;
            log::info!("repositories in {}", store.describe());
            serve_store(config, AnyStore::S3(store), None, None).await
        }
    }
}

/// `rest-server cleanup`: aborts the multipart uploads a crash left in the
/// bucket (those older than `min_age` seconds); returns how many.
pub fn cleanup(target: &crate::cli::CleanupTarget, min_age: u64) -> Result<u64, AppError> {
    let Storage::S3 { location, settings } = &target.0 else {
        return Ok(0);
    };
    let settings =
        s3_settings(location, settings.as_deref()).map_err(|e| AppError(Cause::S3Settings(e)))?;
    let store = S3Store::new(settings).map_err(|e| AppError(Cause::S3Settings(e.0)))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AppError(Cause::Runtime(e)))?;
    let local = tokio::task::LocalSet::new();
    local
        .block_on(&runtime, store.cleanup(min_age))
        .map_err(|e| AppError(Cause::Store(e)))
}

/// `rest-server scrub`: one pass now over the target's repositories (or
/// one), at most `rate_mb` MB/s; returns how many objects are damaged.
pub fn scrub(
    target: &crate::cli::ScrubTarget,
    repo: Option<&str>,
    rate_mb: Option<u64>,
) -> Result<u64, AppError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AppError(Cause::Runtime(e)))?;
    let local = tokio::task::LocalSet::new();
    let compute = ComputePool::compute().map_err(|e| AppError(Cause::Threads(e)))?;
    let rate = rate_mb.unwrap_or(0).saturating_mul(1_000_000);
    let outcome = match &target.storage {
        Storage::Local(dir) => {
            data_dir_exists(dir)?;
            let writers =
                WriterPool::start("upload-write", 1).map_err(|e| AppError(Cause::Threads(e)))?;
            let store = FsStore::new(dir.clone(), crate::store::fs::Modes::new(false), writers);
            let files = Some(crate::scrub::state::Files::new(dir));
            let healer = match &target.mirror {
                None => None,
                Some(mirror) => {
                    let settings = s3_settings(&mirror.location, mirror.settings_file.as_deref())
                        .map_err(|e| AppError(Cause::S3Settings(e)))?;
                    Some(crate::scrub::repair::Healer {
                        local: store.clone(),
                        remote: S3Store::new(settings)
                            .map_err(|e| AppError(Cause::S3Settings(e.0)))?,
                        compute: compute.clone(),
                    })
                }
            };
            let store = AnyStore::Fs(store);
            local.block_on(
                &runtime,
                crate::scrub::once(&store, files, compute, rate, repo, healer.as_ref(), false),
            )
        }
        Storage::S3 { location, settings } => {
            let settings = s3_settings(location, settings.as_deref())
                .map_err(|e| AppError(Cause::S3Settings(e)))?;
            let store =
                AnyStore::S3(S3Store::new(settings).map_err(|e| AppError(Cause::S3Settings(e.0)))?);
            // A bucket location with no repository verified nothing: not
            // "clean" (a mistyped prefix).
            local.block_on(
                &runtime,
                crate::scrub::once(&store, None, compute, rate, repo, None, true),
            )
        }
    };
    outcome
        .map(|outcome| outcome.still_damaged)
        .map_err(|e| AppError(Cause::Scrub(e)))
}

/// `rest-server scrub --status`: the report, and whether damage is known.
pub fn scrub_status(target: &crate::cli::ScrubTarget) -> Result<(String, bool), AppError> {
    match &target.storage {
        Storage::Local(dir) => {
            data_dir_exists(dir)?;
            crate::scrub::status_report(&crate::scrub::state::Files::new(dir))
                .map_err(|why| AppError(Cause::ScrubSetup(why)))
        }
        Storage::S3 { .. } => Err(AppError(Cause::NoScrubState)),
    }
}

/// A mistyped `--path` is an error for `scrub`, not an empty data directory.
fn data_dir_exists(dir: &Path) -> Result<(), AppError> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        _ => Err(AppError(Cause::ScrubSetup(format!(
            "no data directory at {}",
            dir.display()
        )))),
    }
}

/// The S3 settings: the location, the settings file if any, the
/// environment. A settings file others may read is refused when it holds a
/// secret: it would give the bucket away.
fn s3_settings(location: &s3::Location, file: Option<&Path>) -> Result<s3::Settings, String> {
    use std::os::unix::fs::MetadataExt as _;
    let values = match file {
        None => Default::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let values = s3::parse_file(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            let secret = [
                "secret_access_key",
                "session_token",
                "sse_customer_key",
                "sse_customer_key_base64",
            ]
            .iter()
            .any(|name| values.contains_key(*name));
            let mode = std::fs::metadata(path).map(|m| m.mode()).unwrap_or(0);
            if secret {
                s3::private(path, mode).map_err(|e| e.0)?;
            }
            values
        }
    };
    s3::resolve(location.clone(), &values, &s3::ProcessEnvironment).map_err(|e| e.0)
}

/// What the offsite mirror starts from.
struct MirrorParts {
    dir: PathBuf,
    local: FsStore,
    remote: S3Store,
    run: crate::mirror::MirrorSettings,
}

/// What the background scrub starts from.
struct ScrubParts {
    files: crate::scrub::state::Files,
    store: FsStore,
    schedule: crate::scrub::Schedule,
}

/// Starts everything around `store` and serves until SIGINT or SIGTERM.
async fn serve_store<S: Store>(
    config: Config,
    store: S,
    mirror: Option<MirrorParts>,
    scrub: Option<ScrubParts>,
) -> Result<(), AppError> {
    let scan = store.scan().await.map_err(|e| AppError(Cause::Store(e)))?;
    if scan.temps_removed > 0 {
        log::warn!(
            "removed {} unfinished upload(s) left by an earlier crash",
            scan.temps_removed
        );
    }
    let repos: Vec<String> = scan.repos.keys().cloned().collect();
    let metrics = config
        .prometheus
        .then(|| Rc::new(Metrics::new(repos.clone())));
    let usage = Rc::new(Usage::new(scan.repos));
    if let Some(limit) = config.max_size {
        log::info!("max size: {limit} bytes, {} in use", scan.bytes);
    }
    let compute = ComputePool::compute().map_err(|e| AppError(Cause::Threads(e)))?;
    // The mirror does not hold up the start: an unreachable bucket only
    // delays the copy.
    let mirror = mirror.map(|parts| {
        Mirror::start(
            &parts.dir,
            parts.local,
            parts.remote,
            compute.clone(),
            parts.run,
            repos,
        )
    });
    let registry = Rc::new(Registry::default());
    let scrub = match scrub {
        None => None,
        Some(parts) => {
            let connections = registry.clone();
            let started = crate::scrub::Scrubber::start(
                AnyStore::Fs(parts.store),
                parts.files,
                compute.clone(),
                parts.schedule,
                Rc::new(move || connections.serving()),
            );
            Some(started.await)
        }
    };
    // Each watched file: loaded now (a broken one stops the server here),
    // then watched; SIGHUP reloads them all at once.
    let mut reloads: Vec<Rc<dyn Watch>> = Vec::new();
    let auth = match &config.auth {
        AuthMode::Off => Auth::Off,
        AuthMode::ProxyHeader(header) => Auth::Proxy(header.clone()),
        AuthMode::Htpasswd(file) => {
            let users = Watched::<Users>::load(file.clone())
                .await
                .map_err(|e| AppError(Cause::Htpasswd(file.clone(), e)))?;
            if users.get().is_empty() {
                log::warn!(
                    "no usable user in {}: every request will be refused",
                    file.display()
                );
            }
            reloads.push(users.clone());
            Auth::Basic(BasicAuth::new(users, compute.clone()))
        }
    };
    let acl = match &config.acl {
        Some(file) => {
            let acl = Watched::<Acl>::load(file.clone())
                .await
                .map_err(|e| AppError(Cause::Acl(file.clone(), e)))?;
            reloads.push(acl.clone());
            Some(acl)
        }
        None => None,
    };
    let mut quota = Quota::new(config.max_size, scan.bytes);
    if let Some(file) = &config.quota_file {
        let rules = Watched::<QuotaRules>::load(file.clone())
            .await
            .map_err(|e| AppError(Cause::QuotaFile(file.clone(), e)))?;
        reloads.push(rules.clone());
        quota = quota.with_rules(rules, usage.clone());
    }
    let quota = Rc::new(quota);
    let tls = match &config.tls {
        Some(settings) => {
            let tls = Watched::<TlsConfig>::load(settings.clone())
                .await
                .map_err(|e| AppError(Cause::Tls(e)))?;
            reloads.push(tls.clone());
            Some(tls)
        }
        None => None,
    };
    let access_log = match &config.access_log {
        Some(target) => Some(Rc::new(
            AccessLog::open(target).map_err(|e| AppError(Cause::AccessLog(e)))?,
        )),
        None => None,
    };
    let listener = match Listener::from_systemd().map_err(|e| AppError(Cause::Listen(e)))? {
        Some(listener) => {
            log::info!("systemd socket activation mode");
            listener
        }
        None => Listener::bind(&config.listen).map_err(|e| AppError(Cause::Listen(e)))?,
    };
    crate::logging::bare(&format!("start server on {}", listener.describe()));
    let shutdown = shutdown_signal().map_err(|e| AppError(Cause::Signals(e)))?;
    crate::reload::watch_all(reloads).map_err(|e| AppError(Cause::Signals(e)))?;
    let policy = Policy::new(
        acl,
        config.private_repos && config.auth != AuthMode::Off,
        config.append_only,
    );
    let state = Rc::new(AppState {
        auth,
        policy,
        config,
        store,
        quota,
        metrics,
        usage,
        refused: Default::default(),
        started: std::time::Instant::now(),
        host: crate::status::hostname(),
        compute,
        mirror,
        scrub,
        unhealthy: Default::default(),
        upload_buffers: BufferBudget::new(BUFFERED_UPLOADS),
    });
    let shared = Rc::new(Shared::new(state, access_log, tls));
    let socket_path = listener.socket_path().map(Path::to_path_buf);
    server::serve(listener, shared, registry, shutdown).await;
    if let Some(path) = socket_path
        && let Err(e) = std::fs::remove_file(&path)
    {
        log::warn!("could not remove socket {}: {e}", path.display());
    }
    log::info!("stopped");
    Ok(())
}

fn log_modes(config: &Config) {
    let on_off = |b: bool| if b { "on" } else { "off" };
    if let Storage::Local(dir) = &config.storage {
        log::info!("data directory: {}", dir.display());
        if dir.starts_with(std::env::temp_dir()) {
            log::warn!(
                "the data directory is in the system temp dir: data there may be lost on reboot"
            );
        }
    }
    match &config.auth {
        AuthMode::Off => {
            log::warn!("authentication: off (--no-auth): anyone who can connect has full access")
        }
        AuthMode::Htpasswd(file) => log::info!("authentication: htpasswd file {}", file.display()),
        AuthMode::ProxyHeader(h) => {
            log::info!("authentication: user named by the {h} header (--proxy-auth-username)")
        }
    }
    log::info!(
        "private repos: {}",
        on_off(config.private_repos && config.auth != AuthMode::Off)
    );
    match &config.tls {
        Some(tls) => log::info!(
            "TLS: on (certificate {}, key {}, minimum version {}, client certificates {})",
            tls.cert.display(),
            tls.key.display(),
            tls.min_version,
            tls.client_ca
                .as_ref()
                .map_or("not required".into(), |ca| format!(
                    "required, CA {}",
                    ca.display()
                ))
        ),
        None => log::info!("TLS: off"),
    }
    if let Some(tls) = &config.tls {
        log::info!("TLS ciphers: {}", tls.ciphers);
    }
    log::info!(
        "prometheus metrics: {}",
        match (config.prometheus, config.prometheus_no_auth) {
            (false, _) => "off",
            (true, true) => "on at /metrics, without authentication",
            (true, false) => "on at /metrics",
        }
    );
    log::info!("append-only mode: {}", on_off(config.append_only));
    if config.verify_upload {
        log::info!("upload verification: on");
    } else {
        log::warn!(
            "upload verification: off (--no-verify-upload): content is not checked against its name"
        );
    }
    log::info!(
        "group-accessible repos: {} (dirs {:o}, files {:o})",
        on_off(config.modes.dir == 0o770),
        config.modes.dir,
        config.modes.file
    );
    log::info!(
        "max size: {}",
        config
            .max_size
            .map_or("unlimited".into(), |n| format!("{n} bytes"))
    );
    let l = &config.limits;
    log::info!(
        "limits: {} connections, header timeout {:?}, idle timeout {:?}, body timeout {:?}, \
         max header {} B, max metadata body {} B, {} I/O threads (and {} writing uploads)",
        l.max_connections,
        l.header_timeout,
        l.idle_timeout,
        l.body_timeout,
        l.max_header_bytes,
        l.max_metadata_bytes,
        l.io_threads,
        l.upload_writers()
    );
}

/// Resolves on the first SIGINT or SIGTERM.
fn shutdown_signal() -> io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        log::info!("received {name}");
    })
}
