//! Users, passwords, private repositories and the proxy header, over HTTP.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};

use crate::util::*;

/// `password` under Apache's $apr1$ and under {SHA} (see src/auth/apr1.rs tests).
const APR1_PASSWORD: &str = "$apr1$saltsalt$yAAkm4libquA.ZWLHbSBq/";
const SHA_PASSWORD: &str = "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=";

/// Runs `rest-server ... user ACTION` with `stdin` as input.
fn user_command(data: &std::path::Path, action: &[&str], stdin: &str) -> (i32, String, String) {
    let mut command = Command::new(binary());
    command.arg("--path").arg(data).arg("user").args(action);
    run_with_stdin(command, stdin)
}

fn status(server: &Server, method: &str, path: &str, user: &str, password: &str) -> u16 {
    server
        .send(&Request::new(method, path).basic(user, password))
        .status
}

#[test]
fn user_subcommands_manage_the_file() {
    let dir = TempDir::new("usercmd");
    let data = dir.path().join("data");
    let (code, _, err) = user_command(&data, &["add", "alice"], "first pass\n");
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = user_command(&data, &["add", "bob"], "second\n");
    assert_eq!(code, 0, "{err}");
    let (code, _, _) = user_command(&data, &["add", "../evil"], "x\n");
    assert_eq!(code, 1, "bad names are refused");
    let (code, _, _) = user_command(&data, &["add", "carol"], "\n");
    assert_eq!(code, 1, "empty passwords are refused");
    // An existing user's password is only replaced when asked for.
    let before = std::fs::read_to_string(data.join(".htpasswd")).unwrap();
    let (code, _, err) = user_command(&data, &["add", "bob"], "typo\n");
    assert_eq!(code, 1, "an existing user was replaced silently");
    assert!(err.contains("--update"), "{err}");
    assert_eq!(
        std::fs::read_to_string(data.join(".htpasswd")).unwrap(),
        before
    );
    let (code, _, err) = user_command(&data, &["add", "--update", "alice"], "new pass\n");
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = user_command(&data, &["add", "--update", "alice"], "first pass\n");
    assert_eq!(code, 0, "{err}");
    let file = data.join(".htpasswd");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (_, out, _) = user_command(&data, &["list"], "");
    assert_eq!(out, "alice\nbob\n");
    let (code, _, _) = user_command(&data, &["remove", "bob"], "");
    assert_eq!(code, 0);
    let (code, _, err) = user_command(&data, &["remove", "bob"], "");
    assert_eq!(code, 1, "{err}");
    let (_, out, _) = user_command(&data, &["list"], "");
    assert_eq!(out, "alice\n");
    // The server accepts what the subcommand wrote (bcrypt).
    let server = Server::start_with(&data, &["--listen", "127.0.0.1:0"]);
    assert_eq!(
        status(
            &server,
            "POST",
            "/alice/?create=true",
            "alice",
            "first pass"
        ),
        200
    );
    assert_eq!(
        status(&server, "GET", "/alice/keys/", "alice", "first pass"),
        200
    );
    assert_eq!(
        status(&server, "GET", "/alice/keys/", "alice", "second"),
        401
    );
}

#[test]
fn every_hash_format_and_every_failure() {
    let dir = TempDir::new("formats");
    let data = dir.path().join("data");
    let htpasswd = format!(
        "{}apr:{APR1_PASSWORD}\nsha:{SHA_PASSWORD}\ndes:abJnggxhB/yWI\nbad/name:{SHA_PASSWORD}\n",
        bcrypt_line("bcr", "password")
    );
    let server = Server::start_with_users(&data, &htpasswd, &[]);
    assert!(
        server
            .log()
            .contains("line 4: user \"des\": unknown hash format"),
        "{}",
        server.log()
    );
    assert!(server.log().contains("line 5"), "{}", server.log());
    assert!(server.log().contains("loaded 3 user(s)"));
    assert_eq!(
        status(&server, "POST", "/?create=true", "bcr", "password"),
        200
    );
    for user in ["bcr", "apr", "sha"] {
        assert_eq!(
            status(&server, "GET", "/keys/", user, "password"),
            200,
            "{user}"
        );
        assert_eq!(
            status(&server, "GET", "/keys/", user, "Password"),
            401,
            "{user}"
        );
    }
    assert_eq!(status(&server, "GET", "/keys/", "des", "password"), 401);
    assert_eq!(status(&server, "GET", "/keys/", "nobody", "password"), 401);
    let anonymous = server.request("GET", "/keys/");
    assert_eq!(anonymous.status, 401);
    assert_eq!(
        anonymous.header("www-authenticate"),
        Some("Basic realm=\"restic\"")
    );
    let garbage = server.send(&Request::new("GET", "/keys/").header("Authorization", "Basic !!!"));
    assert_eq!(garbage.status, 401);
    // A cached login does not let a wrong password through.
    assert_eq!(status(&server, "GET", "/keys/", "bcr", "password"), 200);
    assert_eq!(status(&server, "GET", "/keys/", "bcr", "guess"), 401);
}

