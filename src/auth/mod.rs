//! Who is asking: HTTP Basic auth against the htpasswd file, or a header set
//! by an authenticating reverse proxy.
//!
//! bcrypt is slow on purpose (a large fraction of a second per check on a
//! Raspberry Pi), and restic sends hundreds of requests per backup, so:
//! - verified credentials are cached for [`CACHE_TTL`], keyed by a salted
//!   SHA-256 of user and password (never the password), compared in constant time;
//! - verification runs on its own thread pool slot, never on the event loop,
//!   and at most [`MAX_CONCURRENT_VERIFICATIONS`] at once, so that guessing
//!   cannot occupy the file I/O threads;
//! - failed attempts are throttled per client address (see [`throttle`]).

pub mod acl;
pub mod apr1;
pub mod htpasswd;
pub mod throttle;

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hyper::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use ring::digest;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use self::htpasswd::{Users, valid_username};
use self::throttle::Throttle;

/// How often the htpasswd file is checked for changes.
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(30);

/// How long verified credentials are trusted without another bcrypt check.
pub const CACHE_TTL: Duration = Duration::from_secs(60);

/// bcrypt checks running at once; more wait their turn.
pub const MAX_CONCURRENT_VERIFICATIONS: usize = 1;

/// Why a request was not authenticated. Every case is a 401 to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization` header (or no proxy header).
    Missing,
    /// Not `Basic`, not base64, no colon, or a user name we never accept.
    Malformed,
    UnknownUser,
    WrongPassword,
    /// Too many failures from this address lately; not checked at all.
    Throttled,
}

impl AuthError {
    pub fn reason(self) -> &'static str {
        match self {
            AuthError::Missing => "no credentials",
            AuthError::Malformed => "malformed credentials",
            AuthError::UnknownUser => "unknown user",
            AuthError::WrongPassword => "wrong password",
            AuthError::Throttled => "too many failed attempts from this address",
        }
    }
}

struct CacheEntry {
    key: [u8; 32],
    expires: Instant,
}

/// Checks Basic credentials against the current users.
pub struct BasicAuth {
    users: RefCell<Rc<Users>>,
    /// Random per process, so cached keys are worthless outside it.
    salt: [u8; 16],
    cache: RefCell<HashMap<String, CacheEntry>>,
    throttle: RefCell<Throttle>,
    verifications: Semaphore,
}

impl BasicAuth {
    pub fn new(users: Users) -> BasicAuth {
        let mut salt = [0u8; 16];
        // If the system RNG fails, the salt stays zero: the cache still works,
        // only without the extra protection.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt);
        BasicAuth {
            users: RefCell::new(Rc::new(users)),
            salt,
            cache: RefCell::new(HashMap::new()),
            throttle: RefCell::new(Throttle::default()),
            verifications: Semaphore::new(MAX_CONCURRENT_VERIFICATIONS),
        }
    }

    /// Swaps in a reloaded user list. Cached credentials are dropped, so a
    /// removed user or changed password takes effect at once.
    pub fn replace_users(&self, users: Users) {
        *self.users.borrow_mut() = Rc::new(users);
        self.cache.borrow_mut().clear();
    }

    pub fn user_count(&self) -> usize {
        self.users.borrow().len()
    }

