//! The request path tested in-process on the fault-injecting memory store:
//! status codes, error mapping, verification, quota, access and metrics,
//! without spawning the server, without root, and with tokio's paused time
//! where timeouts are involved. The black-box tests in `tests/` cover the
//! binary's lifecycle, the real restic client and the image.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use hyper::{Request, StatusCode};

use crate::auth::Auth;
use crate::auth::policy::Policy;
use crate::config::Config;
use crate::http::request::{self, Client};
use crate::http::route::Route;
use crate::metrics::Metrics;
use crate::quota::Quota;
use crate::repo::Key;
use crate::repo::{ObjectId, ObjectType, RepoPath};
use crate::runtime::pool::ComputePool;
use crate::state::AppState;
use crate::store::memory::{MemStore, Op};
use crate::testing::sha256_hex;

const CLIENT: Client<'static> = Client {
    ip: None,
    name: "test",
};

/// The header naming the user, with [`Auth::Proxy`].
const USER_HEADER: &str = "x-user";

struct Setup {
    config: Config,
    auth: Auth,
    private_repos: bool,
    append_only: bool,
    max_size: Option<u64>,
}

impl Default for Setup {
    fn default() -> Setup {
        Setup {
            config: Config::new("/nonexistent".into()),
            auth: Auth::Off,
            private_repos: false,
            append_only: false,
            max_size: None,
        }
    }
}

fn state(store: &MemStore, setup: Setup) -> AppState<MemStore> {
    AppState {
        policy: Policy::new(None, setup.private_repos, setup.append_only),
        config: setup.config,
        store: store.clone(),
        auth: setup.auth,
        quota: Rc::new(Quota::new(setup.max_size, 0)),
        metrics: Some(Rc::new(Metrics::default())),
        usage: Rc::default(),
        refused: Default::default(),
        started: std::time::Instant::now(),
        host: "test".to_string(),
        compute: ComputePool::start("test", 1).unwrap(),
        mirror: None,
        scrub: None,
        unhealthy: Default::default(),
        upload_buffers: crate::upload::BufferBudget::new(crate::upload::BUFFERED_UPLOADS),
    }
}

/// Runs a test inside a `LocalSet`, as the server does: a commit runs in a
/// task of its own (see `upload::Receiver::receive`).
async fn local<F: std::future::Future>(test: F) -> F::Output {
    tokio::task::LocalSet::new().run_until(test).await
}

struct Answer {
    status: StatusCode,
    body: Bytes,
    headers: hyper::HeaderMap,
}

async fn send_body<B>(state: &AppState<MemStore>, request: Request<B>) -> Answer
where
    B: http_body::Body<Data = Bytes> + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (response, mut record) = request::serve(state, None, request, &CLIENT).await;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    crate::http::body::Completion::complete(&mut record, body.len() as u64);
    Answer {
        status: parts.status,
        body,
        headers: parts.headers,
    }
}

fn request(method: &str, path: &str, user: Option<&str>, body: &[u8]) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(user) = user {
        builder = builder.header(USER_HEADER, user);
    }
    if !body.is_empty() {
        builder = builder.header("content-length", body.len());
    }
    builder
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap()
}

async fn send(state: &AppState<MemStore>, method: &str, path: &str, body: &[u8]) -> Answer {
    send_body(state, request(method, path, None, body)).await
}

fn repo(path: &str) -> RepoPath {
    Route::parse(&format!("{path}config")).unwrap().repo
}

/// Content larger than the upload buffers, so that several hand-overs happen.
fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn the_restic_endpoints_on_a_store() {
    local(async {
        let store = MemStore::default();
        let state = state(&store, Setup::default());
        assert_eq!(
            send(&state, "POST", "/r/", b"").await.status,
            400,
            "no ?create"
        );
        assert_eq!(
            send(&state, "POST", "/r/?create=true", b"").await.status,
            200
        );
        assert_eq!(send(&state, "HEAD", "/r/config", b"").await.status, 404);
        assert_eq!(send(&state, "POST", "/r/config", b"cfg").await.status, 200);
        assert_eq!(send(&state, "POST", "/r/config", b"cfg").await.status, 200);
        assert_eq!(send(&state, "POST", "/r/config", b"cfG").await.status, 403);

        let data = content(500_000, 1);
        let id = sha256_hex(&data);
        let path = format!("/r/data/{id}");
        assert_eq!(send(&state, "POST", &path, &data).await.status, 200);
        let head = send(&state, "HEAD", &path, b"").await;
        assert_eq!(head.headers["content-length"], "500000");
        let got = send(&state, "GET", &path, b"").await;
        assert_eq!(got.body, data);
        let mut ranged = request("GET", &path, None, b"");
        ranged
            .headers_mut()
            .insert("range", "bytes=10-19".parse().unwrap());
        let part = send_body(&state, ranged).await;
        assert_eq!(part.status, 206);
        assert_eq!(part.body, data[10..20]);
        assert_eq!(part.headers["content-range"], "bytes 10-19/500000");

        let v1 = send(&state, "GET", "/r/data/", b"").await;
        assert_eq!(v1.body, format!("[\"{id}\"]"));
        let mut v2 = request("GET", "/r/data/", None, b"");
        v2.headers_mut()
            .insert("accept", crate::http::api::MIME_API_V2.parse().unwrap());
        let v2 = send_body(&state, v2).await;
        assert_eq!(v2.body, format!("[{{\"name\":\"{id}\",\"size\":500000}}]"));
        assert_eq!(send(&state, "GET", "/r/keys/", b"").await.body, "[]");

        assert_eq!(send(&state, "DELETE", &path, b"").await.status, 200);
        assert_eq!(
            send(&state, "DELETE", &path, b"").await.status,
            200,
            "idempotent"
        );
        assert_eq!(send(&state, "GET", &path, b"").await.status, 404);
        assert_eq!(send(&state, "PUT", &path, b"").await.status, 405);
        assert_eq!(send(&state, "GET", "/r/nonsense/x", b"").await.status, 404);
    })
    .await
}

