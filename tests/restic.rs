//! End to end with the real restic client (Debian's package): the judge.

use std::path::Path;

use crate::util::*;

/// A second snapshot of `source` with a file changed and one removed, then
/// the first forgotten and pruned; returns what the prune said.
pub fn second_backup_and_prune(repo: &str, cache: &Path, source: &Path) -> String {
    std::fs::write(source.join("dir0/changed.bin"), pseudo_random(1 << 20, 77)).unwrap();
    std::fs::remove_file(source.join("big0.bin")).unwrap();
    ok(
        restic(repo, cache, &["backup", source.to_str().unwrap()]),
        "second backup",
    );
    ok(
        restic(repo, cache, &["forget", "--keep-last", "1", "--prune"]),
        "forget --prune",
    )
}

/// A few hundred small files in nested folders and a few of several MiB.
pub fn make_tree(root: &Path) {
    for i in 0..300u64 {
        let dir = root.join(format!("dir{}/sub{}", i % 7, i % 3));
        std::fs::create_dir_all(&dir).unwrap();
        let len = (i as usize * 977) % 20_000;
        std::fs::write(dir.join(format!("file{i}.bin")), pseudo_random(len, i)).unwrap();
    }
    for i in 0..3u64 {
        let len = (3 + 2 * i as usize) << 20;
        std::fs::write(
            root.join(format!("big{i}.bin")),
            pseudo_random(len, 1000 + i),
        )
        .unwrap();
    }
    std::fs::write(root.join("empty"), b"").unwrap();
}

#[test]
fn restic_backup_check_restore_prune_and_append_only() {
    if !require_tool(
        "restic",
        "restic_backup_check_restore_prune_and_append_only",
    ) {
        return;
    }
    let dir = TempDir::new("restic");
    let data = dir.path().join("data");
    let source = dir.path().join("source");
    let cache = dir.path().join("cache");
    make_tree(&source);

    let server = Server::start(&data, &[]);
    let repo = format!("rest:http://{}/laptop/", server.tcp_addr());
    ok(restic(&repo, &cache, &["init"]), "init");
    // The layout is restic's local backend's.
    for sub in [
        "config",
        "keys",
        "locks",
        "snapshots",
        "index",
        "data/00",
        "data/ff",
    ] {
        assert!(data.join("laptop").join(sub).exists(), "{sub}");
    }
    ok(
        restic(&repo, &cache, &["backup", source.to_str().unwrap()]),
        "backup",
    );
    ok(
        restic(&repo, &cache, &["check", "--read-data"]),
        "check --read-data",
    );

    let target = dir.path().join("restore");
    ok(
        restic(
            &repo,
            &cache,
            &["restore", "latest", "--target", target.to_str().unwrap()],
        ),
        "restore",
    );
    assert_same_tree(&source, &target.join(source.strip_prefix("/").unwrap()));

    // A second snapshot with a change, then forget the first and prune.
    let pruned = second_backup_and_prune(&repo, &cache, &source);
    assert!(
        pruned.contains("remove 1 snapshots") || pruned.contains("removed"),
        "{pruned}"
    );
    ok(
        restic(&repo, &cache, &["check", "--read-data"]),
        "check after prune",
    );
    let snapshots = ok(restic(&repo, &cache, &["snapshots", "--json"]), "snapshots");
    assert_eq!(snapshots.matches("\"time\"").count(), 1, "{snapshots}");

    // The same data, served append-only: backups work, pruning does not.
    drop(server);
    let server = Server::start(&data, &["--append-only"]);
    let repo = format!("rest:http://{}/laptop/", server.tcp_addr());
    std::fs::write(source.join("dir1/new.bin"), pseudo_random(100_000, 78)).unwrap();
    ok(
        restic(&repo, &cache, &["backup", source.to_str().unwrap()]),
        "append-only backup",
    );
    let refused = restic(&repo, &cache, &["forget", "--keep-last", "1", "--prune"]);
    assert!(
        !refused.status.success(),
        "prune must fail in append-only mode"
    );
    ok(
        restic(&repo, &cache, &["check"]),
        "check after refused prune",
    );
    let snapshots = ok(restic(&repo, &cache, &["snapshots", "--json"]), "snapshots");
    assert_eq!(
        snapshots.matches("\"time\"").count(),
        2,
        "nothing was forgotten"
    );
}

