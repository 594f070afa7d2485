//! Where and how to reach an S3 store: the location (`--path s3:…`, written
//! as restic writes it), the optional settings file (`--s3-config`, rclone's
//! option names) and the credentials chain AWS's tools use.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::sign::Credentials;
use crate::client::Endpoint;
use crate::config::S3Location;

/// ListObjectsV2 page size when none is set (the S3 maximum).
pub(crate) const DEFAULT_LIST_CHUNK: u32 = 1000;
/// Multipart part size when none is set; S3's smallest is 5 MiB.
pub(crate) const DEFAULT_CHUNK_BYTES: u64 = 8 << 20;
const MIN_CHUNK_BYTES: u64 = 5 << 20;
const MAX_CHUNK_BYTES: u64 = 64 << 20;
/// The largest single PUT S3 takes; also the default cutoff.
pub(crate) const MAX_SINGLE_PUT_BYTES: u64 = 5 << 30;

/// The providers rclone documents that are presets here: each decides the
/// default addressing and region handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Provider {
    Aws,
    Alibaba,
    Ceph,
    DigitalOcean,
    Garage,
    IbmCos,
    Minio,
    Scaleway,
    TencentCos,
    Wasabi,
    Other,
}

impl Provider {
    fn parse(name: &str) -> Option<Provider> {
        let provider = match name.to_ascii_lowercase().as_str() {
            "aws" => Provider::Aws,
            "alibaba" => Provider::Alibaba,
            "ceph" => Provider::Ceph,
            "digitalocean" => Provider::DigitalOcean,
            "garage" => Provider::Garage,
            "ibmcos" => Provider::IbmCos,
            "minio" => Provider::Minio,
            "scaleway" => Provider::Scaleway,
            "tencentcos" => Provider::TencentCos,
            "wasabi" => Provider::Wasabi,
            "other" | "seaweedfs" => Provider::Other,
            _ => return None,
        };
        Some(provider)
    }

    /// The region requests are signed for when none is set: Garage checks
    /// it against its own `s3_region`, `garage` unless configured.
    fn default_region(self) -> &'static str {
        match self {
            Provider::Garage => "garage",
            _ => "us-east-1",
        }
    }

    /// Path-style addressing unless the provider serves buckets only (or by
    /// preference) as virtual hosts: AWS, Alibaba OSS and Tencent COS.
    fn path_style(self) -> bool {
        !matches!(
            self,
            Provider::Aws | Provider::Alibaba | Provider::TencentCos
        )
    }
}

/// Server-side encryption of stored objects.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Encryption {
    /// `AES256`: keys managed by the store.
    Aes256,
    /// `aws:kms`, with a key id or the account's default key.
    Kms(Option<String>),
    /// SSE-C: the 32-byte key, sent (with its MD5) on every read and write.
    Customer([u8; 32]),
}

impl fmt::Debug for Encryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Encryption::Aes256 => f.write_str("AES256"),
            Encryption::Kms(key) => write!(f, "aws:kms({key:?})"),
            Encryption::Customer(_) => f.write_str("SSE-C(<hidden>)"),
        }
    }
}

/// Everything the S3 store needs to know.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) endpoint: Endpoint,
    pub(crate) bucket: String,
    /// Key prefix of everything stored, without slashes at either end.
    pub(crate) prefix: String,
    pub(crate) region: String,
    pub(crate) path_style: bool,
    /// None: anonymous requests (reading a public bucket).
    pub(crate) credentials: Option<Credentials>,
    /// Where the credentials came from, for the log.
    pub(crate) credentials_from: &'static str,
    /// Storage class of data packs; the rest stays in the bucket's default.
    pub(crate) storage_class: Option<String>,
    pub(crate) encryption: Option<Encryption>,
    pub(crate) acl: Option<String>,
    pub(crate) location_constraint: Option<String>,
    pub(crate) no_check_bucket: bool,
    /// CA certificates for an https endpoint; None: the system's.
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) list_chunk: u32,
    /// Multipart part size (`chunk_size`).
    pub(crate) chunk_bytes: u64,
    /// Bodies above this go up as multipart uploads (`upload_cutoff`).
    pub(crate) upload_cutoff: u64,
    /// Object Lock on every object written (the mirror's
    /// `--mirror-lock-days`; never from the settings file).
    pub(crate) lock: Option<crate::config::ObjectLock>,
}

