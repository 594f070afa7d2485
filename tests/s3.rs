//! S3-compatible storage: the real store these tests run against. Later tests
//! (the S3 backend, the offsite mirror) build on this one passing.

use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::restic::make_tree;
use crate::util::seaweed::{ACCESS_KEY, SECRET_KEY, SeaweedCluster, SeaweedFs};
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
    restore_matches(
        |args| restic(&repo, &cache, args),
        &source,
        &dir.path().join("restore"),
    );

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
    restore_matches(
        |args| restic(&repo2, &dir.path().join("cache3"), args),
        &source,
        &dir.path().join("restore2"),
    );
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

/// Runs the server to its exit (bounded): for settings it must refuse.
fn refused_start(mut command: Command) -> String {
    let mut child = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start rest-server");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server neither started nor stopped within 30 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut said = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut said).unwrap();
    assert!(!status.success(), "the server started:\n{said}");
    assert!(!said.contains(SECRET_KEY), "a secret in the log:\n{said}");
    said
}

fn server_command(store: &SeaweedFs, location: &str) -> Command {
    server_at(&format!("s3:{}/{location}", store.endpoint))
}

/// The server on `path`, with no credentials from the environment.
fn server_at(path: &str) -> Command {
    let mut command = Command::new(binary());
    command
        .arg("--path")
        .arg(path)
        .args(["--no-auth", "--listen", "127.0.0.1:0", "--debug"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SECRET_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SHARED_CREDENTIALS_FILE");
    command
}

#[test]
fn s3_uploads_are_verified_and_never_overwritten() {
    let test = "s3::s3_uploads_are_verified_and_never_overwritten";
    if !require_tool("weed", test) {
        return;
    }
    let store = SeaweedFs::start();
    let dir = TempDir::new("s3-verify");
    let server = s3_server(&store, "bucket", dir.path(), &[]);
    assert_eq!(server.request("POST", "/repo/?create=true").status, 200);
    // Several upload buffers, and a body smaller than one.
    for len in [1_500_000, 100] {
        let content = pseudo_random(len, len as u64);
        let (id, stored) = upload(&server, "data", &content);
        assert_eq!(stored.status, 200, "{}", stored.text());
        let got = server.request("GET", &format!("/repo/data/{id}"));
        assert_eq!(got.status, 200);
        assert!(got.body == content, "content read back differs");
        // A retry of a stored upload is taken as stored; other bytes under
        // the name are refused and the stored object stays.
        assert_eq!(upload(&server, "data", &content).1.status, 200);
        let mut other = content.clone();
        other[0] ^= 1;
        let refused = server.send(&Request::new("POST", &format!("/repo/data/{id}")).body(other));
        assert_eq!(refused.status, 403);
        assert!(server.request("GET", &format!("/repo/data/{id}")).body == content);

        let wrong = sha256_hex(b"something else");
        let refused = server
            .send(&Request::new("POST", &format!("/repo/data/{wrong}")).body(content.clone()));
        assert_eq!(refused.status, 400, "{}", refused.text());
        assert_eq!(
            server
                .request("HEAD", &format!("/repo/data/{wrong}"))
                .status,
            404
        );
        let listing = server.request("GET", "/repo/data/").text();
        assert!(!listing.contains(&wrong), "{listing}");
        assert!(listing.contains(&id), "{listing}");
    }
    // Without a length (chunked): a multipart upload, verified before it
    // completes. Several parts, then one.
    for len in [20_000_000, 1000] {
        let content = pseudo_random(len, 7 + len as u64);
        let id = sha256_hex(&content);
        let stored = server.send(
            &Request::new("POST", &format!("/repo/data/{id}"))
                .body(content.clone())
                .chunked(),
        );
        assert_eq!(stored.status, 200, "{}", stored.text());
        let got = server.request("GET", &format!("/repo/data/{id}"));
        assert!(
            got.body == content,
            "chunked upload of {len} read back differs"
        );
        let wrong = sha256_hex(format!("not {len}").as_bytes());
        let refused = server.send(
            &Request::new("POST", &format!("/repo/data/{wrong}"))
                .body(content)
                .chunked(),
        );
        assert_eq!(refused.status, 400, "{}", refused.text());
        assert_eq!(
            server
                .request("HEAD", &format!("/repo/data/{wrong}"))
                .status,
            404
        );
    }
    // Ranges are passed on to the store.
    let content = pseudo_random(10_000, 9);
    let (id, _) = upload(&server, "data", &content);
    let part = server
        .send(&Request::new("GET", &format!("/repo/data/{id}")).header("Range", "bytes=100-199"));
    assert_eq!(part.status, 206);
    assert_eq!(part.header("Content-Range"), Some("bytes 100-199/10000"));
    assert!(part.body == content[100..200]);
    let past = server
        .send(&Request::new("GET", &format!("/repo/data/{id}")).header("Range", "bytes=20000-"));
    assert_eq!(past.status, 416);
    assert_eq!(past.header("Content-Range"), Some("bytes */10000"));
    // Above upload_cutoff, a declared length goes multipart too.
    let settings = dir.path().join("cutoff.conf");
    std::fs::write(&settings, "upload_cutoff = 1M\nchunk_size = 5M\n").unwrap();
    let mut command = server_command(&store, "bucket/cutoff");
    command
        .arg("--s3-config")
        .arg(&settings)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    let cutoff = Server::spawn(command, dir.path());
    assert_eq!(cutoff.request("POST", "/repo/?create=true").status, 200);
    let big = pseudo_random(12_000_000, 12);
    let (big_id, stored) = upload(&cutoff, "data", &big);
    assert_eq!(stored.status, 200, "{}", stored.text());
    assert!(cutoff.request("GET", &format!("/repo/data/{big_id}")).body == big);
    let wrong = sha256_hex(b"not big");
    let refused =
        cutoff.send(&Request::new("POST", &format!("/repo/data/{wrong}")).body(big.clone()));
    assert_eq!(refused.status, 400);
    assert_eq!(
        cutoff
            .request("HEAD", &format!("/repo/data/{wrong}"))
            .status,
        404
    );
    assert!(
        cutoff.wait_for_log("multipart upload of", Duration::from_secs(10)),
        "{}",
        cutoff.log()
    );
    // Deleting frees it; deleting again is no error (restic retries).
    assert_eq!(
        server.request("DELETE", &format!("/repo/data/{id}")).status,
        200
    );
    assert_eq!(
        server.request("DELETE", &format!("/repo/data/{id}")).status,
        200
    );
    assert_eq!(
        server.request("HEAD", &format!("/repo/data/{id}")).status,
        404
    );
    assert!(!server.log().contains(SECRET_KEY));
}

#[test]
fn s3_credentials_come_from_each_source_and_a_wrong_one_stops_the_start() {
    let test = "s3::s3_credentials_come_from_each_source_and_a_wrong_one_stops_the_start";
    if !require_tool("weed", test) {
        return;
    }
    let store = SeaweedFs::start();
    let dir = TempDir::new("s3-creds");
    let listed = |server: &Server| {
        assert_eq!(server.request("POST", "/r/?create=true").status, 200);
        assert_eq!(server.request("GET", "/r/keys/").status, 200);
        assert!(!server.log().contains(SECRET_KEY), "{}", server.log());
    };

    // The settings file, readable only by its owner.
    let settings = dir.path().join("s3.conf");
    std::fs::write(
        &settings,
        format!(
            "provider = Other\naccess_key_id = {ACCESS_KEY}\nsecret_access_key = {SECRET_KEY}\n"
        ),
    )
    .unwrap();
    set_mode(&settings, 0o600);
    let mut command = server_command(&store, "bucket");
    command.arg("--s3-config").arg(&settings);
    listed(&Server::spawn(command, dir.path()));
    // ... and refused when others may read it.
    set_mode(&settings, 0o644);
    let mut command = server_command(&store, "bucket");
    command.arg("--s3-config").arg(&settings);
    let said = refused_start(command);
    assert!(said.contains("chmod 600"), "{said}");

    // The shared credentials file, with a profile.
    let shared = dir.path().join("credentials");
    std::fs::write(
        &shared,
        format!(
            "[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = wrong\n\
             [backup]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
        ),
    )
    .unwrap();
    // It holds secrets: only its owner may read it (tests/s3_faults.rs).
    set_mode(&shared, 0o600);
    let mut command = server_command(&store, "bucket");
    command
        .env("AWS_SHARED_CREDENTIALS_FILE", &shared)
        .env("AWS_PROFILE", "backup");
    listed(&Server::spawn(command, dir.path()));

    // A wrong secret: a clear error at startup, not a hang.
    let mut command = server_command(&store, "bucket");
    command
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret");
    let said = refused_start(command);
    assert!(said.contains("403"), "{said}");
    assert!(!said.contains("not-the-secret"), "{said}");

    // Nothing listening: a clear error too.
    let mut command = Command::new(binary());
    command
        .args(["--path", "s3:http://127.0.0.1:9/bucket", "--no-auth"])
        .args(["--listen", "127.0.0.1:0"])
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    let said = refused_start(command);
    assert!(said.contains("cannot connect to the store"), "{said}");
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn s3_over_https_checks_the_store_certificate() {
    let test = "s3::s3_over_https_checks_the_store_certificate";
    if !require_tool("weed", test) || !require_tool("openssl", test) {
        return;
    }
    let store = SeaweedFs::start_tls();
    let (endpoint, ca) = store.https.clone().unwrap();
    let dir = TempDir::new("s3-https");
    let settings = dir.path().join("s3.conf");
    std::fs::write(&settings, format!("ca_file = {}\n", ca.display())).unwrap();
    let mut command = server_at(&format!("s3:{endpoint}/bucket"));
    command
        .arg("--s3-config")
        .arg(&settings)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    let server = Server::spawn(command, dir.path());
    assert_eq!(server.request("POST", "/r/?create=true").status, 200);
    let content = pseudo_random(300_000, 3);
    let id = sha256_hex(&content);
    let stored = server.send(&Request::new("POST", &format!("/r/data/{id}")).body(content.clone()));
    assert_eq!(stored.status, 200, "{}", stored.text());
    assert!(server.request("GET", &format!("/r/data/{id}")).body == content);

    // With another CA, the store's certificate is not trusted: no start.
    let (other_ca, _) = certificate(
        dir.path(),
        "other-ca.pem",
        "other-key.pem",
        ECDSA,
        "basicConstraints=critical,CA:TRUE",
    );
    let mut command = server_at(&format!("s3:{endpoint}/bucket"));
    command
        .env("SSL_CERT_FILE", &other_ca)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    let said = refused_start(command);
    assert!(said.contains("invalid peer certificate"), "{said}");
}

#[test]
fn a_store_node_killed_mid_backup_leaves_nothing_partial() {
    let test = "s3::a_store_node_killed_mid_backup_leaves_nothing_partial";
    if !require_tool("weed", test) || !require_tool("restic", test) {
        return;
    }
    let mut cluster = SeaweedCluster::start();
    cluster.wait_for_volume_servers();
    let dir = TempDir::new("s3-node-kill");
    let (source, cache) = (dir.path().join("source"), dir.path().join("cache"));
    make_tree(&source);
    for i in 0..4u64 {
        std::fs::write(
            source.join(format!("more{i}.bin")),
            pseudo_random(6 << 20, 50 + i),
        )
        .unwrap();
    }
    let mut command = server_at(&format!("s3:{}/bucket/board", cluster.endpoint));
    command
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    let server = Server::spawn(command, dir.path());
    let repo = format!("rest:http://{}/laptop/", server.tcp_addr());
    ok(restic(&repo, &cache, &["init"]), "init");

    // A volume server dies once the first pack is on its way.
    let backup = {
        let (repo, cache, source) = (repo.clone(), cache.clone(), source.clone());
        std::thread::spawn(move || restic(&repo, &cache, &["backup", source.to_str().unwrap()]))
    };
    assert!(
        server.wait_for_log("POST /laptop/data/", Duration::from_secs(120)),
        "{}",
        server.log()
    );
    cluster.kill_volume(1);
    let first = backup.join().unwrap();
    // Either outcome is allowed; a failure must say why.
    if !first.status.success() {
        let said = String::from_utf8_lossy(&first.stderr);
        assert!(!said.trim().is_empty(), "a failed backup said nothing");
    }

    cluster.start_volume(1);
    cluster.wait_for_volume_servers();
    ok(
        restic(&repo, &cache, &["backup", source.to_str().unwrap()]),
        "backup after the node is back",
    );
    // Whatever the interrupted backup left is whole: every pack is read.
    ok(
        restic(&repo, &cache, &["check", "--read-data"]),
        "check --read-data",
    );
    restore_matches(
        |args| restic(&repo, &cache, args),
        &source,
        &dir.path().join("restore"),
    );
}

#[test]
fn cleanup_aborts_the_multipart_uploads_a_crash_left() {
    let test = "s3::cleanup_aborts_the_multipart_uploads_a_crash_left";
    if !require_tool("weed", test) {
        return;
    }
    let store = SeaweedFs::start();
    let dir = TempDir::new("s3-cleanup");
    let mut command = server_command(&store, "bucket");
    command
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    let mut server = Server::spawn(command, dir.path());
    assert_eq!(server.request("POST", "/r/?create=true").status, 200);
    // A chunked upload that has begun when the server dies.
    let mut stream = server.connect();
    let id = "ab".repeat(32);
    let head = format!(
        "POST /r/data/{id} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&[7u8; 0x1000]).unwrap();
    assert!(
        server.wait_for_log("multipart upload of", Duration::from_secs(30)),
        "{}",
        server.log()
    );
    server.stop_with(nix::sys::signal::Signal::SIGKILL);

    let cleanup = |extra: &[&str]| {
        let out = server_command(&store, "bucket")
            .arg("cleanup")
            .args(extra)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        said
    };
    // A running server's uploads are young: kept by default.
    assert!(cleanup(&[]).contains("aborted 0 "));
    assert!(cleanup(&["--min-age", "0"]).contains("aborted 1 "));
    assert!(cleanup(&["--min-age", "0"]).contains("aborted 0 "));
}

#[test]
fn storage_class_and_encryption_settings_are_accepted_by_the_store() {
    let test = "s3::storage_class_and_encryption_settings_are_accepted_by_the_store";
    if !require_tool("weed", test) {
        return;
    }
    if !require_tool("openssl", test) {
        return;
    }
    // https: an SSE-C key is only ever sent over TLS.
    let store = SeaweedFs::start_tls();
    let (endpoint, ca) = store.https.clone().unwrap();
    let dir = TempDir::new("s3-sse");
    let ca_line = format!("ca_file = {}\n", ca.display());
    for (tag, settings) in [
        (
            "class",
            "storage_class = STANDARD_IA\nacl = private\n".to_string(),
        ),
        ("sse-s3", "server_side_encryption = AES256\n".to_string()),
        ("sse-c", format!("sse_customer_key = {}\n", "k".repeat(32))),
    ] {
        let file = dir.path().join(format!("{tag}.conf"));
        std::fs::write(&file, format!("{ca_line}{settings}")).unwrap();
        set_mode(&file, 0o600);
        let mut command = server_at(&format!("s3:{endpoint}/bucket/{tag}"));
        command
            .arg("--s3-config")
            .arg(&file)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
        let server = Server::spawn(command, dir.path());
        assert_eq!(server.request("POST", "/r/?create=true").status, 200);
        for kind in ["data", "keys"] {
            let content = pseudo_random(400_000, 11);
            let (id, stored) = {
                let id = sha256_hex(&content);
                let r = server
                    .send(&Request::new("POST", &format!("/r/{kind}/{id}")).body(content.clone()));
                (id, r)
            };
            assert_eq!(stored.status, 200, "{tag} {kind}: {}", stored.text());
            let got = server.request("GET", &format!("/r/{kind}/{id}"));
            assert_eq!(got.status, 200, "{tag} {kind}");
            assert!(got.body == content, "{tag} {kind}: read back differs");
            let part = server.send(
                &Request::new("GET", &format!("/r/{kind}/{id}")).header("Range", "bytes=10-19"),
            );
            assert!(part.body == content[10..20], "{tag} {kind}: range differs");
        }
        assert!(
            !server.log().contains(&"k".repeat(32)),
            "the SSE-C key in the log"
        );
    }
    // An object stored with SSE-C cannot be read without its key.
    let keyless_settings = dir.path().join("keyless.conf");
    std::fs::write(&keyless_settings, &ca_line).unwrap();
    let mut command = server_at(&format!("s3:{endpoint}/bucket/sse-c"));
    command
        .arg("--s3-config")
        .arg(&keyless_settings)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    let keyless = Server::spawn(command, dir.path());
    let id = sha256_hex(&pseudo_random(400_000, 11));
    let refused = keyless.request("GET", &format!("/r/data/{id}"));
    assert!(refused.status != 200, "read without the SSE-C key");
}