#[test]
fn apache_htpasswd_entries_work() {
    if !require_tool("htpasswd", "apache_htpasswd_entries_work") {
        return;
    }
    let dir = TempDir::new("apache");
    let data = dir.path().join("data");
    let mut htpasswd = String::new();
    for (user, flag) in [("md5", "-m"), ("bcrypt", "-B"), ("sha", "-s")] {
        let out = Command::new("htpasswd")
            .args(["-nb", flag, user, "pa55"])
            .output()
            .unwrap();
        assert!(out.status.success());
        htpasswd.push_str(String::from_utf8_lossy(&out.stdout).trim());
        htpasswd.push('\n');
    }
    let server = Server::start_with_users(&data, &htpasswd, &[]);
    assert_eq!(status(&server, "POST", "/?create=true", "md5", "pa55"), 200);
    for user in ["md5", "bcrypt", "sha"] {
        assert_eq!(
            status(&server, "GET", "/keys/", user, "pa55"),
            200,
            "{user}"
        );
        assert_eq!(
            status(&server, "GET", "/keys/", user, "pa56"),
            401,
            "{user}"
        );
    }
}

#[test]
fn the_file_is_reloaded_on_sighup_and_on_change() {
    let dir = TempDir::new("reload");
    let data = dir.path().join("data");
    let server = Server::start_with_users(&data, &bcrypt_line("alice", "a"), &[]);
    assert_eq!(
        status(&server, "POST", "/alice/?create=true", "alice", "a"),
        200
    );
    let file = data.join(".htpasswd");

    // SIGHUP: at once. Alice's cached login is dropped with her entry.
    std::fs::write(&file, bcrypt_line("bob", "b")).unwrap();
    kill(server.pid(), Signal::SIGHUP).unwrap();
    assert!(eventually(Duration::from_secs(10), || {
        status(&server, "GET", "/alice/keys/", "bob", "b") == 200
    }));
    assert_eq!(status(&server, "GET", "/alice/keys/", "alice", "a"), 401);

    // A reload that fails keeps the users it had.
    std::fs::remove_file(&file).unwrap();
    kill(server.pid(), Signal::SIGHUP).unwrap();
    assert!(server.wait_for_log("keeping the 1 user(s) loaded", Duration::from_secs(10)));
    assert_eq!(status(&server, "GET", "/alice/keys/", "bob", "b"), 200);

    // A changed file is noticed without a signal (checked every 30 s).
    std::fs::write(&file, bcrypt_line("carol", "c")).unwrap();
    assert!(eventually(Duration::from_secs(45), || {
        status(&server, "GET", "/alice/keys/", "carol", "c") == 200
    }));
}

#[test]
fn failed_logins_are_throttled_per_address() {
    let dir = TempDir::new("throttle");
    let data = dir.path().join("data");
    let server = Server::start_with_users(&data, &bcrypt_line("alice", "right"), &[]);
    for _ in 0..5 {
        assert_eq!(status(&server, "GET", "/keys/", "alice", "wrong"), 401);
    }
    // The bucket is empty: even the right password is not checked now.
    assert_eq!(status(&server, "GET", "/keys/", "alice", "right"), 401);
    assert!(server.wait_for_log("too many failed attempts", Duration::from_secs(10)));
    // One attempt comes back every 2 s.
    std::thread::sleep(Duration::from_millis(2200));
    assert_ne!(status(&server, "GET", "/keys/", "alice", "right"), 401);
}