#[test]
fn restic_over_tls_with_a_bcrypt_user_and_private_repos() {
    let name = "restic_over_tls_with_a_bcrypt_user_and_private_repos";
    if !require_tool("restic", name) || !require_tool("openssl", name) {
        return;
    }
    let dir = TempDir::new("restic-tls");
    let data = dir.path().join("data");
    let source = dir.path().join("source");
    let cache = dir.path().join("cache");
    std::fs::create_dir_all(source.join("d")).unwrap();
    for i in 0..20u64 {
        std::fs::write(
            source.join(format!("d/f{i}")),
            pseudo_random(50_000 + i as usize, i),
        )
        .unwrap();
    }
    std::fs::create_dir_all(&data).unwrap();
    // rest-server's default file names, in the data directory.
    certificate(
        &data,
        "public_key",
        "private_key",
        ECDSA,
        "basicConstraints=critical,CA:FALSE",
    );
    let users = format!(
        "alice:{}\nbob:{}\n",
        bcrypt::hash("alice pw", 10).unwrap(),
        bcrypt::hash("bob pw", 10).unwrap()
    );
    std::fs::write(data.join(".htpasswd"), users).unwrap();
    let server = Server::start_with(
        &data,
        &["--listen", "127.0.0.1:0", "--tls", "--private-repos"],
    );
    let addr = server.tcp_addr();
    let ca = data.join("public_key");
    let ca = ca.to_str().unwrap();
    let alice = format!("rest:https://alice:alice%20pw@{addr}/alice/");
    let tls = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["--cacert".to_string(), ca.to_string()];
        all.extend(args.iter().map(|s| s.to_string()));
        all
    };
    let run = |repo: &str, args: &[&str]| {
        let args = tls(args);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        restic(repo, &cache, &refs)
    };
    ok(run(&alice, &["init"]), "init as alice over TLS");
    ok(
        run(&alice, &["backup", source.to_str().unwrap()]),
        "backup as alice over TLS",
    );
    ok(run(&alice, &["check", "--read-data"]), "check over TLS");
    let target = dir.path().join("restore");
    ok(
        run(
            &alice,
            &["restore", "latest", "--target", target.to_str().unwrap()],
        ),
        "restore over TLS",
    );
    assert_same_tree(&source, &target.join(source.strip_prefix("/").unwrap()));

    // Alice cannot reach Bob's repository; a wrong password gets nowhere.
    let bob_as_alice = format!("rest:https://alice:alice%20pw@{addr}/bob/");
    assert!(!run(&bob_as_alice, &["init"]).status.success());
    assert!(!data.join("bob").exists());
    let wrong = format!("rest:https://bob:nope@{addr}/alice/");
    assert!(!run(&wrong, &["snapshots"]).status.success());
    // Without the CA, restic refuses the self-signed certificate.
    assert!(!restic(&alice, &cache, &["snapshots"]).status.success());
}

#[test]
fn restic_with_an_append_grant_backs_up_but_cannot_prune() {
    if !require_tool(
        "restic",
        "restic_with_an_append_grant_backs_up_but_cannot_prune",
    ) {
        return;
    }
    let dir = TempDir::new("restic-acl");
    let data = dir.path().join("data");
    let source = dir.path().join("source");
    let cache = dir.path().join("cache");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("a"), pseudo_random(200_000, 1)).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join(".htpasswd"),
        format!(
            "laptop:{}\nadmin:{}\n",
            bcrypt::hash("l", 4).unwrap(),
            bcrypt::hash("x", 4).unwrap()
        ),
    )
    .unwrap();
    let acl = dir.path().join("acl");
    std::fs::write(&acl, "admin full *\nlaptop append /laptop\n").unwrap();
    let server = Server::start_with(
        &data,
        &["--listen", "127.0.0.1:0", "--acl", acl.to_str().unwrap()],
    );
    let addr = server.tcp_addr();
    let laptop = format!("rest:http://laptop:l@{addr}/laptop/");
    let admin = format!("rest:http://admin:x@{addr}/laptop/");
    ok(
        restic(&laptop, &cache, &["init"]),
        "init with an append grant",
    );
    ok(
        restic(&laptop, &cache, &["backup", source.to_str().unwrap()]),
        "backup",
    );
    std::fs::write(source.join("b"), pseudo_random(100_000, 2)).unwrap();
    ok(
        restic(&laptop, &cache, &["backup", source.to_str().unwrap()]),
        "second backup",
    );
    let refused = restic(&laptop, &cache, &["forget", "--keep-last", "1", "--prune"]);
    assert!(!refused.status.success(), "an append grant cannot prune");
    ok(restic(&admin, &cache, &["unlock"]), "admin unlock");
    ok(
        restic(&admin, &cache, &["forget", "--keep-last", "1", "--prune"]),
        "admin prunes",
    );
    ok(restic(&admin, &cache, &["check"]), "check after prune");
}