/// A setting that cannot be used, with what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SettingsError(pub(crate) String);

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SettingsError {}

fn bad(message: impl Into<String>) -> SettingsError {
    SettingsError(message.into())
}

/// The `s3:` location of `--path`, as restic writes it:
/// `s3:https://host[:port]/bucket[/prefix]`, or without a scheme for https.
pub(crate) fn is_location(path: &str) -> bool {
    path.starts_with("s3:")
}

pub(crate) fn parse_location(text: &str) -> Result<S3Location, SettingsError> {
    let rest = text
        .strip_prefix("s3:")
        .ok_or_else(|| bad("an S3 location starts with s3:"))?;
    let (https, rest) = if let Some(r) = rest.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = rest.strip_prefix("http://") {
        (false, r)
    } else if rest.starts_with("//") || rest.contains("://") {
        return Err(bad(format!(
            "{text}: write s3:https://host/bucket or s3:http://host:port/bucket"
        )));
    } else {
        (true, rest)
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = split_host_port(authority, if https { 443 } else { 80 })
        .ok_or_else(|| bad(format!("{text}: bad host or port {authority:?}")))?;
    let path = path.trim_matches('/');
    let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
    if bucket.is_empty() {
        return Err(bad(format!("{text}: no bucket (s3:https://host/bucket)")));
    }
    if prefix
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
        && !prefix.is_empty()
    {
        return Err(bad(format!(
            "{text}: the prefix has an empty, . or .. segment"
        )));
    }
    Ok(S3Location {
        https,
        host,
        port,
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
    })
}

fn split_host_port(authority: &str, default: u16) -> Option<(String, u16)> {
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => Some((host.to_string(), port.parse().ok()?)),
        Some(_) => None,
        None => Some((authority.to_string(), default)),
    }
}

/// A settings file: `name = value` lines, `#` or `;` comments; a `[section]`
/// line is allowed (and ignored) so that an rclone remote can be pasted in.
pub(crate) fn parse_file(text: &str) -> Result<BTreeMap<String, String>, SettingsError> {
    let mut values = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty()
            || line.starts_with('#')
            || line.starts_with(';')
            || line.starts_with('[')
        {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err(bad(format!("line {}: expected name = value", n + 1)));
        };
        let name = name.trim().to_ascii_lowercase();
        if !KNOWN.contains(&name.as_str()) {
            return Err(bad(format!("line {}: unknown setting {name:?}", n + 1)));
        }
        values.insert(name, value.trim().to_string());
    }
    Ok(values)
}

/// The settings a file may hold (rclone's names where rclone has one).
const KNOWN: &[&str] = &[
    "type",
    "provider",
    "env_auth",
    "access_key_id",
    "secret_access_key",
    "session_token",
    "region",
    "location_constraint",
    "force_path_style",
    "storage_class",
    "server_side_encryption",
    "sse_kms_key_id",
    "sse_customer_algorithm",
    "sse_customer_key",
    "sse_customer_key_base64",
    "acl",
    "no_check_bucket",
    "ca_file",
    "list_chunk",
    "chunk_size",
    "upload_cutoff",
    "profile",
    "shared_credentials_file",
];

/// What the credentials chain reads from outside the settings file.
pub(crate) trait Environment {
    fn var(&self, name: &str) -> Option<String>;
    /// A file's text and its permission bits.
    fn read(&self, path: &Path) -> Option<(String, u32)>;
}

/// The process's environment and files.
pub(crate) struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }

    fn read(&self, path: &Path) -> Option<(String, u32)> {
        use std::os::unix::fs::MetadataExt as _;
        // Two calls on the path, as the --s3-config file is read: the same
        // code, and a mode changed between them is the user's own doing.
        let text = std::fs::read_to_string(path).ok()?;
        Some((text, std::fs::metadata(path).ok()?.mode()))
    }
}

