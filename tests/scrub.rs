//! The scrub, black box: damage made on disk behind the server's back is
//! found by the background pass (log, `/metrics`) and by `rest-server scrub`
//! (stdout, exit code), in the right repository, type and id; a killed pass
//! resumes where it stopped.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::restic::make_tree;
use crate::util::seaweed::{SeaweedFs, with_credentials};
use crate::util::*;

const PASS_TIMEOUT: Duration = Duration::from_secs(120);

fn scrub(data: &Path, args: &[&str]) -> Output {
    Command::new(binary())
        .arg("scrub")
        .arg("--path")
        .arg(data)
        .args(args)
        .output()
        .expect("run rest-server scrub")
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The largest file in a folder (recursively): a pack, in `data/`.
fn largest_file(dir: &Path) -> std::path::PathBuf {
    let mut best: Option<(u64, std::path::PathBuf)> = None;
    for entry in walk(dir) {
        let len = std::fs::metadata(&entry).unwrap().len();
        if best.as_ref().is_none_or(|(l, _)| len > *l) {
            best = Some((len, entry));
        }
    }
    best.expect("a file").1
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn name(path: &Path) -> String {
    path.file_name().unwrap().to_str().unwrap().to_string()
}

#[test]
fn the_scrub_finds_exactly_the_damaged_objects() {
    if !require_tool("restic", "the_scrub_finds_exactly_the_damaged_objects") {
        return;
    }
    let dir = TempDir::new("scrub");
    let data = dir.path().join("data");
    let cache = dir.path().join("cache");
    let (big, small) = (dir.path().join("big"), dir.path().join("small"));
    make_tree(&big);
    std::fs::create_dir_all(&small).unwrap();
    std::fs::write(small.join("notes.txt"), pseudo_random(50_000, 7)).unwrap();

    // Two repositories made by restic, with the scrub off meanwhile.
    let server = Server::start(&data, &["--scrub-interval", "0"]);
    for (repo, source) in [("alice/laptop", &big), ("bob", &small)] {
        let url = format!("rest:http://{}/{repo}/", server.tcp_addr());
        ok(restic(&url, &cache, &["init"]), "init");
        ok(
            restic(&url, &cache, &["backup", source.to_str().unwrap()]),
            "backup",
        );
    }
    drop(server);
    assert!(!data.join(".scrub").exists(), "no scrub ran");

    let clean = scrub(&data, &[]);
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));
    // A mistyped --path is an error, and creates nothing.
    let typo = dir.path().join("dat");
    assert_eq!(scrub(&typo, &[]).status.code(), Some(1));
    assert!(!typo.exists());
    assert!(text(&clean).contains(": 0 damaged"), "{}", text(&clean));

    // One byte flipped in a pack, one index file truncated.
    let laptop = data.join("alice/laptop");
    let pack = largest_file(&laptop.join("data"));
    let mut bytes = std::fs::read(&pack).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&pack, &bytes).unwrap();
    let index = walk(&laptop.join("index")).remove(0);
    let len = std::fs::metadata(&index).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&index)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let damaged = [
        format!("/alice/laptop/data/{}", name(&pack)),
        format!("/alice/laptop/index/{}", name(&index)),
    ];
    std::fs::remove_dir_all(data.join(".scrub")).unwrap();

    // The background pass: starts at once (no pass yet), logs, counts.
    let server = Server::start(
        &data,
        &[
            "--prometheus",
            "--scrub-interval",
            "1d",
            "--scrub-rate",
            "1000",
        ],
    );
    assert!(
        server.wait_for_log("scrub: pass finished", PASS_TIMEOUT),
        "{}",
        server.log()
    );
    let log = server.log();
    for place in &damaged {
        assert!(
            log.contains(&format!(
                "scrub: {place} is damaged: does not match its name"
            )),
            "{place}: {log}"
        );
    }
    assert_eq!(log.matches(" is damaged").count(), 2, "{log}");
    assert_eq!(metric(&server, "rest_server_scrub_damaged_objects"), "2");
    let verified: u64 = metric(&server, "rest_server_scrub_verified_objects_total")
        .parse()
        .unwrap();
    let stored = walk(&data.join("alice"))
        .into_iter()
        .chain(walk(&data.join("bob")))
        .filter(|p| {
            let inside = p.strip_prefix(&data).unwrap().to_str().unwrap().to_string();
            ["data", "index", "snapshots", "keys"]
                .iter()
                .any(|t| inside.contains(&format!("/{t}/")))
        })
        .count() as u64;
    assert_eq!(verified, stored, "every object but config and locks, once");
    assert_ne!(
        metric(
            &server,
            "rest_server_scrub_last_pass_finished_timestamp_seconds"
        ),
        "0"
    );
    drop(server);

    // The command: the same two, exit code 1; the clean repository 0.
    let found = scrub(&data, &[]);
    assert_eq!(found.status.code(), Some(1), "{}", text(&found));
    let found = text(&found);
    let lines: Vec<&str> = found
        .lines()
        .filter(|l| l.starts_with("DAMAGED "))
        .collect();
    assert_eq!(lines.len(), 2, "{found}");
    for place in &damaged {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("DAMAGED {place}: "))),
            "{place}"
        );
    }
    let bob = scrub(&data, &["--repo", "bob"]);
    assert_eq!(bob.status.code(), Some(0), "{}", text(&bob));
    let status = scrub(&data, &["--status"]);
    assert_eq!(status.status.code(), Some(1), "{}", text(&status));
    for place in &damaged {
        assert!(text(&status).contains(place.as_str()), "{}", text(&status));
    }

    // A client deletes the damaged index: it is no longer reported.
    let server = Server::start(&data, &["--prometheus", "--scrub-interval", "1d"]);
    let deleted = server.request("DELETE", &damaged[1]);
    assert_eq!(deleted.status, 200);
    assert_eq!(metric(&server, "rest_server_scrub_damaged_objects"), "1");
    drop(server);
    let after = scrub(&data, &["--repo", "alice/laptop"]);
    assert_eq!(after.status.code(), Some(1));
    assert_eq!(
        text(&after).matches("DAMAGED ").count(),
        1,
        "{}",
        text(&after)
    );
    let status = text(&scrub(&data, &["--status"]));
    assert!(
        status.contains(&damaged[0]) && !status.contains(&damaged[1]),
        "{status}"
    );
}