#[test]
fn private_repos_keep_users_apart_without_leaking_existence() {
    let dir = TempDir::new("private");
    let data = dir.path().join("data");
    let users = format!("{}{}", bcrypt_line("alice", "a"), bcrypt_line("bob", "b"));
    let server = Server::start_with_users(&data, &users, &["--private-repos"]);
    assert_eq!(
        status(&server, "POST", "/alice/?create=true", "alice", "a"),
        200
    );
    assert_eq!(
        status(&server, "POST", "/alice/laptop/?create=true", "alice", "a"),
        200
    );
    assert_eq!(
        status(&server, "POST", "/bob/?create=true", "bob", "b"),
        200
    );
    let put = server.send(
        &Request::new("POST", "/bob/config")
            .basic("bob", "b")
            .body("bob's"),
    );
    assert_eq!(put.status, 200);

    let existing = server.send(&Request::new("GET", "/bob/config").basic("alice", "a"));
    let missing = server.send(&Request::new("GET", "/nobody/config").basic("alice", "a"));
    assert_eq!(existing.status, 401);
    assert_eq!(
        (existing.status, existing.body.clone()),
        (missing.status, missing.body)
    );
    for (method, path) in [
        ("DELETE", "/bob/config"),
        ("POST", "/bob/?create=true"),
        ("GET", "/bob/keys/"),
        ("GET", "/config"),
        ("POST", "/?create=true"),
    ] {
        assert_eq!(
            status(&server, method, path, "alice", "a"),
            401,
            "{method} {path}"
        );
    }
    assert_eq!(
        server
            .send(&Request::new("GET", "/bob/config").basic("bob", "b"))
            .text(),
        "bob's"
    );
    assert_eq!(
        status(&server, "GET", "/alice/laptop/keys/", "alice", "a"),
        200
    );
}

#[test]
fn a_proxy_header_names_the_user() {
    let dir = TempDir::new("proxy");
    let data = dir.path().join("data");
    let server = Server::start_with(
        &data,
        &[
            "--listen",
            "127.0.0.1:0",
            "--proxy-auth-username",
            "X-Forwarded-User",
            "--private-repos",
        ],
    );
    let as_user = |user: &str, method: &str, path: &str| {
        server
            .send(&Request::new(method, path).header("X-Forwarded-User", user))
            .status
    };
    assert_eq!(server.request("POST", "/carol/?create=true").status, 401);
    assert_eq!(as_user("carol", "POST", "/carol/?create=true"), 200);
    assert_eq!(as_user("dave", "GET", "/carol/keys/"), 401);
    assert_eq!(as_user("../carol", "GET", "/carol/keys/"), 401);
    assert_eq!(as_user("carol", "GET", "/carol/keys/"), 200);
}

#[test]
fn acl_levels_decide_per_user_and_repository() {
    let dir = TempDir::new("acl");
    let data = dir.path().join("data");
    let acl = dir.path().join("acl");
    std::fs::write(
        &acl,
        "admin full *\nreader read /alice/*\n* append /$user/*\nbroken rule here\n",
    )
    .unwrap();
    let users = format!(
        "{}{}{}",
        bcrypt_line("admin", "x"),
        bcrypt_line("alice", "a"),
        bcrypt_line("reader", "r")
    );
    let server = Server::start_with_users(&data, &users, &["--acl", acl.to_str().unwrap()]);
    assert!(server.log().contains("acl"), "{}", server.log());
    assert!(
        server.log().contains("line 4"),
        "bad rules are reported: {}",
        server.log()
    );

    // append: create, upload, no deletes but locks.
    assert_eq!(
        status(&server, "POST", "/alice/?create=true", "alice", "a"),
        200
    );
    let put = |user: &str, pw: &str, kind: &str, body: &[u8]| {
        let id = sha256_hex(body);
        let r = server.send(
            &Request::new("POST", &format!("/alice/{kind}/{id}"))
                .basic(user, pw)
                .body(body),
        );
        (id, r.status)
    };
    let (data_id, code) = put("alice", "a", "data", b"pack");
    assert_eq!(code, 200);
    let (lock_id, code) = put("alice", "a", "locks", b"lock");
    assert_eq!(code, 200);
    assert_eq!(
        status(
            &server,
            "DELETE",
            &format!("/alice/data/{data_id}"),
            "alice",
            "a"
        ),
        403
    );
    assert_eq!(
        status(
            &server,
            "DELETE",
            &format!("/alice/locks/{lock_id}"),
            "alice",
            "a"
        ),
        200
    );
    assert_eq!(
        status(&server, "GET", "/bob/keys/", "alice", "a"),
        401,
        "no rule: like a wrong password"
    );

    // read: download and lock, nothing else.
    assert_eq!(
        status(
            &server,
            "GET",
            &format!("/alice/data/{data_id}"),
            "reader",
            "r"
        ),
        200
    );
    let (_, code) = put("reader", "r", "locks", b"reader lock");
    assert_eq!(code, 200, "restic locks even to restore");
    let (_, code) = put("reader", "r", "snapshots", b"snap");
    assert_eq!(code, 403);
    assert_eq!(
        status(&server, "POST", "/alice/x/?create=true", "reader", "r"),
        403
    );
    assert_eq!(
        status(&server, "POST", "/other/?create=true", "reader", "r"),
        401
    );
    assert_eq!(
        status(&server, "POST", "/reader/?create=true", "reader", "r"),
        200,
        "`*` rule"
    );

    // full: the admin may delete anywhere.
    assert_eq!(
        status(
            &server,
            "DELETE",
            &format!("/alice/data/{data_id}"),
            "admin",
            "x"
        ),
        200
    );

    // Reloaded on SIGHUP: alice loses her grant.
    std::fs::write(&acl, "admin full *\n").unwrap();
    kill(server.pid(), Signal::SIGHUP).unwrap();
    assert!(eventually(Duration::from_secs(10), || {
        status(&server, "GET", "/alice/keys/", "alice", "a") == 401
    }));
}

