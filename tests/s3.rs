//! S3-compatible storage on real stores: the same test bodies run on
//! SeaweedFS, Ceph RGW and moto (`per_store!`, tests/util/stores.rs), as
//! `s3::<body>::<store>`; what only one store can show (TLS, storage classes,
//! a cluster losing a node) runs on SeaweedFS alone. Later tests (the offsite
//! mirror, the scrub) build on these passing.

use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::Barrier;
use std::time::Duration;

use crate::restic::{make_tree, second_backup_and_prune};
use crate::util::seaweed::{ACCESS_KEY, SECRET_KEY, SeaweedCluster, SeaweedFs};
use crate::util::sigv4::SignedRequest;
use crate::util::stores::{S3Test, per_store};
use crate::util::*;

per_store!(
    restic_through_the_server_then_directly_and_through_a_second_server,
    ["restic"]
);
fn restic_through_the_server_then_directly_and_through_a_second_server(store: &S3Test) {
    let dir = TempDir::new("s3-backend");
    let (source, cache) = (dir.path().join("source"), dir.path().join("cache"));
    make_tree(&source);
    // Listings of a few objects a page: restic's lists of data, index and
    // snapshots span pages, and continuation tokens are followed.
    let pages = "list_chunk = 4\n";
    let location = store.location("board");
    let server = Server::spawn(store.server(&location, dir.path(), pages), dir.path());
    let addressing = match store.dialect().virtual_host {
        true => "virtual-host addressing",
        false => "path-style addressing",
    };
    let region = format!("region {}", store.dialect().region);
    assert!(
        server.wait_for_log(addressing, START_TIMEOUT) && server.log().contains(&region),
        "{}",
        server.log()
    );
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

    second_backup_and_prune(&repo, &cache, &source);

    // The bucket holds restic's own s3 layout: restic opens it directly.
    let direct = store
        .restic(
            &format!("{location}/laptop"),
            &store.secret_key,
            &dir.path().join("cache2"),
        )
        .args(["check", "--read-data"])
        .output()
        .expect("run restic");
    ok(direct, "check --read-data on s3: directly");

    // A second server on the same bucket serves the same repository.
    let second = Server::spawn(store.server(&location, dir.path(), pages), dir.path());
    let repo2 = format!("rest:http://{}/laptop/", second.tcp_addr());
    restore_matches(
        |args| restic(&repo2, &dir.path().join("cache3"), args),
        &source,
        &dir.path().join("restore2"),
    );
}

per_store!(the_store_enforces_signatures_and_restic_uses_it, ["restic"]);
fn the_store_enforces_signatures_and_restic_uses_it(store: &S3Test) {
    let dir = TempDir::new("s3-store");
    let cache = dir.path().join("cache");
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("a"), pseudo_random(300_000, 1)).unwrap();
    let run = |secret: &str, args: &[&str]| {
        store
            .restic(&store.location("repo"), secret, &cache)
            .args(args)
            .output()
            .expect("run restic")
    };
    ok(run(&store.secret_key, &["init"]), "init");
    ok(
        run(&store.secret_key, &["backup", files.to_str().unwrap()]),
        "backup",
    );
    ok(run(&store.secret_key, &["check", "--read-data"]), "check");
    // A mock that accepts any signature would let this through.
    let wrong = store
        .restic(&store.location("other"), "not-the-secret", &cache)
        .arg("init")
        .output()
        .expect("run restic");
    let said = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        !wrong.status.success(),
        "a wrong secret was accepted:\n{said}"
    );
    // restic says "signature" where it asked for the bucket's region (a body
    // with the store's code), "Access Denied" where it knew the region and
    // asked with a HEAD (no body).
    assert!(
        said.contains("signature") || said.contains("Access Denied"),
        "{said}\n{}",
        store.log()
    );
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

per_store!(uploads_are_verified_and_never_overwritten, []);
fn uploads_are_verified_and_never_overwritten(store: &S3Test) {
    let dir = TempDir::new("s3-verify");
    let server = Server::spawn(
        store.server(&store.location("verify"), dir.path(), ""),
        dir.path(),
    );
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
    let cutoff = Server::spawn(
        store.server(
            &store.location("cutoff"),
            dir.path(),
            "upload_cutoff = 1M\nchunk_size = 5M\n",
        ),
        dir.path(),
    );
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
    assert!(!server.log().contains(&store.secret_key));
}

