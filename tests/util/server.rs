//! The server binary as a child process: started on an address it picks and
//! reports, its stderr kept for the test to read, killed when dropped. The
//! integration tests and the benchmark start every server through this.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::http::{Addr, Request, Response, Stream, connect, read_response};

/// Longest a test waits for the server to start or stop.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

pub fn binary() -> PathBuf {
    // REST_SERVER_BIN lets the suite run against another build of the server
    // (a cross-built binary under emulation, say).
    match std::env::var_os("REST_SERVER_BIN") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_BIN_EXE_rest-server")),
    }
}

/// The line before the address in rest-server's log: `start server on ADDR`.
pub const OURS_REPORTS: &str = "start server on ";

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
    pub fn spawn(command: Command, data: &Path) -> Server {
        Server::spawn_reporting(command, data, OURS_REPORTS)
    }

    /// Starts a prepared command that runs a REST server (ours, or a peer
    /// such as `rclone serve restic` in the benchmark) and waits for the log
    /// line in which `marker` precedes the address it listens on.
    pub fn spawn_reporting(mut command: Command, data: &Path, marker: &str) -> Server {
        let marker = marker.to_string();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the server");
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
                    .split(marker.as_str())
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
        let addr = reported_address(&addr);
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

/// The address in a server's report. rest-server prints it bare
/// (`127.0.0.1:PORT`, a Unix socket as its path); rclone as a URL
/// (`http://127.0.0.1:PORT/`).
fn reported_address(text: &str) -> Addr {
    if text.starts_with('/') {
        return Addr::Unix(PathBuf::from(text));
    }
    let bare = match text.split_once("://") {
        Some((_scheme, rest)) => rest.trim_end_matches('/'),
        None => text,
    };
    Addr::Tcp(bare.parse().expect("bound address"))
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