/// Refuses a file holding a secret that others than its owner may read:
/// it would give the bucket away. The same rule for the `--s3-config` file
/// and the shared credentials file.
pub(crate) fn private(path: &Path, mode: u32) -> Result<(), SettingsError> {
    if mode & 0o077 == 0 {
        return Ok(());
    }
    Err(bad(format!(
        "{} holds a secret but others may read it (mode {:o}): chmod 600 it",
        path.display(),
        mode & 0o777
    )))
}

/// The settings of `location`: the settings file if any, then the
/// environment. A settings file others may read is refused when it holds a
/// secret: it would give the bucket away.
pub(crate) fn load(location: &S3Location, file: Option<&Path>) -> Result<Settings, SettingsError> {
    use std::os::unix::fs::MetadataExt as _;
    let values = match file {
        None => Default::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
            let values = parse_file(&text).map_err(|e| bad(format!("{}: {e}", path.display())))?;
            let secret = [
                "secret_access_key",
                "session_token",
                "sse_customer_key",
                "sse_customer_key_base64",
            ]
            .iter()
            .any(|name| values.contains_key(*name));
            if secret {
                let mode = std::fs::metadata(path).map(|m| m.mode()).unwrap_or(0);
                private(path, mode)?;
            }
            values
        }
    };
    resolve(location.clone(), &values, &ProcessEnvironment)
}

/// Builds the settings from the location and the file's values.
pub(crate) fn resolve(
    location: S3Location,
    file: &BTreeMap<String, String>,
    env: &dyn Environment,
) -> Result<Settings, SettingsError> {
    let get = |name: &str| file.get(name).map(String::as_str).filter(|v| !v.is_empty());
    let flag = |name: &str| -> Result<Option<bool>, SettingsError> {
        match get(name) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(bad(format!("{name} = {other}: write true or false"))),
        }
    };
    let provider = match get("provider") {
        None => Provider::Other,
        Some(name) => Provider::parse(name).ok_or_else(|| {
            bad(format!(
                "provider = {name}: one of AWS, Alibaba, Ceph, DigitalOcean, Garage, IBMCOS, \
                 Minio, Scaleway, TencentCOS, Wasabi, Other"
            ))
        })?,
    };
    let region = get("region")
        .map(str::to_string)
        .or_else(|| env.var("AWS_REGION"))
        .or_else(|| env.var("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| provider.default_region().to_string());
    let location_constraint = match get("location_constraint") {
        Some(c) => Some(c.to_string()),
        // AWS creates a bucket outside us-east-1 only when told where.
        None if provider == Provider::Aws && region != "us-east-1" => Some(region.clone()),
        None => None,
    };
    let (credentials, credentials_from) = credentials(file, env)?;
    let encryption = encryption(file)?;
    let list_chunk = match get("list_chunk") {
        None => DEFAULT_LIST_CHUNK,
        Some(n) => n
            .parse()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| bad(format!("list_chunk = {n}: a number from 1 to 1000")))?,
    };
    if matches!(encryption, Some(Encryption::Customer(_))) && !location.https {
        return Err(bad(
            "an SSE-C key is sent with every request: it needs an https endpoint",
        ));
    }
    // Values that go into headers: refused here, not as odd requests later.
    for name in ["storage_class", "acl", "sse_kms_key_id", "region"] {
        if let Some(value) = get(name)
            && !value.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(bad(format!(
                "{name} = {value:?}: printable ASCII, no spaces"
            )));
        }
    }
    let path_style = flag("force_path_style")?.unwrap_or(provider.path_style());
    let dns_safe = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    if !path_style && !location.bucket.chars().all(dns_safe) {
        return Err(bad(format!(
            "bucket {:?} cannot be a host name: set force_path_style = true",
            location.bucket
        )));
    }
    let size = |name: &str, default: u64, range: std::ops::RangeInclusive<u64>| match get(name) {
        None => Ok(default),
        Some(text) => parse_size(text)
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                bad(format!(
                    "{name} = {text}: a size from {} to {} bytes (suffixes K, M, G)",
                    range.start(),
                    range.end()
                ))
            }),
    };
    let chunk_bytes = size(
        "chunk_size",
        DEFAULT_CHUNK_BYTES,
        MIN_CHUNK_BYTES..=MAX_CHUNK_BYTES,
    )?;
    let upload_cutoff = size(
        "upload_cutoff",
        MAX_SINGLE_PUT_BYTES,
        0..=MAX_SINGLE_PUT_BYTES,
    )?;
    Ok(Settings {
        endpoint: Endpoint {
            https: location.https,
            host: location.host,
            port: location.port,
        },
        bucket: location.bucket,
        prefix: location.prefix,
        region,
        path_style,
        credentials,
        credentials_from,
        storage_class: get("storage_class").map(str::to_string),
        encryption,
        acl: get("acl").map(str::to_string),
        location_constraint,
        no_check_bucket: flag("no_check_bucket")?.unwrap_or(false),
        ca_file: get("ca_file").map(PathBuf::from),
        list_chunk,
        chunk_bytes,
        upload_cutoff,
        lock: None,
    })
}