#[test]
fn user_add_on_a_terminal_asks_twice_without_echo() {
    if !require_tool("script", "user_add_on_a_terminal_asks_twice_without_echo") {
        return;
    }
    let dir = TempDir::new("tty");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // util-linux `script` gives the command a pseudo-terminal. Each answer is
    // typed once its prompt has appeared: the command turns echo off before
    // it prompts, so typing earlier would be echoed by the terminal.
    let run = |user: &str, first: &str, second: &str| {
        use std::io::Write as _;
        let command_line = format!(
            "{} --path {} user add {user}",
            binary().display(),
            data.display()
        );
        let screen = dir.path().join(format!("{user}.tty"));
        let mut child = Command::new("script")
            .args(["-qfc", &command_line, "/dev/null"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::fs::File::create(&screen).unwrap())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let text = || String::from_utf8_lossy(&std::fs::read(&screen).unwrap()).into_owned();
        // Waits until `what` holds for the screen and whether `script` exited.
        let mut wait = |what: &dyn Fn(&str, bool) -> bool, waiting_for: &str| {
            let seen = eventually(Duration::from_secs(60), || {
                let exited = child.try_wait().unwrap().is_some();
                what(&text(), exited)
            });
            if !seen {
                let _ = child.kill();
            }
            assert!(seen, "no {waiting_for} on the terminal: {:?}", text());
        };
        let prompt = format!("password for {user}: ");
        wait(&|t, _| t.contains(&prompt), &prompt);
        stdin.write_all(format!("{first}\n").as_bytes()).unwrap();
        wait(&|t, _| t.contains("again: "), "second prompt");
        stdin.write_all(format!("{second}\n").as_bytes()).unwrap();
        // The terminal stays open until the command has answered and exited.
        wait(&|_, exited| exited, "end");
        drop(stdin);
        text()
    };
    let shown = run("bob", "typed secret", "typed secret");
    assert!(shown.contains("password for bob"), "{shown}");
    assert!(
        !shown.contains("typed secret"),
        "the password was echoed: {shown}"
    );
    let shown = run("carol", "one", "two");
    assert!(shown.contains("the passwords differ"), "{shown}");
    let (_, users, _) = user_command(&data, &["list"], "");
    assert_eq!(users, "bob\n");
}

#[test]
fn the_throttle_refills_however_fast_failures_arrive() {
    let dir = TempDir::new("refill");
    let data = dir.path().join("data");
    let server = Server::start_with_users(
        &data,
        &bcrypt_line("alice", "right"),
        &["--prometheus", "--prometheus-no-auth"],
    );
    // Guessing on one keep-alive connection, as fast as it is answered: 5
    // checks at once, then, over the next 4.5 s, one more each 2 s as the
    // bucket refills (the refill used to be lost to every attempt that came
    // too soon). A throttle that let guesses through would count hundreds.
    let mut conn = server.connect();
    let guess = Request::new("GET", "/keys/")
        .basic("alice", "wrong")
        .keep_alive()
        .to_bytes();
    for _ in 0..5 {
        conn.write_all(&guess).unwrap();
        assert_eq!(read_response(&mut conn, false).status, 401);
    }
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(4500) {
        conn.write_all(&guess).unwrap();
        assert_eq!(read_response(&mut conn, false).status, 401);
    }
    let checked: u64 = metric(
        &server,
        "rest_server_auth_failures_total{reason=\"wrong password\"}",
    )
    .parse()
    .unwrap();
    assert!((7..=9).contains(&checked), "{checked} passwords checked");
}

/// One request with Basic credentials on a new connection from `source`;
/// the status and how long the answer took.
fn timed_status(
    server: &Server,
    source: std::net::Ipv4Addr,
    user: &str,
    password: &str,
) -> (u16, std::time::Duration) {
    let started = std::time::Instant::now();
    let mut stream = connect_from(source, server.tcp_addr());
    let request = Request::new("GET", "/keys/").basic(user, password);
    std::io::Write::write_all(&mut stream, &request.to_bytes()).unwrap();
    let status = read_response(&mut stream, false).status;
    (status, started.elapsed())
}

/// An honest user from another address gets in during a guessing attack of
/// 40 concurrent clients, and the attack gets its bucket's worth of checks.
/// The attack lasts until that user is answered, so it is the user's answer,
/// not a clock, that ends it; no bound on the user's wait is asserted (it is
/// the machine's: a check takes 10 times as long under qemu, longer still
/// under load), but the checks it could be queued behind are counted.
#[test]
fn concurrent_guessing_gets_the_bucket_and_another_address_gets_in() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = TempDir::new("guessing");
    let data = dir.path().join("data");
    // bcrypt cost 10, as `user add` and `htpasswd -B` make them.
    let users = bcrypt_line_with_cost("alice", "right", 10);
    let server = Server::start_with_users(&data, &users, &["--prometheus", "--prometheus-no-auth"]);
    // Read without credentials: no check of its own.
    let failures = |reason: &str| {
        counter(
            &server,
            &format!("rest_server_auth_failures_total{{reason=\"{reason}\"}}"),
        )
    };
    let attacker = std::net::Ipv4Addr::new(127, 0, 0, 1);
    let other = std::net::Ipv4Addr::new(127, 0, 0, 2);
    let started = std::time::Instant::now();
    let answered = AtomicBool::new(false);
    // Past this even a locked-out user's read has timed out (IO_TIMEOUT).
    let cap = IO_TIMEOUT * 2;
    let legit = std::thread::scope(|scope| {
        for _ in 0..40 {
            scope.spawn(|| {
                while !answered.load(Ordering::Relaxed) && started.elapsed() < cap {
                    let (status, _) = timed_status(&server, attacker, "alice", "guess");
                    assert_eq!(status, 401);
                    // Guessers elsewhere do not take this machine's cores:
                    // a pause keeps 40 of them from starving the server.
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
        }
        // Under way: the attacker's bucket is empty, its burst queued.
        assert!(eventually(Duration::from_secs(30), || {
            failures("too many failed attempts from this address") > 0
        }));
        let legit = timed_status(&server, other, "alice", "right");
        answered.store(true, Ordering::Relaxed);
        legit
    });
    let elapsed = started.elapsed();
    assert_ne!(legit.0, 401, "the user from another address was refused");
    // Each check took a token before it was queued: the burst, and one per
    // refill while the attack lasted. One check runs at a time, first come
    // first served, so these are all the user could have waited behind.
    let checked = failures("wrong password");
    let allowed = 5 + elapsed.as_secs() / 2;
    assert!(
        checked <= allowed,
        "{checked} bcrypt checks in {elapsed:?}, allowed {allowed}; the user waited {:?}",
        legit.1
    );
}

#[test]
fn unknown_users_take_as_long_as_wrong_passwords() {
    let dir = TempDir::new("unknown-timing");
    let data = dir.path().join("data");
    // Cost 12: a check takes 150 ms or more on any machine.
    let users = bcrypt_line_with_cost("alice", "right", 12);
    let server = Server::start_with_users(&data, &users, &[]);
    let here = std::net::Ipv4Addr::new(127, 0, 0, 1);
    let (status, wrong) = timed_status(&server, here, "alice", "wrong");
    assert_eq!(status, 401);
    let (status, unknown) = timed_status(&server, here, "mallory", "wrong");
    assert_eq!(status, 401);
    // A lower bound only: a slow machine cannot break it. Without a check
    // against a hash, an unknown user is answered in about a millisecond.
    assert!(
        unknown >= Duration::from_millis(50),
        "unknown user answered in {unknown:?}, a wrong password in {wrong:?}"
    );
}
