//! The startup lines that say how the server is set up: storage,
//! authentication, TLS, limits; a setting that risks data is a warning.

use crate::config::{AuthMode, Config, Storage};

/// Logs each setting once, at startup.
pub(super) fn log_modes(config: &Config) {
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