/// `123`, `64K`, `8M`, `5G` (binary units, as rclone reads them).
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, ""),
    };
    let shift = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches(['B', 'I'])
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// The credentials chain: the settings file; the environment; the shared
/// credentials file; else anonymous.
fn credentials(
    file: &BTreeMap<String, String>,
    env: &dyn Environment,
) -> Result<(Option<Credentials>, &'static str), SettingsError> {
    let get = |name: &str| file.get(name).filter(|v| !v.is_empty()).cloned();
    match (get("access_key_id"), get("secret_access_key")) {
        (Some(access_key), Some(secret_key)) => {
            let session_token = get("session_token");
            return Ok((
                Some(Credentials {
                    access_key,
                    secret_key,
                    session_token,
                }),
                "the settings file",
            ));
        }
        (None, None) => {}
        _ => {
            return Err(bad(
                "access_key_id and secret_access_key go together in the settings file",
            ));
        }
    }
    let secret = env
        .var("AWS_SECRET_ACCESS_KEY")
        .or_else(|| env.var("AWS_SECRET_KEY"));
    if let (Some(access_key), Some(secret_key)) = (env.var("AWS_ACCESS_KEY_ID"), secret) {
        let session_token = env.var("AWS_SESSION_TOKEN");
        return Ok((
            Some(Credentials {
                access_key,
                secret_key,
                session_token,
            }),
            "the environment",
        ));
    }
    let path = get("shared_credentials_file")
        .or_else(|| env.var("AWS_SHARED_CREDENTIALS_FILE"))
        .map(PathBuf::from)
        .or_else(|| {
            env.var("HOME")
                .map(|h| Path::new(&h).join(".aws/credentials"))
        });
    let profile = get("profile")
        .or_else(|| env.var("AWS_PROFILE"))
        .unwrap_or_else(|| "default".to_string());
    if let Some(path) = path
        && let Some((text, mode)) = env.read(&path)
        && let Some(found) = shared_file_profile(&text, &profile)
    {
        private(&path, mode)?;
        return Ok((Some(found), "the shared credentials file"));
    }
    Ok((None, "nowhere (anonymous requests)"))
}

/// The credentials of `[profile]` in an AWS shared credentials file.
fn shared_file_profile(text: &str, profile: &str) -> Option<Credentials> {
    let mut in_profile = false;
    let (mut access_key, mut secret_key, mut session_token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = name.trim() == profile;
            continue;
        }
        if !in_profile || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some((name, value)) = line.split_once('=') {
            let value = Some(value.trim().to_string()).filter(|v| !v.is_empty());
            match name.trim() {
                "aws_access_key_id" => access_key = value,
                "aws_secret_access_key" => secret_key = value,
                "aws_session_token" => session_token = value,
                _ => {}
            }
        }
    }
    Some(Credentials {
        access_key: access_key?,
        secret_key: secret_key?,
        session_token,
    })
}

