//! --append-only, --max-size, --quota-file, --group-accessible-repos, and a full disk.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use crate::util::*;

#[test]
fn append_only_refuses_deletes_but_locks() {
    let dir = TempDir::new("append");
    let server = server_with_repo(&dir, &["--append-only"]);
    assert!(server.log().contains("append-only mode: on"));
    assert_eq!(
        server
            .send(&Request::new("POST", "/repo/config").body("c"))
            .status,
        200
    );
    let (data_id, put) = upload(&server, "data", b"pack");
    assert_eq!(put.status, 200);
    let (lock_id, put) = upload(&server, "locks", b"lock");
    assert_eq!(put.status, 200);
    let (snap_id, put) = upload(&server, "snapshots", b"snap");
    assert_eq!(put.status, 200);

    assert_eq!(
        server
            .request("DELETE", &format!("/repo/data/{data_id}"))
            .status,
        403
    );
    assert_eq!(
        server
            .request("DELETE", &format!("/repo/snapshots/{snap_id}"))
            .status,
        403
    );
    assert_eq!(server.request("DELETE", "/repo/config").status, 403);
    assert_eq!(server.request("GET", "/repo/config").text(), "c");
    let overwrite = server.send(&Request::new("POST", "/repo/config").body("new"));
    assert_eq!(overwrite.status, 403);
    // A retry of what is stored is no overwrite, in append-only mode too.
    assert_eq!(
        server
            .send(&Request::new("POST", "/repo/config").body("c"))
            .status,
        200
    );
    assert_eq!(upload(&server, "data", b"pack").1.status, 200);
    assert_eq!(
        server
            .request("DELETE", &format!("/repo/locks/{lock_id}"))
            .status,
        200
    );
    assert_eq!(
        server
            .request("GET", &format!("/repo/data/{data_id}"))
            .text(),
        "pack"
    );
}

/// Uploads `content` under its hash to `repo`'s `data`; chunked (no length
/// declared) when `chunked`.
fn upload_to(server: &Server, repo: &str, content: &[u8], chunked: bool) -> (String, u16) {
    let id = sha256_hex(content);
    let mut request = Request::new("POST", &format!("/{repo}/data/{id}")).body(content);
    if chunked {
        request = request.chunked();
    }
    (id, server.send(&request).status)
}

#[test]
fn quota_file_budgets_per_repository_and_per_tree() {
    let dir = TempDir::new("quota-file");
    let data = dir.path().join("data");
    let rules = dir.path().join("quotas");
    std::fs::write(
        &rules,
        "# alice's laptop, and alice's repositories together\n\
         /alice/laptop 2K\n\
         /alice/* 3K\n",
    )
    .unwrap();
    let args = ["--quota-file", rules.to_str().unwrap(), "--prometheus"];
    let mut server = Server::start(&data, &args);
    for repo in ["alice/laptop", "alice/desktop", "bob"] {
        let created = server.request("POST", &format!("/{repo}/?create=true"));
        assert_eq!(created.status, 200);
    }
    let (first, status) = upload_to(&server, "alice/laptop", &pseudo_random(1500, 1), false);
    assert_eq!(status, 200);
    // The laptop's own budget: refused before writing when the length says
    // so, while streaming otherwise; nothing kept either way.
    assert_eq!(
        upload_to(&server, "alice/laptop", &pseudo_random(600, 2), false).1,
        507
    );
    assert_eq!(
        upload_to(&server, "alice/laptop", &pseudo_random(600, 3), true).1,
        507
    );
    assert_eq!(files_below(&data.join("alice/laptop/data")).len(), 1);
    // The log line is written after the answer: waited for, not raced.
    let laptop = "the quota of /alice/laptop (/alice/laptop 2048 bytes) would be exceeded";
    assert!(
        server.wait_for_log(laptop, Duration::from_secs(10)),
        "{}",
        server.log()
    );
    // alice's tree: the desktop shares what the laptop left.
    assert_eq!(
        upload_to(&server, "alice/desktop", &pseudo_random(1500, 4), false).1,
        200
    );
    assert_eq!(
        upload_to(&server, "alice/desktop", &pseudo_random(100, 5), true).1,
        507
    );
    assert!(
        server.wait_for_log(
            "the quota of /alice (/alice/* 3072 bytes)",
            Duration::from_secs(10)
        ),
        "{}",
        server.log()
    );
    // bob has no budget but the disk.
    assert_eq!(
        upload_to(&server, "bob", &pseudo_random(10_000, 6), false).1,
        200
    );
    let used = |server: &Server| {
        metric(
            server,
            "rest_server_quota_used_bytes{group=\"/alice\",rule=\"/alice/*\"}",
        )
    };
    assert_eq!(used(&server), "3000");

    // A delete gives back.
    let deleted = server.request("DELETE", &format!("/alice/laptop/data/{first}"));
    assert_eq!(deleted.status, 200);
    assert_eq!(used(&server), "1500");
    assert_eq!(
        upload_to(&server, "alice/laptop", &pseudo_random(1400, 7), true).1,
        200
    );

    // Reloaded on SIGHUP like the ACL: a larger budget takes effect at once.
    // 2,900 of 3,072 bytes are used: 500 more fit only under the new rule.
    assert_eq!(used(&server), "2900");
    assert_eq!(
        upload_to(&server, "alice/desktop", &pseudo_random(500, 8), false).1,
        507
    );
    std::fs::write(&rules, "/alice/* 1M\n").unwrap();
    let mark = server.log_mark();
    nix::sys::signal::kill(server.pid(), nix::sys::signal::Signal::SIGHUP).unwrap();
    assert!(server.wait_for_log_since(mark, "loaded 1 rule(s)", Duration::from_secs(20)));
    let limit = "rest_server_quota_limit_bytes{group=\"/alice\",rule=\"/alice/*\"}";
    assert_eq!(metric(&server, limit), (1u64 << 20).to_string());
    assert_eq!(
        upload_to(&server, "alice/desktop", &pseudo_random(500, 8), false).1,
        200
    );
    assert!(
        server
            .stop_with(nix::sys::signal::Signal::SIGTERM)
            .success()
    );

    // Counted again from the disk at startup.
    let server = Server::start(&data, &args);
    let alice = data.join("alice");
    let stored: u64 = files_below(&alice)
        .iter()
        .map(|f| std::fs::metadata(alice.join(f)).unwrap().len())
        .sum();
    assert_eq!(used(&server), stored.to_string());
    assert_eq!(
        metric(
            &server,
            "rest_server_quota_limit_bytes{group=\"/alice\",rule=\"/alice/*\"}"
        ),
        (1u64 << 20).to_string()
    );
}

