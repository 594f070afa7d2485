//! Listening, timeouts, limits, startup cleanup, signals and the command line.

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::util::*;

#[test]
fn serves_on_a_unix_socket_and_removes_it_on_sigterm() {
    let dir = TempDir::new("unix");
    let socket = dir.path().join("rest.sock");
    let listen = format!("unix:{}", socket.display());
    let mut server = Server::start_with(
        &dir.path().join("data"),
        &["--no-auth", "--listen", &listen],
    );
    assert!(matches!(server.addr, Addr::Unix(_)));
    // As rest-server prints it: the bare path.
    let announced = format!("start server on {}", socket.display());
    assert!(
        server.log().lines().any(|l| l == announced),
        "{}",
        server.log()
    );
    assert_eq!(server.request("POST", "/repo/?create=true").status, 200);
    let (_, put) = upload(&server, "keys", b"over a unix socket");
    assert_eq!(put.status, 200);
    assert!(socket.exists());
    let status = server.stop_with(Signal::SIGTERM);
    assert!(status.success(), "{status:?}");
    assert!(!socket.exists(), "socket file removed on shutdown");
}

#[test]
fn a_stale_unix_socket_is_replaced_but_a_live_one_is_not() {
    let dir = TempDir::new("stale");
    let socket = dir.path().join("rest.sock");
    let listen = format!("unix:{}", socket.display());
    // A socket file nobody listens on, as a crash leaves it.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--no-auth", "--listen", &listen],
    );
    assert_eq!(server.request("POST", "/repo/?create=true").status, 200);
    // A second server must not steal the live socket.
    let (code, _, err) = run_cli(&[
        "--no-auth",
        "--path",
        dir.path().join("data2").to_str().unwrap(),
        "--listen",
        &listen,
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot listen"), "{err}");
    assert_eq!(server.request("GET", "/repo/keys/").status, 200);
}

#[test]
fn oversized_request_heads_are_refused() {
    let dir = TempDir::new("bighead");
    let server = server_with_repo(&dir, &["--max-header-size", "2048"]);
    let big = "x".repeat(4096);
    let response = server.send(&Request::new("GET", "/repo/keys/").header("X-Big", &big));
    assert_eq!(response.status, 431);
    let fits = "x".repeat(1024);
    let response = server.send(&Request::new("GET", "/repo/keys/").header("X-Big", &fits));
    assert_eq!(response.status, 200);
}

#[test]
fn sigterm_lets_the_request_in_flight_finish() {
    let dir = TempDir::new("graceful");
    let mut server = server_with_repo(&dir, &[]);
    let content = pseudo_random(2 << 20, 5);
    let id = sha256_hex(&content);
    let request = Request::new("POST", &format!("/repo/data/{id}")).body(content.clone());
    let mut stream = server.connect();
    stream.write_all(&request.head_bytes()).unwrap();
    stream.write_all(&content[..1 << 20]).unwrap();
    // Wait until the upload is under way.
    let pack_dir = dir.path().join(format!("data/repo/data/{}", &id[..2]));
    assert!(eventually(Duration::from_secs(10), || {
        !files_below(&pack_dir).is_empty()
    }));
    nix::sys::signal::kill(server.pid(), Signal::SIGTERM).unwrap();
    assert!(server.wait_for_log("received SIGTERM", Duration::from_secs(10)));
    // New connections are no longer accepted...
    let addr = server.tcp_addr();
    assert!(eventually(Duration::from_secs(5), || {
        std::net::TcpStream::connect(addr).is_err()
    }));
    // ...but the upload in flight completes.
    if let Err(e) = stream.write_all(&content[1 << 20..]) {
        panic!("upload cut off ({e}); server log:\n{}", server.log());
    }
    let response = read_response(&mut stream, false);
    assert_eq!(response.status, 200);
    drop(stream);
    let status = server.stop_with(Signal::SIGTERM);
    assert!(status.success(), "{status:?}");
    assert_eq!(std::fs::read(pack_dir.join(&id)).unwrap(), content);
}

#[test]
fn a_trickling_client_is_dropped_while_others_are_served() {
    let dir = TempDir::new("trickle");
    let server = server_with_repo(&dir, &["--header-timeout", "2"]);
    let mut slow = server.connect();
    let started = Instant::now();
    let head = b"GET /repo/keys/ HTTP/1.1\r\nHost: test\r\nX-Padding: ";
    let mut dropped_after = None;
    // One byte every 100 ms: a complete head would take far longer than 2 s.
    for i in 0..200 {
        let byte = head.get(i).copied().unwrap_or(b'a');
        if slow.write_all(&[byte]).is_err() {
            dropped_after = Some(started.elapsed());
            break;
        }
        if i % 5 == 0 {
            // Meanwhile, a normal client is served at once.
            let t = Instant::now();
            assert_eq!(server.request("GET", "/repo/keys/").status, 200);
            assert!(t.elapsed() < Duration::from_secs(2));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let elapsed = dropped_after.expect("the trickling connection was never closed");
    assert!(elapsed >= Duration::from_secs(2), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(8), "{elapsed:?}");
    assert!(server.wait_for_log("request header timeout", Duration::from_secs(10)));
}

#[test]
fn idle_keep_alive_connections_are_closed() {
    let dir = TempDir::new("idle");
    let server = server_with_repo(&dir, &["--idle-timeout", "1"]);
    let mut conn = server.connect();
    // The server's idle clock starts once the answer is handed to the
    // socket, which is after the request is sent: a lower bound from here
    // cannot be broken by this thread being slow to read the answer.
    let started = Instant::now();
    conn.write_all(&Request::new("GET", "/repo/keys/").keep_alive().to_bytes())
        .unwrap();
    assert_eq!(read_response(&mut conn, false).status, 200);
    let mut buf = [0u8; 1];
    let n = read_once(&mut conn, &mut buf).unwrap_or(0);
    assert_eq!(n, 0, "server closes the idle connection");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
}

#[test]
fn a_stalled_upload_gets_408_and_leaves_nothing() {
    let dir = TempDir::new("stall");
    let server = server_with_repo(&dir, &["--body-timeout", "1"]);
    let content = pseudo_random(1 << 20, 21);
    let id = sha256_hex(&content);
    let request = Request::new("POST", &format!("/repo/data/{id}")).body(content.clone());
    let mut stream = server.connect();
    stream.write_all(&request.head_bytes()).unwrap();
    stream.write_all(&content[..1000]).unwrap();
    // Then nothing: the server gives up after a second.
    let started = Instant::now();
    let response = read_response(&mut stream, false);
    assert_eq!(response.status, 408);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(files_below(&dir.path().join("data/repo/data")).is_empty());
}

#[test]
fn a_client_that_stops_reading_is_dropped() {
    let dir = TempDir::new("noread");
    let server = server_with_repo(&dir, &["--body-timeout", "1"]);
    // Large enough to fill the socket buffers on both sides.
    let (id, put) = upload(&server, "data", &pseudo_random(32 << 20, 22));
    assert_eq!(put.status, 200);
    let mut stream = server.connect();
    stream
        .write_all(&Request::new("GET", &format!("/repo/data/{id}")).to_bytes())
        .unwrap();
    // Read nothing; the server must close the connection by itself.
    assert!(server.wait_for_log(
        "client stopped reading the response",
        Duration::from_secs(15)
    ));
    // And it still serves others.
    assert_eq!(
        server.request("HEAD", &format!("/repo/data/{id}")).status,
        200
    );
}

#[test]
fn extra_connections_wait_while_every_slot_serves_a_request() {
    let dir = TempDir::new("cap");
    let server = server_with_repo(&dir, &["--max-connections", "2"]);
    // Two clients hold both slots with uploads in progress.
    let content = pseudo_random(1000, 1);
    let id = sha256_hex(&content);
    let mut holders: Vec<_> = (0..2)
        .map(|_| {
            let mut c = server.connect();
            let head =
                format!("POST /repo/keys/{id} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n");
            c.write_all(head.as_bytes()).unwrap();
            c.write_all(&content[..10]).unwrap();
            c
        })
        .collect();
    // A third is not served while they stay busy...
    let mut third = ask_keys(server.tcp_addr(), Duration::from_millis(700));
    let mut buf = [0u8; 1];
    let early = third.read(&mut buf);
    assert!(early.is_err(), "served beyond the cap: {early:?}");
    // ...and is served once one of them is done.
    let mut done = holders.pop().unwrap();
    done.write_all(&content[10..]).unwrap();
    third.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let response = read_response(&mut third, false);
    assert_eq!(response.status, 200);
    drop(holders);
}

/// A new connection that has sent `GET /repo/keys/`, reading with `timeout`.
fn ask_keys(addr: std::net::SocketAddr, timeout: Duration) -> std::net::TcpStream {
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(timeout)).unwrap();
    client
        .write_all(&Request::new("GET", "/repo/keys/").to_bytes())
        .unwrap();
    client
}

/// A new client's `GET /repo/keys/`: its status, and how long it waited
/// (at most 30 s).
fn new_client(addr: std::net::SocketAddr) -> (u16, Duration) {
    let started = std::time::Instant::now();
    let mut client = ask_keys(addr, Duration::from_secs(30));
    let status = read_response(&mut client, false).status;
    (status, started.elapsed())
}

/// Opens a connection that holds a slot in some way.
type Hold = dyn Fn(&Server) -> Box<dyn Stream>;

#[test]
fn at_the_cap_idle_silent_and_trickling_connections_make_room() {
    let dir = TempDir::new("cap-room");
    let server = server_with_repo(&dir, &["--max-connections", "4"]);
    let addr = server.tcp_addr();
    // Each way of holding every slot without a request in progress.
    let idle = |server: &Server| {
        let mut c = server.connect();
        c.write_all(&Request::new("GET", "/repo/keys/").keep_alive().to_bytes())
            .unwrap();
        assert_eq!(read_response(&mut c, false).status, 200);
        c
    };
    let silent = |server: &Server| server.connect();
    let trickling = |server: &Server| {
        let mut c = server.connect();
        c.write_all(b"GET /repo/keys/ HT").unwrap();
        c
    };
    let holders: [(&str, &Hold); 3] = [
        ("idle", &idle),
        ("silent", &silent),
        ("trickling", &trickling),
    ];
    for (how, hold) in holders {
        let held: Vec<_> = (0..4).map(|_| hold(&server)).collect();
        let (status, waited) = new_client(addr);
        assert_eq!(status, 200, "{how}");
        // Before: until the idle timeout (120 s) or the header timeout (15 s).
        assert!(
            waited < Duration::from_secs(5),
            "{how}: a new client waited {waited:?}"
        );
        drop(held);
    }
    assert!(server.log().contains("making room for a new client"));
}

/// Uploads whose body stopped coming make room at the cap too (before, they
/// held their slots until `--body-timeout`, 60 s); one that is slow but still
/// sending keeps its slot and is stored, and the closed ones leave nothing.
#[test]
fn at_the_cap_stalled_uploads_make_room_but_slow_ones_do_not() {
    let dir = TempDir::new("cap-stalled");
    let server = server_with_repo(&dir, &["--max-connections", "3"]);
    let before = files_below(dir.path());
    let stalled: Vec<_> = (0..2u64)
        .map(|seed| {
            let content = pseudo_random(1 << 20, seed);
            let mut c = server.connect();
            let head = format!(
                "POST /repo/data/{} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                sha256_hex(&content),
                content.len()
            );
            c.write_all(head.as_bytes()).unwrap();
            c.write_all(&content[..100 << 10]).unwrap();
            c
        })
        .collect();
    // A key sent a piece every 400 ms: 10 s in all, longer than a stall may
    // last at the cap, without ever pausing that long.
    let slow_content = pseudo_random(25, 9);
    let slow_id = sha256_hex(&slow_content);
    let mut slow = std::net::TcpStream::connect(server.tcp_addr()).unwrap();
    slow.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let head =
        format!("POST /repo/keys/{slow_id} HTTP/1.1\r\nHost: x\r\nContent-Length: 25\r\n\r\n");
    slow.write_all(head.as_bytes()).unwrap();
    let slow_sent = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slow = std::thread::spawn({
        let slow_sent = slow_sent.clone();
        move || {
            for piece in slow_content.chunks(1) {
                std::thread::sleep(Duration::from_millis(400));
                slow.write_all(piece).unwrap();
            }
            slow_sent.store(true, std::sync::atomic::Ordering::SeqCst);
            read_response(&mut slow, false).status
        }
    });
    let mut client = std::net::TcpStream::connect(server.tcp_addr()).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    client
        .write_all(&Request::new("GET", "/repo/keys/").to_bytes())
        .unwrap();
    assert_eq!(read_response(&mut client, false).status, 200);
    // Served in a stalled upload's slot, not in the slow one's once it ended.
    assert!(!slow_sent.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(slow.join().unwrap(), 200, "the slow upload was stored");
    assert!(server.wait_for_log("making room for a new client", Duration::from_secs(5)));
    drop(stalled);
    let mut expected = before;
    expected.push(format!("data/repo/keys/{slow_id}"));
    expected.sort();
    assert!(
        eventually(Duration::from_secs(10), || files_below(dir.path())
            == expected),
        "{:?}",
        files_below(dir.path())
    );
}

#[test]
fn startup_removes_temp_files_a_crash_left() {
    let dir = TempDir::new("leftovers");
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    assert_eq!(server.request("POST", "/repo/?create=true").status, 200);
    let (id, put) = upload(&server, "data", b"kept");
    assert_eq!(put.status, 200);
    drop(server);
    let ours = data.join("repo/data/ab/.rest-server-tmp-abc-1-0");
    let gos = data.join("repo/keys/0123.rest-server-temp42");
    std::fs::write(&ours, "partial").unwrap();
    std::fs::write(&gos, "partial").unwrap();
    let server = Server::start(&data, &[]);
    assert!(!ours.exists() && !gos.exists());
    assert!(
        server.log().contains("removed 2 unfinished upload"),
        "{}",
        server.log()
    );
    assert_eq!(
        server.request("GET", &format!("/repo/data/{id}")).text(),
        "kept"
    );
}

#[test]
fn systemd_socket_activation() {
    if !require_tool("python3", "systemd_socket_activation") {
        return;
    }
    let dir = TempDir::new("systemd");
    let data = dir.path().join("data");
    // Stand in for systemd: bind, put the socket on fd 3, set LISTEN_* for the
    // process that exec() turns into the server, and report the port.
    let script = r#"
import os, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0)); s.listen(16)
sys.stderr.write("start server on 127.0.0.1:%d\n" % s.getsockname()[1]); sys.stderr.flush()
os.dup2(s.fileno(), 3); os.set_inheritable(3, True)
env = dict(os.environ, LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
os.execve(sys.argv[1], sys.argv[1:], env)
"#;
    let mut command = Command::new("python3");
    command.arg("-c").arg(script).arg(binary()).args([
        "--no-auth".as_ref(),
        "--path".as_ref(),
        data.as_os_str(),
        "--listen".as_ref(),
        "127.0.0.1:1".as_ref(),
    ]);
    let server = Server::spawn(command, &data);
    assert!(server.wait_for_log("systemd socket activation mode", Duration::from_secs(10)));
    assert_eq!(server.request("POST", "/repo/?create=true").status, 200);
    assert!(data.join("repo/keys").is_dir());
}

#[test]
fn command_line_refusals_are_clear() {
    let (code, out, _) = run_cli(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("rest-server "), "{out}");
    let (code, out, _) = run_cli(&["--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--path",
        "--append-only",
        "--max-size",
        "--no-verify-upload",
        "--listen",
    ] {
        assert!(out.contains(flag), "help lacks {flag}");
    }
    // Without --no-auth the password file must exist; the message says how
    // to make one.
    let dir = TempDir::new("nousers");
    let (code, _, err) = run_cli(&["--path", dir.path().to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains(".htpasswd") && err.contains("user add"),
        "{err}"
    );
    let (code, _, err) = run_cli(&["--no-auth", "--cpu-profile", "cpu.out"]);
    assert_eq!(code, 2);
    assert!(err.contains("--cpu-profile is not yet supported"), "{err}");
    let (code, _, err) = run_cli(&["--no-auth", "stray"]);
    assert_eq!(code, 2, "positional arguments are errors: {err}");
    let (code, _, err) = run_cli(&["--no-auth", "--max-size", "lots"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn go_style_flags_start_the_server() {
    let dir = TempDir::new("goflags");
    let data = dir.path().join("data");
    let path_flag = format!("--path={}", data.display());
    let server = Server::spawn(
        {
            let mut c = Command::new(binary());
            c.args([
                &path_flag,
                "--no-auth=true",
                "-listen=127.0.0.1:0",
                "--append-only=false",
            ]);
            c
        },
        &data,
    );
    assert!(server.log().contains("append-only mode: off"));
    assert_eq!(server.request("POST", "/repo/?create=true").status, 200);
}

#[test]
fn access_log_uses_the_combined_format() {
    let dir = TempDir::new("accesslog");
    let log_file = dir.path().join("access.log");
    let server = server_with_repo(&dir, &["--log", log_file.to_str().unwrap()]);
    let response =
        server.send(&Request::new("GET", "/repo/keys/").header("User-Agent", "restic/test"));
    assert_eq!(response.status, 200);
    assert!(eventually(Duration::from_secs(5), || {
        std::fs::read_to_string(&log_file).is_ok_and(|t| t.lines().count() >= 2)
    }));
    let text = std::fs::read_to_string(&log_file).unwrap();
    let line = text.lines().find(|l| l.contains("/repo/keys/")).unwrap();
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(
        line.ends_with("\"GET /repo/keys/ HTTP/1.1\" 200 2 \"\" \"restic/test\""),
        "{line}"
    );
}

#[test]
fn the_address_line_is_bare_as_restics_test_harness_expects() {
    // restic's REST-backend test harness finds the server with the regex
    // `^start server on (.*)$` on stderr: no time stamp, no level.
    let dir = TempDir::new("announce");
    let server = Server::start(&dir.path().join("data"), &[]);
    let announced = format!("start server on {}", server.tcp_addr());
    assert!(
        server.log().lines().any(|l| l == announced),
        "no line {announced:?} in:\n{}",
        server.log()
    );
}

#[test]
fn a_silent_new_connection_is_closed_after_the_header_timeout() {
    let dir = TempDir::new("silent");
    let server = server_with_repo(&dir, &["--header-timeout", "1"]);
    let mut silent = std::net::TcpStream::connect(server.tcp_addr()).unwrap();
    // Before: a connection that never sent a byte was idle, and stayed open
    // for the idle timeout (120 s).
    silent
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = [0u8; 1];
    let closed = silent.read(&mut buf);
    assert!(matches!(closed, Ok(0)), "{closed:?}");
    assert!(server.wait_for_log("request header timeout", IO_TIMEOUT));
}

/// Twice the default cap (64) of uploads that send their head and 4 KiB of
/// body, then nothing: they hold every slot and fill the listen backlog
/// ahead of a new client, which is still answered within 2 s, tried 1 s
/// and 5 s after the stalls began.
#[test]
fn at_the_cap_twice_as_many_stalled_uploads_keep_no_client_waiting() {
    let dir = TempDir::new("cap-stalled-flood");
    let server = server_with_repo(&dir, &[]);
    let content = pseudo_random(1 << 20, 1);
    let head = format!(
        "POST /repo/data/{} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        sha256_hex(&content),
        content.len()
    );
    let began = std::time::Instant::now();
    let stalled: Vec<std::net::TcpStream> = (0..128)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(server.tcp_addr()).unwrap();
            c.write_all(head.as_bytes()).unwrap();
            c.write_all(&content[..4096]).unwrap();
            c
        })
        .collect();
    for at in [Duration::from_secs(1), Duration::from_secs(5)] {
        // The client comes when the scenario says, not on an event.
        std::thread::sleep(at.saturating_sub(began.elapsed()));
        let (status, waited) = new_client(server.tcp_addr());
        eprintln!("a client {at:?} after the stalls began waited {waited:?}");
        assert_eq!(status, 200);
        assert!(
            waited < Duration::from_secs(2),
            "a client {at:?} after the stalls began waited {waited:?}"
        );
    }
    drop(stalled);
}
