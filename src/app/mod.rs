//! Startup and lifecycle: runtime, data directory, listener, signals.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::auth::acl::Acl;
use crate::auth::htpasswd::Users;
use crate::auth::policy::Policy;
use crate::auth::{Auth, BasicAuth};
use crate::config::Storage;
use crate::config::{AuthMode, Config};
use crate::http::access_log::AccessLog;
use crate::http::connection::{Registry, Shared};
use crate::http::listener::Listener;
use crate::http::server;
use crate::http::tls::{TlsConfig, TlsError};
use crate::metrics::Metrics;
use crate::mirror::Mirror;
use crate::quota::Quota;
use crate::quota::rules::QuotaRules;
use crate::quota::usage::Usage;
use crate::runtime::pool::ComputePool;
use crate::runtime::reload::{ReloadError, Watch, Watched};
use crate::state::AppState;
use crate::store::either::AnyStore;
use crate::store::fs::{FsStore, WriterPool};
use crate::store::s3::S3Store;
use crate::store::{Store, StoreError};
use crate::upload::{BUFFERED_UPLOADS, BufferBudget};

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
            Cause::S3Settings(_) => None,
            Cause::Tls(e) => Some(e),
            Cause::Htpasswd(_, e) | Cause::Acl(_, e) | Cause::QuotaFile(_, e) => Some(e),
        }
    }
}

/// Runs the server until SIGINT or SIGTERM.
pub fn run(config: Config) -> Result<(), AppError> {
    let threads = Some(config.limits.io_threads);
    crate::runtime::block_on(threads, serve(config)).map_err(|e| AppError(Cause::Runtime(e)))?
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
                    let remote = S3Store::open(&mirror.location, mirror.settings_file.as_deref())
                        .map_err(|e| AppError(Cause::S3Settings(e.0)))?;
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
            let store = S3Store::open(location, settings.as_deref())
                .map_err(|e| AppError(Cause::S3Settings(e.0)))?;
            log::info!("repositories in {}", store.describe());
            serve_store(config, AnyStore::S3(store), None, None).await
        }
    }
}

/// What the offsite mirror starts from.
struct MirrorParts {
    dir: PathBuf,
    local: FsStore,
    remote: S3Store,
    run: crate::config::MirrorSettings,
}

/// What the background scrub starts from.
struct ScrubParts {
    files: crate::scrub::state::Files,
    store: FsStore,
    schedule: crate::config::ScrubSchedule,
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
    crate::runtime::reload::watch_all(reloads).map_err(|e| AppError(Cause::Signals(e)))?;
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
