//! Startup and lifecycle: runtime, data directory, listener, signals.

use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

mod error;
mod modes;
mod volume;

pub use error::AppError;
use error::Cause;
use modes::log_modes;

use crate::auth::acl::Acl;
use crate::auth::htpasswd::Users;
use crate::auth::policy::Policy;
use crate::auth::{Auth, BasicAuth};
use crate::config::Storage;
use crate::config::{AuthMode, Config, Deployment};
use crate::http::access_log::AccessLog;
use crate::http::connection::{Registry, Shared};
use crate::http::listener::Listener;
use crate::http::server;
use crate::http::tls::TlsConfig;
use crate::metrics::Metrics;
use crate::mirror::Mirror;
use crate::quota::Quota;
use crate::quota::rules::QuotaRules;
use crate::quota::usage::Usage;
use crate::runtime::pool::ComputePool;
use crate::runtime::reload::{Watch, Watched};
use crate::state::AppState;
use crate::store::Store;
use crate::store::either::AnyStore;
use crate::store::fs::{FsStore, WriterPool};
use crate::store::s3::S3Store;
use crate::upload::{BUFFERED_UPLOADS, BufferBudget};

/// Runs the server until SIGINT or SIGTERM.
pub fn run(config: Config) -> Result<(), AppError> {
    if config.deployment == Deployment::Container {
        volume::prepare(&config).map_err(|e| AppError(Cause::Volume(e)))?;
    }
    let threads = Some(config.limits.io_threads);
    crate::runtime::block_on(threads, serve(config)).map_err(|e| AppError(Cause::Runtime(e)))?
}

async fn serve(config: Config) -> Result<(), AppError> {
    log_modes(&config);
    match &config.storage {
        Storage::Local(dir) => {
            let writers = WriterPool::start("upload-write", config.limits.upload_writers())
                .map_err(|e| AppError(Cause::Threads(e)))?;
            let store =
                FsStore::new(dir.clone(), config.modes, writers).with_trash(config.trash_days);
            let mirror = match &config.mirror {
                None => None,
                Some(mirror) => {
                    let remote = S3Store::open_mirror(mirror)
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
                .map_err(|e| AppError(Cause::S3Settings(e.0)))?
                .with_trash(config.trash_days);
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
    let usage = Rc::new(Usage::new(scan.repos).with_alarm(config.delete_alarm));
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
                let hint = match config.deployment {
                    Deployment::Container => {
                        "; add one with: docker exec -it <container> rest-server user add <name> \
                         (podman exec works the same)"
                    }
                    Deployment::Host => "",
                };
                log::warn!(
                    "no usable user in {}: every request will be refused{hint}",
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
    if config.trash_days.is_some() {
        // Of the type the request path's detached work has: a task type of
        // its own would cost 12 KiB of tokio's task code.
        let purging: crate::upload::Detached = Box::pin(purge_trash_hourly(
            store.clone(),
            quota.clone(),
            usage.clone(),
        ));
        tokio::task::spawn_local(purging);
    }
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

/// How often the trash is purged of what is older than `--trash-days`.
const TRASH_PURGE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Purges the trash at start, then every [`TRASH_PURGE_INTERVAL`], and
/// gives the bytes purged back to the budgets; runs until the server stops.
async fn purge_trash_hourly<S: Store>(
    store: S,
    quota: Rc<Quota>,
    usage: Rc<Usage>,
) -> Result<u64, crate::store::StoreError> {
    let mut every = tokio::time::interval(TRASH_PURGE_INTERVAL);
    loop {
        every.tick().await;
        for (repo, bytes) in store.purge_trash().await {
            quota.release(&repo, bytes);
            usage.purged(&repo, bytes);
        }
    }
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
