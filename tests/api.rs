//! The REST API over HTTP: every endpoint, status code and header restic relies on.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;

use crate::util::*;

#[test]
fn create_makes_the_local_backend_layout() {
    let dir = TempDir::new("create");
    let server = Server::start(&dir.path().join("data"), &[]);
    let refused = server.request("POST", "/laptop/");
    assert_eq!(refused.status, 400, "create needs ?create=true");
    assert!(!dir.path().join("data/laptop").exists());
    assert_eq!(server.request("POST", "/laptop/?create=false").status, 400);

    assert_eq!(server.request("POST", "/laptop/?create=true").status, 200);
    let repo = dir.path().join("data/laptop");
    for sub in ["keys", "locks", "snapshots", "index", "data"] {
        assert!(repo.join(sub).is_dir(), "{sub}");
    }
    for byte in 0..=255u8 {
        assert!(repo.join(format!("data/{byte:02x}")).is_dir());
    }
    let mode = std::fs::metadata(repo.join("keys"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    // Idempotent, as restic may retry.
    assert_eq!(server.request("POST", "/laptop/?create=true").status, 200);
    // Wrong method on a repository path.
    let wrong = server.request("GET", "/laptop/");
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("allow"), Some("POST"));
}

#[test]
fn nested_and_root_repositories() {
    let dir = TempDir::new("nested");
    let server = Server::start(&dir.path().join("data"), &[]);
    assert_eq!(
        server.request("POST", "/alice/laptop/?create=true").status,
        200
    );
    assert!(dir.path().join("data/alice/laptop/data/ff").is_dir());
    assert_eq!(server.request("POST", "/?create=true").status, 200);
    assert!(dir.path().join("data/keys").is_dir());
    let put = server.send(&Request::new("POST", "/config").body("root config"));
    assert_eq!(put.status, 200);
    assert_eq!(server.request("GET", "/config").text(), "root config");
    // Three levels is one too many.
    assert_eq!(server.request("POST", "/a/b/c/?create=true").status, 404);
    assert!(!dir.path().join("data/a").exists());
}

#[test]
fn config_lifecycle() {
    let dir = TempDir::new("config");
    let server = server_with_repo(&dir, &[]);
    assert_eq!(server.request("HEAD", "/repo/config").status, 404);
    assert_eq!(server.request("GET", "/repo/config").status, 404);
    let put = server.send(&Request::new("POST", "/repo/config").body("encrypted config"));
    assert_eq!(put.status, 200);
    let head = server.request("HEAD", "/repo/config");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("16"));
    assert_eq!(
        server.request("GET", "/repo/config").text(),
        "encrypted config"
    );
    let again = server.send(&Request::new("POST", "/repo/config").body("other"));
    assert_eq!(again.status, 403, "a config is never replaced");
    // The same bytes again: a retry whose answer was lost.
    let retry = server.send(&Request::new("POST", "/repo/config").body("encrypted config"));
    assert_eq!(retry.status, 200, "an identical config is taken as stored");
    for different in ["encrypted confiG", "encrypted config!", "encrypted"] {
        let other = server.send(&Request::new("POST", "/repo/config").body(different));
        assert_eq!(other.status, 403, "{different}");
    }
    assert_eq!(
        server.request("GET", "/repo/config").text(),
        "encrypted config"
    );
    assert_eq!(server.request("DELETE", "/repo/config").status, 200);
    assert_eq!(
        server.request("DELETE", "/repo/config").status,
        200,
        "idempotent"
    );
    assert_eq!(server.request("GET", "/repo/config").status, 404);
    let wrong = server.request("PUT", "/repo/config");
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("allow"), Some("HEAD, GET, POST, DELETE"));
}

