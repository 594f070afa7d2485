//! Test helpers, one set for the integration tests (`tests/main.rs`), the
//! benchmark (`tests/bench/upload.rs`, which includes this folder by
//! `#[path]`) and, for the std-and-ring-only files `tempdir.rs` and
//! `hash.rs`, the crate's unit tests (`src/testing.rs`). Each concern has
//! its file; this one holds what is left: processes, restic, certificates,
//! metrics.

// Every includer uses only part of the set (the benchmark none of the
// restic or metrics helpers, each test file its own few).
#![allow(dead_code)]

pub mod ceph;
pub mod disk;
pub mod hash;
pub mod http;
pub mod json;
pub mod moto;
pub mod netns;
pub mod podman;
pub mod ports;
pub mod seaweed;
pub mod server;
pub mod sigv4;
pub mod stores;
pub mod tempdir;
pub mod tools;

// The split is for includers and readers; the tests see one flat set.
pub use disk::*;
pub use hash::*;
pub use http::*;
pub use netns::*;
pub use server::*;
pub use tempdir::*;
pub use tools::*;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Every file below `dir`, relative, sorted; the scrub's state folder left out.
pub fn files_below(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            // The scrub's state (docs/files.md), not repository data.
            if entry.file_name() == ".scrub" {
                continue;
            }
            if entry.file_type().unwrap().is_dir() {
                pending.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// Polls `check` until it holds or `timeout` passes.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A server with one repository `/repo/` created.
pub fn server_with_repo(dir: &TempDir, extra: &[&str]) -> Server {
    let server = Server::start(&dir.path().join("data"), extra);
    let created = server.request("POST", "/repo/?create=true");
    assert_eq!(created.status, 200, "{}", created.text());
    server
}

/// Uploads `content` under its hash to `/repo/{kind}/{hash}`.
pub fn upload(server: &Server, kind: &str, content: &[u8]) -> (String, Response) {
    let id = sha256_hex(content);
    let response = server.send(&Request::new("POST", &format!("/repo/{kind}/{id}")).body(content));
    (id, response)
}

/// Runs the binary with `args` and no input; returns (exit code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(binary())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `command` with `stdin` as its input; returns (exit code, stdout, stderr).
pub fn run_with_stdin(mut command: Command, stdin: &str) -> (i32, String, String) {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start command");
    // A command may refuse its arguments and exit before it reads stdin
    // (`user add ../evil`): the broken pipe is then expected, and the exit
    // status and output say what happened.
    let written = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    if let Err(e) = written {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe,
            "writing stdin: {e}"
        );
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An htpasswd line with a cheap bcrypt hash (cost 4) for tests.
pub fn bcrypt_line(user: &str, password: &str) -> String {
    bcrypt_line_with_cost(user, password, 4)
}

/// An htpasswd line with a bcrypt hash of `cost` (4 is the fastest; 10 is
/// what `htpasswd -B` and `user add` use).
pub fn bcrypt_line_with_cost(user: &str, password: &str, cost: u32) -> String {
    format!("{user}:{}\n", bcrypt::hash(password, cost).unwrap())
}

/// A TCP connection to `addr` from the local address `source` (another
/// loopback address, say, to stand for a second client machine).
pub fn connect_from(source: std::net::Ipv4Addr, addr: SocketAddr) -> TcpStream {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, socket};
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::from(std::net::SocketAddrV4::new(source, 0)),
    )
    .unwrap();
    let SocketAddr::V4(target) = addr else {
        panic!("not IPv4: {addr}");
    };
    connect(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::from(target),
    )
    .unwrap();
    let stream = TcpStream::from(fd);
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// Runs `openssl args` in `dir` and asserts that it succeeded.
pub fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `-newkey` arguments for an ECDSA P-256 key.
pub const ECDSA: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

/// A self-signed certificate for 127.0.0.1 made with openssl, as
/// (`dir/cert`, `dir/key`). `constraints` is its basicConstraints extension.
pub fn certificate(
    dir: &Path,
    cert: &str,
    key: &str,
    key_type: &[&str],
    constraints: &str,
) -> (PathBuf, PathBuf) {
    let mut args = vec![
        "req",
        "-x509",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=localhost",
    ];
    args.extend(key_type);
    args.extend(["-keyout", key, "-out", cert]);
    args.extend(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"]);
    args.extend(["-addext", constraints]);
    openssl(&args, dir);
    (dir.join(cert), dir.join(key))
}

/// The repository password every restic test uses.
pub const PASSWORD: &str = "correct horse battery staple";

/// Runs Debian's restic on `repo` with its cache in `cache`.
pub fn restic(repo: &str, cache: &Path, args: &[&str]) -> std::process::Output {
    restic_by(Command::new("restic"), repo, cache, args)
}

/// Runs `command`, which runs restic (directly, or inside a network
/// namespace), on `repo` with its cache in `cache` and the tests' password.
pub fn restic_by(
    mut command: Command,
    repo: &str,
    cache: &Path,
    args: &[&str],
) -> std::process::Output {
    command
        .args(["--repo", repo, "--cache-dir"])
        .arg(cache)
        .args(args)
        .env("RESTIC_PASSWORD", PASSWORD)
        .env_remove("RESTIC_REPOSITORY")
        .output()
        .expect("run restic")
}

/// Asserts that restic succeeded; returns what it printed.
pub fn ok(output: std::process::Output, what: &str) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "restic {what} failed:\n{text}");
    text
}

/// Restores the latest snapshot with `run` (restic with its repository and
/// cache set, given the rest of the arguments) into `target`, and compares
/// it with `source` byte for byte.
pub fn restore_matches(
    run: impl Fn(&[&str]) -> std::process::Output,
    source: &Path,
    target: &Path,
) {
    ok(
        run(&["restore", "latest", "--target", target.to_str().unwrap()]),
        "restore",
    );
    assert_same_tree(source, &target.join(source.strip_prefix("/").unwrap()));
}

/// Byte-for-byte comparison of two trees.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let files_a = files_below(a);
    assert_eq!(files_a, files_below(b), "same file names");
    for name in files_a {
        let (x, y) = (
            std::fs::read(a.join(&name)).unwrap(),
            std::fs::read(b.join(&name)).unwrap(),
        );
        assert!(x == y, "{name} differs after restore");
    }
}

/// A metric's value as `/metrics` writes it (`name` is the series, with its
/// labels if it has any).
pub fn metric(server: &Server, name: &str) -> String {
    let metrics = server.request("GET", "/metrics").text();
    find_metric(&metrics, name)
        .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
        .to_string()
}

/// A counter's value, 0 while `/metrics` does not list it yet (a labelled
/// series appears with its first count).
pub fn counter(server: &Server, name: &str) -> u64 {
    let metrics = server.request("GET", "/metrics").text();
    find_metric(&metrics, name).map_or(0, |v| v.parse().unwrap())
}

/// The value of series `name` in a `/metrics` text.
pub fn find_metric<'a>(metrics: &'a str, name: &str) -> Option<&'a str> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
}

/// `2026-12-06T14:47:49Z`: a Unix time as `--since` takes it (and S3 a
/// retain-until date).
pub fn iso_utc(unix: u64) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{unix}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
