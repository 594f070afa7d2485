//! A real Ceph cluster for the tests, from Debian's packages (`ceph-mon`,
//! `ceph-osd`, `radosgw`, `ceph-common`): one monitor, one OSD (bluestore on
//! a sparse file, so objects are on disk, not in RAM as with memstore) and
//! radosgw's S3 gateway (beast) on 127.0.0.1, every pool of size 1, cephx
//! off, no manager (S3 does not need one) and no systemd: every daemon is a
//! child of the test process, with its files under one temp dir.
//!
//! Starting one takes ~15 s of a busy 2-core machine, so a test binary starts
//! one cluster, the first time a test asks ([`CephRgw::shared`]), and every
//! test takes its own bucket on it. A static is never dropped, so a reaper
//! process stops the daemons and removes the folder when the test process
//! ends, however it ends: it waits for the end of a pipe that only this
//! process holds open.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::TempDir;
use super::ports::{PORTS_PER_BLOCK, next_base};

/// The S3 identity created with `radosgw-admin`.
pub const ACCESS_KEY: &str = "AKIACEPHRGWTEST";
pub const SECRET_KEY: &str = "rest-server-ceph-secret";

/// How long the whole cluster may take to answer S3 requests.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long one `ceph` or `radosgw-admin` command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// The OSD's block file: sparse, so only what is written takes disk space.
const BLOCK_BYTES: u64 = 10 << 30;