#[test]
fn objects_round_trip_with_ranges() {
    let dir = TempDir::new("objects");
    let server = server_with_repo(&dir, &[]);
    let content = pseudo_random(300_000, 1);
    let (id, put) = upload(&server, "data", &content);
    assert_eq!(put.status, 200, "{}", put.text());
    let on_disk = dir.path().join(format!("data/repo/data/{}/{id}", &id[..2]));
    assert_eq!(std::fs::read(&on_disk).unwrap(), content);
    assert_eq!(
        std::fs::metadata(&on_disk).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let path = format!("/repo/data/{id}");

    let head = server.request("HEAD", &path);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("300000"));
    let get = server.request("GET", &path);
    assert_eq!(get.status, 200);
    assert_eq!(get.body, content);

    let ranged = |range: &str| server.send(&Request::new("GET", &path).header("Range", range));
    let r = ranged("bytes=10-19");
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 10-19/300000"));
    assert_eq!(r.body, content[10..20]);
    let r = ranged("bytes=299990-");
    assert_eq!(r.status, 206);
    assert_eq!(r.body, content[299_990..]);
    let r = ranged("bytes=-5");
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range"),
        Some("bytes 299995-299999/300000")
    );
    assert_eq!(r.body, content[299_995..]);
    let r = ranged("bytes=100000-999999");
    assert_eq!(r.status, 206);
    assert_eq!(r.body, content[100_000..]);
    let r = ranged("bytes=300000-");
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */300000"));

    // A retry of a stored upload (restic retries when an answer is lost):
    // 200, the stored file untouched; other bytes under the name: 403.
    let file = dir.path().join("data/repo/data").join(&id[..2]).join(&id);
    let before = std::fs::metadata(&file).unwrap();
    let again = server.send(&Request::new("POST", &path).body(content.clone()));
    assert_eq!(again.status, 200, "a retry of a stored upload");
    let mut other = content.clone();
    other[0] ^= 1;
    let refused = server.send(&Request::new("POST", &path).body(other));
    assert_eq!(refused.status, 403, "objects are never overwritten");
    let after = std::fs::metadata(&file).unwrap();
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(
        (before.ino(), before.mtime_nsec()),
        (after.ino(), after.mtime_nsec())
    );
    assert!(server.request("GET", &path).body == content);

    for kind in ["keys", "locks", "snapshots", "index"] {
        let body = format!("{kind} content");
        let (id, put) = upload(&server, kind, body.as_bytes());
        assert_eq!(put.status, 200);
        assert!(dir.path().join(format!("data/repo/{kind}/{id}")).is_file());
        assert_eq!(
            server.request("GET", &format!("/repo/{kind}/{id}")).text(),
            body
        );
    }

    assert_eq!(server.request("DELETE", &path).status, 200);
    assert!(!on_disk.exists());
    assert_eq!(server.request("DELETE", &path).status, 200, "idempotent");
    assert_eq!(server.request("GET", &path).status, 404);
    assert_eq!(server.request("HEAD", &path).status, 404);
    let wrong = server.request("PATCH", &path);
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("allow"), Some("HEAD, GET, POST, DELETE"));
}

#[test]
fn lists_in_v1_and_v2() {
    let dir = TempDir::new("list");
    let server = server_with_repo(&dir, &[]);
    let v1 = server.request("GET", "/repo/data/");
    assert_eq!(v1.status, 200);
    assert_eq!(
        v1.header("content-type"),
        Some("application/vnd.x.restic.rest.v1")
    );
    assert_eq!(v1.text(), "[]");
    let v2 = server.send(
        &Request::new("GET", "/repo/keys/").header("Accept", "application/vnd.x.restic.rest.v2"),
    );
    assert_eq!(
        v2.header("content-type"),
        Some("application/vnd.x.restic.rest.v2")
    );
    assert_eq!(v2.text(), "[]");

    let mut ids = Vec::new();
    for seed in 0..5 {
        let (id, put) = upload(&server, "data", &pseudo_random(1000 + seed as usize, seed));
        assert_eq!(put.status, 200);
        ids.push(id);
    }
    // Strays: a file directly in data/ and a non-object name in a fan-out folder.
    std::fs::write(dir.path().join("data/repo/data/README"), "x").unwrap();
    std::fs::write(dir.path().join("data/repo/data/00/notes.txt"), "x").unwrap();

    let v1 = server.request("GET", "/repo/data/");
    let mut listed: Vec<String> = v1
        .text()
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|s| s.trim_matches('"').to_string())
        .collect();
    listed.sort();
    ids.sort();
    assert_eq!(listed, ids);

    let v2 = server.send(
        &Request::new("GET", "/repo/data/").header("Accept", "application/vnd.x.restic.rest.v2"),
    );
    let text = v2.text();
    for id in &ids {
        assert!(text.contains(&format!("\"name\":\"{id}\"")), "{text}");
    }
    for size in 1000..1005 {
        assert!(text.contains(&format!("\"size\":{size}")), "{text}");
    }
    assert!(text.starts_with("[{") && text.ends_with("}]"), "{text}");
    assert_eq!(text.matches("\"name\"").count(), 5);

    assert_eq!(server.request("GET", "/missing/keys/").status, 404);
    let wrong = server.request("POST", "/repo/keys/");
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("allow"), Some("GET"));
}