fn encryption(file: &BTreeMap<String, String>) -> Result<Option<Encryption>, SettingsError> {
    use base64::Engine as _;
    let get = |name: &str| file.get(name).map(String::as_str).filter(|v| !v.is_empty());
    let customer = match (get("sse_customer_key"), get("sse_customer_key_base64")) {
        (Some(_), Some(_)) => {
            return Err(bad(
                "set sse_customer_key or sse_customer_key_base64, not both",
            ));
        }
        (Some(raw), None) => Some(raw.as_bytes().to_vec()),
        (None, Some(encoded)) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|_| bad("sse_customer_key_base64 is not base64"))?,
        ),
        (None, None) => None,
    };
    if let Some(key) = customer {
        if get("sse_customer_algorithm").is_some_and(|a| a != "AES256") {
            return Err(bad("sse_customer_algorithm: only AES256 exists"));
        }
        let key: [u8; 32] = key
            .try_into()
            .map_err(|_| bad("the SSE-C key must be 32 bytes"))?;
        if get("server_side_encryption").is_some() {
            return Err(bad(
                "server_side_encryption and an SSE-C key exclude each other",
            ));
        }
        return Ok(Some(Encryption::Customer(key)));
    }
    match get("server_side_encryption") {
        None => Ok(None),
        Some("AES256") => Ok(Some(Encryption::Aes256)),
        Some("aws:kms") => Ok(Some(Encryption::Kms(
            get("sse_kms_key_id").map(str::to_string),
        ))),
        Some(other) => Err(bad(format!(
            "server_side_encryption = {other}: AES256 or aws:kms"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct FakeEnv {
        vars: HashMap<&'static str, &'static str>,
        files: HashMap<PathBuf, &'static str>,
        /// Modes of files; 0o600 when not given.
        modes: HashMap<PathBuf, u32>,
    }

    impl Environment for FakeEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.vars.get(name).map(|v| v.to_string())
        }
        fn read(&self, path: &Path) -> Option<(String, u32)> {
            let mode = self.modes.get(path).copied().unwrap_or(0o100600);
            self.files.get(path).map(|v| (v.to_string(), mode))
        }
    }

    fn location() -> S3Location {
        parse_location("s3:http://127.0.0.1:8333/bucket/some/prefix").unwrap()
    }

    fn settings(file: &str, env: &FakeEnv) -> Result<Settings, SettingsError> {
        resolve(location(), &parse_file(file)?, env)
    }

    #[test]
    fn reads_locations_as_restic_writes_them() {
        let l = location();
        assert_eq!(
            (l.https, l.host.as_str(), l.port),
            (false, "127.0.0.1", 8333)
        );
        assert_eq!(
            (l.bucket.as_str(), l.prefix.as_str()),
            ("bucket", "some/prefix")
        );
        let aws = parse_location("s3:s3.amazonaws.com/b").unwrap();
        assert_eq!((aws.https, aws.port, aws.prefix.as_str()), (true, 443, ""));
        let v6 = parse_location("s3:http://[::1]:9000/b/").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 9000));
        for bad in [
            "s3:http://host",
            "s3:http://host/",
            "s3://bucket/x",
            "s3:ftp://host/b",
            "s3:http://host:x/b",
            "s3:http://u:p@host/b",
            "s3:http://host/b/../x",
            "s3:http://host/b/x//y",
        ] {
            assert!(parse_location(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_credentials_chain_goes_file_env_shared_anonymous() {
        let mut env = FakeEnv::default();
        env.vars.insert("HOME", "/home/u");
        env.files.insert(
            "/home/u/.aws/credentials".into(),
            "[default]\naws_access_key_id = D\naws_secret_access_key = DS\n\
             [other]\naws_access_key_id=O\naws_secret_access_key=OS\naws_session_token=OT\n",
        );
        let s = settings("", &env).unwrap();
        assert_eq!(s.credentials.unwrap().access_key, "D");
        assert_eq!(s.credentials_from, "the shared credentials file");

        env.vars.insert("AWS_PROFILE", "other");
        let c = settings("", &env).unwrap().credentials.unwrap();
        assert_eq!(
            (c.access_key.as_str(), c.session_token.as_deref()),
            ("O", Some("OT"))
        );

        env.vars.insert("AWS_ACCESS_KEY_ID", "E");
        env.vars.insert("AWS_SECRET_KEY", "ES");
        let s = settings("", &env).unwrap();
        assert_eq!(s.credentials.unwrap().secret_key, "ES");
        assert_eq!(s.credentials_from, "the environment");

        let s = settings("access_key_id = F\nsecret_access_key = FS\n", &env).unwrap();
        assert_eq!(s.credentials.unwrap().access_key, "F");
        assert!(settings("access_key_id = F\n", &env).is_err());

        let s = settings("", &FakeEnv::default()).unwrap();
        assert!(s.credentials.is_none());
    }

    #[test]
    fn a_shared_credentials_file_others_may_read_is_refused() {
        let mut env = FakeEnv::default();
        env.vars.insert("HOME", "/home/u");
        env.files.insert(
            "/home/u/.aws/credentials".into(),
            "[default]\naws_access_key_id = D\naws_secret_access_key = DS\n",
        );
        env.modes
            .insert("/home/u/.aws/credentials".into(), 0o100640);
        let refused = settings("", &env).unwrap_err().0;
        assert!(
            refused.contains("chmod 600") && !refused.contains("DS"),
            "{refused}"
        );
        env.modes
            .insert("/home/u/.aws/credentials".into(), 0o100600);
        assert!(settings("", &env).unwrap().credentials.is_some());
    }

    #[test]
    fn providers_set_addressing_and_region_defaults() {
        let env = FakeEnv::default();
        let s = settings("provider = Minio\n", &env).unwrap();
        assert!(s.path_style);
        assert_eq!(s.region, "us-east-1");
        let s = settings(
            "[remote]\ntype = s3\nprovider = AWS\nregion = eu-west-1\n",
            &env,
        )
        .unwrap();
        assert!(!s.path_style);
        assert_eq!(s.location_constraint.as_deref(), Some("eu-west-1"));
        let s = settings("provider = AWS\nforce_path_style = true\n", &env).unwrap();
        assert!(s.path_style);
        // Garage's default region is `garage`; a region set wins.
        let s = settings("provider = Garage\n", &env).unwrap();
        assert_eq!((s.region.as_str(), s.path_style), ("garage", true));
        assert_eq!(s.location_constraint, None);
        let s = settings("provider = Garage\nregion = home\n", &env).unwrap();
        assert_eq!(s.region, "home");
        assert!(settings("provider = Nope\n", &env).is_err());
        assert!(settings("force_path_style = yes\n", &env).is_err());
        assert!(settings("colour = blue\n", &env).is_err());
        assert!(settings("list_chunk = 0\n", &env).is_err());
        let s = settings("chunk_size = 16M\nupload_cutoff = 200Mi\n", &env).unwrap();
        assert_eq!((s.chunk_bytes, s.upload_cutoff), (16 << 20, 200 << 20));
        assert!(settings("chunk_size = 1M\n", &env).is_err());
        assert!(settings("upload_cutoff = 6G\n", &env).is_err());
        assert_eq!(parse_size("5"), Some(5));
        assert_eq!(parse_size("64k"), Some(64 << 10));
        assert_eq!(parse_size("8 MiB"), Some(8 << 20));
        assert_eq!(parse_size("x"), None);
    }

    #[test]
    fn encryption_settings_are_checked() {
        let env = FakeEnv::default();
        let s = settings(
            "server_side_encryption = aws:kms\nsse_kms_key_id = k1\n",
            &env,
        )
        .unwrap();
        assert_eq!(s.encryption, Some(Encryption::Kms(Some("k1".into()))));
        let key = "k".repeat(32);
        let https = parse_location("s3:https://host/b").unwrap();
        let file = parse_file(&format!("sse_customer_key = {key}\n")).unwrap();
        let s = resolve(https.clone(), &file, &env).unwrap();
        assert_eq!(s.encryption, Some(Encryption::Customer([b'k'; 32])));
        assert!(!format!("{s:?}").contains(&key));
        // The key would cross the network in clear text.
        assert!(settings(&format!("sse_customer_key = {key}\n"), &env).is_err());
        let short = parse_file("sse_customer_key = short\n").unwrap();
        assert!(resolve(https, &short, &env).is_err());
        assert!(settings("storage_class = STANDARD IA\n", &env).is_err());
        assert!(settings("server_side_encryption = rot13\n", &env).is_err());
    }
}