    fn cache_key(&self, user: &str, password: &str) -> [u8; 32] {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(&self.salt);
        ctx.update(user.as_bytes());
        ctx.update(&[0]);
        ctx.update(password.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        key
    }

    fn cached(&self, user: &str, key: &[u8; 32]) -> bool {
        let cache = self.cache.borrow();
        cache.get(user).is_some_and(|entry| {
            entry.expires > Instant::now() && constant_time_eq(&entry.key, key)
        })
    }

    /// Returns the user name for valid credentials in `header`.
    pub async fn check(
        &self,
        header: Option<&HeaderValue>,
        peer: IpAddr,
    ) -> Result<String, AuthError> {
        let (user, password) = parse_basic(header.ok_or(AuthError::Missing)?)?;
        let key = self.cache_key(&user, &password);
        if self.cached(&user, &key) {
            return Ok(user);
        }
        if !self.throttle.borrow_mut().may_try(peer, Instant::now()) {
            return Err(AuthError::Throttled);
        }
        let hash = self.users.borrow().get(&user).cloned();
        let verified = match hash {
            None => Err(AuthError::UnknownUser),
            Some(hash) => {
                let permit = self.verifications.acquire().await;
                let ok = tokio::task::spawn_blocking(move || hash.verify(&password))
                    .await
                    .unwrap_or(false);
                drop(permit);
                if ok {
                    Ok(())
                } else {
                    Err(AuthError::WrongPassword)
                }
            }
        };
        match verified {
            Ok(()) => {
                self.cache.borrow_mut().insert(
                    user.clone(),
                    CacheEntry {
                        key,
                        expires: Instant::now() + CACHE_TTL,
                    },
                );
                Ok(user)
            }
            Err(e) => {
                self.throttle.borrow_mut().failed(peer, Instant::now());
                Err(e)
            }
        }
    }
}

/// Compares two secrets in time that depends only on their length.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// `Basic base64(user:password)` → (user, password).
fn parse_basic(header: &HeaderValue) -> Result<(String, String), AuthError> {
    let text = header.to_str().map_err(|_| AuthError::Malformed)?;
    let (scheme, encoded) = text.trim().split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(AuthError::Malformed);
    }
    let decoded = BASE64
        .decode(encoded.trim())
        .map_err(|_| AuthError::Malformed)?;
    let decoded = String::from_utf8(decoded).map_err(|_| AuthError::Malformed)?;
    let (user, password) = decoded.split_once(':').ok_or(AuthError::Malformed)?;
    if !valid_username(user) {
        return Err(AuthError::Malformed);
    }
    Ok((user.to_string(), password.to_string()))
}

/// The user named by a trusted reverse proxy's header.
pub fn proxy_user(header: Option<&HeaderValue>) -> Result<String, AuthError> {
    let name = header
        .ok_or(AuthError::Missing)?
        .to_str()
        .map_err(|_| AuthError::Malformed)?
        .trim();
    if !valid_username(name) {
        return Err(AuthError::Malformed);
    }
    Ok(name.to_string())
}

/// The server's authentication, as configured.
pub enum Auth {
    /// `--no-auth`.
    Off,
    Basic {
        file: PathBuf,
        checker: BasicAuth,
    },
    /// `--proxy-auth-username`: the header's value is the user.
    Proxy(HeaderName),
}

impl Auth {
    /// Users loaded from the htpasswd file (0 for the other modes).
    pub fn user_count(&self) -> usize {
        match self {
            Auth::Basic { checker, .. } => checker.user_count(),
            _ => 0,
        }
    }

    /// The user a request comes from (None with `--no-auth`).
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<Option<String>, AuthError> {
        match self {
            Auth::Off => Ok(None),
            Auth::Proxy(header) => proxy_user(headers.get(header)).map(Some),
            Auth::Basic { checker, .. } => {
                // Unix-socket clients share one throttle bucket.
                let peer = peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
                checker
                    .check(headers.get(AUTHORIZATION), peer)
                    .await
                    .map(Some)
            }
        }
    }
}

/// A file's identity and version, to notice that it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl FileStamp {
    pub fn of(path: &Path) -> io::Result<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path)?;
        Ok(FileStamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode: meta.ino(),
        })
    }
}

/// Reads and parses a watched file: its content and warnings about bad lines.
pub type LoadFn<T> = fn(&Path) -> io::Result<(T, Vec<String>)>;

/// A file the server reloads while it runs (htpasswd, ACL).
pub struct Watched<T> {
    /// For log lines: "htpasswd", "acl".
    pub what: &'static str,
    /// For log lines: "user(s)", "rule(s)".
    pub unit: &'static str,
    pub path: PathBuf,
    /// Reads and parses the file; warnings name the bad lines.
    pub load: LoadFn<T>,
    /// How many entries a loaded version holds, for the log.
    pub count: fn(&T) -> usize,
}

