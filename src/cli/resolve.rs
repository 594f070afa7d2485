//! The second stage: [`Flags::resolve`] checks the flags and builds the
//! [`Config`] the server runs with, once; the subcommands get what they work
//! on from here too ([`Flags::cleanup_target`], [`Flags::scrub_target`],
//! [`Flags::data_dir`], [`Flags::tls_paths`], [`Flags::htpasswd_path`]), so
//! a default (a file in the data directory, rest-server's default folder)
//! is decided in one place.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::Modes;
use crate::config::{AccessLogTarget, AuthMode, Config, Limits, ListenAddr};
use crate::config::{Ciphers, ScrubSchedule, TlsSettings, TlsVersion};
use crate::config::{
    CleanupTarget, DEFAULT_MIRROR_UPLOADS, Mirror, MirrorTarget, ScrubTarget, Storage, TrashTarget,
};
use crate::config::{LockMode, MirrorSettings, ObjectLock};
use crate::store::s3;

use super::{CliError, Flags, ScrubArgs};

/// `--scrub-rate` by default, MB/s: a 1 TB disk is scrubbed in about a day
/// and a half, well inside the default interval, while the reads stay a
/// small share of a USB disk's or SD card's speed.
const DEFAULT_SCRUB_RATE_MB: u64 = 8;

/// `--health-min-free` by default: 100 MiB, a few packs.
const DEFAULT_HEALTH_MIN_FREE: u64 = 100 << 20;

/// `--stale-days` by default: a laptop that backs up daily and has missed
/// three days in a row has stopped, or its owner is away; worth a look.
const DEFAULT_STALE_DAYS: u64 = 3;

/// `--scrub-interval` by default.
const DEFAULT_SCRUB_INTERVAL_DAYS: u64 = 30;

/// A duration as `--scrub-interval` takes it: days, or a number with a unit.
fn parse_interval(text: &str) -> Option<Duration> {
    crate::time::parse_age(text).map(Duration::from_secs)
}

/// The smallest `--max-header-size`, in bytes.
pub(super) const MIN_HEADER_BYTES: usize = 1024;

/// Parses `host:port`, `:port` or `unix:/path`.
pub(crate) fn parse_listen(text: &str) -> Result<ListenAddr, CliError> {
    if let Some(path) = text.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(CliError::UnixSocketPath);
        }
        return Ok(ListenAddr::Unix(PathBuf::from(path)));
    }
    let bad = || CliError::Listen(text.to_string());
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err() {
        return Err(bad());
    }
    Ok(ListenAddr::Tcp {
        host: host.to_string(),
        port,
    })
}

fn positive<T: PartialEq + Default>(value: T, name: &'static str) -> Result<T, CliError> {
    if value == T::default() {
        return Err(CliError::NotPositive(name));
    }
    Ok(value)
}

impl Flags {
    /// Where repositories are: `--path` (a folder or an `s3:` bucket), or
    /// rest-server's default folder.
    fn storage(&self) -> Result<Storage, CliError> {
        self.storage_at(self.path.as_ref())
    }

    fn storage_at(&self, path: Option<&PathBuf>) -> Result<Storage, CliError> {
        let path = path
            .cloned()
            .unwrap_or_else(|| std::env::temp_dir().join("restic"));
        match path.to_str().filter(|p| s3::is_location(p)) {
            Some(text) => Ok(Storage::S3 {
                location: s3::parse_location(text).map_err(|e| CliError::S3Location(e.0))?,
                settings: self.s3_config.clone(),
            }),
            None if self.s3_config.is_some() && self.mirror.is_none() => {
                Err(CliError::S3ConfigWithoutS3)
            }
            None => Ok(Storage::Local(path)),
        }
    }

    /// Where `cleanup` works: the bucket of an `s3:` path.
    pub fn cleanup_target(&self) -> Result<CleanupTarget, CliError> {
        match self.storage()? {
            storage @ Storage::S3 { .. } => Ok(CleanupTarget(storage)),
            Storage::Local(_) => Err(CliError::Mirror(
                "cleanup is for an s3: --path: a data directory's leftovers are removed at startup",
            )),
        }
    }

    /// Where `trash` works: the data directory or the bucket of `--path`.
    pub fn trash_target(&self) -> Result<TrashTarget, CliError> {
        Ok(TrashTarget(self.storage()?))
    }

