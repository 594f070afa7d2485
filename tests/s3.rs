//! S3-compatible storage: the real store these tests run against. Later tests
//! (the S3 backend, the offsite mirror) build on this one passing.

use std::path::Path;
use std::process::Command;

use crate::restic::make_tree;
use crate::util::seaweed::{ACCESS_KEY, SECRET_KEY, SeaweedFs};
use crate::util::*;

/// Starts the server on `s3:<store>/<location>` with the test identity in
/// its environment.
fn s3_server(store: &SeaweedFs, location: &str, dir: &Path, extra: &[&str]) -> Server {
    let mut command = Command::new(binary());
    command
        .arg("--path")
        .arg(format!("s3:{}/{location}", store.endpoint))
        .args(["--no-auth", "--listen", "127.0.0.1:0"])
        .args(extra)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env_remove("AWS_SHARED_CREDENTIALS_FILE")
        .env_remove("AWS_PROFILE");
    Server::spawn(command, dir)
}

#[test]
fn restic_through_the_server_on_s3_then_directly_and_through_a_second_server() {
    let test = "s3::restic_through_the_server_on_s3_then_directly_and_through_a_second_server";
    if !require_tool("weed", test) || !require_tool("restic", test) {
        return;
    }
    let store = SeaweedFs::start();
    let dir = TempDir::new("s3-backend");
    let (source, cache) = (dir.path().join("source"), dir.path().join("cache"));
    make_tree(&source);
    let server = s3_server(&store, "backups/board", dir.path(), &[]);
    let repo = format!("rest:http://{}/laptop/", server.tcp_addr());
    ok(restic(&repo, &cache, &["init"]), "init");
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

    std::fs::write(source.join("dir0/changed.bin"), pseudo_random(1 << 20, 77)).unwrap();
    std::fs::remove_file(source.join("big0.bin")).unwrap();
    ok(
        restic(&repo, &cache, &["backup", source.to_str().unwrap()]),
        "second backup",
    );
    ok(
        restic(&repo, &cache, &["forget", "--keep-last", "1", "--prune"]),
        "forget --prune",
    );

    // The bucket holds restic's own s3 layout: restic opens it directly.
    let direct = store
        .restic(
            "backups/board/laptop",
            SECRET_KEY,
            &dir.path().join("cache2"),
        )
        .args(["check", "--read-data"])
        .output()
        .expect("run restic");
    ok(direct, "check --read-data on s3: directly");

    // A second server on the same bucket serves the same repository.
    let second = s3_server(&store, "backups/board", dir.path(), &[]);
    let repo2 = format!("rest:http://{}/laptop/", second.tcp_addr());
    let target2 = dir.path().join("restore2");
    ok(
        restic(
            &repo2,
            &dir.path().join("cache3"),
            &["restore", "latest", "--target", target2.to_str().unwrap()],
        ),
        "restore through the second server",
    );
    assert_same_tree(&source, &target2.join(source.strip_prefix("/").unwrap()));
}

#[test]
fn the_test_store_enforces_signatures_and_restic_uses_it() {
    let test = "s3::the_test_store_enforces_signatures_and_restic_uses_it";
    if !require_tool("weed", test) || !require_tool("restic", test) {
        return;
    }
    let store = SeaweedFs::start();
    let dir = TempDir::new("s3-store");
    let cache = dir.path().join("cache");
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("a"), pseudo_random(300_000, 1)).unwrap();
    let run = |secret: &str, args: &[&str]| {
        store
            .restic("bucket/repo", secret, &cache)
            .args(args)
            .output()
            .expect("run restic")
    };
    ok(run(SECRET_KEY, &["init"]), "init");
    ok(
        run(SECRET_KEY, &["backup", files.to_str().unwrap()]),
        "backup",
    );
    ok(run(SECRET_KEY, &["check", "--read-data"]), "check");
    // A mock that accepts any signature would let this through.
    let wrong = store
        .restic("bucket/other", "not-the-secret", &cache)
        .arg("init")
        .output()
        .expect("run restic");
    let said = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        !wrong.status.success(),
        "a wrong secret was accepted:\n{said}"
    );
    assert!(said.contains("signature"), "{said}\n{}", store.log());
}