#[test]
fn max_size_quota() {
    let dir = TempDir::new("quota");
    let server = server_with_repo(&dir, &["--max-size", "1000"]);
    let (first, put) = upload(&server, "data", &pseudo_random(600, 1));
    assert_eq!(put.status, 200);

    // Declared too large: refused before anything is written.
    let (_, put) = upload(&server, "data", &pseudo_random(600, 2));
    assert_eq!(put.status, 507);
    // Undeclared (chunked) and too large: aborted while streaming.
    let body = pseudo_random(600, 3);
    let id = sha256_hex(&body);
    let put = server.send(
        &Request::new("POST", &format!("/repo/data/{id}"))
            .body(body)
            .chunked(),
    );
    assert_eq!(put.status, 507);
    assert_eq!(
        files_below(&dir.path().join("data/repo/data")).len(),
        1,
        "nothing left"
    );

    // Deleting gives the space back.
    assert_eq!(
        server
            .request("DELETE", &format!("/repo/data/{first}"))
            .status,
        200
    );
    let (_, put) = upload(&server, "data", &pseudo_random(900, 4));
    assert_eq!(put.status, 200);
    drop(server);

    // Counted again at startup: 900 bytes used, 200 more will not fit.
    let server = Server::start(&dir.path().join("data"), &["--max-size", "1000"]);
    assert!(server.log().contains("900 in use"), "{}", server.log());
    let (_, put) = upload(&server, "keys", &pseudo_random(200, 5));
    assert_eq!(put.status, 507);
    let (_, put) = upload(&server, "keys", &pseudo_random(100, 6));
    assert_eq!(put.status, 200);
}

