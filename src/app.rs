//! Startup and lifecycle: runtime, data directory, listener, signals.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::access_log::AccessLog;
use crate::auth::acl::Acl;
use crate::auth::htpasswd::Users;
use crate::auth::{self, AclRules, Auth, BasicAuth, Watched};
use crate::blocking;
use crate::config::AuthMode;
use crate::config::Config;
use crate::connection::Shared;
use crate::handlers::AppState;
use crate::listener::Listener;
use crate::metrics::Metrics;
use crate::quota::Quota;
use crate::server;
use crate::storage::{self, Storage, StorageError};
use crate::tls::Tls;

/// Why the server could not start or run.
#[derive(Debug)]
pub enum AppError {
    Runtime(io::Error),
    DataDir(StorageError),
    Listen(io::Error),
    AccessLog(io::Error),
    Tls(crate::tls::TlsError),
    /// The htpasswd file cannot be read; the server never serves without it.
    Htpasswd(PathBuf, io::Error),
    Acl(PathBuf, io::Error),
    Signals(io::Error),
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppError::Runtime(e) => write!(f, "cannot start the runtime: {e}"),
            AppError::DataDir(e) => write!(f, "data directory: {e}"),
            AppError::Listen(e) => write!(f, "cannot listen: {e}"),
            AppError::AccessLog(e) => write!(f, "cannot open the access log: {e}"),
            AppError::Tls(e) => write!(f, "TLS: {e}"),
            AppError::Acl(path, e) => write!(f, "cannot read the ACL file {}: {e}", path.display()),
            AppError::Htpasswd(path, e) => write!(
                f,
                "cannot read the password file {}: {e}. Create a user with \
                 `rest-server --path <data directory> user add <name>` (or \
                 `--htpasswd-file {} user add <name>`), or start with --no-auth \
                 on a network you trust",
                path.display(),
                path.display()
            ),
            AppError::Signals(e) => write!(f, "cannot install signal handlers: {e}"),
        }
    }
}

impl std::error::Error for AppError {}

/// Runs the server until SIGINT or SIGTERM.
pub fn run(config: Config) -> Result<(), AppError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(config.limits.io_threads)
        .build()
        .map_err(AppError::Runtime)?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, serve(config))
}

async fn serve(config: Config) -> Result<(), AppError> {
    log_modes(&config);
    let storage = Storage::new(config.path.clone(), config.modes);
    let scan = prepare_data_dir(&storage)
        .await
        .map_err(AppError::DataDir)?;
    if scan.temps_removed > 0 {
        log::warn!(
            "removed {} unfinished upload(s) left by an earlier crash",
            scan.temps_removed
        );
    }
    let quota = Rc::new(Quota::new(config.max_size, scan.bytes));
    let metrics = config.prometheus.then(|| Metrics::new(scan.repos));
    if let Some(limit) = config.max_size {
        log::info!("max size: {limit} bytes, {} in use", scan.bytes);
    }
    let (auth, htpasswd_watch) = load_auth(&config.auth).await?;
    let acl = load_acl(config.acl.as_deref()).await?;
    let tls = match &config.tls {
        Some(settings) => Some(Rc::new(Tls::new(settings.clone()).map_err(AppError::Tls)?)),
        None => None,
    };
    let access_log = match &config.access_log {
        Some(target) => Some(Rc::new(
            AccessLog::open(target).map_err(AppError::AccessLog)?,
        )),
        None => None,
    };
    let listener = match Listener::from_systemd().map_err(AppError::Listen)? {
        Some(listener) => {
            log::info!("systemd socket activation mode");
            listener
        }
        None => Listener::bind(&config.listen).map_err(AppError::Listen)?,
    };
    log::info!("start server on {}", listener.describe());
    let shutdown = shutdown_signal().map_err(AppError::Signals)?;
    let (acl_rules, acl_watch) = match acl {
        Some((rules, watched, stamp)) => (Some(rules), Some((watched, stamp))),
        None => (None, None),
    };
    let state = Rc::new(AppState {
        auth,
        acl: acl_rules,
        config,
        storage,
        quota,
        metrics,
    });
    let mut reloads = Vec::new();
    if let Some((watched, stamp)) = htpasswd_watch {
        let reload_now = spawn_watch(
            watched,
            stamp,
            &state,
            |state, users| {
                if let Auth::Basic { checker, .. } = &state.auth {
                    checker.replace_users(users);
                }
            },
            |state| state.auth.user_count(),
        );
        reloads.push(reload_now);
    }
    if let Some((watched, stamp)) = acl_watch {
        let reload_now = spawn_watch(
            watched,
            stamp,
            &state,
            |state, acl| {
                if let Some(rules) = &state.acl {
                    *rules.rules.borrow_mut() = acl;
                }
            },
            |state| state.acl.as_ref().map_or(0, |r| r.rules.borrow().len()),
        );
        reloads.push(reload_now);
    }
    watch_sighup(reloads, tls.clone()).map_err(AppError::Signals)?;
    let shared = Rc::new(Shared::new(state, access_log, tls));
    let socket_path = listener.socket_path().map(Path::to_path_buf);
    server::serve(listener, shared, shutdown).await;
    if let Some(path) = socket_path
        && let Err(e) = std::fs::remove_file(&path)
    {
        log::warn!("could not remove socket {}: {e}", path.display());
    }
    log::info!("stopped");
    Ok(())
}