/// A running cluster; every daemon is killed and the folder removed on drop
/// (and by the reaper, if the process ends without dropping it).
pub struct CephRgw {
    /// Each daemon with its name (`mon`, `osd`, `rgw`).
    daemons: Vec<(&'static str, Child)>,
    reaper: Option<(Child, ChildStdin)>,
    /// `http://127.0.0.1:PORT`: the S3 endpoint.
    pub endpoint: String,
    /// The S3 port, which also answers as `<bucket>.localhost:PORT`
    /// (`rgw dns name = localhost`).
    pub port: u16,
    /// How long the start took, for the test log.
    pub started_in: Duration,
    dir: TempDir,
}

impl CephRgw {
    /// The test binary's one cluster, started by the first caller; a start
    /// that failed fails every caller with the same message.
    pub fn shared() -> &'static CephRgw {
        static SHARED: OnceLock<Result<CephRgw, String>> = OnceLock::new();
        let started = SHARED.get_or_init(|| {
            let started = CephRgw::start();
            if let Ok(cluster) = &started {
                // Not captured by libtest: the run's output shows what the
                // cluster costs.
                use std::io::Write as _;
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "Ceph RGW started in {:.1} s",
                    cluster.started_in.as_secs_f64()
                );
            }
            started
        });
        match started {
            Ok(cluster) => cluster,
            Err(e) => panic!("the shared Ceph cluster did not start: {e}"),
        }
    }

    /// Starts a cluster and waits until radosgw answers with the test
    /// identity in place.
    pub fn start() -> Result<CephRgw, String> {
        let begun = Instant::now();
        let dir = TempDir::new("ceph");
        let base = next_base();
        // base: the monitor; base + 1: radosgw; base + 10000..: the OSD's
        // messenger ports (public, cluster and two heartbeat ports).
        let (mon_port, rgw_port) = (base, base + 1);
        let osd_ports = (base + 10000, base + 10000 + PORTS_PER_BLOCK - 1);
        let d = &dir.path().to_path_buf();
        for sub in ["mon", "osd", "run", "log"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let fsid = uuid();
        std::fs::write(
            d.join("ceph.conf"),
            config(d, &fsid, mon_port, osd_ports, rgw_port),
        )
        .unwrap();
        let mut cluster = CephRgw {
            daemons: Vec::new(),
            reaper: None,
            endpoint: format!("http://127.0.0.1:{rgw_port}"),
            port: rgw_port,
            started_in: Duration::ZERO,
            dir,
        };
        cluster.reaper = Some(reaper(cluster.dir.path()));

        let conf = d.join("ceph.conf");
        let tool = |name: &str| {
            let mut command = Command::new(name);
            command.arg("-c").arg(&conf).current_dir(d);
            command
        };
        run(Command::new("monmaptool")
            .args(["--create", "--addv", "a"])
            .arg(format!("[v1:127.0.0.1:{mon_port}]"))
            .args(["--fsid", &fsid, "monmap"])
            .current_dir(d))?;
        // A keyring for mkfs to read, though cephx is off.
        run(Command::new("ceph-authtool")
            .args(["--create-keyring", "keyring", "--gen-key", "-n", "mon."])
            .args(["--cap", "mon", "allow *"])
            .current_dir(d))?;
        run(tool("ceph-mon").args(["--mkfs", "-i", "a", "--monmap", "monmap"]))?;
        cluster.spawn("mon", tool("ceph-mon").args(["-f", "-i", "a"]))?;

        // `ceph` waits for the monitor itself, up to its connect timeout.
        let osd_uuid = uuid();
        let id = run(tool("ceph").args(["--connect-timeout", "30", "osd", "new", &osd_uuid]))?;
        let id = String::from_utf8_lossy(&id.stdout).trim().to_string();
        run(tool("ceph-osd").args(["-i", &id, "--mkfs", "--osd-uuid", &osd_uuid]))?;
        // Placed here rather than by the OSD as it boots (see `config`).
        let name = format!("osd.{id}");
        run(tool("ceph").args(["osd", "crush", "add", &name, "1", "root=default"]))?;
        cluster.spawn("osd", tool("ceph-osd").args(["-f", "-i", &id]))?;
        // radosgw creates its pools, waiting for the OSD to come up.
        cluster.spawn("rgw", tool("radosgw").args(["-f", "-n", "client.rgw"]))?;
        cluster.wait_for_port(rgw_port)?;
        run(tool("radosgw-admin").args([
            "user",
            "create",
            "--uid",
            "tester",
            "--display-name",
            "tester",
            "--access-key",
            ACCESS_KEY,
            "--secret",
            SECRET_KEY,
        ]))?;
        cluster.started_in = begun.elapsed();
        Ok(cluster)
    }

    /// Starts a daemon in the foreground, its output in `<name>.out`, and
    /// tells the reaper its pid.
    fn spawn(&mut self, name: &'static str, command: &mut Command) -> Result<(), String> {
        let d = self.dir.path();
        let out = std::fs::File::create(d.join(format!("{name}.out"))).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .map_err(|e| format!("start {name}: {e}"))?;
        use std::io::Write as _;
        let mut pids = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("pids"))
            .unwrap();
        writeln!(pids, "{}", child.id()).unwrap();
        self.daemons.push((name, child));
        Ok(())
    }

    /// Waits until `port` takes connections, failing early if a daemon
    /// exits.
    fn wait_for_port(&mut self, port: u16) -> Result<(), String> {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            for (name, child) in &mut self.daemons {
                if let Some(status) = child.try_wait().unwrap() {
                    let name = *name;
                    return Err(format!(
                        "the Ceph {name} daemon exited with {status}:\n{}",
                        self.log()
                    ));
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "radosgw did not answer on {addr} within {START_TIMEOUT:?}:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// The end of every daemon's output and log, for a failure message.
    pub fn log(&self) -> String {
        let d = self.dir.path();
        let mut text = String::new();
        for name in [
            "mon.out",
            "osd.out",
            "rgw.out",
            "log/mon.a.log",
            "log/osd.0.log",
            "log/client.rgw.log",
        ] {
            let all = std::fs::read_to_string(d.join(name)).unwrap_or_default();
            let tail: Vec<&str> = all.lines().rev().take(20).collect();
            text.push_str(&format!("--- {name}\n"));
            for line in tail.into_iter().rev() {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }
}

impl Drop for CephRgw {
    fn drop(&mut self) {
        for (_, child) in &mut self.daemons {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Closing its pipe lets the reaper find nothing left to kill.
        if let Some((mut reaper, stdin)) = self.reaper.take() {
            drop(stdin);
            let _ = reaper.wait();
        }
    }
}

/// The cluster's settings. Found by trying (Ceph 16.2, pacific): pools of
/// size 1 need `mon allow pool size one`; one OSD on one host needs
/// `osd crush chooseleaf type = 0`; without a manager no autoscaler sets
/// placement-group counts, so they are set small (the per-OSD limit is
/// 250); the monitor would stop when its disk is under 5 % free, which a
/// shared CI disk may be. The OSD does not place itself in the CRUSH map as
/// it boots: twice in about ten starts beside other tests, that command was
/// refused with `wrong fsid` and the OSD exited (a race inside Ceph, not
/// pinned down here; five starts since, none failed), so the launcher places
/// it before it starts.
fn config(d: &Path, fsid: &str, mon_port: u16, osd: (u16, u16), rgw_port: u16) -> String {
    let d = d.display();
    format!(
        "[global]
fsid = {fsid}
mon host = v1:127.0.0.1:{mon_port}
ms bind msgr2 = false
ms bind ipv6 = false
public addr = 127.0.0.1
ms bind port min = {}
ms bind port max = {}
auth cluster required = none
auth service required = none
auth client required = none
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 1
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
osd crush update on start = false
osd class update on start = false
run dir = {d}/run
admin socket = {d}/run/$name.asok
pid file = {d}/run/$name.pid
log file = {d}/log/$name.log
keyring = {d}/keyring
mon data = {d}/mon
osd data = {d}/osd
osd objectstore = bluestore
bluestore block create = true
bluestore block size = {BLOCK_BYTES}
bluestore fsck on mount = false
osd memory target = 536870912
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:{rgw_port}
rgw dns name = localhost
rgw data = {d}/rgw
",
        osd.0, osd.1
    )
}

/// A `sh` that waits for its stdin to close (this process's end of the pipe
/// closes when the process ends, even by SIGKILL), then kills every pid in
/// `dir/pids` and removes `dir`.
fn reaper(dir: &Path) -> (Child, ChildStdin) {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"read _; [ -f "$1/pids" ] && kill -9 $(cat "$1/pids") 2>/dev/null; rm -rf "$1""#)
        .arg("reaper")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sh");
    let stdin = child.stdin.take().unwrap();
    (child, stdin)
}

/// Runs a setup command to its end, within [`COMMAND_TIMEOUT`].
fn run(command: &mut Command) -> Result<Output, String> {
    let what = format!("{command:?}");
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: {e}"))?;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    // The output is read to its end while the exit is waited for.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let out = match rx.recv_timeout(COMMAND_TIMEOUT) {
        Ok(out) => out.map_err(|e| format!("{what}: {e}"))?,
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            return Err(format!("{what} did not finish within {COMMAND_TIMEOUT:?}"));
        }
    };
    if !out.status.success() {
        return Err(format!(
            "{what}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(out)
}

fn uuid() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .unwrap()
        .trim()
        .to_string()
}

/// The programs a cluster needs, all from Debian's `ceph-mon`, `ceph-osd`,
/// `radosgw` and `ceph-common`.
pub const TOOLS: &[&str] = &[
    "ceph-mon",
    "ceph-osd",
    "radosgw",
    "radosgw-admin",
    "ceph",
    "monmaptool",
    "ceph-authtool",
];
