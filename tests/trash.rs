//! The trash (`--trash-days`, docs/trash.md): a delete moves the file out of
//! sight, restic sees what it saw before, and `rest-server trash restore`
//! undoes an attacker's `forget --prune`, after which restic's own checks
//! find every original snapshot.

use std::path::Path;
use std::process::Command;

use crate::restic::make_tree;
use crate::util::stores::per_store;
use crate::util::*;

/// `rest-server --path data trash args...`: (exit code, stdout, stderr).
fn trash(data: &Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["--path", data.to_str().unwrap(), "trash"];
    all.extend(args);
    run_cli(&all)
}

/// The files in the trash's folder of repository `repo` (`alice` or
/// `alice/laptop`).
fn trashed(data: &Path, repo: &str) -> Vec<String> {
    let dir = data.join(".trash").join(repo).join(".trashed");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_delete_goes_to_the_trash_out_of_sight_and_a_lock_does_not() {
    let dir = TempDir::new("trash-api");
    let data = dir.path().join("data");
    let users = bcrypt_line("alice", "pw");
    let server = Server::start_with_users(&data, &users, &["--trash-days", "7", "--prometheus"]);
    let as_alice = |method: &str, path: &str| Request::new(method, path).basic("alice", "pw");
    assert_eq!(
        server.send(&as_alice("POST", "/alice/?create=true")).status,
        200
    );
    let content = pseudo_random(5000, 1);
    let id = sha256_hex(&content);
    let object = format!("/alice/data/{id}");
    assert_eq!(
        server
            .send(&as_alice("POST", &object).body(content.clone()))
            .status,
        200
    );
    let lock = b"a lock";
    let lock_path = format!("/alice/locks/{}", sha256_hex(lock));
    assert_eq!(
        server
            .send(&as_alice("POST", &lock_path).body(lock.to_vec()))
            .status,
        200
    );

    assert_eq!(server.send(&as_alice("DELETE", &object)).status, 200);
    assert_eq!(server.send(&as_alice("DELETE", &lock_path)).status, 200);
    // restic sees what it saw without a trash.
    assert_eq!(server.send(&as_alice("GET", &object)).status, 404);
    assert_eq!(server.send(&as_alice("HEAD", &object)).status, 404);
    let listing = server.send(&as_alice("GET", "/alice/data/")).text();
    assert!(!listing.contains(&id), "{listing}");
    assert_eq!(server.send(&as_alice("DELETE", &object)).status, 200);
    // No request reaches the trash.
    let sneaky = server.send(&as_alice("GET", "/.trash/alice/.trashed/"));
    assert_ne!(sneaky.status, 200);
    // The object is kept, named with who deleted it; the lock is gone.
    let kept = trashed(&data, "alice");
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].starts_with(&format!("data~{id}~")), "{kept:?}");
    assert!(kept[0].ends_with("~alice"), "{kept:?}");
    assert_eq!(
        std::fs::read(data.join(".trash/alice/.trashed").join(&kept[0])).unwrap(),
        content
    );
    // Counted apart from live data: /metrics and the status page.
    let metrics = server.send(&as_alice("GET", "/metrics")).text();
    assert!(
        metrics.contains("\nrest_server_trash_files 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nrest_server_trash_bytes 5000\n"),
        "{metrics}"
    );
    let page = server
        .send(&as_alice("GET", "/").header("Accept", "text/html"))
        .text();
    assert!(
        page.contains("Trash: 1 file(s), 4.88 KiB, each kept 7 day(s)"),
        "{page}"
    );
    // The same upload again is an upload like any other.
    assert_eq!(
        server
            .send(&as_alice("POST", &object).body(content.clone()))
            .status,
        200
    );
    assert_eq!(server.send(&as_alice("GET", &object)).body, content);

    let (code, out, err) = trash(&data, &["list", "--repo", "alice"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("alice  /alice  data/{id}  5000")),
        "{out}"
    );
    assert!(err.contains("1 file(s), 5000 bytes"), "{err}");
    // A restore never replaces the file that is there again.
    let (code, out, err) = trash(&data, &["restore", "--repo", "alice", "--since", "1h"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("restored 0 file(s)"), "{out}");
    assert!(out.contains(&format!(
        "left in the trash (a file of that name exists): data/{id}"
    )));
    // Counted again at the next start, from the trash itself.
    drop(server);
    let server = Server::start_with_users(&data, &users, &["--trash-days", "7", "--prometheus"]);
    let metrics = server.send(&as_alice("GET", "/metrics")).text();
    assert!(
        metrics.contains("\nrest_server_trash_bytes 5000\n"),
        "{metrics}"
    );
    drop(server);
    // Younger than the window: the purge keeps it; --older-than 0 empties.
    let path = data.to_str().unwrap();
    let (code, out, _) = run_cli(&["--path", path, "--trash-days", "7", "trash", "purge"]);
    assert_eq!((code, out.trim()), (0, "purged 0 file(s), 0 bytes"));
    let (code, out, _) = trash(&data, &["purge", "--older-than", "0"]);
    assert_eq!((code, out.trim()), (0, "purged 1 file(s), 5000 bytes"));
    assert!(trashed(&data, "alice").is_empty());
    let (code, _, err) = trash(&data, &["purge"]);
    assert_eq!(code, 1);
    assert!(err.contains("--older-than"), "{err}");
}

