//! The mirror with S3 Object Lock (`--mirror-lock-days`, docs/mirror.md):
//! the test plays a thief holding the board's own S3 keys, on each store.
//! Plain deletes and overwrites only pile up on top of the locked versions,
//! versioned deletes are refused, and `rest-server mirror recover` brings
//! the bucket back to what it held, restic's `check --read-data` and every
//! snapshot included. The owner's own `forget --prune` (the forged-time
//! attack) is undone offsite the same way.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::mirror::{mirror_status, put_data, wait_current};
use crate::restic::make_tree;
use crate::util::sigv4::{SignedRequest, xml_value};
use crate::util::stores::{S3Test, per_store};
use crate::util::*;

/// One entry of the bucket's version history.
#[derive(Debug, Clone)]
struct Listed {
    key: String,
    version: String,
    marker: bool,
    /// The key's newest entry (moto lists a page's versions before its
    /// markers, so the order does not say).
    latest: bool,
}

/// Every version and delete marker under `prefix/` of `bucket`, asked with
/// the board's keys (one page: the test's repository is small); restic's
/// lock files (the test's own restic on the bucket makes them) left out.
fn history(store: &S3Test, bucket: &str, prefix: &str) -> Vec<Listed> {
    let path = format!("/{bucket}");
    let query = format!("prefix={prefix}%2F&versions=");
    let mut request = SignedRequest::new("GET", &store.addr, &path);
    request.query = &query;
    let answer = store.signer().send(&store.addr, &request);
    let text = answer.text();
    assert_eq!(answer.status, 200, "list versions: {text}");
    assert_ne!(xml_value(&text, "IsTruncated"), Some("true"), "{text}");
    let mut found = Vec::new();
    let mut rest = text.as_str();
    loop {
        let (at, tag, marker) = match (rest.find("<Version>"), rest.find("<DeleteMarker>")) {
            (Some(v), Some(m)) if m < v => (m, "DeleteMarker", true),
            (Some(v), _) => (v, "Version", false),
            (None, Some(m)) => (m, "DeleteMarker", true),
            (None, None) => break,
        };
        let end = rest[at..].find(&format!("</{tag}>")).unwrap() + at;
        let entry = &rest[at..end];
        let key = xml_value(entry, "Key").unwrap().to_string();
        if !key.contains("/locks/") {
            found.push(Listed {
                key,
                version: xml_value(entry, "VersionId").unwrap().to_string(),
                marker,
                latest: xml_value(entry, "IsLatest") == Some("true"),
            });
        }
        rest = &rest[end..];
    }
    found
}

/// Sends `method` on `key` of `bucket` with the board's keys (a versioned
/// request with `version`); returns the status and the answer's text.
fn as_thief(
    store: &S3Test,
    method: &str,
    bucket: &str,
    key: &str,
    version: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    let path = format!("/{bucket}/{key}");
    let query = version
        .map(|v| format!("versionId={v}"))
        .unwrap_or_default();
    let mut request = SignedRequest::new(method, &store.addr, &path);
    request.query = &query;
    request.body = body.to_vec();
    let answer = store.signer().send(&store.addr, &request);
    (answer.status, answer.text())
}

/// A PUT of `key` with the board's keys, `locked` for a day in governance
/// mode as a thief who wants the garbage to stay would ask.
fn thief_put(store: &S3Test, bucket: &str, key: &str, body: &[u8], locked: bool) -> (u16, String) {
    use base64::Engine as _;
    use md5::Digest as _;
    let path = format!("/{bucket}/{key}");
    let mut request = SignedRequest::new("PUT", &store.addr, &path);
    request.body = body.to_vec();
    if locked {
        let until = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 86_400;
        let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body));
        request.headers = vec![
            ("content-md5", md5),
            ("x-amz-object-lock-mode", "GOVERNANCE".to_string()),
            ("x-amz-object-lock-retain-until-date", iso_utc(until)),
        ];
    }
    let answer = store.signer().send(&store.addr, &request);
    (answer.status, answer.text())
}