    /// The mirror's bucket, for `mirror recover`: `--mirror` (with
    /// `--s3-config`), whatever `--path` is.
    pub fn mirror_target(&self) -> Result<MirrorTarget, CliError> {
        let local = Storage::Local(PathBuf::new());
        match self.mirror_settings(&local)? {
            Some(mirror) => Ok(MirrorTarget(mirror)),
            None => Err(CliError::Mirror(
                "mirror recover works on the mirror's bucket: give --mirror (and --s3-config) \
                 before `mirror`, as the server has them",
            )),
        }
    }

    /// Where `scrub` works: its own `--path`, or the one before it; with
    /// `--repair`, the mirror too.
    pub fn scrub_target(&self, args: &ScrubArgs) -> Result<ScrubTarget, CliError> {
        let storage = self.storage_at(args.path.as_ref().or(self.path.as_ref()))?;
        let mirror = match args.repair {
            false => None,
            true => Some(self.mirror_settings(&storage)?.ok_or_else(|| {
                CliError::Scrub(
                    "scrub --repair heals from the offsite mirror: give --mirror (and \
                     --s3-config) before `scrub`, as the server has them"
                        .to_string(),
                )
            })?),
        };
        Ok(ScrubTarget { storage, mirror })
    }

    /// The background scrub: a data directory's, unless turned off.
    fn scrub_schedule(&self, storage: &Storage) -> Result<Option<ScrubSchedule>, CliError> {
        let interval = match self.scrub_interval.as_deref() {
            None => Duration::from_secs(DEFAULT_SCRUB_INTERVAL_DAYS * 86_400),
            Some(text) => parse_interval(text).ok_or_else(|| {
                CliError::Scrub(format!(
                    "--scrub-interval {text:?}: expected days, or a number with s, m, h or d"
                ))
            })?,
        };
        let rate = self.scrub_rate.unwrap_or(DEFAULT_SCRUB_RATE_MB);
        if rate == 0 {
            return Err(CliError::NotPositive("--scrub-rate"));
        }
        if interval.is_zero() {
            return Ok(None);
        }
        if let Storage::S3 { .. } = storage {
            if self.scrub_interval.is_some() || self.scrub_rate.is_some() {
                return Err(CliError::Scrub(
                    "the background scrub is of a data directory: re-reading a bucket is paid \
                     per request and byte, so scrub an s3: --path with `rest-server scrub` \
                     when you choose to"
                        .to_string(),
                ));
            }
            return Ok(None);
        }
        let rate = rate
            .checked_mul(1_000_000)
            .ok_or_else(|| CliError::Scrub(format!("--scrub-rate {rate}: too large")))?;
        Ok(Some(ScrubSchedule { rate, interval }))
    }

    /// The data directory, for `mirror status`.
    pub fn data_dir(&self) -> Result<PathBuf, CliError> {
        match self.storage()? {
            Storage::Local(dir) => Ok(dir),
            Storage::S3 { .. } => Err(CliError::Mirror(
                "this command works on a data directory: give its --path",
            )),
        }
    }

    /// A file in the data directory, for the flag that names it otherwise.
    fn in_data_dir(&self, name: &str, flag: &'static str) -> Result<PathBuf, CliError> {
        match self.storage()? {
            Storage::Local(dir) => Ok(dir.join(name)),
            Storage::S3 { .. } => Err(CliError::NoDataDir(flag)),
        }
    }

    /// The TLS certificate and key: `--tls-cert` and `--tls-key`, or
    /// `public_key` and `private_key` in the data directory.
    pub fn tls_paths(&self) -> Result<(PathBuf, PathBuf), CliError> {
        let file = |given: &Option<String>, default: &str, flag| match given {
            Some(path) => Ok(PathBuf::from(path)),
            None => self.in_data_dir(default, flag),
        };
        Ok((
            file(&self.tls_cert, "public_key", "--tls-cert")?,
            file(&self.tls_key, "private_key", "--tls-key")?,
        ))
    }

    /// The htpasswd file: `--htpasswd-file`, or `.htpasswd` in the data directory.
    pub fn htpasswd_path(&self) -> Result<PathBuf, CliError> {
        match &self.htpasswd_file {
            Some(file) => Ok(PathBuf::from(file)),
            None => self.in_data_dir(".htpasswd", "--htpasswd-file"),
        }
    }

