//! The offsite mirror: a data directory copied to a real S3 store (SeaweedFS)
//! in the background, through outages and restarts; the bucket is then a
//! repository restic checks and restores directly.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::restic::{make_tree, second_backup_and_prune};
use crate::util::seaweed::{ACCESS_KEY, SECRET_KEY, SeaweedFs, with_credentials};
use crate::util::stores::{S3Test, per_store};
use crate::util::*;

/// Long enough for a backlog to drain on a loaded CI machine; the wait ends
/// at the log line, not at the timeout.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(180);

pub fn mirrored_server(store: &SeaweedFs, data: &Path, extra: &[&str]) -> Server {
    let mut command = Command::new(binary());
    command
        .arg("--path")
        .arg(data)
        .args(["--no-auth", "--listen", "127.0.0.1:0", "--prometheus"])
        .arg("--mirror")
        .arg(format!("s3:{}/offsite/board", store.endpoint))
        .args(extra);
    with_credentials(&mut command);
    Server::spawn(command, data)
}

pub fn mirror_status(data: &Path) -> (bool, String) {
    let out = Command::new(binary())
        .arg("--path")
        .arg(data)
        .args(["mirror", "status"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_mirror_catches_up_after_an_outage_and_a_restart_and_restic_reads_it() {
    let test = "mirror::the_mirror_catches_up_after_an_outage_and_a_restart_and_restic_reads_it";
    if !require_tool("weed", test) || !require_tool("restic", test) {
        return;
    }
    let mut store = SeaweedFs::start();
    let dir = TempDir::new("mirror");
    let (data, source, cache) = (
        dir.path().join("data"),
        dir.path().join("source"),
        dir.path().join("cache"),
    );
    make_tree(&source);
    let server = mirrored_server(&store, &data, &[]);
    let repo = format!("rest:http://{}/laptop/", server.tcp_addr());
    ok(restic(&repo, &cache, &["init"]), "init");
    ok(
        restic(&repo, &cache, &["backup", source.to_str().unwrap()]),
        "backup",
    );
    // Drained after the backup: the snapshot is the last file copied.
    wait_current(&server, &data);
    assert!(mirror_status(&data).1.contains("CURRENT"));

    // The store goes away; backups go on locally.
    store.stop();
    std::fs::write(source.join("dir1/new.bin"), pseudo_random(3 << 20, 5)).unwrap();
    ok(
        restic(&repo, &cache, &["backup", source.to_str().unwrap()]),
        "backup while the store is down",
    );
    assert!(
        server.wait_for_log("attempt(s) in a row", DRAIN_TIMEOUT),
        "{}",
        server.log()
    );
    assert!(
        eventually(Duration::from_secs(10), || mirror_status(&data)
            .1
            .contains("BEHIND")),
        "{}",
        mirror_status(&data).1
    );
    let metrics = server.request("GET", "/metrics").text();
    let backlog = metrics
        .lines()
        .find_map(|l| l.strip_prefix("rest_server_mirror_backlog_files "))
        .and_then(|v| v.parse::<u64>().ok())
        .expect("backlog metric");
    assert!(backlog > 0, "{metrics}");

    // The server restarts while the store is still down, then it comes back.
    drop(server);
    let server = mirrored_server(&store, &data, &[]);
    assert!(
        server.wait_for_log("cannot compare with the bucket", DRAIN_TIMEOUT),
        "{}",
        server.log()
    );
    store.restart();
    assert!(
        server.wait_for_log("mirror is current", DRAIN_TIMEOUT),
        "{}",
        server.log()
    );
    assert!(
        eventually(Duration::from_secs(10), || mirror_status(&data).0),
        "{}",
        mirror_status(&data).1
    );

    // The bucket is a repository of its own: check it and restore from it.
    let direct = |args: &[&str]| {
        store
            .restic(
                "offsite/board/laptop",
                SECRET_KEY,
                &dir.path().join("cache2"),
            )
            .args(args)
            .output()
            .expect("run restic")
    };
    ok(
        direct(&["check", "--read-data"]),
        "check --read-data on the mirror",
    );
    restore_matches(direct, &source, &dir.path().join("restore"));
}

/// A counter's or gauge's value from `/metrics`.
fn counted(server: &Server, name: &str) -> u64 {
    metric(server, name).parse().expect("a whole number")
}

#[test]
fn deletes_reach_the_mirror_only_when_asked_and_locks_never() {
    let test = "mirror::deletes_reach_the_mirror_only_when_asked_and_locks_never";
    if !require_tool("weed", test) {
        return;
    }
    let store = SeaweedFs::start();
    let dir = TempDir::new("mirror-deletes");
    // What the bucket holds, seen through a server on it.
    let bucket = {
        let mut command = Command::new(binary());
        command
            .arg("--path")
            .arg(format!("s3:{}/offsite/board", store.endpoint))
            .args(["--no-auth", "--listen", "127.0.0.1:0"])
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
        Server::spawn(command, dir.path())
    };
    for (deletes, tag) in [(false, "kept"), (true, "deleted")] {
        let data = dir.path().join(tag);
        let extra: &[&str] = if deletes { &["--mirror-deletes"] } else { &[] };
        let server = mirrored_server(&store, &data, extra);
        assert_eq!(server.request("POST", "/repo/?create=true").status, 200);
        let content = pseudo_random(50_000, u64::from(deletes));
        let (id, stored) = upload(&server, "data", &content);
        assert_eq!(stored.status, 200);
        let (lock, stored) = upload(&server, "locks", b"a lock");
        assert_eq!(stored.status, 200);
        assert!(eventually(DRAIN_TIMEOUT, || {
            counted(&server, "rest_server_mirror_uploaded_files_total") == 1
                && counted(&server, "rest_server_mirror_backlog_files") == 0
        }));
        let path = format!("/repo/data/{id}");
        assert_eq!(bucket.request("HEAD", &path).status, 200);
        crate::metrics::promtool_accepts(&server.request("GET", "/metrics").text(), test);
        assert_eq!(
            bucket
                .request("HEAD", &format!("/repo/locks/{lock}"))
                .status,
            404,
            "a lock was mirrored"
        );

        assert_eq!(server.request("DELETE", &path).status, 200);
        if deletes {
            assert!(eventually(DRAIN_TIMEOUT, || {
                counted(&server, "rest_server_mirror_deleted_files_total") == 1
            }));
            assert_eq!(bucket.request("HEAD", &path).status, 404);
        } else {
            // A delete would be queued behind uploads: once a later upload
            // is copied and nothing waits, no delete was queued.
            assert_eq!(upload(&server, "data", b"later").1.status, 200);
            assert!(eventually(DRAIN_TIMEOUT, || {
                counted(&server, "rest_server_mirror_uploaded_files_total") == 2
                    && counted(&server, "rest_server_mirror_backlog_files") == 0
            }));
            assert_eq!(
                counted(&server, "rest_server_mirror_deleted_files_total"),
                0
            );
            assert_eq!(bucket.request("HEAD", &path).status, 200);
        }
    }
}

#[test]
fn the_mirror_keeps_to_its_bandwidth_limit() {
    let test = "mirror::the_mirror_keeps_to_its_bandwidth_limit";
    if !require_tool("weed", test) {
        return;
    }
    let store = SeaweedFs::start();
    let dir = TempDir::new("mirror-bwlimit");
    let data = dir.path().join("data");
    let server = mirrored_server(
        &store,
        &data,
        &["--mirror-bwlimit", "1000000", "--mirror-uploads", "2"],
    );
    assert_eq!(server.request("POST", "/repo/?create=true").status, 200);
    let started = std::time::Instant::now();
    for seed in 0..2 {
        let (_, stored) = upload(&server, "data", &pseudo_random(1_500_000, seed));
        assert_eq!(stored.status, 200);
    }
    assert!(eventually(DRAIN_TIMEOUT, || {
        counted(&server, "rest_server_mirror_uploaded_files_total") == 2
    }));
    // 3 MB at 1 MB/s over both uploads, with at most 1 s of burst: a lower
    // bound, which a slow machine cannot break (without the limit: 0.3 s).
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1800),
        "3 MB mirrored in {took:?}"
    );
}

/// A server on the mirror's bucket itself, to see what it holds.
pub fn bucket_server(store: &SeaweedFs, dir: &Path) -> Server {
    let mut command = Command::new(binary());
    command
        .arg("--path")
        .arg(format!("s3:{}/offsite/board", store.endpoint))
        .args(["--no-auth", "--listen", "127.0.0.1:0"]);
    with_credentials(&mut command);
    Server::spawn(command, dir)
}

/// Uploads `content` under its hash to `/{repo}/data/{hash}`; returns the path.
pub fn put_data(server: &Server, repo: &str, content: &[u8]) -> String {
    let path = format!("/{repo}/data/{}", sha256_hex(content));
    let stored = server.send(&Request::new("POST", &path).body(content));
    assert_eq!(stored.status, 200, "{path}: {}", stored.text());
    path
}

/// Waits until `mirror status` says CURRENT; panics with the status and
/// the log if it does not within the drain timeout.
pub fn wait_current(server: &Server, data: &Path) {
    assert!(
        eventually(DRAIN_TIMEOUT, || mirror_status(data).0),
        "{}\n{}",
        mirror_status(data).1,
        server.log()
    );
}

/// restic's REST backend retries a failed upload by deleting the name and
/// sending the same bytes again. With deletes mirrored, the bucket must end
/// up holding every such file once the mirror says it is current.
#[test]
fn a_delete_then_the_same_upload_keeps_the_file_offsite() {
    let test = "mirror::a_delete_then_the_same_upload_keeps_the_file_offsite";
    if !require_tool("weed", test) {
        return;
    }
    let store = SeaweedFs::start();
    let dir = TempDir::new("mirror-reupload");
    let data = dir.path().join("data");
    let server = mirrored_server(&store, &data, &["--mirror-deletes"]);
    let bucket = bucket_server(&store, dir.path());
    assert_eq!(server.request("POST", "/repo/?create=true").status, 200);
    let contents: Vec<Vec<u8>> = (0..21).map(|i| pseudo_random(20_000, i)).collect();
    let mut paths: Vec<String> = contents
        .iter()
        .map(|c| put_data(&server, "repo", c))
        .collect();
    wait_current(&server, &data);
    for (content, path) in contents.iter().zip(&paths).take(10) {
        assert_eq!(server.request("DELETE", path).status, 200);
        assert_eq!(put_data(&server, "repo", content), *path);
    }
    for seed in 100..105 {
        paths.push(put_data(&server, "repo", &pseudo_random(20_000, seed)));
    }
    wait_current(&server, &data);
    let missing: Vec<&String> = paths
        .iter()
        .filter(|path| bucket.request("HEAD", path).status != 200)
        .collect();
    assert!(
        missing.is_empty(),
        "CURRENT, but {} of {} files are not in the bucket: {missing:?}\n{}",
        missing.len(),
        paths.len(),
        server.log()
    );
}

/// `mirror status` is read as "safe to unplug": right after an upload is
/// answered it must not say CURRENT unless the file is in the bucket.
#[test]
fn the_status_never_says_current_before_an_answered_upload_is_offsite() {
    let test = "mirror::the_status_never_says_current_before_an_answered_upload_is_offsite";
    if !require_tool("weed", test) {
        return;
    }
    let store = SeaweedFs::start();
    let dir = TempDir::new("mirror-status-truth");
    let data = dir.path().join("data");
    // Paced, so that each file takes about a second to reach the bucket.
    let server = mirrored_server(&store, &data, &["--mirror-bwlimit", "50000"]);
    let bucket = bucket_server(&store, dir.path());
    assert_eq!(server.request("POST", "/repo/?create=true").status, 200);
    for seed in 0..6 {
        wait_current(&server, &data);
        let path = put_data(&server, "repo", &pseudo_random(60_000, seed));
        let (current, text) = mirror_status(&data);
        if current {
            assert_eq!(
                bucket.request("HEAD", &path).status,
                200,
                "round {seed}: CURRENT while {path} is not in the bucket:\n{text}"
            );
        }
    }
    wait_current(&server, &data);
    // A server that is gone may have committed files after its last status.
    let mut server = server;
    server.stop_with(nix::sys::signal::Signal::SIGKILL);
    let (current, text) = mirror_status(&data);
    assert!(!current && text.contains("UNKNOWN"), "{text}");
}

/// Deletes journalled while the bucket was unreachable are replayed after a
/// restart: in the repository they were made in (folder names are taken as
/// they are on disk, `a%41` is not `aA`), not over a file uploaded again
/// since, and without waiting for an unrelated upload.
#[test]
fn journalled_deletes_replay_in_their_own_repository_and_spare_reuploads() {
    let test = "mirror::journalled_deletes_replay_in_their_own_repository_and_spare_reuploads";
    if !require_tool("weed", test) {
        return;
    }
    let mut store = SeaweedFs::start();
    let dir = TempDir::new("mirror-journal");
    let data = dir.path().join("data");
    let mut server = mirrored_server(&store, &data, &["--mirror-deletes"]);
    let bucket = bucket_server(&store, dir.path());
    for repo in ["a%2541", "aA"] {
        let created = server.request("POST", &format!("/{repo}/?create=true"));
        assert_eq!(created.status, 200, "{}", created.text());
    }
    assert!(data.join("a%41").is_dir() && data.join("aA").is_dir());
    let (x, y) = (pseudo_random(10_000, 1), pseudo_random(10_000, 2));
    let x_odd = put_data(&server, "a%2541", &x);
    let x_plain = put_data(&server, "aA", &x);
    let y_odd = put_data(&server, "a%2541", &y);
    wait_current(&server, &data);
    for path in [&x_odd, &x_plain, &y_odd] {
        assert_eq!(bucket.request("HEAD", path).status, 200, "{path}");
    }

    // The bucket goes away; x is deleted, y deleted and uploaded again.
    store.stop();
    assert_eq!(server.request("DELETE", &x_odd).status, 200);
    assert_eq!(server.request("DELETE", &y_odd).status, 200);
    assert_eq!(put_data(&server, "a%2541", &y), y_odd);
    server.stop_with(nix::sys::signal::Signal::SIGKILL);
    assert!(data.join(".mirror/deletes").exists(), "no journal left");

    store.restart();
    let server = mirrored_server(&store, &data, &["--mirror-deletes"]);
    assert!(
        server.wait_for_log("delete(s) from the journal", DRAIN_TIMEOUT),
        "{}",
        server.log()
    );
    // Nothing else happens: the replayed deletes must go by themselves.
    wait_current(&server, &data);
    assert_eq!(bucket.request("HEAD", &x_odd).status, 404, "not deleted");
    assert_eq!(
        bucket.request("HEAD", &x_plain).status,
        200,
        "another repository's file was deleted"
    );
    assert_eq!(
        bucket.request("HEAD", &y_odd).status,
        200,
        "a file uploaded again was deleted"
    );
}

/// A file committed without the mirror hearing of it (its client left
/// during the commit; here: put in place behind the server's back) is
/// queued when restic sends it again and gets the identical-content answer.
#[test]
fn an_identical_reupload_reaches_the_mirror() {
    let test = "mirror::an_identical_reupload_reaches_the_mirror";
    if !require_tool("weed", test) {
        return;
    }
    let store = SeaweedFs::start();
    let dir = TempDir::new("mirror-same");
    let data = dir.path().join("data");
    let server = mirrored_server(&store, &data, &["--append-only"]);
    let bucket = bucket_server(&store, dir.path());
    assert_eq!(server.request("POST", "/repo/?create=true").status, 200);
    wait_current(&server, &data);
    let content = pseudo_random(30_000, 9);
    let id = sha256_hex(&content);
    let file = data.join("repo/data").join(&id[..2]).join(&id);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, &content).unwrap();
    let path = put_data(&server, "repo", &content);
    wait_current(&server, &data);
    assert_eq!(
        bucket.request("HEAD", &path).status,
        200,
        "CURRENT without the file\n{}",
        server.log()
    );
}