#[test]
fn a_killed_pass_resumes_where_it_stopped() {
    let dir = TempDir::new("scrub-resume");
    let data = dir.path().join("data");
    let server = server_with_repo(&dir, &["--scrub-interval", "0"]);
    const OBJECTS: u64 = 200;
    for i in 0..OBJECTS {
        let (_, response) = upload(&server, "data", &pseudo_random(64 * 1024, i));
        assert_eq!(response.status, 200);
    }
    drop(server);
    // 13.1 MB at 1 MB/s: the first position is saved after 5 s, with some
    // 6 MB verified (the rate's 1 MB burst and 5 s of it), so the kill on
    // that log line lands some 7 s before the end of the pass.
    let flags = [
        "--debug",
        "--prometheus",
        "--scrub-interval",
        "1d",
        "--scrub-rate",
        "1",
    ];
    let mut server = Server::start(&data, &flags);
    assert!(
        server.wait_for_log("scrub: position saved", PASS_TIMEOUT),
        "{}",
        server.log()
    );
    server.stop_with(Signal::SIGKILL);
    let state = std::fs::read_to_string(data.join(".scrub/state")).unwrap();
    let pass: Vec<u64> = state
        .lines()
        .find_map(|l| l.strip_prefix("pass\t"))
        .expect("a pass in progress")
        .split('\t')
        .map(|n| n.parse().unwrap())
        .collect();
    let done = pass[2];
    assert!(done > 0 && done < OBJECTS, "{state}");

    let server = Server::start(&data, &flags);
    assert!(
        server.wait_for_log("scrub: pass finished", PASS_TIMEOUT),
        "{}",
        server.log()
    );
    assert!(
        server.log().contains("resuming the pass after /repo/data/"),
        "{}",
        server.log()
    );
    let verified: u64 = metric(&server, "rest_server_scrub_verified_objects_total")
        .parse()
        .unwrap();
    assert_eq!(verified, OBJECTS - done, "only what was left");
    drop(server);
    let status = text(&scrub(&data, &["--status"]));
    assert!(
        status.contains(&format!("{OBJECTS} objects, {} bytes", OBJECTS * 64 * 1024)),
        "the whole pass counted once: {status}"
    );

    // A state file it cannot read: `--status` says so (exit code 1), the
    // server ignores it and runs a new pass.
    std::fs::write(data.join(".scrub/state"), "not a state file\n").unwrap();
    let status = scrub(&data, &["--status"]);
    assert_eq!(status.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&status.stderr).contains("is not a state file"));
    let server = Server::start(&data, &flags);
    assert!(server.wait_for_log("is not a state file this server can read", PASS_TIMEOUT));
    assert!(
        server.wait_for_log("scrub: pass finished", PASS_TIMEOUT),
        "{}",
        server.log()
    );
}