    /// The TLS settings, as rest-server takes them: the files default to
    /// `public_key` and `private_key` in the data directory, and naming them
    /// without `--tls` is an error rather than a silent plain-HTTP server.
    fn tls_settings(&self) -> Result<Option<TlsSettings>, CliError> {
        if !self.tls {
            if self.tls_cert.is_some() || self.tls_key.is_some() || self.tls_client_ca.is_some() {
                return Err(CliError::TlsFilesWithoutTls);
            }
            return Ok(None);
        }
        let min_version = match self.tls_min_ver.as_deref() {
            None => TlsVersion::V1_2,
            Some(text) => {
                TlsVersion::parse(text).ok_or_else(|| CliError::TlsMinVersion(text.to_string()))?
            }
        };
        let (cert, key) = self.tls_paths()?;
        Ok(Some(TlsSettings {
            cert,
            key,
            min_version,
            client_ca: self.tls_client_ca.clone(),
            ciphers: Ciphers::detect(),
        }))
    }

    /// The offsite mirror, when asked for: only from a data directory, and
    /// deletes never in append-only mode.
    fn mirror_settings(&self, storage: &Storage) -> Result<Option<Mirror>, CliError> {
        let Some(target) = &self.mirror else {
            let given = self.mirror_deletes
                || self.mirror_uploads.is_some()
                || self.mirror_bwlimit.is_some()
                || self.mirror_lock_days.is_some()
                || self.mirror_lock_mode.is_some();
            if given {
                return Err(CliError::Mirror(
                    "--mirror-deletes, --mirror-uploads, --mirror-bwlimit and --mirror-lock-* \
                     need --mirror",
                ));
            }
            return Ok(None);
        };
        if matches!(storage, Storage::S3 { .. }) {
            return Err(CliError::Mirror(
                "--mirror copies a data directory: it cannot go with an s3: --path",
            ));
        }
        if self.mirror_deletes && self.append_only {
            return Err(CliError::Mirror(
                "--mirror-deletes cannot go with --append-only: deletes on the board must \
                 never delete offsite",
            ));
        }
        let location = s3::parse_location(target).map_err(|e| CliError::S3Location(e.0))?;
        Ok(Some(Mirror {
            location,
            settings_file: self.s3_config.clone(),
            run: MirrorSettings {
                uploads: match self.mirror_uploads {
                    Some(n) => positive(n, "--mirror-uploads")?,
                    None => DEFAULT_MIRROR_UPLOADS,
                },
                bandwidth: self.mirror_bwlimit.filter(|&n| n > 0),
                deletes: self.mirror_deletes,
                lock: self.object_lock()?,
            },
        }))
    }

    /// `--mirror-lock-days` and `--mirror-lock-mode`.
    fn object_lock(&self) -> Result<Option<ObjectLock>, CliError> {
        let mode = match self.mirror_lock_mode.as_deref() {
            None | Some("governance") => LockMode::Governance,
            Some("compliance") => LockMode::Compliance,
            Some(_) => {
                return Err(CliError::Mirror(
                    "--mirror-lock-mode: give governance or compliance",
                ));
            }
        };
        match self.mirror_lock_days {
            None if self.mirror_lock_mode.is_some() => Err(CliError::Mirror(
                "--mirror-lock-mode needs --mirror-lock-days",
            )),
            None => Ok(None),
            // A day at least: the renewal runs when half the window is
            // left; and S3 takes no longer retention than 100 years.
            Some(days @ 1..=36_500) => Ok(Some(ObjectLock { days, mode })),
            Some(_) => Err(CliError::Mirror("--mirror-lock-days: give 1 to 36500 days")),
        }
    }

