//! Who is asking: HTTP Basic auth against the htpasswd file, or a header set
//! by an authenticating reverse proxy.
//!
//! bcrypt is slow on purpose (a large fraction of a second per check on a
//! Raspberry Pi), and restic sends hundreds of requests per backup, so:
//! - verified credentials are cached for [`CACHE_TTL`], keyed by a salted
//!   SHA-256 of user and password (never the password), compared in constant time;
//! - verification runs on the compute pool, never on the event loop nor on
//!   the file I/O threads, and at most [`MAX_CONCURRENT_VERIFICATIONS`] at
//!   once, so that guessing cannot hold up the hashing of uploads;
//! - failed attempts are throttled per client address (see [`throttle`]).

pub(crate) mod acl;
mod apr1;
mod compare;
pub(crate) mod htpasswd;
pub(crate) mod policy;
pub(crate) mod refused;
mod throttle;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hyper::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use ring::digest;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use self::compare::constant_time_eq;
use self::htpasswd::{Users, valid_username};
use self::throttle::Throttle;
use crate::runtime::pool::ComputePool;
use crate::runtime::reload::Watched;

/// How long verified credentials are trusted without another bcrypt check.
pub(crate) const CACHE_TTL: Duration = Duration::from_secs(60);

/// bcrypt checks running at once; more wait their turn.
pub(crate) const MAX_CONCURRENT_VERIFICATIONS: usize = 1;

/// bcrypt checks waiting their turn at most; more are refused as throttled.
/// Each address can queue only its bucket's worth, so this bounds the queue
/// when many addresses guess at once.
pub(crate) const MAX_QUEUED_VERIFICATIONS: usize = 32;

/// Why a request was not authenticated. Every case is a 401 to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthError {
    /// No `Authorization` header (or no proxy header).
    Missing,
    /// Not `Basic`, not base64, no colon, or a user name we never accept.
    Malformed,
    UnknownUser,
    WrongPassword,
    /// Too many failures from this address lately; not checked at all.
    Throttled,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for AuthError {}

impl AuthError {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            AuthError::Missing => "no credentials",
            AuthError::Malformed => "malformed credentials",
            AuthError::UnknownUser => "unknown user",
            AuthError::WrongPassword => "wrong password",
            AuthError::Throttled => "too many failed attempts from this address",
        }
    }
}

/// A user's last verified credentials, kept until the user list is reloaded;
/// trusted without a check until `expires`.
struct CacheEntry {
    key: [u8; 32],
    expires: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cached {
    /// Verified less than [`CACHE_TTL`] ago: no check.
    Fresh,
    /// Verified earlier: checked again, but never throttled.
    Known,
    No,
}

/// Checks Basic credentials against the current users.
pub(crate) struct BasicAuth {
    users: Rc<Watched<Users>>,
    /// The version of `users` the cache was filled from.
    cache_version: Cell<u64>,
    /// Random per process, so cached keys are worthless outside it.
    salt: [u8; 16],
    cache: RefCell<HashMap<String, CacheEntry>>,
    throttle: RefCell<Throttle>,
    verifications: Semaphore,
    /// Checks waiting for [`Self::verifications`].
    verifications_waiting: Cell<usize>,
    compute: ComputePool,
}

impl BasicAuth {
    pub(crate) fn new(users: Rc<Watched<Users>>, compute: ComputePool) -> BasicAuth {
        let mut salt = [0u8; 16];
        // If the system RNG fails, the salt stays zero: the cache still works,
        // only without the extra protection.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt);
        BasicAuth {
            cache_version: Cell::new(users.version()),
            users,
            salt,
            cache: RefCell::new(HashMap::new()),
            throttle: RefCell::new(Throttle::default()),
            verifications: Semaphore::new(MAX_CONCURRENT_VERIFICATIONS),
            verifications_waiting: Cell::new(0),
            compute,
        }
    }

