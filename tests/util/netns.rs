//! Network namespaces a test makes for itself (`ip netns`, root): a LAN of
//! two for the image's DHCP client and mDNS responder, a host of its own for
//! a container's port 8000. Nothing in them reaches another network.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::http::{IO_TIMEOUT, Request, Response, read_response};

/// A network namespace this test made; dropping it ends the processes in it
/// and removes it.
pub struct Netns(pub String);

impl Netns {
    pub fn new(name: String) -> Netns {
        let made = Command::new("ip").args(["netns", "add", &name]).status();
        assert!(made.is_ok_and(|s| s.success()), "ip netns add {name}");
        Netns(name)
    }

    /// A namespace with its loopback up and nothing else: a host of its own,
    /// where a server can take a fixed port (a container's 8000) that no
    /// other test or program can hold.
    pub fn loopback_only(name: String) -> Netns {
        let ns = Netns::new(name);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's file, as `podman run --network ns:PATH` takes it.
    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.0)
    }

    /// `ip -n NAME args...`, which must succeed.
    pub fn ip(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.0])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip -n {} {args:?}: {}",
            self.0,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `program` to be run inside the namespace (`ip netns exec`).
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.0, program]);
        command
    }

    /// `program args...` inside the namespace, its output in `log`.
    pub fn spawn(&self, args: &[&str], log: &Path) -> Child {
        // One open file for both: they share its offset.
        let out = std::fs::File::create(log).unwrap();
        Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("ip netns exec")
    }

    /// A TCP connection to `addr` inside the namespace. A thread's network
    /// namespace is its own (setns(2) with CLONE_NEWNET changes only the
    /// calling thread), and a socket stays in the namespace it was made in:
    /// a short-lived thread enters the namespace and connects, and the test
    /// uses the socket from where it is.
    pub fn connect(&self, addr: SocketAddr) -> std::io::Result<TcpStream> {
        let path = self.path();
        let stream = std::thread::spawn(move || {
            let ns = std::fs::File::open(&path)?;
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
            TcpStream::connect(addr)
        })
        .join()
        .expect("the connecting thread")?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        Ok(stream)
    }

    /// Sends `request` to 127.0.0.1:`port` inside the namespace; the answer.
    pub fn send(&self, port: u16, request: &Request) -> Response {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut stream = self
            .connect(addr)
            .unwrap_or_else(|e| panic!("connect to {addr} in {}: {e}", self.0));
        std::io::Write::write_all(&mut stream, &request.to_bytes()).unwrap();
        read_response(&mut stream, request.method == "HEAD")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.0]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}