#[test]
fn repair_heals_from_the_mirror_and_never_from_a_bad_copy() {
    let test = "scrub::repair_heals_from_the_mirror_and_never_from_a_bad_copy";
    if !require_tool("weed", test) || !require_tool("restic", test) {
        return;
    }
    let store = SeaweedFs::start();
    let dir = TempDir::new("scrub-repair");
    let (data, source, cache) = (
        dir.path().join("data"),
        dir.path().join("source"),
        dir.path().join("cache"),
    );
    make_tree(&source);
    let mirror = format!("s3:{}/offsite/board", store.endpoint);
    let mut command = Command::new(binary());
    command.arg("--path").arg(&data).args([
        "--no-auth",
        "--listen",
        "127.0.0.1:0",
        "--scrub-interval",
        "0",
        "--prometheus",
        "--mirror",
        &mirror,
    ]);
    with_credentials(&mut command);
    let server = Server::spawn(command, &data);
    let repo = format!("rest:http://{}/laptop/", server.tcp_addr());
    ok(restic(&repo, &cache, &["init"]), "init");
    ok(
        restic(&repo, &cache, &["backup", source.to_str().unwrap()]),
        "backup",
    );
    // Everything is in the bucket once the mirror has copied every file
    // (locks are not mirrored), as its live counters say.
    let files = files_below(&data.join("laptop"))
        .iter()
        .filter(|f| !f.starts_with("locks/"))
        .count();
    let copied = || {
        metric(&server, "rest_server_mirror_uploaded_files_total") == files.to_string()
            && metric(&server, "rest_server_mirror_backlog_files") == "0"
    };
    assert!(eventually(PASS_TIMEOUT, copied), "{}", server.log());
    drop(server);

    let repair = || {
        let mut command = Command::new(binary());
        command.arg("--path").arg(&data).args(["--mirror", &mirror]);
        with_credentials(&mut command);
        command.args(["scrub", "--repair"]).output().unwrap()
    };
    let pack = largest_file(&data.join("laptop/data"));
    let place = format!("/laptop/data/{}", name(&pack));
    let original = std::fs::read(&pack).unwrap();
    let flipped = |at: usize| {
        let mut bytes = original.clone();
        bytes[at] ^= 0x40;
        bytes
    };
    std::fs::write(&pack, flipped(original.len() / 3)).unwrap();
    // The replacement takes the damaged file's mode (and owner).
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&pack, std::fs::Permissions::from_mode(0o640)).unwrap();

    // Healed: the local copy is the original again, and restic agrees.
    let healed = repair();
    let out = text(&healed);
    assert_eq!(healed.status.code(), Some(0), "{out}");
    assert!(out.contains(&format!("DAMAGED {place}: ")), "{out}");
    assert!(out.contains(&format!("REPAIRED {place}: ")), "{out}");
    assert!(std::fs::read(&pack).unwrap() == original, "byte-identical");
    let mode = std::fs::metadata(&pack).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640);
    assert!(
        files_below(&data).iter().all(|f| !f.contains("tmp")),
        "no temp file left"
    );
    let server = Server::start(&data, &["--scrub-interval", "0"]);
    let repo = format!("rest:http://{}/laptop/", server.tcp_addr());
    ok(
        restic(&repo, &cache, &["check", "--read-data"]),
        "check after repair",
    );
    drop(server);
    assert_eq!(scrub(&data, &["--status"]).status.code(), Some(0));

    // The mirror's copy is damaged too (put there through the bucket as a
    // server without verification): nothing local is replaced.
    let mut command = Command::new(binary());
    command.arg("--path").arg(&mirror).args([
        "--no-auth",
        "--listen",
        "127.0.0.1:0",
        "--no-verify-upload",
    ]);
    with_credentials(&mut command);
    let bucket = Server::spawn(command, &data);
    assert_eq!(bucket.request("DELETE", &place).status, 200);
    let stored = bucket.send(&Request::new("POST", &place).body(flipped(7)));
    assert_eq!(stored.status, 200, "{}", stored.text());
    drop(bucket);
    let damaged_locally = flipped(original.len() / 2);
    std::fs::write(&pack, &damaged_locally).unwrap();
    let refused = repair();
    let out = text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "NOT REPAIRED {place}: the mirror's copy does not match its name either"
        )),
        "{out}"
    );
    assert!(
        std::fs::read(&pack).unwrap() == damaged_locally,
        "untouched"
    );
    let status = scrub(&data, &["--status"]);
    assert_eq!(status.status.code(), Some(1));
    assert!(text(&status).contains(&place), "{}", text(&status));
}

#[test]
fn restic_backs_up_and_restores_while_the_scrub_runs() {
    if !require_tool(
        "restic",
        "restic_backs_up_and_restores_while_the_scrub_runs",
    ) {
        return;
    }
    let dir = TempDir::new("scrub-beside");
    let (data, source, cache) = (
        dir.path().join("data"),
        dir.path().join("source"),
        dir.path().join("cache"),
    );
    make_tree(&source);
    // Passes back to back, slowly: one is always under way.
    let server = Server::start(
        &data,
        &[
            "--prometheus",
            "--scrub-interval",
            "1s",
            "--scrub-rate",
            "1",
        ],
    );
    let repo = format!("rest:http://{}/laptop/", server.tcp_addr());
    let run = |args: &[&str]| restic(&repo, &cache, args);
    ok(run(&["init"]), "init");
    ok(run(&["backup", source.to_str().unwrap()]), "backup");
    assert!(
        server.wait_for_log("scrub: pass started over 1 repositories", PASS_TIMEOUT),
        "{}",
        server.log()
    );
    ok(run(&["backup", source.to_str().unwrap()]), "second backup");
    ok(run(&["check", "--read-data"]), "check --read-data");
    restore_matches(run, &source, &dir.path().join("restore"));
    ok(run(&["forget", "--keep-last", "1", "--prune"]), "prune");
    ok(run(&["check"]), "check after prune");
    let scrubbed: u64 = metric(&server, "rest_server_scrub_verified_bytes_total")
        .parse()
        .unwrap();
    assert!(scrubbed > 0, "the scrub read meanwhile");
    assert!(!server.log().contains("is damaged"), "{}", server.log());
}