#[test]
fn hash_mismatch_leaves_nothing() {
    let dir = TempDir::new("mismatch");
    let server = server_with_repo(&dir, &[]);
    let content = pseudo_random(500_000, 7);
    let wrong_id = sha256_hex(b"something else");
    let put = server.send(&Request::new("POST", &format!("/repo/data/{wrong_id}")).body(content));
    assert_eq!(put.status, 400);
    let snapshot_put =
        server.send(&Request::new("POST", &format!("/repo/snapshots/{wrong_id}")).body("not that"));
    assert_eq!(snapshot_put.status, 400);
    assert_eq!(files_below(&dir.path().join("data")), Vec::<String>::new());
    assert!(server.wait_for_log("does not match", std::time::Duration::from_secs(5)));
}

#[test]
fn no_verify_upload_stores_unchecked_content() {
    let dir = TempDir::new("noverify");
    let server = server_with_repo(&dir, &["--no-verify-upload"]);
    let wrong_id = sha256_hex(b"something else");
    let path = format!("/repo/keys/{wrong_id}");
    let put = server.send(&Request::new("POST", &path).body("data"));
    assert_eq!(put.status, 200);
    assert!(server.log().contains("upload verification: off"));
    // Unverified, a retry is recognised by its bytes: identical is 200,
    // anything else (also chunked) is 403 and the stored file stays.
    assert_eq!(
        server
            .send(&Request::new("POST", &path).body("data"))
            .status,
        200
    );
    let chunked = Request::new("POST", &path).body("data").chunked();
    assert_eq!(server.send(&chunked).status, 200);
    for other in ["date", "dat", "data+"] {
        assert_eq!(
            server.send(&Request::new("POST", &path).body(other)).status,
            403,
            "{other}"
        );
        let chunked = Request::new("POST", &path).body(other).chunked();
        assert_eq!(server.send(&chunked).status, 403, "{other} chunked");
    }
    assert_eq!(server.request("GET", &path).text(), "data");
}

#[test]
fn chunked_uploads_are_verified_too() {
    let dir = TempDir::new("chunked");
    let server = server_with_repo(&dir, &[]);
    let content = pseudo_random(1_000_000, 3);
    let id = sha256_hex(&content);
    let put = server.send(
        &Request::new("POST", &format!("/repo/data/{id}"))
            .body(content.clone())
            .chunked(),
    );
    assert_eq!(put.status, 200);
    assert_eq!(
        server.request("GET", &format!("/repo/data/{id}")).body,
        content
    );
}

#[test]
fn disconnect_mid_upload_leaves_nothing() {
    let dir = TempDir::new("disconnect");
    let server = server_with_repo(&dir, &[]);
    let content = pseudo_random(4 << 20, 9);
    let id = sha256_hex(&content);
    let request = Request::new("POST", &format!("/repo/data/{id}")).body(content.clone());
    {
        let mut stream = server.connect();
        stream.write_all(&request.head_bytes()).unwrap();
        stream.write_all(&content[..content.len() / 2]).unwrap();
        stream.flush().unwrap();
        // The upload is under way: part of it is in a temp file.
        let pack_dir = dir.path().join(format!("data/repo/data/{}", &id[..2]));
        assert!(eventually(std::time::Duration::from_secs(10), || {
            !files_below(&pack_dir).is_empty()
        }));
    } // dropped: the client goes away
    let data = dir.path().join("data");
    assert!(
        eventually(std::time::Duration::from_secs(10), || files_below(&data)
            .is_empty()),
        "left behind: {:?}",
        files_below(&data)
    );
    assert_eq!(
        server.request("HEAD", &format!("/repo/data/{id}")).status,
        404
    );
    // The server is fine and takes the whole upload afterwards.
    assert_eq!(server.send(&request).status, 200);
}