#[tokio::test(flavor = "current_thread")]
async fn content_that_does_not_match_its_name_is_refused_and_not_stored() {
    local(async {
        let store = MemStore::default();
        let state = state(&store, Setup::default());
        send(&state, "POST", "/r/?create=true", b"").await;
        let data = content(300_000, 2);
        let wrong = sha256_hex(b"something else");
        let answer = send(&state, "POST", &format!("/r/data/{wrong}"), &data).await;
        assert_eq!(answer.status, 400);
        assert_eq!(store.file_count(), 0);
        let text = state
            .metrics
            .as_ref()
            .unwrap()
            .render(&state.usage, None, &[]);
        assert!(text.contains("rest_server_upload_verification_failures_total 1"));

        // With --no-verify-upload the same upload is stored.
        let mut setup = Setup::default();
        setup.config.verify_upload = false;
        let unverified = self::state(&store, setup);
        let answer = send(&unverified, "POST", &format!("/r/data/{wrong}"), &data).await;
        assert_eq!(answer.status, 200);
        let id = ObjectId::parse(&wrong).unwrap();
        let key = Key::Object(ObjectType::Data, &id);
        assert_eq!(store.get(&repo("/r/"), key).unwrap(), data);
    })
    .await
}

#[tokio::test(flavor = "current_thread")]
async fn store_errors_map_to_their_status_and_leave_nothing() {
    local(async {
        let store = MemStore::default();
        let state = state(&store, Setup::default());
        send(&state, "POST", "/r/?create=true", b"").await;
        let data = content(400_000, 3);
        let path = format!("/r/data/{}", sha256_hex(&data));
        for (op, errno, status) in [
            (Op::Push, nix::libc::ENOSPC, 507),
            (Op::Push, nix::libc::EDQUOT, 507),
            (Op::Commit, nix::libc::EIO, 500),
            (Op::Begin, nix::libc::EACCES, 500),
        ] {
            store.fail(op, errno);
            assert_eq!(
                send(&state, "POST", &path, &data).await.status,
                status,
                "{op:?}"
            );
            assert_eq!(store.file_count(), 0, "{op:?}");
            store.heal();
        }
        store.fail(Op::Open, nix::libc::ENOENT);
        assert_eq!(send(&state, "GET", "/r/config", b"").await.status, 404);
        store.fail(Op::List, nix::libc::EIO);
        assert_eq!(send(&state, "GET", "/r/keys/", b"").await.status, 500);
        store.fail(Op::Delete, nix::libc::ENOTDIR);
        assert_eq!(send(&state, "DELETE", &path, b"").await.status, 404);
        store.fail(Op::Create, nix::libc::ENOSPC);
        assert_eq!(
            send(&state, "POST", "/s/?create=true", b"").await.status,
            507
        );
        store.heal();
        assert_eq!(send(&state, "POST", &path, &data).await.status, 200);
    })
    .await
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_stalled_body_times_out_but_a_slow_commit_does_not() {
    local(async {
        let store = MemStore::default();
        let state = state(&store, Setup::default());
        send(&state, "POST", "/r/?create=true", b"").await;
        let data = content(1000, 4);
        let path = format!("/r/keys/{}", sha256_hex(&data));

        // Half the body, then silence: 408 after --body-timeout, nothing stored.
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(Bytes::copy_from_slice(&data[..500])).await.unwrap();
        let stalled = Request::builder()
            .method("POST")
            .uri(&path)
            .body(ChannelBody::new(rx))
            .unwrap();
        let started = tokio::time::Instant::now();
        assert_eq!(send_body(&state, stalled).await.status, 408);
        assert_eq!(started.elapsed(), state.config.limits.body_timeout);
        assert_eq!(store.file_count(), 0);
        drop(tx);

        // A commit slower than the body timeout still succeeds.
        store.delay_commit(state.config.limits.body_timeout * 3);
        assert_eq!(send(&state, "POST", &path, &data).await.status, 200);
    })
    .await
}

/// A client gone while its upload commits (hyper drops the request): the
/// file is in place, so it is counted all the same; the mirror's queue
/// hangs on the same step.
#[tokio::test(flavor = "current_thread")]
async fn an_upload_committed_after_its_client_left_is_counted() {
    local(async {
        let store = MemStore::default();
        let setup = Setup {
            max_size: Some(1500),
            ..Setup::default()
        };
        let state = state(&store, setup);
        send(&state, "POST", "/r/?create=true", b"").await;
        let data = content(1000, 5);
        let path = format!("/r/data/{}", sha256_hex(&data));
        store.delay_commit(Duration::from_millis(100));
        // The request is dropped once the file is in place, mid-commit.
        tokio::select! {
            _ = send(&state, "POST", &path, &data) => panic!("answered before the commit ended"),
            _ = until(|| store.file_count() == 1) => {}
        }
        let counted = || {
            let stats = state.usage.snapshot();
            stats
                .iter()
                .any(|(label, r)| label == "r" && (r.bytes, r.objects) == (1000, 1))
        };
        let waited = tokio::time::timeout(Duration::from_secs(10), until(counted)).await;
        assert!(waited.is_ok(), "not counted: {:?}", state.usage.snapshot());
        // The quota counts it too: no room is left for a second one.
        store.delay_commit(Duration::ZERO);
        let more = content(1000, 6);
        let path = format!("/r/data/{}", sha256_hex(&more));
        assert_eq!(send(&state, "POST", &path, &more).await.status, 507);
    })
    .await
}

/// The same for a delete: the file is gone, so the quota and the usage
/// no longer count it.
#[tokio::test(flavor = "current_thread")]
async fn a_delete_finished_after_its_client_left_is_counted() {
    local(async {
        let store = MemStore::default();
        let state = state(&store, Setup::default());
        send(&state, "POST", "/r/?create=true", b"").await;
        let data = content(1000, 7);
        let path = format!("/r/data/{}", sha256_hex(&data));
        assert_eq!(send(&state, "POST", &path, &data).await.status, 200);
        store.delay_delete(Duration::from_millis(100));
        tokio::select! {
            _ = send(&state, "DELETE", &path, b"") => panic!("answered before the delete ended"),
            _ = until(|| store.file_count() == 0) => {}
        }
        let released = || {
            let stats = state.usage.snapshot();
            stats
                .iter()
                .any(|(label, r)| label == "r" && (r.bytes, r.objects) == (0, 0))
        };
        let waited = tokio::time::timeout(Duration::from_secs(10), until(released)).await;
        assert!(
            waited.is_ok(),
            "still counted: {:?}",
            state.usage.snapshot()
        );
    })
    .await
}

/// Returns once `check` holds (looked at every millisecond).
async fn until(check: impl Fn() -> bool) {
    while !check() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A request body fed through a channel: a client that sends what the test
/// says, when it says; it notes when the server has read it to its end.
struct ChannelBody {
    chunks: tokio::sync::mpsc::Receiver<Bytes>,
    read_to_end: Rc<std::cell::Cell<bool>>,
}

impl ChannelBody {
    fn new(chunks: tokio::sync::mpsc::Receiver<Bytes>) -> ChannelBody {
        ChannelBody {
            chunks,
            read_to_end: Rc::default(),
        }
    }
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = self.chunks.poll_recv(cx);
        if let std::task::Poll::Ready(None) = polled {
            self.read_to_end.set(true);
        }
        polled.map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_quota_refuses_before_and_during_the_upload() {
    local(async {
        let store = MemStore::default();
        let state = state(
            &store,
            Setup {
                max_size: Some(1000),
                ..Setup::default()
            },
        );
        send(&state, "POST", "/r/?create=true", b"").await;
        let big = content(1200, 5);
        let path = format!("/r/data/{}", sha256_hex(&big));
        assert_eq!(send(&state, "POST", &path, &big).await.status, 507);
        // Undeclared length: refused while streaming.
        let chunked = Request::builder()
            .method("POST")
            .uri(&path)
            .body(Full::new(Bytes::from(big.clone())))
            .unwrap();
        assert_eq!(send_body(&state, chunked).await.status, 507);
        assert_eq!(store.file_count(), 0);
        let small = content(900, 6);
        let small_path = format!("/r/data/{}", sha256_hex(&small));
        assert_eq!(send(&state, "POST", &small_path, &small).await.status, 200);
        assert_eq!(send(&state, "DELETE", &small_path, b"").await.status, 200);
        assert_eq!(
            send(&state, "POST", &small_path, &small).await.status,
            200,
            "freed"
        );
    })
    .await
}

#[tokio::test(flavor = "current_thread")]
async fn access_is_decided_before_the_store_is_asked() {
    local(async {
        let store = MemStore::default();
        let header = hyper::header::HeaderName::from_static(USER_HEADER);
        let state = state(
            &store,
            Setup {
                auth: Auth::Proxy(header),
                private_repos: true,
                append_only: true,
                ..Setup::default()
            },
        );
        let as_user = |method: &str, path: &str, user: &str, body: &[u8]| {
            request(method, path, Some(user), body)
        };
        assert_eq!(
            send_body(&state, as_user("POST", "/alice/?create=true", "alice", b""))
                .await
                .status,
            200
        );
        let lock = content(100, 7);
        let lock_path = format!("/alice/locks/{}", sha256_hex(&lock));
        assert_eq!(
            send_body(&state, as_user("POST", &lock_path, "alice", &lock))
                .await
                .status,
            200
        );
        // Append-only: locks can be removed, nothing else.
        assert_eq!(
            send_body(&state, as_user("DELETE", &lock_path, "alice", b""))
                .await
                .status,
            200
        );
        assert_eq!(
            send_body(&state, as_user("DELETE", "/alice/config", "alice", b""))
                .await
                .status,
            403
        );
        // Another user's repository answers like a missing one, and the store is
        // not asked: even a failing store gives the same answer.
        store.fail(Op::Size, nix::libc::EIO);
        let existing = send_body(&state, as_user("HEAD", "/alice/config", "bob", b"")).await;
        let missing = send_body(&state, as_user("HEAD", "/nobody/config", "bob", b"")).await;
        assert_eq!(
            (existing.status, &existing.body),
            (missing.status, &missing.body)
        );
        assert_eq!(existing.status, 401);
        let no_user = send_body(&state, request("HEAD", "/alice/config", None, b"")).await;
        assert_eq!(no_user.status, 401);
    })
    .await
}

#[tokio::test(flavor = "current_thread")]
async fn metrics_are_recorded_once_per_request() {
    local(async {
        let store = MemStore::default();
        let state = state(&store, Setup::default());
        send(&state, "POST", "/r/?create=true", b"").await;
        let data = content(2000, 8);
        let path = format!("/r/snapshots/{}", sha256_hex(&data));
        send(&state, "POST", &path, &data).await;
        send(&state, "GET", &path, b"").await;
        send(&state, "GET", &path, b"").await;
        send(&state, "DELETE", &path, b"").await;
        let text = state
            .metrics
            .as_ref()
            .unwrap()
            .render(&state.usage, None, &[]);
        for line in [
            "rest_server_blob_write_total{repo=\"r\",type=\"snapshots\",user=\"\"} 1",
            "rest_server_blob_write_bytes_total{repo=\"r\",type=\"snapshots\",user=\"\"} 2000",
            "rest_server_blob_read_total{repo=\"r\",type=\"snapshots\",user=\"\"} 2",
            "rest_server_blob_read_bytes_total{repo=\"r\",type=\"snapshots\",user=\"\"} 4000",
            "rest_server_blob_delete_bytes_total{repo=\"r\",type=\"snapshots\",user=\"\"} 2000",
            "rest_server_repo_stored_bytes{repo=\"r\"} 0",
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
    })
    .await
}

#[tokio::test(flavor = "current_thread")]
async fn a_refused_requests_small_body_is_read_before_the_answer() {
    local(async {
        let store = MemStore::default();
        let state = state(&store, Setup::default());
        send(&state, "POST", "/r/?create=true", b"").await;
        send(&state, "POST", "/r/config", b"cfg").await;
        // Refused by the endpoint (the config exists), by the route, and by the
        // method table: each reads the small body it did not want.
        for (method, path, status) in [
            ("POST", "/r/config", 403),
            ("POST", "/r/nonsense/x", 404),
            ("PUT", "/r/config", 405),
        ] {
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            tx.send(Bytes::from_static(b"other")).await.unwrap();
            drop(tx);
            let body = ChannelBody::new(rx);
            let read_to_end = body.read_to_end.clone();
            let request = Request::builder()
                .method(method)
                .uri(path)
                .header("content-length", 5)
                .body(body)
                .unwrap();
            assert_eq!(send_body(&state, request).await.status, status, "{path}");
            assert!(read_to_end.get(), "{method} {path}");
        }
    })
    .await
}