per_store!(a_folder_of_more_than_one_list_page_is_listed_whole, []);
fn a_folder_of_more_than_one_list_page_is_listed_whole(store: &S3Test) {
    let dir = TempDir::new("s3-list");
    // Three keys a page: 20 packs (spread over data/xx/) take 7 pages.
    let server = Server::spawn(
        store.server(&store.location("list"), dir.path(), "list_chunk = 3\n"),
        dir.path(),
    );
    assert_eq!(server.request("POST", "/repo/?create=true").status, 200);
    let ids: Vec<String> = (0..20u64)
        .map(|i| {
            let (id, stored) = upload(&server, "data", &pseudo_random(1000, 300 + i));
            assert_eq!(stored.status, 200, "{}", stored.text());
            id
        })
        .collect();
    for accept in ["", "application/vnd.x.restic.rest.v2"] {
        let mut request = Request::new("GET", "/repo/data/");
        if !accept.is_empty() {
            request = request.header("Accept", accept);
        }
        let listing = server.send(&request);
        assert_eq!(listing.status, 200, "{}", listing.text());
        let text = listing.text();
        // Every pack once: no page lost, none repeated.
        for id in &ids {
            assert_eq!(text.matches(id.as_str()).count(), 1, "{accept:?}: {text}");
        }
    }
}

per_store!(
    credentials_come_from_each_source_and_a_wrong_one_stops_the_start,
    []
);
fn credentials_come_from_each_source_and_a_wrong_one_stops_the_start(store: &S3Test) {
    let dir = TempDir::new("s3-creds");
    let location = store.location("creds");
    let listed = |server: &Server| {
        assert_eq!(server.request("POST", "/r/?create=true").status, 200);
        assert_eq!(server.request("GET", "/r/keys/").status, 200);
        assert!(
            !server.log().contains(&store.secret_key),
            "{}",
            server.log()
        );
    };
    let token = |name: &str| match &store.session_token {
        Some(token) => format!("{name} = {token}\n"),
        None => String::new(),
    };

    // The settings file, readable only by its owner.
    let keys = format!(
        "access_key_id = {}\nsecret_access_key = {}\n{}",
        store.access_key,
        store.secret_key,
        token("session_token")
    );
    let command = store.bare_server(&location, dir.path(), &keys);
    listed(&Server::spawn(command, dir.path()));
    // ... and refused when others may read it.
    let command = store.bare_server(&location, dir.path(), &keys);
    let file = command
        .get_args()
        .skip_while(|a| *a != "--s3-config")
        .nth(1)
        .unwrap()
        .to_owned();
    set_mode(Path::new(&file), 0o644);
    let said = refused_start(command);
    assert!(said.contains("chmod 600"), "{said}");

    // The shared credentials file, with a profile.
    let shared = dir.path().join("credentials");
    std::fs::write(
        &shared,
        format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = wrong\n\
             [backup]\naws_access_key_id = {}\naws_secret_access_key = {}\n{}",
            store.access_key,
            store.access_key,
            store.secret_key,
            token("aws_session_token")
        ),
    )
    .unwrap();
    // It holds secrets: only its owner may read it (tests/s3_faults.rs).
    set_mode(&shared, 0o600);
    let mut command = store.bare_server(&location, dir.path(), "");
    command
        .env("AWS_SHARED_CREDENTIALS_FILE", &shared)
        .env("AWS_PROFILE", "backup");
    listed(&Server::spawn(command, dir.path()));

    // A wrong secret: a clear error at startup, not a hang.
    let mut command = store.server(&location, dir.path(), "");
    command.env("AWS_SECRET_ACCESS_KEY", "not-the-secret");
    let said = refused_start(command);
    assert!(said.contains("403"), "{said}");
    assert!(!said.contains("not-the-secret"), "{said}");

    // Nothing listening: a clear error too.
    let mut command = server_at("s3:http://127.0.0.1:9/bucket");
    store.credentials(&mut command);
    let said = refused_start(command);
    assert!(said.contains("cannot connect to the store"), "{said}");
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

per_store!(cleanup_aborts_the_multipart_uploads_a_crash_left, []);
fn cleanup_aborts_the_multipart_uploads_a_crash_left(store: &S3Test) {
    let dir = TempDir::new("s3-cleanup");
    let location = store.location("cleanup");
    let mut server = Server::spawn(store.server(&location, dir.path(), ""), dir.path());
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
        let out = store
            .server(&location, dir.path(), "")
            .arg("cleanup")
            .args(extra)
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
    if store.dialect().dates_uploads {
        assert!(cleanup(&[]).contains("aborted 0 "));
    }
    assert!(cleanup(&["--min-age", "0"]).contains("aborted 1 "));
    assert!(cleanup(&["--min-age", "0"]).contains("aborted 0 "));
}

