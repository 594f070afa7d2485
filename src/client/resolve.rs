//! Name lookups of the store's host, apart from the file-I/O pool.
//!
//! tokio looks a host name up on its blocking pool, which is our file-I/O
//! pool ([`crate::runtime::io_pool`], `--io-threads`): with the WAN's DNS down, every
//! connection to the store left a thread there in `getaddrinfo` past the
//! 10 s connect timeout, and LAN clients' disk work waited behind it. Here
//! a lookup runs on a thread of its own, at most one per store client at a
//! time (callers wait for the one in flight, not start another, so a
//! hanging resolver holds one thread, not one per connection), and answers
//! are kept a little: a good one for [`GOOD_ANSWER_TTL`], a failure for
//! [`FAILED_ANSWER_TTL`].

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs as _};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// How long a good answer is used before the name is looked up again:
/// short, as a store's addresses may move (AWS rotates them), yet long
/// enough that a burst of connections costs one lookup.
pub(crate) const GOOD_ANSWER_TTL: Duration = Duration::from_secs(60);
/// How long a failed lookup is answered from memory: a burst of
/// connections while DNS is down costs one lookup, and a repaired DNS is
/// used within seconds.
pub(crate) const FAILED_ANSWER_TTL: Duration = Duration::from_secs(5);

/// Looks `host:port` up; blocking (runs on the lookup thread).
pub(crate) type Lookup = Arc<dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync>;

/// The outcome of a lookup, shared by everyone waiting for it (an
/// `io::Error` cannot be cloned, so a failure travels as its text).
type Answer = Result<Arc<[SocketAddr]>, Arc<str>>;

/// The addresses of one host, looked up as needed.
pub(crate) struct Resolver {
    host: String,
    port: u16,
    lookup: Lookup,
    state: RefCell<State>,
}

#[derive(Default)]
struct State {
    /// The last answer and when it was had.
    cached: Option<(Answer, Instant)>,
    /// The lookup running now, if any.
    in_flight: Option<watch::Receiver<Option<Answer>>>,
}

impl Resolver {
    /// A resolver by the system's resolver (`getaddrinfo`).
    pub(crate) fn new(host: &str, port: u16) -> Resolver {
        Resolver::with_lookup(
            host,
            port,
            Arc::new(|host, port| Ok((host, port).to_socket_addrs()?.collect())),
        )
    }

    pub(crate) fn with_lookup(host: &str, port: u16, lookup: Lookup) -> Resolver {
        Resolver {
            host: host.to_string(),
            port,
            lookup,
            state: RefCell::new(State::default()),
        }
    }

    /// The host's addresses. An address as host needs no lookup. A caller
    /// that gives up waiting (the connect timeout) leaves the lookup
    /// running for the next one.
    pub(crate) async fn resolve(&self) -> io::Result<Arc<[SocketAddr]>> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(Arc::from([SocketAddr::new(ip, self.port)]));
        }
        let mut pending = {
            let mut state = self.state.borrow_mut();
            if let Some((answer, at)) = &state.cached {
                let ttl = match answer {
                    Ok(_) => GOOD_ANSWER_TTL,
                    Err(_) => FAILED_ANSWER_TTL,
                };
                if at.elapsed() < ttl {
                    return as_result(answer.clone());
                }
            }
            match &state.in_flight {
                Some(pending) => pending.clone(),
                None => {
                    let pending = self.start()?;
                    state.in_flight = Some(pending.clone());
                    pending
                }
            }
        };
        let answer = match pending.wait_for(Option::is_some).await {
            Ok(answer) => answer
                .clone()
                .unwrap_or_else(|| Err(Arc::from("no answer"))),
            // The thread ended without answering (it panicked).
            Err(_) => Err(Arc::from("the lookup thread ended")),
        };
        let mut state = self.state.borrow_mut();
        // The first waiter to wake files the answer; the others find it.
        if state.in_flight.take().is_some() {
            state.cached = Some((answer.clone(), Instant::now()));
        }
        as_result(answer)
    }

    /// Starts a lookup on a thread of its own.
    fn start(&self) -> io::Result<watch::Receiver<Option<Answer>>> {
        let (answer, pending) = watch::channel(None);
        let (lookup, host, port) = (self.lookup.clone(), self.host.clone(), self.port);
        std::thread::Builder::new()
            .name("s3-lookup".into())
            .spawn(move || {
                let found = match lookup(&host, port) {
                    Ok(addrs) if addrs.is_empty() => Err(Arc::from("no address")),
                    Ok(addrs) => Ok(Arc::from(addrs)),
                    Err(e) => Err(Arc::from(e.to_string())),
                };
                let _ = answer.send(Some(found));
            })?;
        Ok(pending)
    }
}

