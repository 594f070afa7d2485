//! The offsite mirror: a data directory copied to a real S3 store (SeaweedFS)
//! in the background, through outages and restarts; the bucket is then a
//! repository restic checks and restores directly.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::restic::make_tree;
use crate::util::seaweed::{ACCESS_KEY, SECRET_KEY, SeaweedFs, with_credentials};
use crate::util::*;

/// Long enough for a backlog to drain on a loaded CI machine; the wait ends
/// at the log line, not at the timeout.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(180);

fn mirrored_server(store: &SeaweedFs, data: &Path, extra: &[&str]) -> Server {
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

fn mirror_status(data: &Path) -> (bool, String) {
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
    let mark = server.log_mark();
    assert!(
        server.wait_for_log_since(mark, "mirror is current", DRAIN_TIMEOUT)
            || mirror_status(&data).0,
        "{}",
        server.log()
    );
    // The status file follows within moments.
    assert!(
        eventually(Duration::from_secs(10), || mirror_status(&data).0),
        "{}\n{}",
        mirror_status(&data).1,
        server.log()
    );
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