/// The next whole second by the clock, once it has come: everything before
/// this call is listed as before it, even by a store that lists whole
/// seconds, and everything after as at or after it.
fn moment() -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let next = now.as_secs() + 1;
    std::thread::sleep(Duration::from_secs(next) - now);
    next
}

/// `rest-server --mirror <location on store> --s3-config <file>`, with the
/// store's identity: a locked mirror's server or `mirror recover` once
/// their own arguments are added.
fn mirrored(store: &S3Test, dir: &Path, location: &str) -> Command {
    let mut command = Command::new(binary());
    command.args(store.mirror_args(location, dir));
    store.credentials(&mut command);
    command
}

/// A server on `data` mirroring to `location`, locked for `days`, with
/// `extra` flags.
fn locked_server(
    store: &S3Test,
    dir: &Path,
    data: &Path,
    location: &str,
    days: &str,
    extra: &[&str],
) -> Server {
    let mut command = mirrored(store, dir, location);
    command
        .arg("--path")
        .arg(data)
        .args([
            "--no-auth",
            "--listen",
            "127.0.0.1:0",
            "--mirror-lock-days",
            days,
        ])
        .args(extra);
    Server::spawn(command, data)
}

/// The snapshots restic sees directly on the bucket.
fn snapshot_count(direct: &dyn Fn(&[&str]) -> std::process::Output) -> usize {
    let out = ok(
        direct(&["--no-lock", "snapshots", "--json"]),
        "snapshots on the bucket",
    );
    out.matches("\"short_id\"").count()
}