per_store!(
    two_servers_racing_for_one_name_do_not_replace_each_other,
    []
);
fn two_servers_racing_for_one_name_do_not_replace_each_other(store: &S3Test) {
    let dir = TempDir::new("s3-race");
    let location = store.location("race");
    let servers =
        [0, 1].map(|_| Server::spawn(store.server(&location, dir.path(), ""), dir.path()));
    // `config` is the one name whose content is not its hash: two `restic
    // init`s of one repository through two servers race for it. Several
    // rounds, so that some start together.
    for round in 0..6 {
        let path = format!("/race{round}/config");
        let barrier = Barrier::new(2);
        let answers: Vec<(u16, Vec<u8>)> = std::thread::scope(|scope| {
            let racers: Vec<_> = servers
                .iter()
                .enumerate()
                .map(|(i, server)| {
                    let (barrier, path) = (&barrier, &path);
                    scope.spawn(move || {
                        let body = pseudo_random(200_000, round * 2 + i as u64);
                        barrier.wait();
                        let answer = server.send(&Request::new("POST", path).body(body.clone()));
                        (answer.status, body)
                    })
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let stored = servers[0].request("GET", &path);
        assert_eq!(stored.status, 200, "round {round}");
        let winners: Vec<&(u16, Vec<u8>)> = answers.iter().filter(|(s, _)| *s == 200).collect();
        for (status, _) in &answers {
            assert!([200, 403].contains(status), "round {round}: {status}");
        }
        let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
        // Where the store refuses the second PUT, one server wins; where it
        // does not (docs/s3.md), both may, and the last write stays. Either
        // way what is stored is what a server said it stored.
        if store.dialect().honours_if_none_match {
            assert_eq!(winners.len(), 1, "round {round}: {statuses:?}");
        }
        assert!(
            winners.iter().any(|(_, body)| stored.body == *body),
            "round {round}: {statuses:?}, and bytes no server said it stored"
        );
    }
}

per_store!(the_store_answers_as_its_dialect_says, []);
/// What docs/s3.md's table of tested stores says of each, asked of the store
/// directly: the server's own checks stand in for the ones a store lacks
/// (tested above on every store).
fn the_store_answers_as_its_dialect_says(store: &S3Test) {
    use base64::Engine as _;
    let dialect = store.dialect();
    // Every request below carries the session token where there is one.
    assert_eq!(store.session_token.is_some(), dialect.session_token);
    let signer = store.signer();
    let key = |name: &str| format!("/{}/dialect/{name}", store.bucket);
    let put = |path: &str, body: &[u8], extra: Vec<(&str, String)>, payload: Option<String>| {
        let mut request = SignedRequest::new("PUT", &store.addr, path);
        request.body = body.to_vec();
        request.headers = extra;
        request.payload_hash = payload;
        signer.send(&store.addr, &request)
    };
    let exists = |path: &str| {
        signer
            .send(&store.addr, &SignedRequest::new("HEAD", &store.addr, path))
            .status
            == 200
    };

    // A body whose SHA-256 is not the signed payload hash.
    let answer = put(
        &key("payload"),
        b"hello",
        vec![],
        Some(sha256_hex(b"other")),
    );
    if dialect.checks_payload_hash {
        assert_eq!(answer.status, 400, "{}", answer.text());
        assert!(!exists(&key("payload")));
    } else {
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    if store.kind == crate::util::stores::Kind::Ceph {
        assert!(
            answer.text().contains("XAmzContentSHA256Mismatch"),
            "{}",
            answer.text()
        );
    }

    // A body whose SHA-256 is not its x-amz-checksum-sha256.
    let wrong = base64::engine::general_purpose::STANDARD
        .encode(ring::digest::digest(&ring::digest::SHA256, b"other"));
    let answer = put(
        &key("checksum"),
        b"hello",
        vec![("x-amz-checksum-sha256", wrong)],
        None,
    );
    if dialect.checks_checksum {
        assert_eq!(answer.status, 400, "{}", answer.text());
        assert!(!exists(&key("checksum")));
    } else {
        assert_eq!(answer.status, 200, "{}", answer.text());
    }

    // A second PUT of one name with If-None-Match: *.
    let first = put(&key("once"), b"first", vec![], None);
    assert_eq!(first.status, 200, "{}", first.text());
    let second = put(
        &key("once"),
        b"second",
        vec![("if-none-match", "*".to_string())],
        None,
    );
    let refused = second.status == 412;
    assert_eq!(
        refused,
        dialect.honours_if_none_match,
        "{}: {}",
        second.status,
        second.text()
    );

    // The bucket as a virtual host, where the store has them: the name
    // only in the Host header, the connection to 127.0.0.1.
    let port = store.addr.rsplit(':').next().unwrap();
    let host = format!("{}.localhost:{port}", store.bucket);
    let by_host = signer.send(
        &store.addr,
        &SignedRequest::new("HEAD", &host, "/dialect/once"),
    );
    if dialect.virtual_host {
        assert_eq!(by_host.status, 200, "HEAD on {host}");
    }

    // The bucket's region, as its LocationConstraint made it.
    let bucket = format!("/{}", store.bucket);
    let mut location = SignedRequest::new("GET", &store.addr, &bucket);
    location.query = "location=";
    let location = signer.send(&store.addr, &location);
    assert_eq!(location.status, 200, "{}", location.text());
    if dialect.region != "us-east-1" {
        assert!(
            location.text().contains(dialect.region),
            "{}",
            location.text()
        );
    }

    // A request without a signature: refused by every store.
    let mut unsigned = std::net::TcpStream::connect(&store.addr).unwrap();
    unsigned.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    write!(
        unsigned,
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        key("once"),
        store.addr
    )
    .unwrap();
    let answer = read_response(&mut unsigned, false);
    assert_eq!(answer.status, 403, "{}", answer.text());
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