#[test]
fn metadata_bodies_are_capped() {
    let dir = TempDir::new("metacap");
    let server = server_with_repo(&dir, &["--max-metadata-size", "1024"]);
    let big = pseudo_random(2048, 1);
    let (_, put) = upload(&server, "snapshots", &big);
    assert_eq!(put.status, 413);
    let id = sha256_hex(&big);
    let chunked = server.send(
        &Request::new("POST", &format!("/repo/keys/{id}"))
            .body(big.clone())
            .chunked(),
    );
    assert_eq!(chunked.status, 413, "caught while streaming too");
    let (_, small) = upload(&server, "snapshots", &big[..1000]);
    assert_eq!(small.status, 200);
    let (_, data) = upload(&server, "data", &big);
    assert_eq!(data.status, 200, "data packs are not metadata");
    assert_eq!(
        files_below(&dir.path().join("data/repo/keys")),
        Vec::<String>::new()
    );
}

#[test]
fn unknown_routes_are_404() {
    let dir = TempDir::new("unknown");
    let server = server_with_repo(&dir, &[]);
    for path in [
        "/repo/data/abc",
        "/repo/data/ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
        "/repo/other/x",
        "/repo/data",
        "/repo/config/x",
        "/repo",
    ] {
        assert_eq!(server.request("GET", path).status, 404, "{path}");
    }
}

#[test]
fn expected_misses_stay_out_of_the_log_unless_debugging() {
    // restic asks for objects that are not there as part of its normal work
    // (config before init, lock checks).
    let dir = TempDir::new("quiet");
    let server = server_with_repo(&dir, &[]);
    let missing = format!("/repo/locks/{}", "ab".repeat(32));
    for _ in 0..20 {
        assert_eq!(server.request("GET", "/repo/config").status, 404);
        assert_eq!(server.request("HEAD", &missing).status, 404);
    }
    // A refusal that is logged: once its line is there, so would be theirs.
    assert_eq!(server.request("GET", "/repo/nonsense/x").status, 404);
    assert!(server.wait_for_log("/repo/nonsense/x", std::time::Duration::from_secs(10)));
    assert!(!server.log().contains("/repo/config"), "{}", server.log());
    assert!(!server.log().contains(&missing), "{}", server.log());

    let dir = TempDir::new("quiet-debug");
    let server = server_with_repo(&dir, &["--debug"]);
    assert_eq!(server.request("GET", "/repo/config").status, 404);
    assert!(server.wait_for_log("GET /repo/config", std::time::Duration::from_secs(10)));
}

#[test]
fn a_half_closed_client_gets_its_answer_and_its_upload_is_stored() {
    let dir = TempDir::new("half-close");
    let server = server_with_repo(&dir, &[]);
    let content = pseudo_random(300_000, 9);
    let id = sha256_hex(&content);
    let mut conn = server.connect();
    let request = Request::new("POST", &format!("/repo/data/{id}")).body(content.clone());
    conn.write_all(&request.to_bytes()).unwrap();
    conn.shutdown_write();
    assert_eq!(read_response(&mut conn, false).status, 200);
    let stored = server.request("GET", &format!("/repo/data/{id}"));
    assert_eq!(stored.status, 200);
    assert_eq!(stored.body, content);
}

#[test]
fn an_upload_that_arrived_whole_is_stored_though_the_client_left() {
    let dir = TempDir::new("gone");
    let server = server_with_repo(&dir, &[]);
    let mut ids = Vec::new();
    for seed in 0..20 {
        let content = pseudo_random(200_000, 100 + seed);
        let id = sha256_hex(&content);
        let mut conn = server.connect();
        let request = Request::new("POST", &format!("/repo/data/{id}")).body(content);
        conn.write_all(&request.to_bytes()).unwrap();
        drop(conn); // gone before the answer
        ids.push(id);
    }
    for id in &ids {
        let path = format!("/repo/data/{id}");
        assert!(
            eventually(std::time::Duration::from_secs(20), || server
                .request("HEAD", &path)
                .status
                == 200),
            "{path} was not stored:\n{}",
            server.log()
        );
    }
    assert!(
        !server.log().contains("could not remove"),
        "{}",
        server.log()
    );
    let leftovers: Vec<String> = files_below(&dir.path().join("data"))
        .into_iter()
        .filter(|f| f.contains(".rest-server-tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