per_store!(
    a_thief_with_the_boards_keys_cannot_destroy_the_locked_mirror,
    ["restic"]
);
fn a_thief_with_the_boards_keys_cannot_destroy_the_locked_mirror(store: &S3Test) {
    let dir = TempDir::new("mirror-lock");
    let (data, source, cache) = (
        dir.path().join("data"),
        dir.path().join("source"),
        dir.path().join("cache"),
    );
    make_tree(&source);
    // A bucket of its own: the server makes it, with object lock.
    let bucket = format!("{}-locked", store.bucket);
    let location = format!("{bucket}/board");
    let server = locked_server(
        store,
        dir.path(),
        &data,
        &location,
        "2",
        &["--mirror-deletes"],
    );
    let repo = format!("rest:http://{}/laptop/", server.tcp_addr());
    ok(restic(&repo, &cache, &["init"]), "init");
    ok(
        restic(&repo, &cache, &["backup", source.to_str().unwrap()]),
        "first backup",
    );
    let first = dir.path().join("first");
    std::fs::create_dir_all(&first).unwrap();
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(&source)
            .arg(&first)
            .status()
            .unwrap()
            .success()
    );
    std::fs::remove_file(source.join("big0.bin")).unwrap();
    std::fs::write(source.join("dir1/new.bin"), pseudo_random(1 << 20, 77)).unwrap();
    ok(
        restic(&repo, &cache, &["backup", source.to_str().unwrap()]),
        "second backup",
    );
    wait_current(&server, &data);

    let direct = |args: &[&str]| {
        store
            .restic(
                &format!("{bucket}/board/laptop"),
                &store.secret_key,
                &dir.path().join("cache-direct"),
            )
            .args(args)
            .output()
            .expect("run restic")
    };
    assert_eq!(snapshot_count(&direct), 2);
    let locked = history(store, &bucket, "board");
    assert!(locked.iter().all(|v| !v.marker), "{locked:?}");

    // The owner's prune (as after forged snapshots): mirrored deletes only
    // hide the files offsite, behind delete markers.
    let before_prune = moment();
    ok(
        restic(&repo, &cache, &["forget", "--keep-last", "1", "--prune"]),
        "forget --prune",
    );
    wait_current(&server, &data);
    assert_eq!(snapshot_count(&direct), 1);
    let markers = history(store, &bucket, "board")
        .into_iter()
        .filter(|v| v.marker)
        .count();
    assert!(markers >= 2, "the prune left no delete markers offsite");
    drop(server);

    // The thief, with the board's keys: plain deletes of everything...
    let after_prune = moment();
    let live: Vec<Listed> = history(store, &bucket, "board")
        .into_iter()
        .filter(|v| v.latest && !v.marker)
        .collect();
    assert!(live.len() > 5, "{live:?}");
    for v in &live {
        let (status, text) = as_thief(store, "DELETE", &bucket, &v.key, None, b"");
        assert_eq!(status, 204, "plain delete of {}: {text}", v.key);
    }
    // ...then deletes of each version, which the lock refuses...
    for v in history(store, &bucket, "board")
        .iter()
        .filter(|v| !v.marker)
    {
        let (status, text) = as_thief(store, "DELETE", &bucket, &v.key, Some(&v.version), b"");
        assert_eq!(
            status, 403,
            "a versioned delete of locked {} was not refused: {text}",
            v.key
        );
    }
    // ...and overwrites of the config and the snapshots, the snapshots'
    // locked by the thief so that they cannot be removed, and a forged
    // snapshot, locked too.
    for v in live
        .iter()
        .filter(|v| v.key.ends_with("/config") || v.key.contains("/snapshots/"))
    {
        let locked = v.key.contains("/snapshots/");
        let (status, text) = thief_put(store, &bucket, &v.key, b"ransom note", locked);
        assert_eq!(status, 200, "overwrite of {}: {text}", v.key);
    }
    let forged = format!("board/laptop/snapshots/{}", "f".repeat(64));
    let (status, text) = thief_put(store, &bucket, &forged, b"forged", true);
    assert_eq!(status, 200, "forged snapshot: {text}");
    assert!(!direct(&["--no-lock", "snapshots"]).status.success());

    // The owner rewinds the bucket: first a dry run, which changes nothing.
    let recover = |since: u64, dry: bool| {
        let mut command = mirrored(store, dir.path(), &location);
        command.args(["--mirror-lock-days", "2"]);
        command.args(["mirror", "recover", "--since", &iso_utc(since)]);
        if dry {
            command.arg("--dry-run");
        }
        let out = command.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "mirror recover: {text}");
        text
    };
    let listed = recover(after_prune, true);
    assert!(
        listed.contains(&format!("{} key(s) changed since", live.len() + 1)),
        "{listed}"
    );
    assert!(!direct(&["--no-lock", "snapshots"]).status.success());
    let said = recover(after_prune, false);
    assert!(
        said.contains(&format!("{} key(s) brought back", live.len() + 1)),
        "{said}"
    );
    // The thief's locked versions stay; the ones from before are copied
    // back over them (two snapshots... one left after the prune), and the
    // forged snapshot is hidden.
    assert!(said.contains(" 1 old version(s) copied back"), "{said}");
    assert!(said.contains(" 1 new key(s) hidden"), "{said}");
    assert_eq!(snapshot_count(&direct), 1, "{said}");
    ok(
        direct(&["check", "--read-data"]),
        "check --read-data after the thief",
    );

    // And back to before the prune: both snapshots, the first one whole.
    let said = recover(before_prune, false);
    assert_eq!(snapshot_count(&direct), 2, "{said}");
    ok(
        direct(&["check", "--read-data"]),
        "check --read-data before the prune",
    );
    let target = dir.path().join("restore");
    let snapshots = ok(direct(&["--no-lock", "snapshots", "--json"]), "snapshots");
    let oldest = snapshots
        .split("\"short_id\":\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    ok(
        direct(&["restore", &oldest, "--target", target.to_str().unwrap()]),
        "restore of the first snapshot",
    );
    assert_same_tree(
        &first.join("source"),
        &target.join(source.strip_prefix("/").unwrap()),
    );
}

