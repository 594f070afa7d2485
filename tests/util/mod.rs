//! Test helpers: temp dirs, the server binary as a child process, and a small
//! raw HTTP/1.1 client (raw, so tests can send paths and bodies no normal
//! client would).

#![allow(dead_code)]

pub mod ceph;
pub mod moto;
pub mod ports;
pub mod seaweed;
pub mod sigv4;
pub mod stores;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Longest a test waits for the server to start or stop.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Socket read timeout for the test client.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

pub fn binary() -> PathBuf {
    // REST_SERVER_BIN lets the suite run against another build of the server
    // (a cross-built binary under emulation, say).
    match std::env::var_os("REST_SERVER_BIN") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_BIN_EXE_rest-server")),
    }
}

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir()
            .join("rest-server-tests")
            .join(format!("{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where the server listens.
#[derive(Debug, Clone)]
pub enum Addr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// A running server process, killed when dropped.
pub struct Server {
    child: Option<Child>,
    pub addr: Addr,
    pub data: PathBuf,
    log: Arc<Log>,
}

/// The server's stderr lines, with a condition variable that is signalled as
/// each line arrives, so a test waits for a line instead of polling for it.
#[derive(Default)]
struct Log {
    lines: Mutex<Vec<String>>,
    grew: Condvar,
}

impl Server {
    /// Starts the server on 127.0.0.1:0 with `--no-auth --path data` and `extra`.
    pub fn start(data: &Path, extra: &[&str]) -> Server {
        let mut args = vec!["--no-auth", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Server::start_with(data, &args)
    }

    /// Starts the server with authentication on: `htpasswd` is written to
    /// `data/.htpasswd` first.
    pub fn start_with_users(data: &Path, htpasswd: &str, extra: &[&str]) -> Server {
        std::fs::create_dir_all(data).unwrap();
        std::fs::write(data.join(".htpasswd"), htpasswd).unwrap();
        let mut args = vec!["--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Server::start_with(data, &args)
    }

    /// Starts the server with exactly `--path data` and `args`.
    pub fn start_with(data: &Path, args: &[&str]) -> Server {
        let mut command = Command::new(binary());
        command.arg("--path").arg(data).args(args);
        Server::spawn(command, data)
    }

    /// Starts a prepared command (which must run the server) and waits for it
    /// to say where it listens.
    pub fn spawn(mut command: Command, data: &Path) -> Server {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rest-server");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Log::default());
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // Kept before the address is handed over, so that every line
                // up to `start server on` is in the log once start() returns.
                let addr = line
                    .split("start server on ")
                    .nth(1)
                    .map(|addr| addr.trim().to_string());
                sink.lines.lock().unwrap().push(line);
                sink.grew.notify_all();
                if let Some(addr) = addr {
                    let _ = tx.send(addr);
                }
            }
        });
        let Ok(addr) = rx.recv_timeout(START_TIMEOUT) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "server did not start; log:\n{}",
                log.lines.lock().unwrap().join("\n")
            );
        };
        // rest-server prints a Unix socket as its bare path.
        let addr = if addr.starts_with('/') {
            Addr::Unix(PathBuf::from(addr))
        } else {
            Addr::Tcp(addr.parse().expect("bound address"))
        };
        Server {
            child: Some(child),
            addr,
            data: data.to_path_buf(),
            log,
        }
    }

    pub fn tcp_addr(&self) -> SocketAddr {
        match &self.addr {
            Addr::Tcp(a) => *a,
            Addr::Unix(_) => panic!("not a TCP server"),
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().unwrap().id() as i32)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.log.lines.lock().unwrap().join("\n")
    }

    /// Waits until the log has a line containing `text`: the server may write
    /// a line after its answer, and the reader thread hands it over later
    /// still, so a line caused by a request is waited for, not assumed.
    pub fn wait_for_log(&self, text: &str, timeout: Duration) -> bool {
        self.wait_for_log_since(0, text, timeout)
    }

    /// How many lines the log has now: a mark for [`Self::wait_for_log_since`].
    pub fn log_mark(&self) -> usize {
        self.log.lines.lock().unwrap().len()
    }

    /// Waits for a line containing `text` written after the first `mark`
    /// lines: for an event that happens more than once.
    pub fn wait_for_log_since(&self, mark: usize, text: &str, timeout: Duration) -> bool {
        let lines = self.log.lines.lock().unwrap();
        let (_lines, waited) = self
            .log
            .grew
            .wait_timeout_while(lines, timeout, |lines| {
                !lines.iter().skip(mark).any(|line| line.contains(text))
            })
            .unwrap();
        !waited.timed_out()
    }

    pub fn request(&self, method: &str, path: &str) -> Response {
        self.send(&Request::new(method, path))
    }

    pub fn send(&self, request: &Request) -> Response {
        let mut stream = self.connect();
        stream.write_all(&request.to_bytes()).unwrap();
        read_response(&mut stream, request.method == "HEAD")
    }

    pub fn connect(&self) -> Box<dyn Stream> {
        connect(&self.addr)
    }

    /// Sends `signal` and waits for the process to exit.
    pub fn stop_with(&mut self, signal: Signal) -> ExitStatus {
        let mut child = self.child.take().expect("server running");
        kill(Pid::from_raw(child.id() as i32), signal).unwrap();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("server did not stop after {signal:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub trait Stream: Read + Write {
    fn shutdown_write(&self);
}

impl Stream for TcpStream {
    fn shutdown_write(&self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

impl Stream for UnixStream {
    fn shutdown_write(&self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

pub fn connect(addr: &Addr) -> Box<dyn Stream> {
    match addr {
        Addr::Tcp(a) => {
            let s = TcpStream::connect(a).expect("connect");
            s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            Box::new(s)
        }
        Addr::Unix(p) => {
            let s = UnixStream::connect(p).expect("connect unix");
            s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            Box::new(s)
        }
    }
}

/// A request written by hand; `Connection: close` unless told otherwise.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub chunked: bool,
    pub keep_alive: bool,
}

impl Request {
    pub fn new(method: &str, path: &str) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            headers: Vec::new(),
            body: Vec::new(),
            chunked: false,
            keep_alive: false,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// Sends the body with `Transfer-Encoding: chunked` (no Content-Length).
    pub fn chunked(mut self) -> Request {
        self.chunked = true;
        self
    }

    /// Adds HTTP Basic credentials.
    pub fn basic(self, user: &str, password: &str) -> Request {
        use base64::Engine as _;
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.header("Authorization", &format!("Basic {encoded}"))
    }

    pub fn keep_alive(mut self) -> Request {
        self.keep_alive = true;
        self
    }

    pub fn head_bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\nHost: test\r\n", self.method, self.path);
        for (k, v) in &self.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        if self.chunked {
            out.push_str("Transfer-Encoding: chunked\r\n");
        } else if !self.body.is_empty() || self.method == "POST" {
            out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        if !self.keep_alive {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
        out.into_bytes()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.head_bytes();
        if self.chunked {
            for chunk in self.body.chunks(4096) {
                out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                out.extend_from_slice(chunk);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        } else {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response. Bodies are delimited by Content-Length or chunked
/// encoding, so the connection can be reused afterwards.
pub fn read_response(stream: &mut dyn Read, head_only: bool) -> Response {
    let mut reader = ByteReader { inner: stream };
    let status_line = reader.line().expect("status line");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut headers = Vec::new();
    loop {
        let line = reader.line().expect("header line");
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':').expect("header");
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if head_only {
        return response;
    }
    if response
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let size_line = reader.line().expect("chunk size");
            let size = usize::from_str_radix(size_line.trim(), 16).expect("chunk size");
            if size == 0 {
                let _ = reader.line();
                break;
            }
            let mut chunk = vec![0; size];
            reader.inner.read_exact(&mut chunk).expect("chunk");
            response.body.extend_from_slice(&chunk);
            let _ = reader.line();
        }
    } else if let Some(len) = response.header("content-length") {
        let mut body = vec![0; len.parse().expect("content-length")];
        reader.inner.read_exact(&mut body).expect("body");
        response.body = body;
    }
    response
}

/// One `read`, again if a signal interrupted it before anything was read
/// (EINTR: SIGCHLD from another test's child process; seen under qemu-user).
pub fn read_once(stream: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

struct ByteReader<'a> {
    inner: &'a mut dyn Read,
}

impl ByteReader<'_> {
    /// One CRLF-terminated line, read byte by byte so nothing past it is consumed.
    fn line(&mut self) -> Option<String> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            match read_once(self.inner, &mut byte) {
                Ok(0) => {
                    return if line.is_empty() {
                        None
                    } else {
                        Some(lossy(&line))
                    };
                }
                Ok(_) => {}
                Err(e) => panic!("read: {e}"),
            }
            if byte[0] == b'\n' {
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Some(lossy(&line));
            }
            line.push(byte[0]);
        }
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// SHA-256 as lowercase hex: the name restic gives content.
pub fn sha256_hex(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

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

/// Set to anything but empty or `0`, a test whose tool or privilege is missing
/// fails instead of skipping. `.ci/run` sets it; docs/testing.md.
pub const REQUIRE_TOOLS_VAR: &str = "REST_SERVER_TEST_REQUIRE_TOOLS";
/// A file each skip appends its line to; `tests/all.sh` sets it and lists the
/// skips at the end of the run.
pub const SKIP_LOG_VAR: &str = "REST_SERVER_TEST_SKIP_LOG";

/// What a test does when something it needs is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing {
    /// Report `SKIP <test>: <what>` and pass (the default, for local runs).
    Skip,
    /// Panic, naming the test and what is missing (CI).
    Fail,
}

impl Missing {
    /// The policy for a value of [`REQUIRE_TOOLS_VAR`].
    pub fn from_value(value: Option<&std::ffi::OsStr>) -> Missing {
        match value {
            Some(v) if !v.is_empty() && v != "0" => Missing::Fail,
            _ => Missing::Skip,
        }
    }

    /// The policy this run was started with.
    pub fn from_env() -> Missing {
        Missing::from_value(std::env::var_os(REQUIRE_TOOLS_VAR).as_deref())
    }
}

/// `test` cannot run because it lacks `what`: under [`Missing::Fail`] panics
/// naming both, under [`Missing::Skip`] hands `report` the line
/// `SKIP <test>: <what>`.
pub fn skip_or_fail_with(policy: Missing, test: &str, what: &str, report: &mut dyn FnMut(&str)) {
    match policy {
        Missing::Fail => panic!(
            "{test} cannot run: {what} ({REQUIRE_TOOLS_VAR} is set, so this fails instead of skipping)"
        ),
        Missing::Skip => report(&format!("SKIP {test}: {what}")),
    }
}

/// Reports a skip where it is seen: on stderr, and in the file named by
/// [`SKIP_LOG_VAR`] if set.
fn report_skip(line: &str) {
    // libtest captures `eprintln!` and shows it only for failing tests; a
    // write to the stderr handle itself is not captured, so the line shows in
    // the run's output.
    let _ = writeln!(std::io::stderr().lock(), "{line}");
    if let Some(path) = std::env::var_os(SKIP_LOG_VAR) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
        if let Ok(mut log) = log {
            let _ = log.write_all(format!("{line}\n").as_bytes());
        }
    }
}

/// `test` cannot run because it lacks `what`: under [`REQUIRE_TOOLS_VAR`]
/// this panics, otherwise it reports the skip. The caller then returns.
pub fn skip_or_fail(test: &str, what: &str) {
    skip_or_fail_with(Missing::from_env(), test, what, &mut report_skip);
}

/// Whether the program `name` is on the PATH.
pub fn tool_installed(name: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// [`require_tool`] under an explicit policy and skip reporter.
pub fn require_tool_with(
    policy: Missing,
    name: &str,
    test: &str,
    report: &mut dyn FnMut(&str),
) -> bool {
    if tool_installed(name) {
        return true;
    }
    skip_or_fail_with(policy, test, &format!("`{name}` is not installed"), report);
    false
}

/// Whether the external program `name`, which `test` needs, is installed. If
/// not: panics under [`REQUIRE_TOOLS_VAR`], otherwise reports the skip and
/// returns false (the test then returns).
pub fn require_tool(name: &str, test: &str) -> bool {
    require_tool_with(Missing::from_env(), name, test, &mut report_skip)
}

/// Whether the tests run as root, which `test` needs; like [`require_tool`].
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    skip_or_fail(test, "needs root");
    false
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
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ])
        .args(key_type)
        .args(["-keyout", key, "-out", cert])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args(["-addext", constraints])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dir.join(cert), dir.join(key))
}

/// The repository password every restic test uses.
pub const PASSWORD: &str = "correct horse battery staple";

/// Runs Debian's restic on `repo` with its cache in `cache`.
pub fn restic(repo: &str, cache: &Path, args: &[&str]) -> std::process::Output {
    Command::new("restic")
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

// The policy is a parameter here, not the environment variable: the variable
// is process-wide and these run in parallel with the tests that read it.
#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    const NO_SUCH_TOOL: &str = "rest-server-test-no-such-tool";

    #[test]
    fn the_variable_turns_skips_into_failures() {
        assert_eq!(Missing::from_value(None), Missing::Skip);
        assert_eq!(Missing::from_value(Some(OsStr::new(""))), Missing::Skip);
        assert_eq!(Missing::from_value(Some(OsStr::new("0"))), Missing::Skip);
        assert_eq!(Missing::from_value(Some(OsStr::new("1"))), Missing::Fail);
        assert_eq!(Missing::from_value(Some(OsStr::new("yes"))), Missing::Fail);
    }

    #[test]
    fn a_missing_tool_is_skipped_by_default() {
        let mut reported = Vec::new();
        let ran = require_tool_with(Missing::Skip, NO_SUCH_TOOL, "some_test", &mut |line| {
            reported.push(line.to_owned())
        });
        assert!(!ran);
        assert_eq!(
            reported,
            [format!("SKIP some_test: `{NO_SUCH_TOOL}` is not installed")]
        );
    }

    #[test]
    fn a_missing_tool_fails_when_required_naming_test_and_tool() {
        let failed = std::panic::catch_unwind(|| {
            require_tool_with(Missing::Fail, NO_SUCH_TOOL, "some_test", &mut |line| {
                panic!("reported a skip: {line}")
            })
        });
        let payload = failed.expect_err("no panic");
        let message = payload
            .downcast_ref::<String>()
            .expect("a formatted panic message");
        assert_eq!(
            message,
            &format!(
                "some_test cannot run: `{NO_SUCH_TOOL}` is not installed ({REQUIRE_TOOLS_VAR} is set, so this fails instead of skipping)"
            )
        );
    }

    #[test]
    fn an_installed_tool_runs_under_either_policy() {
        for policy in [Missing::Skip, Missing::Fail] {
            assert!(require_tool_with(policy, "sh", "some_test", &mut |line| {
                panic!("reported a skip: {line}")
            }));
        }
    }
}