/// While the mirror keeps up, "mirror is current" is logged once, not after
/// every file.
#[test]
fn keeping_up_is_logged_once() {
    let test = "mirror::keeping_up_is_logged_once";
    if !require_tool("weed", test) {
        return;
    }
    let store = SeaweedFs::start();
    let dir = TempDir::new("mirror-log-once");
    let data = dir.path().join("data");
    let server = mirrored_server(&store, &data, &[]);
    assert_eq!(server.request("POST", "/repo/?create=true").status, 200);
    for seed in 0..5 {
        put_data(&server, "repo", &pseudo_random(5_000, seed));
        wait_current(&server, &data);
    }
    // Once at the start, and once more after each failure the log reported
    // (a store can fail now and then; this one should not).
    let log = server.log();
    let said = log.matches("mirror is current").count();
    let failures = log.matches("attempt(s) in a row").count();
    assert!(said >= 1 && said <= 1 + failures, "{log}");
}

/// What a [`Recorder`] saw on one connection: when each read from the
/// server arrived, whether it began a PUT, and when the store first answered
/// after it.
#[derive(Default)]
struct Wire {
    /// (when, read begins with `PUT `)
    up: Vec<(Instant, bool)>,
    down: Vec<Instant>,
}

/// A TCP relay between the server and the store that notes the time of
/// every read; stopped on drop.
struct Recorder {
    addr: std::net::SocketAddr,
    wires: Arc<Mutex<Vec<Arc<Mutex<Wire>>>>>,
    stop: Arc<AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl Recorder {
    fn start(target: std::net::SocketAddr) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let wires: Arc<Mutex<Vec<Arc<Mutex<Wire>>>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (w, s) = (wires.clone(), stop.clone());
        let accept = std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(store) = TcpStream::connect(target) else {
                    continue;
                };
                let wire = Arc::new(Mutex::new(Wire::default()));
                w.lock().unwrap().push(wire.clone());
                for (mut from, mut to, up) in [
                    (
                        client.try_clone().unwrap(),
                        store.try_clone().unwrap(),
                        true,
                    ),
                    (store, client, false),
                ] {
                    let wire = wire.clone();
                    // Ends when either side closes (the server and the
                    // store are stopped by the test).
                    std::thread::spawn(move || {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n @ 1..) = from.read(&mut buf) {
                            let now = Instant::now();
                            let mut wire = wire.lock().unwrap();
                            if up {
                                wire.up.push((now, buf[..n].starts_with(b"PUT ")));
                            } else {
                                wire.down.push(now);
                            }
                            drop(wire);
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Recorder {
            addr,
            wires,
            stop,
            accept: Some(accept),
        }
    }

    /// The longest pause in the server's sending while a PUT's body was
    /// going out (from its head to the store's answer), and the longest
    /// such PUT.
    fn longest_pause_in_a_put(&self) -> (Duration, Duration) {
        let (mut longest, mut span) = (Duration::ZERO, Duration::ZERO);
        for wire in self.wires.lock().unwrap().iter() {
            let wire = wire.lock().unwrap();
            for (at, &(start, put)) in wire.up.iter().enumerate() {
                if !put {
                    continue;
                }
                let answered = wire.down.iter().find(|&&t| t > start).copied();
                let mut last = start;
                for &(t, _) in &wire.up[at + 1..] {
                    if answered.is_some_and(|a| t > a) {
                        break;
                    }
                    longest = longest.max(t - last);
                    last = t;
                }
                span = span.max(last - start);
            }
        }
        (longest, span)
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// A slow `--mirror-bwlimit` paces the upload in small pieces: a store
/// closes a request whose body pauses for long (AWS after about 20 s), so
/// the pauses must stay short however low the rate.
#[test]
fn a_paced_upload_never_pauses_long_on_the_wire() {
    let test = "mirror::a_paced_upload_never_pauses_long_on_the_wire";
    if !require_tool("weed", test) {
        return;
    }
    let store = SeaweedFs::start();
    let target = store
        .endpoint
        .strip_prefix("http://")
        .unwrap()
        .parse()
        .unwrap();
    let recorder = Recorder::start(target);
    let dir = TempDir::new("mirror-pace");
    let data = dir.path().join("data");
    let mut command = Command::new(binary());
    command
        .arg("--path")
        .arg(&data)
        .args(["--no-auth", "--listen", "127.0.0.1:0"])
        .arg("--mirror")
        .arg(format!("s3:http://{}/offsite/board", recorder.addr))
        .args(["--mirror-bwlimit", "50000"]);
    with_credentials(&mut command);
    let server = Server::spawn(command, &data);
    assert_eq!(server.request("POST", "/repo/?create=true").status, 200);
    // Three of the disk's reads (256 KiB each): 13 s at 50 kB/s.
    put_data(&server, "repo", &pseudo_random(640 << 10, 3));
    wait_current(&server, &data);
    let (pause, span) = recorder.longest_pause_in_a_put();
    // The PUT was seen, at the rate (without it: well under a second).
    assert!(span > Duration::from_secs(8), "{span:?}\n{}", server.log());
    // A piece is a quarter of a second at the rate; a whole read was 5 s.
    assert!(
        pause < Duration::from_secs(2),
        "the body paused {pause:?}\n{}",
        server.log()
    );
}

/// A local file that no longer matches its name is not copied, and the
/// mirror does not call itself current while it is missing offsite.
#[test]
fn a_file_that_cannot_be_copied_keeps_the_mirror_from_current() {
    let test = "mirror::a_file_that_cannot_be_copied_keeps_the_mirror_from_current";
    if !require_tool("weed", test) {
        return;
    }
    let mut store = SeaweedFs::start();
    let dir = TempDir::new("mirror-corrupt");
    let data = dir.path().join("data");
    let server = mirrored_server(&store, &data, &[]);
    assert_eq!(server.request("POST", "/repo/?create=true").status, 200);
    wait_current(&server, &data);
    store.stop();
    let content = pseudo_random(20_000, 4);
    let path = put_data(&server, "repo", &content);
    let id = path.rsplit('/').next().unwrap();
    // Bits flip on the disk before the copy.
    let file = data.join("repo/data").join(&id[..2]).join(id);
    let mut damaged = content.clone();
    damaged[100] ^= 1;
    std::fs::write(&file, &damaged).unwrap();
    store.restart();
    assert!(
        server.wait_for_log("does not match its name", DRAIN_TIMEOUT),
        "{}",
        server.log()
    );
    // The status file follows the log line a moment later.
    assert!(
        eventually(DRAIN_TIMEOUT, || mirror_status(&data)
            .1
            .contains("INCOMPLETE")),
        "{}",
        mirror_status(&data).1
    );
    let (current, text) = mirror_status(&data);
    assert!(!current && text.contains("INCOMPLETE"), "{text}");
    assert_eq!(
        counted(&server, "rest_server_mirror_failed_files"),
        1,
        "{}",
        server.log()
    );
    // A good copy uploaded again (restic's repair) is copied, and current.
    assert_eq!(server.request("DELETE", &path).status, 200);
    put_data(&server, "repo", &content);
    wait_current(&server, &data);
}

per_store!(
    the_mirror_on_each_store_is_a_repository_restic_reads,
    ["restic"]
);
/// The mirror on each tested store: restic backs up and prunes through the
/// server, and once `mirror status` says CURRENT the bucket is a
/// repository that restic checks and restores from directly, holding the
/// same packs as the disk (deletes mirrored).
fn the_mirror_on_each_store_is_a_repository_restic_reads(store: &S3Test) {
    let dir = TempDir::new("mirror-per-store");
    let (data, source, cache) = (
        dir.path().join("data"),
        dir.path().join("source"),
        dir.path().join("cache"),
    );
    make_tree(&source);
    let location = store.location("offsite/board");
    let mut command = Command::new(binary());
    command
        .arg("--path")
        .arg(&data)
        .args(["--no-auth", "--listen", "127.0.0.1:0", "--mirror-deletes"])
        .args(store.mirror_args(&location, dir.path()));
    store.credentials(&mut command);
    let server = Server::spawn(command, &data);
    let repo = format!("rest:http://{}/laptop/", server.tcp_addr());
    ok(restic(&repo, &cache, &["init"]), "init");
    ok(
        restic(&repo, &cache, &["backup", source.to_str().unwrap()]),
        "backup",
    );
    second_backup_and_prune(&repo, &cache, &source);
    wait_current(&server, &data);
    let direct = |args: &[&str]| {
        store
            .restic(
                &format!("{location}/laptop"),
                &store.secret_key,
                &dir.path().join("cache2"),
            )
            .args(args)
            .output()
            .expect("run restic")
    };
    let mut offsite: Vec<String> = ok(direct(&["list", "packs"]), "list packs on the mirror")
        .lines()
        .filter(|l| l.len() == 64 && l.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_string)
        .collect();
    offsite.sort();
    let local: Vec<String> = files_below(&data.join("laptop/data"))
        .iter()
        .filter_map(|f| f.rsplit('/').next().map(str::to_string))
        .collect();
    assert_eq!(offsite, local, "the mirror's packs differ from the disk's");
    ok(
        direct(&["check", "--read-data"]),
        "check --read-data on the mirror",
    );
    restore_matches(direct, &source, &dir.path().join("restore"));
}