per_store!(a_lock_on_a_bucket_without_object_lock_copies_nothing, []);
/// The harness's bucket was made without object lock: the mirror says so
/// and copies nothing, rather than copying without the lock asked for.
fn a_lock_on_a_bucket_without_object_lock_copies_nothing(store: &S3Test) {
    let dir = TempDir::new("mirror-no-lock");
    let data = dir.path().join("data");
    let location = store.location("board");
    let server = locked_server(store, dir.path(), &data, &location, "2", &[]);
    assert_eq!(server.request("POST", "/repo/?create=true").status, 200);
    put_data(&server, "repo", &pseudo_random(20_000, 5));
    assert!(
        server.wait_for_log("has no object lock", Duration::from_secs(60)),
        "{}",
        server.log()
    );
    // The status file follows the log a moment later.
    assert!(
        eventually(Duration::from_secs(30), || mirror_status(&data)
            .1
            .contains("has no object lock")),
        "{}",
        mirror_status(&data).1
    );
    assert!(!mirror_status(&data).0);
    assert!(history(store, &store.bucket, "board").is_empty());
    // A bucket without versions has no history: recover refuses, rather
    // than delete what was made since for good.
    let out = mirrored(store, dir.path(), &location)
        .args(["mirror", "recover", "--since", "1h"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(1) && text.contains("does not keep versions"),
        "{text}"
    );
}

/// How long a renewal pass of a few objects may take: the server's own
/// response timeout for a stalled request (60 s), and then some.
const RENEWAL_TIMEOUT: Duration = Duration::from_secs(90);

/// Waits for the end of the server's first renewal pass; whether it
/// renewed everything (a failure's line names what the store said).
fn renewal_done(server: &Server) -> bool {
    eventually(RENEWAL_TIMEOUT, || {
        let log = server.log();
        log.contains("locks renewed until") || log.contains("lock renewal:")
    });
    server.log().contains("locks renewed until")
}

per_store!(the_lock_is_renewed_and_follows_a_new_window, []);
/// The renewal pass: a first start with a lock renews what is live, and a
/// longer `--mirror-lock-days` moves every live object's date on at the
/// next start (the store's own retain-until date, as a HEAD answers it, is
/// the judge).
fn the_lock_is_renewed_and_follows_a_new_window(store: &S3Test) {
    let dir = TempDir::new("mirror-renew");
    let data = dir.path().join("data");
    let bucket = format!("{}-renew", store.bucket);
    let location = format!("{bucket}/board");
    let start = |days: &str| locked_server(store, dir.path(), &data, &location, days, &[]);
    // The retain-until date of `key`'s newest version, in Unix seconds, as
    // a HEAD answers it (moto has no GetObjectRetention).
    let retained = |key: &str| -> u64 {
        let path = format!("/{bucket}/{key}");
        let request = SignedRequest::new("HEAD", &store.addr, &path);
        let answer = store.signer().send(&store.addr, &request);
        assert_eq!(answer.status, 200, "HEAD {key}");
        let date = answer
            .header("x-amz-object-lock-retain-until-date")
            .unwrap_or_else(|| panic!("{key} has no retain-until date: {answer:?}"));
        let out = Command::new("date")
            .args(["-u", "-d", date, "+%s"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let server = start("1");
    assert_eq!(server.request("POST", "/repo/?create=true").status, 200);
    let path = put_data(&server, "repo", &pseudo_random(30_000, 9));
    wait_current(&server, &data);
    assert!(renewal_done(&server), "{}", server.log());
    let key = format!("board{}", path.replacen("/data/", "/data/XX/", 1));
    let id = path.rsplit('/').next().unwrap();
    let key = key.replace("XX", &id[..2]);
    let now = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let first = retained(&key);
    assert!(
        first > now() + 86_400 - 600 && first <= now() + 86_400,
        "{first}"
    );
    drop(server);

    let server = start("3");
    assert!(renewal_done(&server), "{}", server.log());
    assert!(server.log().contains("on 1 object(s)"), "{}", server.log());
    let renewed = retained(&key);
    assert!(renewed > now() + 3 * 86_400 - 600, "{renewed}");
    drop(server);

    // A shorter window never asks the store to shorten a lock (it would
    // refuse): the dates stay until the shorter window reaches them.
    let server = start("1");
    assert!(renewal_done(&server), "{}", server.log());
    assert!(!server.log().contains("not renewed"), "{}", server.log());
    assert!(retained(&key) >= renewed, "{}", server.log());
}