    /// Checks the flags and builds the configuration.
    // Called for the server and for `health`: one copy (it is large).
    #[inline(never)]
    pub fn resolve(self) -> Result<Config, CliError> {
        let unsupported = [(self.cpu_profile.is_some(), "--cpu-profile")];
        if let Some((_, name)) = unsupported.iter().find(|(given, _)| *given) {
            return Err(CliError::Unsupported(name));
        }
        let defaults = Limits::default();
        let secs = |value: Option<u64>, default: Duration, name: &'static str| match value {
            Some(s) => positive(s, name).map(Duration::from_secs),
            None => Ok(default),
        };
        let limits = Limits {
            max_connections: match self.max_connections {
                Some(n) => positive(n, "--max-connections")?,
                None => defaults.max_connections,
            },
            header_timeout: secs(
                self.header_timeout,
                defaults.header_timeout,
                "--header-timeout",
            )?,
            idle_timeout: secs(self.idle_timeout, defaults.idle_timeout, "--idle-timeout")?,
            body_timeout: secs(self.body_timeout, defaults.body_timeout, "--body-timeout")?,
            max_header_bytes: match self.max_header_size {
                // hyper's read buffer cannot be smaller than 8 KiB.
                Some(n) if n < MIN_HEADER_BYTES => return Err(CliError::HeaderSizeTooSmall),
                Some(n) => n,
                None => defaults.max_header_bytes,
            },
            max_metadata_bytes: self
                .max_metadata_size
                .unwrap_or(defaults.max_metadata_bytes),
            io_threads: match self.io_threads {
                Some(n) => positive(n, "--io-threads")?,
                None => defaults.io_threads,
            },
            shutdown_timeout: match self.shutdown_timeout {
                Some(s) => Duration::from_secs(s),
                None => defaults.shutdown_timeout,
            },
        };
        let listen = parse_listen(self.listen.as_deref().unwrap_or(":8000"))?;
        let access_log = match self.log.as_deref() {
            None | Some("") => None,
            Some("-") => Some(AccessLogTarget::Stdout),
            Some(file) => Some(AccessLogTarget::File(PathBuf::from(file))),
        };
        let max_size = match self.max_size {
            Some(0) | None => None,
            Some(n) => Some(n),
        };
        let storage = self.storage()?;
        let mirror = self.mirror_settings(&storage)?;
        let scrub = self.scrub_schedule(&storage)?;
        let tls = self.tls_settings()?;
        // As rest-server: --no-auth wins over everything, then the proxy header.
        let auth = if self.no_auth {
            AuthMode::Off
        } else if let Some(header) = self.proxy_auth_username {
            match hyper::header::HeaderName::try_from(header.as_str()) {
                Ok(name) => AuthMode::ProxyHeader(name),
                Err(source) => return Err(CliError::ProxyHeader { header, source }),
            }
        } else {
            AuthMode::Htpasswd(self.htpasswd_path()?)
        };
        if self.acl.is_some() && auth == AuthMode::Off {
            return Err(CliError::AclWithoutAuth);
        }
        let trash_days = self.trash_days.filter(|&days| days > 0);
        Ok(Config {
            trash_days,
            delete_alarm: self
                .delete_alarm
                .unwrap_or(crate::quota::deletes::DEFAULT_PERCENT)
                .min(100),
            acl: self.acl,
            quota_file: self.quota_file,
            tls,
            storage,
            mirror,
            scrub,
            auth,
            private_repos: self.private_repos,
            prometheus: self.prometheus,
            prometheus_no_auth: self.prometheus_no_auth,
            listen,
            access_log,
            debug: self.debug,
            append_only: self.append_only,
            max_size,
            health_min_free: self.health_min_free.unwrap_or(DEFAULT_HEALTH_MIN_FREE),
            stale_days: self.stale_days.unwrap_or(DEFAULT_STALE_DAYS),
            verify_upload: !self.no_verify_upload,
            modes: Modes::new(self.group_accessible_repos),
            limits,
            deployment: Default::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use argh::FromArgs;

    use super::super::{args, normalize_args};
    use super::*;

    fn parse(list: &[&str]) -> Result<Config, CliError> {
        let normalized = normalize_args(&args(list))?;
        let refs: Vec<&str> = normalized.iter().map(String::as_str).collect();
        Flags::from_args(&["rest-server"], &refs)
            .map_err(|e| CliError::Parse(e.output))?
            .resolve()
    }

    #[test]
    fn scrub_flags() {
        assert_eq!(parse_interval("30"), Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_interval("12h"), Some(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_interval("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_interval("0"), Some(Duration::ZERO));
        for bad in ["", "d", "1w", "-1", "1.5d", "99999999999999999999d"] {
            assert_eq!(parse_interval(bad), None, "{bad}");
        }
        let config = parse(&["--path", "/srv"]).unwrap();
        assert_eq!(
            config.scrub,
            Some(ScrubSchedule {
                rate: 8_000_000,
                interval: Duration::from_secs(30 * 86_400)
            })
        );
        let off = parse(&["--path", "/srv", "--scrub-interval", "0"]).unwrap();
        assert_eq!(off.scrub, None);
        assert!(parse(&["--scrub-rate", "0"]).is_err());
        assert!(parse(&["--scrub-interval", "soon"]).is_err());
        // A bucket is only scrubbed on demand.
        let bucket = ["--no-auth", "--path", "s3:http://127.0.0.1:9/b"];
        assert_eq!(parse(&bucket).unwrap().scrub, None);
        let rate = [&bucket[..], &["--scrub-rate", "4"]].concat();
        assert!(matches!(parse(&rate), Err(CliError::Scrub(_))));
    }

    #[test]
    fn errors_say_what_to_change_and_keep_their_cause() {
        use std::error::Error as _;
        let err = normalize_args(&args(&["--tls=maybe"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value \"maybe\" for switch --tls: use true or false"
        );
        assert!(err.source().is_none());
        let err = parse(&["--proxy-auth-username", "bad header"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--proxy-auth-username \"bad header\" is not a valid header name"
        );
        assert!(err.source().is_some(), "the header parser's error is kept");
        let err = parse(&["--no-auth", "--acl", "/etc/acl"]).unwrap_err();
        assert!(matches!(err, CliError::AclWithoutAuth), "{err}");
        let err = parse(&["--no-auth", "--io-threads", "0"]).unwrap_err();
        assert_eq!(err.to_string(), "--io-threads must be greater than 0");
        let err = parse(&["--no-auth", "--max-header-size", "100"]).unwrap_err();
        assert_eq!(err.to_string(), "--max-header-size must be at least 1024");
        let err = parse(&["--no-auth", "stray"]).unwrap_err();
        assert!(matches!(err, CliError::Parse(_)), "{err}");
    }

    #[test]
    fn resolves_defaults_and_modes() {
        let config = parse(&[
            "--no-auth",
            "--path",
            "/data",
            "--append-only",
            "--max-size",
            "1000",
        ])
        .unwrap();
        assert_eq!(config.storage, Storage::Local(PathBuf::from("/data")));
        assert!(config.append_only);
        assert_eq!(config.max_size, Some(1000));
        assert!(config.verify_upload);
        assert_eq!(config.modes, Modes::new(false));
        assert_eq!(
            config.listen,
            ListenAddr::Tcp {
                host: String::new(),
                port: 8000
            }
        );
        let default_path = parse(&["--no-auth"]).unwrap().storage;
        assert_eq!(
            default_path,
            Storage::Local(std::env::temp_dir().join("restic"))
        );
    }

    #[test]
    fn mirror_flags_are_checked() {
        let target = "s3:http://127.0.0.1:9000/b";
        let config = parse(&["--no-auth", "--path", "/d", "--mirror", target]).unwrap();
        let mirror = config.mirror.unwrap();
        assert_eq!(mirror.run.uploads, DEFAULT_MIRROR_UPLOADS);
        assert!(!mirror.run.deletes);
        let config = parse(&[
            "--no-auth",
            "--path",
            "/d",
            "--mirror",
            target,
            "--mirror-deletes",
            "--mirror-bwlimit",
            "1000",
            "--mirror-uploads",
            "4",
        ])
        .unwrap();
        let run = config.mirror.unwrap().run;
        assert_eq!(
            (run.uploads, run.bandwidth, run.deletes),
            (4, Some(1000), true)
        );
        // Someone who deletes on the board must not delete offsite.
        let refused = [
            vec!["--mirror", target, "--mirror-deletes", "--append-only"],
            vec!["--mirror-deletes"],
            vec!["--mirror", "s3:http://host"],
            vec!["--mirror", target, "--mirror-uploads", "0"],
        ];
        for extra in refused {
            let mut args = vec!["--no-auth", "--path", "/d"];
            args.extend(extra.iter().copied());
            assert!(parse(&args).is_err(), "{extra:?}");
        }
        assert!(parse(&["--no-auth", "--path", target, "--mirror", target]).is_err());
        assert!(
            parse(&[
                "--no-auth",
                "--path",
                "/d",
                "--mirror",
                target,
                "--s3-config",
                "/s"
            ])
            .is_ok()
        );
    }

    #[test]
    fn an_s3_path_needs_its_files_named() {
        let config = parse(&["--path", "s3:http://127.0.0.1:9000/b/p", "--no-auth"]).unwrap();
        let Storage::S3 { location, settings } = config.storage else {
            panic!("not S3: {:?}", config.storage);
        };
        assert_eq!(
            (location.bucket.as_str(), location.prefix.as_str()),
            ("b", "p")
        );
        assert_eq!(settings, None);
        // No data directory to hold .htpasswd or the TLS files.
        let s3 = "s3:http://127.0.0.1:9000/b";
        assert!(matches!(
            parse(&["--path", s3]),
            Err(CliError::NoDataDir("--htpasswd-file"))
        ));
        assert!(matches!(
            parse(&["--path", s3, "--no-auth", "--tls"]),
            Err(CliError::NoDataDir("--tls-cert"))
        ));
        assert!(parse(&["--path", s3, "--htpasswd-file", "/etc/h"]).is_ok());
        assert!(matches!(
            parse(&["--path", "s3:http://host", "--no-auth"]),
            Err(CliError::S3Location(_))
        ));
        assert!(matches!(
            parse(&["--path", "/data", "--s3-config", "/etc/s3"]),
            Err(CliError::S3ConfigWithoutS3)
        ));
    }

    #[test]
    fn chooses_the_auth_mode_like_rest_server() {
        let config = parse(&["--path", "/data"]).unwrap();
        assert_eq!(
            config.auth,
            AuthMode::Htpasswd(PathBuf::from("/data/.htpasswd"))
        );
        let config = parse(&["--htpasswd-file", "/etc/rs.htpasswd", "--private-repos"]).unwrap();
        assert_eq!(
            config.auth,
            AuthMode::Htpasswd(PathBuf::from("/etc/rs.htpasswd"))
        );
        assert!(config.private_repos);
        let config = parse(&["--proxy-auth-username", "X-Forwarded-User"]).unwrap();
        assert_eq!(
            config.auth,
            AuthMode::ProxyHeader(hyper::header::HeaderName::from_static("x-forwarded-user"))
        );
        let config = parse(&["--no-auth", "--proxy-auth-username", "X-User"]).unwrap();
        assert_eq!(config.auth, AuthMode::Off, "--no-auth overrides");
        assert!(parse(&["--proxy-auth-username", "bad header"]).is_err());
    }

    #[test]
    fn tls_settings_follow_rest_server() {
        let config = parse(&["--no-auth", "--path", "/d", "--tls"]).unwrap();
        let tls = config.tls.unwrap();
        assert_eq!(tls.cert, PathBuf::from("/d/public_key"));
        assert_eq!(tls.key, PathBuf::from("/d/private_key"));
        assert_eq!(tls.min_version, TlsVersion::V1_2);
        let config = parse(&[
            "--no-auth",
            "--tls",
            "--tls-min-ver",
            "1.3",
            "--tls-cert",
            "c",
        ])
        .unwrap();
        assert_eq!(config.tls.as_ref().unwrap().min_version, TlsVersion::V1_3);
        assert_eq!(config.tls.unwrap().cert, PathBuf::from("c"));
        assert!(parse(&["--no-auth", "--tls", "--tls-min-ver", "1.1"]).is_err());
        assert!(
            parse(&["--no-auth", "--tls-cert", "c"]).is_err(),
            "needs --tls"
        );
        assert!(parse(&["--no-auth"]).unwrap().tls.is_none());
    }

    #[test]
    fn refuses_features_of_later_versions() {
        // Go's profiler has no counterpart here.
        let err = parse(&["--no-auth", "--cpu-profile", "x"]).unwrap_err();
        assert!(
            matches!(err, CliError::Unsupported("--cpu-profile")),
            "{err}"
        );
        assert!(err.to_string().contains("not yet supported"), "{err}");
    }

    #[test]
    fn parses_listen_forms() {
        assert_eq!(
            parse_listen("127.0.0.1:0").unwrap(),
            ListenAddr::Tcp {
                host: "127.0.0.1".into(),
                port: 0
            }
        );
        assert_eq!(
            parse_listen("[::1]:8000").unwrap(),
            ListenAddr::Tcp {
                host: "::1".into(),
                port: 8000
            }
        );
        assert_eq!(
            parse_listen("unix:/run/rs.sock").unwrap(),
            ListenAddr::Unix(PathBuf::from("/run/rs.sock"))
        );
        for bad in ["8000", "host:port", "unix:", ":99999"] {
            assert!(parse_listen(bad).is_err(), "{bad}");
        }
    }
}