#[test]
fn group_accessible_repos() {
    let dir = TempDir::new("group");
    let data = dir.path().join("data");
    // The server applies the process umask, as rest-server does; a unit file
    // sets UMask=007 for this mode. Run it under that umask.
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(r#"umask 007; exec "$0" "$@""#)
        .arg(binary())
        .args([
            "--path".as_ref(),
            data.as_os_str(),
            "--no-auth".as_ref(),
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--group-accessible-repos".as_ref(),
        ]);
    let server = Server::spawn(command, &data);
    assert_eq!(server.request("POST", "/repo/?create=true").status, 200);
    let (id, put) = upload(&server, "keys", b"key");
    assert_eq!(put.status, 200);
    let mode = |p: &str| {
        std::fs::metadata(data.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("repo/keys"), 0o770);
    assert_eq!(mode("repo/data/ab"), 0o770);
    assert_eq!(mode(&format!("repo/keys/{id}")), 0o660);
}

#[test]
fn full_disk_is_507_and_leaves_nothing() {
    let test = "full_disk_is_507_and_leaves_nothing";
    if !require_root(test) || !require_tool("mount", test) {
        return;
    }
    let dir = TempDir::new("fulldisk");
    let data = dir.path().join("data");
    let Some(_disk) = SmallDisk::mount(&data, "2m") else {
        // Root without the right to mount: a container without CAP_SYS_ADMIN.
        skip_or_fail(test, "cannot mount a tmpfs, even as root");
        return;
    };
    let server = Server::start(&data, &[]);
    assert_eq!(server.request("POST", "/repo/?create=true").status, 200);
    let (_, put) = upload(&server, "data", &pseudo_random(3 << 20, 11));
    assert_eq!(put.status, 507, "{}", put.text());
    let leftovers: Vec<_> = files_below(&data);
    assert_eq!(leftovers, Vec::<String>::new());
    // Space is still there for what fits.
    let (_, put) = upload(&server, "data", &pseudo_random(100_000, 12));
    assert_eq!(put.status, 200);
    drop(server);
}

#[test]
fn a_refused_large_upload_gets_its_answer_not_a_reset() {
    let dir = TempDir::new("linger");
    let server = server_with_repo(&dir, &["--max-size", "1000"]);
    // Over the quota by its declared length: refused before the body is
    // read. The client, as restic does, sends the whole body anyway.
    let body = pseudo_random(8 << 20, 9);
    let id = sha256_hex(&body);
    let mut stream = std::net::TcpStream::connect(server.tcp_addr()).unwrap();
    stream
        .set_write_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "POST /repo/data/{id} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    // Before: the server closed with 8 MiB unread, the kernel reset the
    // connection, and this write failed (broken pipe, reset).
    stream.write_all(&body).expect("the body could be sent");
    let response = read_response(&mut stream, false);
    assert_eq!(response.status, 507);
}

#[test]
fn restic_over_the_quota_hears_507() {
    if !require_tool("restic", "modes::restic_over_the_quota_hears_507") {
        return;
    }
    let dir = TempDir::new("linger-restic");
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--max-size", "3000000"]);
    let (source, cache) = (dir.path().join("source"), dir.path().join("cache"));
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("big"), pseudo_random(12 << 20, 4)).unwrap();
    let repo = format!("rest:http://{}/r/", server.tcp_addr());
    ok(restic(&repo, &cache, &["init"]), "init");
    // restic retries with backoff for minutes: read its retry messages as
    // they come and stop it after a few.
    let mut child = std::process::Command::new("restic")
        .args(["--repo", &repo, "--cache-dir"])
        .arg(&cache)
        .args(["backup", source.to_str().unwrap()])
        .env("RESTIC_PASSWORD", PASSWORD)
        .env_remove("RESTIC_REPOSITORY")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut retries = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while retries.len() < 3 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("retrying") || line.contains("Fatal") => retries.push(line),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(!retries.is_empty(), "restic said nothing about the upload");
    for line in &retries {
        assert!(
            line.contains("507") || line.contains("Insufficient Storage"),
            "restic did not hear the 507: {line}"
        );
    }
}

#[test]
fn health_needs_no_credentials_and_says_why_the_disk_cannot_take_backups() {
    let test = "health_needs_no_credentials_and_says_why_the_disk_cannot_take_backups";
    let dir = TempDir::new("health");
    let users = bcrypt_line("alice", "secret");
    let server = Server::start_with_users(&dir.path().join("plain"), &users, &[]);
    let health = server.request("GET", "/health");
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
    assert_eq!(server.request("HEAD", "/health").status, 200);
    assert_eq!(server.request("POST", "/health").status, 405);
    assert_eq!(
        server.request("GET", "/keys/").status,
        401,
        "the rest still needs them"
    );
    drop(server);

    if !require_root(test) || !require_tool("mount", test) {
        return;
    }
    let data = dir.path().join("data");
    let Some(_disk) = SmallDisk::mount(&data, "8m") else {
        skip_or_fail(test, "cannot mount a tmpfs, even as root");
        return;
    };
    let server = Server::start(&data, &["--health-min-free", "4194304"]);
    assert_eq!(server.request("GET", "/health").status, 200);
    assert_eq!(server.request("POST", "/repo/?create=true").status, 200);
    let (id, put) = upload(&server, "data", &pseudo_random(5 << 20, 3));
    assert_eq!(put.status, 200);
    let full = server.request("GET", "/health");
    assert_eq!(full.status, 503);
    // As an init script's status asks it.
    let listen = server.tcp_addr().to_string();
    let probe = || {
        let path = data.to_str().unwrap();
        let (code, out, _) = run_cli(&["--path", path, "--no-auth", "--listen", &listen, "health"]);
        (code, out)
    };
    let (code, text) = probe();
    assert_eq!(code, 1);
    assert!(text.starts_with("unhealthy: "), "{text}");
    assert!(
        full.text().contains("below --health-min-free 4194304"),
        "{}",
        full.text()
    );
    assert!(server.wait_for_log("health: unhealthy:", Duration::from_secs(10)));
    let deleted = server.request("DELETE", &format!("/repo/data/{id}"));
    assert_eq!(deleted.status, 200);
    assert_eq!(server.request("GET", "/health").status, 200);
    assert!(server.wait_for_log("health: healthy again", Duration::from_secs(10)));
    assert_eq!(probe(), (0, "ok\n".to_string()));

    // A disk the kernel remounted read-only after errors.
    let remount = |how: &str| {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{how}")])
            .arg(&data)
            .status()
            .unwrap();
        assert!(status.success(), "remount {how}");
    };
    remount("ro");
    let read_only = server.request("GET", "/health");
    remount("rw");
    assert_eq!(read_only.status, 503);
    assert!(
        read_only.text().contains("read-only"),
        "{}",
        read_only.text()
    );
    assert_eq!(server.request("GET", "/health").status, 200);
}