fn as_result(answer: Answer) -> io::Result<Arc<[SocketAddr]>> {
    answer.map_err(|why| io::Error::other(format!("cannot look the store's name up: {why}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn addr() -> SocketAddr {
        "192.0.2.7:9000".parse().unwrap()
    }

    /// A lookup that counts its calls and answers from `answer`.
    fn counting(
        answer: impl Fn() -> io::Result<Vec<SocketAddr>> + Send + Sync + 'static,
    ) -> (Lookup, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let lookup: Lookup = Arc::new(move |_, _| {
            counted.fetch_add(1, Ordering::SeqCst);
            answer()
        });
        (lookup, calls)
    }

    #[tokio::test(start_paused = true)]
    async fn a_good_answer_is_kept_for_a_minute() {
        let (lookup, calls) = counting(|| Ok(vec![addr()]));
        let resolver = Resolver::with_lookup("store.example", 9000, lookup);
        assert_eq!(&*resolver.resolve().await.unwrap(), &[addr()]);
        assert_eq!(&*resolver.resolve().await.unwrap(), &[addr()]);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::advance(GOOD_ANSWER_TTL + Duration::from_secs(1)).await;
        resolver.resolve().await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_is_kept_for_seconds() {
        let (lookup, calls) = counting(|| Err(io::Error::other("SERVFAIL")));
        let resolver = Resolver::with_lookup("store.example", 9000, lookup);
        let failed = resolver.resolve().await.unwrap_err().to_string();
        assert!(failed.contains("SERVFAIL"), "{failed}");
        assert!(resolver.resolve().await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::advance(FAILED_ANSWER_TTL + Duration::from_secs(1)).await;
        assert!(resolver.resolve().await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_address_is_not_looked_up() {
        let (lookup, calls) = counting(|| Ok(vec![]));
        let resolver = Resolver::with_lookup("::1", 9000, lookup);
        assert_eq!(
            &*resolver.resolve().await.unwrap(),
            &["[::1]:9000".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    /// A lookup that hangs (DNS down) holds one thread, however many
    /// connections wait for it and give up; when it answers, all use it.
    #[tokio::test(start_paused = true)]
    async fn a_hanging_lookup_is_one_thread_for_every_caller() {
        let (release, hung) = std::sync::mpsc::channel::<()>();
        let (started, running) = std::sync::mpsc::channel::<()>();
        let (hung, started) = (Mutex::new(hung), Mutex::new(started));
        let (lookup, calls) = counting(move || {
            let _ = started.lock().unwrap().send(());
            let _ = hung.lock().unwrap().recv();
            Ok(vec![addr()])
        });
        let resolver = Resolver::with_lookup("store.example", 9000, lookup);
        for _ in 0..5 {
            // The connect timeout gives up on the wait, not on the lookup.
            let waited = tokio::time::timeout(Duration::from_secs(10), resolver.resolve()).await;
            assert!(waited.is_err());
        }
        running.recv().unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        release.send(()).unwrap();
        assert_eq!(&*resolver.resolve().await.unwrap(), &[addr()]);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