    /// Drops cached credentials when the user list was reloaded, so that a
    /// removed user or changed password takes effect at once.
    fn forget_if_reloaded(&self) {
        let version = self.users.version();
        if self.cache_version.get() != version {
            self.cache.borrow_mut().clear();
            self.cache_version.set(version);
        }
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

    /// How `user`'s credentials stand in the cache.
    fn cached(&self, user: &str, key: &[u8; 32]) -> Cached {
        let cache = self.cache.borrow();
        match cache.get(user) {
            Some(entry) if constant_time_eq(&entry.key, key) => {
                if entry.expires > Instant::now() {
                    Cached::Fresh
                } else {
                    Cached::Known
                }
            }
            _ => Cached::No,
        }
    }

    /// Returns the user name for valid credentials in `header`.
    async fn check(&self, header: Option<&HeaderValue>, peer: IpAddr) -> Result<String, AuthError> {
        let (user, password) = parse_basic(header.ok_or(AuthError::Missing)?)?;
        self.forget_if_reloaded();
        let key = self.cache_key(&user, &password);
        let cached = self.cached(&user, &key);
        if cached == Cached::Fresh {
            return Ok(user);
        }
        // SECURITY: credentials verified before (since the file last
        // changed) are checked again but not throttled, so that guessing from
        // a shared address (a NAT) cannot lock out a known user. Others take
        // a throttle token before they are queued for bcrypt, so concurrent
        // guesses cannot queue more checks than the bucket allows.
        let throttled = cached == Cached::No;
        if throttled && !self.throttle.borrow_mut().take(peer, Instant::now()) {
            return Err(AuthError::Throttled);
        }
        if throttled && self.verifications_waiting.get() >= MAX_QUEUED_VERIFICATIONS {
            return Err(AuthError::Throttled);
        }
        let users = self.users.get();
        // SECURITY: an unknown user's password is checked against some
        // user's hash and the answer thrown away, so that unknown users and
        // wrong passwords take the same time and names cannot be probed.
        let (hash, known) = match users.get(&user) {
            Some(hash) => (Some(hash.clone()), true),
            None => (users.any().cloned(), false),
        };
        drop(users);
        let matched = match hash {
            None => false,
            Some(hash) => {
                let waiting = Waiting::new(&self.verifications_waiting);
                let permit = self.verifications.acquire().await;
                drop(waiting);
                let ok = self
                    .compute
                    .run(move || hash.verify(&password))
                    .await
                    .unwrap_or(false);
                drop(permit);
                ok
            }
        };
        match (known, matched) {
            (true, true) => {
                if throttled {
                    self.throttle.borrow_mut().succeeded(peer, Instant::now());
                }
                self.cache.borrow_mut().insert(
                    user.clone(),
                    CacheEntry {
                        key,
                        expires: Instant::now() + CACHE_TTL,
                    },
                );
                Ok(user)
            }
            (true, false) => Err(AuthError::WrongPassword),
            (false, _) => Err(AuthError::UnknownUser),
        }
    }
}

/// Counts a check waiting for its turn, also when its request is dropped
/// (the client left) while it waits.
struct Waiting<'a>(&'a Cell<usize>);

impl<'a> Waiting<'a> {
    fn new(count: &'a Cell<usize>) -> Waiting<'a> {
        count.set(count.get() + 1);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
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
fn proxy_user(header: Option<&HeaderValue>) -> Result<String, AuthError> {
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
pub(crate) enum Auth {
    /// `--no-auth`.
    Off,
    Basic(BasicAuth),
    /// `--proxy-auth-username`: the header's value is the user.
    Proxy(HeaderName),
}

impl Auth {
    /// The user a request comes from (None with `--no-auth`).
    pub(crate) async fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<Option<String>, AuthError> {
        match self {
            Auth::Off => Ok(None),
            Auth::Proxy(header) => proxy_user(headers.get(header)).map(Some),
            Auth::Basic(checker) => {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn header(user: &str, password: &str) -> HeaderValue {
        let encoded = BASE64.encode(format!("{user}:{password}"));
        HeaderValue::try_from(format!("Basic {encoded}")).unwrap()
    }

    async fn auth(dir: &crate::testing::TempDir) -> BasicAuth {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let file = dir.path().join(".htpasswd");
        std::fs::write(&file, format!("alice:{hash}\n")).unwrap();
        let users = Watched::<Users>::load(file).await.unwrap();
        BasicAuth::new(users, ComputePool::start("test", 1).unwrap())
    }

    const PEER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[tokio::test(flavor = "current_thread")]
    async fn accepts_caches_and_refuses() {
        let dir = crate::testing::TempDir::new("auth-check");
        let auth = auth(&dir).await;
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

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn guessing_from_a_shared_address_does_not_lock_out_a_known_user() {
        let dir = crate::testing::TempDir::new("auth-known");
        let auth = auth(&dir).await;
        let right = header("alice", "secret");
        assert!(auth.check(Some(&right), PEER).await.is_ok());
        // Long after the cache lets alice in without a check, someone behind
        // the same address guesses until the address is throttled.
        tokio::time::advance(CACHE_TTL * 2).await;
        for _ in 0..throttle::BURST {
            let guess = auth.check(Some(&header("alice", "guess")), PEER).await;
            assert_eq!(guess, Err(AuthError::WrongPassword));
        }
        let stranger = header("mallory", "secret");
        assert_eq!(
            auth.check(Some(&stranger), PEER).await,
            Err(AuthError::Throttled)
        );
        // alice's own, already verified password is checked, not refused.
        assert_eq!(auth.check(Some(&right), PEER).await, Ok("alice".into()));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn reload_drops_cached_credentials() {
        let dir = crate::testing::TempDir::new("auth-reload");
        let auth = auth(&dir).await;
        assert!(
            auth.check(Some(&header("alice", "secret")), PEER)
                .await
                .is_ok()
        );
        std::fs::write(dir.path().join(".htpasswd"), "").unwrap();
        auth.users.reload().await;
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