/// `date -u` of Unix seconds, as `--since` takes it.
fn utc(secs: u64) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%S"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// How many snapshots restic lists.
fn snapshots(run: &dyn Fn(&[&str]) -> std::process::Output) -> usize {
    let out = ok(run(&["snapshots", "--json"]), "snapshots");
    out.matches("\"short_id\"").count()
}

/// The attack as it happens: backups, then someone with the owner's
/// credentials forgets all but the last snapshot and prunes (the packs only
/// the old snapshots used are deleted), and later deletes every snapshot
/// file by hand. The owner restores from the trash each time; restic's own
/// steps then find every snapshot, and `check --read-data` passes, and the
/// first snapshot restores byte for byte.
#[test]
fn trash_restore_undoes_forget_prune_and_deleted_snapshots() {
    let test = "trash_restore_undoes_forget_prune_and_deleted_snapshots";
    if !require_tool("restic", test) {
        return;
    }
    let dir = TempDir::new("trash-restic");
    let data = dir.path().join("data");
    let (source, cache) = (dir.path().join("source"), dir.path().join("cache"));
    make_tree(&source);
    let first = dir.path().join("first");
    make_tree(&first);
    let users = bcrypt_line("alice", "pw");
    let server = Server::start_with_users(&data, &users, &["--trash-days", "30"]);
    let repo = format!("rest:http://alice:pw@{}/alice/laptop/", server.tcp_addr());
    let run = |args: &[&str]| restic(&repo, &cache, args);
    ok(run(&["init"]), "init");
    ok(run(&["backup", source.to_str().unwrap()]), "backup 1");
    // Each backup changes the tree, so that the prune has packs to delete.
    for round in 2..=3u64 {
        std::fs::remove_file(source.join(format!("big{}.bin", round - 2))).unwrap();
        std::fs::write(
            source.join(format!("new{round}.bin")),
            pseudo_random(3 << 20, round),
        )
        .unwrap();
        ok(run(&["backup", source.to_str().unwrap()]), "backup");
    }
    assert_eq!(snapshots(&run), 3);

    // The attack: the owner's credentials, restic's own commands.
    let attack = now();
    let pruned = ok(
        run(&["forget", "--keep-last", "1", "--prune"]),
        "forget --prune",
    );
    assert!(pruned.contains("remove"), "{pruned}");
    assert_eq!(snapshots(&run), 1);
    let in_trash = trashed(&data, "alice/laptop");
    for kind in ["snapshots~", "index~", "data~"] {
        assert!(
            in_trash.iter().any(|n| n.starts_with(kind)),
            "no {kind} in {in_trash:?}"
        );
    }

    // The owner, on the server.
    let (code, out, err) = trash(
        &data,
        &["restore", "--repo", "alice/laptop", "--since", &utc(attack)],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("rebuild-index"), "{out}");
    ok(run(&["rebuild-index"]), "rebuild-index");
    ok(run(&["check", "--read-data"]), "check --read-data");
    assert_eq!(snapshots(&run), 3);
    // The oldest snapshot is the first tree, byte for byte.
    let listing = ok(run(&["snapshots", "--json"]), "snapshots");
    let oldest = listing
        .split("\"short_id\":\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    let target = dir.path().join("restored");
    ok(
        run(&["restore", &oldest, "--target", target.to_str().unwrap()]),
        "restore of the oldest snapshot",
    );
    assert_same_tree(&first, &target.join(source.strip_prefix("/").unwrap()));

    // Every snapshot file deleted by hand, then back with --type.
    let ids: Vec<String> = std::fs::read_dir(data.join("alice/laptop/snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(ids.len(), 3);
    let by_hand = now();
    for id in &ids {
        let path = format!("/alice/laptop/snapshots/{id}");
        let deleted = server.send(&Request::new("DELETE", &path).basic("alice", "pw"));
        assert_eq!(deleted.status, 200);
    }
    assert_eq!(snapshots(&run), 0);
    let since = utc(by_hand);
    let args = [
        "restore",
        "--repo",
        "alice/laptop",
        "--since",
        &since,
        "--type",
        "snapshots",
    ];
    let (code, out, err) = trash(&data, &args);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("restored 3 file(s)"), "{out}");
    assert_eq!(snapshots(&run), 3);
    ok(run(&["check"]), "check");
}

/// `--append-only` refuses the delete before it reaches the trash, and a
/// lock's delete (which append-only allows) is a removal, not a trashing.
#[test]
fn append_only_keeps_the_trash_empty() {
    let dir = TempDir::new("trash-append-only");
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--trash-days", "7", "--append-only"]);
    assert_eq!(server.request("POST", "/r/?create=true").status, 200);
    let content = pseudo_random(100, 2);
    let object = format!("/r/snapshots/{}", sha256_hex(&content));
    let saved = server.send(&Request::new("POST", &object).body(content.clone()));
    assert_eq!(saved.status, 200);
    let lock = format!("/r/locks/{}", sha256_hex(b"lock"));
    let locked = server.send(&Request::new("POST", &lock).body(b"lock".to_vec()));
    assert_eq!(locked.status, 200);
    assert_eq!(server.request("DELETE", &object).status, 403);
    assert_eq!(server.request("DELETE", &lock).status, 200);
    assert_eq!(server.request("GET", &object).body, content);
    assert!(!data.join(".trash").exists());
}

/// The forged-time attack (rest-server#292): someone with the owner's
/// credentials writes snapshots dated in the future; the owner's next
/// `forget --keep-last 4 --prune` keeps those and deletes the real ones.
/// The server cannot read snapshots, but it sees half of the repository's
/// snapshots deleted at once: the deletion alarm fires in the log, in
/// `/metrics` and on the status page, the deletes still succeed, and the
/// real snapshots come back from the trash.
#[test]
fn the_deletion_alarm_fires_when_a_prune_deletes_the_real_snapshots() {
    let test = "the_deletion_alarm_fires_when_a_prune_deletes_the_real_snapshots";
    if !require_tool("restic", test) {
        return;
    }
    let dir = TempDir::new("trash-alarm");
    let data = dir.path().join("data");
    let (source, cache) = (dir.path().join("source"), dir.path().join("cache"));
    std::fs::create_dir_all(&source).unwrap();
    let users = bcrypt_line("alice", "pw");
    let flags = ["--trash-days", "30", "--prometheus"];
    let server = Server::start_with_users(&data, &users, &flags);
    let repo = format!("rest:http://alice:pw@{}/alice/laptop/", server.tcp_addr());
    let run = |args: &[&str]| restic(&repo, &cache, args);
    ok(run(&["init"]), "init");
    let src = source.to_str().unwrap();
    for i in 0..4u64 {
        std::fs::write(source.join(format!("f{i}")), pseudo_random(1000, i)).unwrap();
        ok(run(&["backup", src]), "backup");
    }
    // The attacker's snapshots, dated years ahead.
    for year in 2040..2044 {
        let time = format!("{year}-01-01 00:00:00");
        ok(run(&["backup", "--time", &time, src]), "forged backup");
    }
    let metrics = |server: &Server| {
        let request = Request::new("GET", "/metrics").basic("alice", "pw");
        server.send(&request).text()
    };
    assert!(!metrics(&server).contains("rest_server_repo_delete_alarm"));
    let before = now();

    // The owner's routine prune.
    ok(
        run(&["forget", "--keep-last", "4", "--prune"]),
        "forget --prune",
    );
    assert_eq!(snapshots(&run), 4);
    assert!(server.wait_for_log(
        "deletion alarm: 4 of 8 snapshots of /alice/laptop deleted within 24 h",
        std::time::Duration::from_secs(5)
    ));
    let text = metrics(&server);
    assert!(
        text.contains("rest_server_repo_delete_alarm{repo=\"alice/laptop\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("rest_server_repo_deleted_24h{repo=\"alice/laptop\",type=\"snapshots\"} 4"),
        "{text}"
    );
    let page = server
        .send(
            &Request::new("GET", "/")
                .basic("alice", "pw")
                .header("Accept", "text/html"),
        )
        .text();
    assert!(
        page.contains("/alice/laptop: 4 of 8 snapshots deleted in the last 24 hours."),
        "{page}"
    );

    // The real ones, back: everything the prune deleted (their trees went
    // with them, so not --type snapshots alone).
    let since = utc(before);
    let (code, out, err) = trash(
        &data,
        &["restore", "--repo", "alice/laptop", "--since", &since],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("restored "), "{out}");
    ok(run(&["rebuild-index"]), "rebuild-index");
    ok(run(&["check", "--read-data"]), "check --read-data");
    assert_eq!(snapshots(&run), 8);
}

/// A repository on a disk mounted below the data directory cannot be
/// trashed to (a rename does not cross file systems): its delete fails,
/// the log says why, and the file stays.
#[test]
fn a_repository_on_another_file_system_keeps_its_files_and_says_why() {
    let test = "a_repository_on_another_file_system_keeps_its_files_and_says_why";
    if !require_root(test) || !require_tool("mount", test) {
        return;
    }
    let dir = TempDir::new("trash-exdev");
    let data = dir.path().join("data");
    let Some(disk) = SmallDisk::mount(&data.join("usb"), "8m") else {
        skip_or_fail(test, "a tmpfs cannot be mounted here");
        return;
    };
    let server = Server::start(&data, &["--trash-days", "7"]);
    assert_eq!(server.request("POST", "/usb/?create=true").status, 200);
    let content = pseudo_random(1000, 3);
    let object = format!("/usb/index/{}", sha256_hex(&content));
    let saved = server.send(&Request::new("POST", &object).body(content.clone()));
    assert_eq!(saved.status, 200);
    assert_eq!(server.request("DELETE", &object).status, 500);
    assert!(server.wait_for_log(
        "move to trash, which is on the data directory's file system",
        std::time::Duration::from_secs(5)
    ));
    assert_eq!(server.request("GET", &object).body, content);
    drop(server);
    drop(disk);
}

/// Deleting and uploading again cannot fill the disk past the budgets: a
/// file in the trash counts in its repository's quota and in --max-size
/// until the trash lets it go, at the server's purge or, after `trash
/// purge`, at the next start.
#[test]
fn the_trash_counts_in_the_budgets_until_purged() {
    let dir = TempDir::new("trash-quota");
    let data = dir.path().join("data");
    let rules = dir.path().join("quotas");
    std::fs::write(&rules, "/alice 3K\n").unwrap();
    let args = [
        "--trash-days",
        "7",
        "--quota-file",
        rules.to_str().unwrap(),
        "--max-size",
        "5000",
    ];
    let upload = |server: &Server, repo: &str, seed: u64| {
        let content = pseudo_random(2000, seed);
        let path = format!("/{repo}/data/{}", sha256_hex(&content));
        (
            path.clone(),
            server
                .send(&Request::new("POST", &path).body(content))
                .status,
        )
    };
    let server = Server::start(&data, &args);
    for repo in ["alice", "bob"] {
        assert_eq!(
            server
                .request("POST", &format!("/{repo}/?create=true"))
                .status,
            200
        );
    }
    let (first, status) = upload(&server, "alice", 1);
    assert_eq!(status, 200);
    assert_eq!(server.request("DELETE", &first).status, 200);
    // alice's deleted 2000 bytes still count: 2000 more would pass 3K.
    assert_eq!(upload(&server, "alice", 2).1, 507, "{}", server.log());
    // The data directory's: 2000 live for bob, 2000 in the trash.
    assert_eq!(upload(&server, "bob", 3).1, 200);
    assert_eq!(upload(&server, "bob", 4).1, 507, "{}", server.log());
    drop(server);

    // Counted again at a start, from the trash itself.
    let server = Server::start(&data, &args);
    assert_eq!(upload(&server, "alice", 2).1, 507, "{}", server.log());
    drop(server);

    // Purged, the room is back.
    let (code, out, err) = trash(&data, &["purge", "--older-than", "0s"]);
    assert_eq!(code, 0, "{out}{err}");
    let server = Server::start(&data, &args);
    assert_eq!(upload(&server, "alice", 2).1, 200, "{}", server.log());
}

per_store!(a_bucket_keeps_deleted_objects_in_its_trash, ["restic"]);
/// `--trash-days` on an `s3:` `--path`: the attacker's `forget --prune`
/// moves the objects under the trash prefix, and `trash restore` on the
/// bucket brings back every snapshot, as on a data directory.
fn a_bucket_keeps_deleted_objects_in_its_trash(store: &crate::util::stores::S3Test) {
    let dir = TempDir::new("trash-s3");
    let (source, cache) = (dir.path().join("source"), dir.path().join("cache"));
    make_tree(&source);
    let location = store.location("repos");
    let mut command = store.server(&location, dir.path(), "");
    command.args(["--trash-days", "7"]);
    let server = Server::spawn(command, dir.path());
    let repo = format!("rest:http://{}/laptop/", server.tcp_addr());
    ok(restic(&repo, &cache, &["init"]), "init");
    for round in 0..2u64 {
        std::fs::write(
            source.join(format!("round{round}")),
            pseudo_random(70_000, round),
        )
        .unwrap();
        ok(
            restic(&repo, &cache, &["backup", source.to_str().unwrap()]),
            "backup",
        );
    }
    let attack = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    ok(
        restic(&repo, &cache, &["forget", "--keep-last", "1", "--prune"]),
        "the attacker's forget --prune",
    );
    let count = |text: &str| text.matches("\"short_id\"").count();
    let snapshots = || ok(restic(&repo, &cache, &["snapshots", "--json"]), "snapshots");
    assert_eq!(count(&snapshots()), 1);
    let trash = |args: &[&str]| {
        let mut command = store.server(&location, dir.path(), "");
        command.arg("trash").args(args);
        let out = command.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "trash {args:?}: {text}");
        text
    };
    let listed = trash(&["list", "--repo", "laptop"]);
    assert!(listed.contains("/laptop  snapshots/"), "{listed}");
    // At a start, the trash counts in the repository's budget again.
    drop(server);
    let rules = dir.path().join("quotas");
    std::fs::write(&rules, "/laptop 100G\n").unwrap();
    let mut command = store.server(&location, dir.path(), "");
    command.args(["--trash-days", "7", "--prometheus", "--quota-file"]);
    command.arg(&rules);
    let server = Server::spawn(command, dir.path());
    let trashed: u64 = listed
        .rsplit("file(s), ")
        .next()
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the list's count");
    let stored: u64 = metric(&server, "rest_server_repo_stored_bytes{repo=\"laptop\"}")
        .parse()
        .unwrap();
    let used: u64 = metric(
        &server,
        "rest_server_quota_used_bytes{group=\"/laptop\",rule=\"/laptop\"}",
    )
    .parse()
    .unwrap();
    assert!(trashed > 0);
    assert_eq!(used, stored + trashed, "{listed}");
    let repo = format!("rest:http://{}/laptop/", server.tcp_addr());
    let snapshots = || ok(restic(&repo, &cache, &["snapshots", "--json"]), "snapshots");
    let since = iso_utc(attack);
    let restored = trash(&["restore", "--repo", "laptop", "--since", &since]);
    assert!(restored.contains("restored "), "{restored}");
    ok(restic(&repo, &cache, &["rebuild-index"]), "rebuild-index");
    ok(
        restic(&repo, &cache, &["check", "--read-data"]),
        "check --read-data",
    );
    assert_eq!(count(&snapshots()), 2);
    // What restore took is gone from the trash; rebuild-index's old index
    // files went in since.
    let left = trash(&["list"]);
    assert!(
        !left.contains("snapshots/") && !left.contains("data/"),
        "{left}"
    );
}

/// The server's own purge (at start, then hourly) gives what it removes
/// back to the budgets: a file deleted long ago stops counting once the
/// purge at start has removed it.
#[test]
fn the_servers_purge_gives_the_room_back() {
    let dir = TempDir::new("trash-purge-room");
    let data = dir.path().join("data");
    let rules = dir.path().join("quotas");
    std::fs::write(&rules, "/alice 3K\n").unwrap();
    let server = Server::start(&data, &["--trash-days", "7"]);
    assert_eq!(server.request("POST", "/alice/?create=true").status, 200);
    drop(server);
    // Deleted in 1970, by the name's clock: past any window.
    let content = pseudo_random(2000, 7);
    let old = data
        .join(".trash/alice/.trashed")
        .join(format!("data~{}~1000000000~-", sha256_hex(&content)));
    std::fs::create_dir_all(old.parent().unwrap()).unwrap();
    std::fs::write(&old, &content).unwrap();
    let args = [
        "--trash-days",
        "7",
        "--quota-file",
        rules.to_str().unwrap(),
        "--prometheus",
    ];
    let server = Server::start(&data, &args);
    let used = || {
        let metrics = server.request("GET", "/metrics").text();
        find_metric(
            &metrics,
            "rest_server_quota_used_bytes{group=\"/alice\",rule=\"/alice\"}",
        )
        .map(str::to_string)
    };
    // Counted at the start's scan, given back by the purge that follows.
    assert!(
        eventually(std::time::Duration::from_secs(30), || used().as_deref()
            == Some("0")),
        "{:?}\n{}",
        used(),
        server.log()
    );
    assert!(!old.exists());
    let fresh = pseudo_random(2500, 8);
    let path = format!("/alice/data/{}", sha256_hex(&fresh));
    assert_eq!(
        server.send(&Request::new("POST", &path).body(fresh)).status,
        200
    );
}