/// Starts watching a reloadable file; returns the handle SIGHUP uses to force
/// a reload.
fn spawn_watch<T: Send + 'static>(
    watched: Watched<T>,
    stamp: auth::FileStamp,
    state: &Rc<AppState>,
    apply: fn(&AppState, T),
    count: fn(&AppState) -> usize,
) -> Rc<tokio::sync::Notify> {
    let reload_now = Rc::new(tokio::sync::Notify::new());
    let (apply_to, count_of) = (state.clone(), state.clone());
    tokio::task::spawn_local(watched.watch(
        stamp,
        reload_now.clone(),
        move |value| apply(&apply_to, value),
        move || count(&count_of),
    ));
    reload_now
}

/// Builds the configured authentication; for htpasswd, loads the file and
/// returns what is needed to watch it for changes.
async fn load_auth(
    mode: &AuthMode,
) -> Result<(Auth, Option<(Watched<Users>, auth::FileStamp)>), AppError> {
    match mode {
        AuthMode::Off => Ok((Auth::Off, None)),
        AuthMode::ProxyHeader(name) => {
            let header = hyper::header::HeaderName::try_from(name.as_str())
                .map_err(|e| AppError::Listen(io::Error::other(e.to_string())))?;
            Ok((Auth::Proxy(header), None))
        }
        AuthMode::Htpasswd(file) => {
            let watched = Watched {
                what: "htpasswd",
                unit: "user(s)",
                path: file.clone(),
                load: auth::load_htpasswd,
                count: Users::len,
            };
            let (users, stamp) = watched
                .load_now()
                .await
                .map_err(|e| AppError::Htpasswd(file.clone(), e))?;
            if users.is_empty() {
                log::warn!(
                    "no usable user in {}: every request will be refused",
                    file.display()
                );
            }
            let auth = Auth::Basic {
                file: file.clone(),
                checker: BasicAuth::new(users),
            };
            Ok((auth, Some((watched, stamp))))
        }
    }
}

/// Loads the `--acl` file, if any, and returns what is needed to watch it.
async fn load_acl(
    file: Option<&Path>,
) -> Result<Option<(AclRules, Watched<Acl>, auth::FileStamp)>, AppError> {
    let Some(file) = file else {
        return Ok(None);
    };
    let watched = Watched {
        what: "acl",
        unit: "rule(s)",
        path: file.to_path_buf(),
        load: auth::load_acl,
        count: Acl::len,
    };
    let (acl, stamp) = watched
        .load_now()
        .await
        .map_err(|e| AppError::Acl(file.to_path_buf(), e))?;
    let rules = AclRules {
        rules: RefCell::new(acl),
    };
    Ok(Some((rules, watched, stamp)))
}

/// SIGHUP reloads the htpasswd and ACL files and the TLS certificate and key
/// at once. A TLS reload that fails keeps the certificate in use.
fn watch_sighup(files: Vec<Rc<tokio::sync::Notify>>, tls: Option<Rc<Tls>>) -> io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup())?;
    tokio::task::spawn_local(async move {
        while hangup.recv().await.is_some() {
            log::info!("received SIGHUP: reloading");
            for reload_now in &files {
                reload_now.notify_one();
            }
            if let Some(tls) = &tls {
                let settings = tls.settings.clone();
                match tokio::task::spawn_blocking(move || crate::tls::load(&settings)).await {
                    Ok(Ok(config)) => {
                        tls.replace(config);
                        log::info!("TLS: reloaded {}", tls.settings.cert.display());
                    }
                    Ok(Err(e)) => {
                        log::error!("TLS reload failed, keeping the current certificate: {e}")
                    }
                    Err(e) => log::error!("TLS reload failed: {e}"),
                }
            }
        }
    });
    Ok(())
}

fn log_modes(config: &Config) {
    let on_off = |b: bool| if b { "on" } else { "off" };
    log::info!("data directory: {}", config.path.display());
    if config.path.starts_with(std::env::temp_dir()) {
        log::warn!(
            "the data directory is in the system temp dir: data there may be lost on reboot"
        );
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
         max header {} B, max metadata body {} B, {} I/O threads",
        l.max_connections,
        l.header_timeout,
        l.idle_timeout,
        l.body_timeout,
        l.max_header_bytes,
        l.max_metadata_bytes,
        l.io_threads
    );
}

/// Creates the data directory if needed, then removes crash leftovers and
/// counts the bytes stored.
async fn prepare_data_dir(storage: &Storage) -> Result<storage::ScanReport, StorageError> {
    let root = storage.root().to_path_buf();
    let modes = storage.modes;
    blocking::run(move || {
        use std::os::unix::fs::DirBuilderExt;
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true).mode(modes.dir);
        storage::Context::op(builder.create(&root), "create data directory")?;
        storage::scan(&root)
    })
    .await
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