impl<T: Send + 'static> Watched<T> {
    /// Loads the file now (startup), logging its warnings.
    pub async fn load_now(&self) -> io::Result<(T, FileStamp)> {
        let (path, load) = (self.path.clone(), self.load);
        let (value, warnings, stamp) = tokio::task::spawn_blocking(move || {
            let stamp = FileStamp::of(&path)?;
            let (value, warnings) = load(&path)?;
            Ok::<_, io::Error>((value, warnings, stamp))
        })
        .await
        .map_err(|e| io::Error::other(e.to_string()))??;
        for warning in &warnings {
            log::warn!("{} {}: {warning}", self.what, self.path.display());
        }
        let count = (self.count)(&value);
        log::info!(
            "{} {}: loaded {count} {}",
            self.what,
            self.path.display(),
            self.unit
        );
        Ok((value, stamp))
    }

    /// Reloads the file when it changes (checked every
    /// [`RELOAD_CHECK_INTERVAL`]) and whenever `reload_now` fires (SIGHUP),
    /// handing each new version to `apply`. A reload that fails keeps what
    /// was loaded (`loaded` counts it for the log) and logs why.
    pub async fn watch(
        self,
        mut stamp: FileStamp,
        reload_now: Rc<tokio::sync::Notify>,
        apply: impl Fn(T),
        loaded: impl Fn() -> usize,
    ) {
        let shown = self.path.display().to_string();
        loop {
            let forced = tokio::select! {
                _ = tokio::time::sleep(RELOAD_CHECK_INTERVAL) => false,
                _ = reload_now.notified() => true,
            };
            let path = self.path.clone();
            let changed = tokio::task::spawn_blocking(move || FileStamp::of(&path))
                .await
                .map_err(|e| io::Error::other(e.to_string()))
                .and_then(|r| r);
            let result = match changed {
                Ok(now) if now == stamp && !forced => continue,
                Ok(_) => self.load_now().await,
                Err(e) => Err(e),
            };
            match result {
                Ok((value, new_stamp)) => {
                    stamp = new_stamp;
                    apply(value);
                }
                Err(e) => log::error!(
                    "{} {shown}: reload failed ({e}); keeping the {} {} loaded",
                    self.what,
                    loaded(),
                    self.unit
                ),
            }
        }
    }
}

/// [`Watched::load`] for the htpasswd file.
pub fn load_htpasswd(path: &Path) -> io::Result<(Users, Vec<String>)> {
    let text = std::fs::read_to_string(path)?;
    let (users, warnings) = Users::parse(&text);
    Ok((users, warnings.iter().map(ToString::to_string).collect()))
}

/// [`Watched::load`] for the ACL file.
pub fn load_acl(path: &Path) -> io::Result<(acl::Acl, Vec<String>)> {
    let text = std::fs::read_to_string(path)?;
    Ok(acl::Acl::parse(&text))
}

/// The `--acl` rules, swapped on reload.
pub struct AclRules {
    pub rules: RefCell<acl::Acl>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn header(user: &str, password: &str) -> HeaderValue {
        let encoded = BASE64.encode(format!("{user}:{password}"));
        HeaderValue::try_from(format!("Basic {encoded}")).unwrap()
    }

    fn auth() -> BasicAuth {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let (users, _) = Users::parse(&format!("alice:{hash}\n"));
        BasicAuth::new(users)
    }

    const PEER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[tokio::test(flavor = "current_thread")]
    async fn accepts_caches_and_refuses() {
        let auth = auth();
        assert_eq!(
            auth.check(Some(&header("alice", "secret")), PEER).await,
            Ok("alice".into())
        );
        // Cached now; a wrong password is still refused.
        assert_eq!(
            auth.check(Some(&header("alice", "secret")), PEER).await,
            Ok("alice".into())
        );
        assert_eq!(
            auth.check(Some(&header("alice", "guess")), PEER).await,
            Err(AuthError::WrongPassword)
        );
        assert_eq!(
            auth.check(Some(&header("mallory", "secret")), PEER).await,
            Err(AuthError::UnknownUser)
        );
        assert_eq!(auth.check(None, PEER).await, Err(AuthError::Missing));
        let bearer = HeaderValue::from_static("Bearer abc");
        assert_eq!(
            auth.check(Some(&bearer), PEER).await,
            Err(AuthError::Malformed)
        );
        let slash = header("../alice", "secret");
        assert_eq!(
            auth.check(Some(&slash), PEER).await,
            Err(AuthError::Malformed)
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn reload_drops_cached_credentials() {
        let auth = auth();
        assert!(
            auth.check(Some(&header("alice", "secret")), PEER)
                .await
                .is_ok()
        );
        auth.replace_users(Users::default());
        assert_eq!(
            auth.check(Some(&header("alice", "secret")), PEER).await,
            Err(AuthError::UnknownUser)
        );
    }

    #[test]
    fn proxy_header_names_a_plain_user() {
        assert_eq!(
            proxy_user(Some(&HeaderValue::from_static("bob"))),
            Ok("bob".into())
        );
        assert_eq!(
            proxy_user(Some(&HeaderValue::from_static("../bob"))),
            Err(AuthError::Malformed)
        );
        assert_eq!(proxy_user(None), Err(AuthError::Missing));
    }
}
