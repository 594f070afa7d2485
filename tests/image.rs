//! The flashable image, booted under qemu-system-aarch64 (software emulation)
//! with a second disk labelled RESTIC as the data disk: restic end to end
//! through a port forward, then a simulated power cut in the middle of a
//! backup. tests/emulated.sh builds the image, names its folder in
//! REST_SERVER_IMAGE_DIR and runs this test, ignored by a plain `cargo test`,
//! with `--include-ignored`. And, without building anything, how
//! image/build.sh chooses its Debian mirror.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// Longest a boot may take under software emulation.
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

struct Vm {
    child: Child,
    /// The serial console's input: the image's shell, after Enter.
    input: std::process::ChildStdin,
    monitor: PathBuf,
    port: u16,
    console: PathBuf,
}

impl Vm {
    fn boot(dir: &Path, images: &Path, system: &Path, data: &Path) -> Vm {
        let monitor = dir.join("monitor.sock");
        let console = dir.join("console.log");
        let _ = std::fs::remove_file(&monitor);
        let drive =
            |file: &Path, id: &str| format!("file={},if=none,id={id},format=raw", file.display());
        let mut child = Command::new("qemu-system-aarch64")
            .args([
                "-M",
                "virt",
                "-cpu",
                "cortex-a57",
                "-m",
                "512",
                "-nographic",
            ])
            .arg("-kernel")
            .arg(images.join("vmlinuz"))
            .arg("-initrd")
            .arg(images.join("initrd.img"))
            .args(["-append", "console=ttyAMA0 rsroot=/dev/vda2"])
            .args([
                "-drive",
                &drive(system, "sys"),
                "-device",
                "virtio-blk-pci,drive=sys",
            ])
            .args([
                "-drive",
                &drive(data, "data"),
                "-device",
                "virtio-blk-pci,drive=data",
            ])
            // Port 0: qemu picks a free port; `info usernet` tells which.
            .args(["-netdev", "user,id=n,hostfwd=tcp:127.0.0.1:0-:8000"])
            .args(["-device", "virtio-net-pci,netdev=n,romfile="])
            // A hardware watchdog on qemu's PCI bus; it resets the machine.
            .args(["-device", "i6300esb"])
            // A clock 25 years off, as a Pi's (it has none) would be.
            .args(["-rtc", "base=2001-01-01T00:00:00"])
            .arg("-monitor")
            .arg(format!("unix:{},server,nowait", monitor.display()))
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(&console).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("start qemu-system-aarch64");
        let input = child.stdin.take().unwrap();
        let mut vm = Vm {
            child,
            input,
            monitor,
            port: 0,
            console,
        };
        assert!(eventually(Duration::from_secs(20), || vm.monitor.exists()));
        let usernet = vm.command("info usernet");
        vm.port = usernet
            .lines()
            .find(|l| l.contains("HOST_FORWARD"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no forwarded port in {usernet:?}"));
        vm.wait_until_serving(1);
        vm
    }

    /// Sends a monitor command and returns what the monitor printed.
    fn command(&self, line: &str) -> String {
        let mut sock = UnixStream::connect(&self.monitor).expect("qemu monitor");
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = vec![0u8; 65536];
        let _ = sock.read(&mut buf); // banner
        sock.write_all(format!("{line}\n").as_bytes()).unwrap();
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            match sock.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(_) if !out.is_empty() => break,
                Err(_) => {}
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Waits until the server on the board announced itself for the
    /// `boot`-th time (1 for the first boot), and its port answers a TLS
    /// handshake's first byte (slirp accepts connections even when nothing
    /// listens in the guest, so a bare connect proves nothing).
    fn wait_until_serving(&self, boot: usize) {
        let announced = eventually(BOOT_TIMEOUT, || {
            self.console_text().matches("start server on").count() >= boot
        });
        assert!(
            announced,
            "the image did not start serving; console:\n{}",
            self.console_text()
        );
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", self.port).parse().unwrap();
        let answers = eventually(Duration::from_secs(30), || {
            let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            else {
                return false;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            // A TLS server answers a plain HTTP request with a TLS alert or
            // an HTTP 400; either way, something comes back.
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
            let mut byte = [0u8; 1];
            matches!(s.read(&mut byte), Ok(1))
        });
        assert!(
            answers,
            "the forwarded port does not answer; console:\n{}",
            self.console_text()
        );
    }

    /// Waits until the console shows `text` `count` times.
    fn wait_for_console(&self, text: &str, count: usize, timeout: Duration) {
        let seen = eventually(timeout, || {
            self.console_text().matches(text).count() >= count
        });
        assert!(
            seen,
            "no {count} × {text:?} on the console:\n{}",
            self.console_text()
        );
    }

    /// Runs `line` in the root shell on the console of the `boot`-th boot:
    /// Enter (which opens the shell, or gives a fresh prompt), then the line.
    fn shell(&self, boot: usize, line: &str) {
        self.wait_for_console(
            "Please press Enter to activate this console.",
            boot,
            BOOT_TIMEOUT,
        );
        let prompt = "/ # ";
        let prompts = self.console_text().matches(prompt).count();
        (&self.input).write_all(b"\n").unwrap();
        self.wait_for_console(prompt, prompts + 1, Duration::from_secs(30));
        (&self.input)
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
    }

    fn console_text(&self) -> String {
        std::fs::read_to_string(&self.console).unwrap_or_default()
    }

    /// Over TLS: the certificate names `localhost`, which reaches the forward.
    fn repo(&self, user: &str, password: &str, name: &str) -> String {
        format!(
            "rest:https://{user}:{password}@localhost:{}/{name}/",
            self.port
        )
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tiny SNTP server on 127.0.0.1 (the VM reaches it as 10.0.2.2), with
/// this machine's time, until dropped.
struct NtpServer {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NtpServer {
    fn start() -> NtpServer {
        use std::sync::atomic::Ordering;
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let port = socket.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !stopped.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if n < 48 || buf[0] & 7 != 3 {
                    continue;
                }
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap();
                let ntp = ((now.as_secs() + 2_208_988_800) << 32)
                    | ((u64::from(now.subsec_nanos()) << 32) / 1_000_000_000);
                let mut reply = [0u8; 48];
                reply[0] = 0x24; // version 4, server
                reply[1] = 1; // stratum 1
                reply[12..16].copy_from_slice(b"TEST");
                reply[16..24].copy_from_slice(&ntp.to_be_bytes());
                reply[24..32].copy_from_slice(&buf[40..48]);
                reply[32..40].copy_from_slice(&ntp.to_be_bytes());
                reply[40..48].copy_from_slice(&ntp.to_be_bytes());
                let _ = socket.send_to(&reply, from);
            }
        });
        NtpServer {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for NtpServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn mtools(args: &[&str]) -> std::process::Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("mtools")
}

#[test]
#[ignore = "needs the image: tests/emulated.sh builds it and runs this with --include-ignored"]
fn image_boots_serves_restic_and_survives_a_power_cut() {
    let test = "image_boots_serves_restic_and_survives_a_power_cut";
    let Some(images) = std::env::var_os("REST_SERVER_IMAGE_DIR").map(PathBuf::from) else {
        skip_or_fail(
            test,
            "REST_SERVER_IMAGE_DIR is not set (tests/emulated.sh builds the image and sets it)",
        );
        return;
    };
    for tool in ["qemu-system-aarch64", "restic", "mcopy", "mkfs.ext4"] {
        if !require_tool(tool, test) {
            return;
        }
    }
    let dir = TempDir::new("image");
    let system = dir.path().join("system.img");
    std::fs::copy(images.join("rest-server-aarch64.img"), &system).unwrap();
    // What a user drops on the boot partition before the first boot.
    let users = dir.path().join("users");
    std::fs::write(&users, "alice:alice pw\n").unwrap();
    let conf = dir.path().join("rest-server.conf");
    let ntp = NtpServer::start();
    std::fs::write(
        &conf,
        format!("LISTEN=:8000\nTLS=yes\nNTP=10.0.2.2:{}\n", ntp.port),
    )
    .unwrap();
    let fat = format!("{}@@1M", system.display());
    for (file, name) in [(&users, "::/users"), (&conf, "::/rest-server.conf")] {
        let copied = mtools(&["mcopy", "-o", "-i", &fat, file.to_str().unwrap(), name]);
        assert!(
            copied.status.success(),
            "{}",
            String::from_utf8_lossy(&copied.stderr)
        );
    }
    let data = dir.path().join("data.img");
    std::fs::File::create(&data)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let made = Command::new("mkfs.ext4")
        .args(["-q", "-L", "RESTIC"])
        .arg(&data)
        .status()
        .unwrap();
    assert!(made.success());

    let vm = Vm::boot(dir.path(), &images, &system, &data);
    let console = vm.console_text();
    assert!(
        console.contains("data on /dev/vdb (label RESTIC)"),
        "{console}"
    );
    assert!(console.contains("added user alice"), "{console}");
    assert!(console.contains("made a TLS certificate"), "{console}");
    // busybox init runs the services: DHCP (the lease logged, by a client
    // init starts beside the server, so maybe after it answers), and the
    // watchdog feeder once the server answers.
    vm.wait_for_console(
        "rest-server image: dhcp: lease of 10.0.2.15/24 on eth0",
        1,
        Duration::from_secs(60),
    );
    vm.wait_for_console(
        "rest-server image: watchdog: feeding /dev/watchdog while GET /health on :8000 (TLS) answers",
        1,
        Duration::from_secs(60),
    );
    // The mDNS responder (qemu's user network carries no multicast; it is
    // tested on a LAN of network namespaces below).
    vm.wait_for_console(
        "[INFO] mdns: rest-server.local is 10.0.2.15",
        1,
        Duration::from_secs(60),
    );
    // The clock, 25 years off at boot, is set from the NTP server (within
    // a retry or two: the first try may come before the DHCP lease), and
    // the board then says this year.
    vm.wait_for_console(
        "[INFO] ntp: clock corrected by +",
        1,
        Duration::from_secs(120),
    );
    let year = Command::new("date").args(["-u", "+%Y"]).output().unwrap();
    let year = String::from_utf8_lossy(&year.stdout).trim().to_string();
    vm.shell(1, "echo clock-\"\"$(date -u +%Y)");
    vm.wait_for_console(&format!("clock-{year}"), 1, Duration::from_secs(30));
    // PID 1 reaps orphans: a process whose parent is gone does not stay a
    // zombie (its /proc entry goes once init has waited for it). The
    // marker is written split so that the echoed command does not match.
    vm.shell(
        1,
        "p=$(sh -c 'sleep 1 >/dev/null & echo $!'); t=0; \
         while [ -e /proc/$p ] && [ $t -lt 100 ]; do sleep 0.1; t=$((t+1)); done; \
         [ -e /proc/$p ] || echo orphan-\"\"reaped",
    );
    vm.wait_for_console("orphan-reaped", 1, Duration::from_secs(30));
    // The certificate made at first boot, from the boot partition.
    let ca = dir.path().join("rest-server.crt");
    let ca_arg = ca.to_str().unwrap();
    let copied = mtools(&[
        "mcopy",
        "-i",
        &fat,
        "::/rest-server.crt",
        ca.to_str().unwrap(),
    ]);
    assert!(
        copied.status.success(),
        "{}",
        String::from_utf8_lossy(&copied.stderr)
    );

    let source = dir.path().join("source");
    std::fs::create_dir_all(source.join("docs")).unwrap();
    for i in 0..40u64 {
        std::fs::write(
            source.join(format!("docs/f{i}")),
            pseudo_random(20_000 + i as usize * 997, i),
        )
        .unwrap();
    }
    std::fs::write(source.join("big"), pseudo_random(6 << 20, 99)).unwrap();
    let cache = dir.path().join("cache");
    let repo = vm.repo("alice", "alice%20pw", "alice");
    ok(restic(&repo, &cache, &["--cacert", ca_arg, "init"]), "init");
    ok(
        restic(
            &repo,
            &cache,
            &["--cacert", ca_arg, "backup", source.to_str().unwrap()],
        ),
        "backup",
    );
    ok(
        restic(&repo, &cache, &["--cacert", ca_arg, "check", "--read-data"]),
        "check --read-data",
    );
    let target = dir.path().join("restore");
    ok(
        restic(
            &repo,
            &cache,
            &[
                "--cacert",
                ca_arg,
                "restore",
                "latest",
                "--target",
                target.to_str().unwrap(),
            ],
        ),
        "restore",
    );
    assert_same_tree(&source, &target.join(source.strip_prefix("/").unwrap()));
    // The plain-text users file is gone from the boot partition.
    let listing = mtools(&["mdir", "-b", "-i", &fat, "::/"]);
    assert!(
        !String::from_utf8_lossy(&listing.stdout)
            .to_lowercase()
            .contains("users")
    );

    // A power cut in the middle of a backup: reset the machine while restic
    // is uploading.
    std::fs::write(source.join("bigger"), pseudo_random(200 << 20, 7)).unwrap();
    let backup = {
        let (repo, cache, source, ca) = (repo.clone(), cache.clone(), source.clone(), ca.clone());
        std::thread::spawn(move || {
            let ca_arg = ca.to_str().unwrap();
            restic(
                &repo,
                &cache,
                &["--cacert", ca_arg, "backup", source.to_str().unwrap()],
            )
        })
    };
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !backup.is_finished(),
        "the backup ended before the reset could interrupt it"
    );
    let boots_before = vm.console_text().matches("start server on").count();
    vm.command("system_reset");
    // restic retries failed requests, so the interrupted backup may even
    // finish once the board is back; either way the repository must be sound.
    let _interrupted = backup.join().unwrap();
    vm.wait_until_serving(boots_before + 1);
    // The interrupted run left a lock behind; then everything must check out.
    ok(
        restic(&repo, &cache, &["--cacert", ca_arg, "unlock"]),
        "unlock after the power cut",
    );
    ok(
        restic(&repo, &cache, &["--cacert", ca_arg, "check", "--read-data"]),
        "check --read-data after the power cut",
    );
    ok(
        restic(
            &repo,
            &cache,
            &["--cacert", ca_arg, "backup", source.to_str().unwrap()],
        ),
        "backup after the power cut",
    );
    ok(
        restic(&repo, &cache, &["--cacert", ca_arg, "check"]),
        "check after the new backup",
    );

    // The watchdog: armed through all of the above (minutes, with a 30 s
    // timeout) it reset nothing while the server answered; the two boots are
    // the first and the power cut's.
    let console = vm.console_text();
    assert_eq!(console.matches("Booting Linux").count(), 2, "{console}");
    // A hung server: stopped, its port takes connections and says nothing.
    // The feeder stops feeding after 30 s and the i6300esb resets the
    // machine, which boots and serves again.
    vm.shell(2, "kill -STOP $(pidof rest-server)");
    vm.wait_for_console(
        "rest-server image: watchdog: stopped feeding /dev/watchdog: GET /health on :8000 (TLS) has not answered for",
        1,
        Duration::from_secs(90),
    );
    vm.wait_until_serving(boots_before + 2);
    let console = vm.console_text();
    assert_eq!(console.matches("Booting Linux").count(), 3, "{console}");
    ok(
        restic(&repo, &cache, &["--cacert", ca_arg, "snapshots"]),
        "snapshots after the watchdog's reset",
    );
}

/// `image/build.sh --print-mirror` with the apt sources in `sources`: whether
/// it succeeded, its standard output and its standard error.
fn print_mirror(sources: &Path, env: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let mut command =
        Command::new(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("image/build.sh"));
    command
        .arg("--print-mirror")
        .args(args)
        .env("IMAGE_APT_SOURCES_DIR", sources)
        .env_remove("IMAGE_DEBIAN_MIRROR");
    if let Some(mirror) = env {
        command.env("IMAGE_DEBIAN_MIRROR", mirror);
    }
    let out = command.output().expect("run image/build.sh");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn build_script_takes_the_mirror_from_its_option_the_environment_or_the_apt_sources() {
    let dir = TempDir::new("mirror");
    let sources = dir.path();
    let chosen = |uri: &str, from: &str| format!("build.sh: Debian mirror {uri} (from {from})\n");

    // No sources at all: a failure that says what to set.
    let (ok, out, err) = print_mirror(sources, None, &[]);
    assert!(!ok, "{out}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("IMAGE_DEBIAN_MIRROR=URI") && err.contains("--mirror URI"),
        "{err}"
    );

    // deb822: the security suite, a disabled entry and a source-only entry
    // are passed over; fields may be folded over several lines. Another
    // distribution's one-line file and a file apt ignores (by its name)
    // come first and are passed over too.
    let parts = sources.join("sources.list.d");
    std::fs::create_dir_all(&parts).unwrap();
    std::fs::write(
        parts.join("0-old.list.disabled"),
        "deb http://ignored.example/debian bookworm main\n",
    )
    .unwrap();
    std::fs::write(
        parts.join("a-ubuntu.list"),
        "deb http://ubuntu.example/ubuntu jammy main\n",
    )
    .unwrap();
    let deb822 = parts.join("debian.sources");
    std::fs::write(
        &deb822,
        "Types: deb\n\
         # a comment inside the stanza\n\
         URIs: http://security.example/debian-security\n\
         Suites: bookworm-security\n\
         Components: main\n\
         \n\
         Types: deb\n\
         URIs: http://disabled.example/debian\n\
         Suites: bookworm\n\
         Enabled: no\n\
         \n\
         Types: deb-src\n\
         URIs: http://source.example/debian\n\
         Suites: bookworm\n\
         \n\
         types: deb-src deb\n\
         uris:\n \
         ftp://ftp.example/debian\n \
         https://deb822.example/debian/\n\
         suites: bookworm-updates\n \
         bookworm\n\
         Components: main\n",
    )
    .unwrap();
    let (ok, out, err) = print_mirror(sources, None, &[]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        chosen("https://deb822.example/debian/", deb822.to_str().unwrap())
    );

    // sources.list, one-line format, is read before sources.list.d: comments,
    // a CD, source packages, the security suite (with options in brackets)
    // and another distribution are passed over.
    let list = sources.join("sources.list");
    std::fs::write(
        &list,
        "# deb http://commented.example/debian bookworm main\n\
         deb cdrom:[Debian GNU/Linux 12]/ bookworm main\n\
         deb-src http://source.example/debian bookworm main\n\
         deb [ arch=amd64 signed-by=/x.gpg ] http://security.example/debian-security bookworm-security main\n\
         deb http://ubuntu.example/ubuntu noble main\n\
         deb [arch=arm64,amd64] http://list.example/debian bookworm main # the mirror\r\n",
    )
    .unwrap();
    let (ok, out, err) = print_mirror(sources, None, &[]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        chosen("http://list.example/debian", list.to_str().unwrap())
    );

    // The environment variable overrides the apt sources, the option both.
    let (ok, out, err) = print_mirror(sources, Some("http://cache.example:3142/debian"), &[]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        chosen("http://cache.example:3142/debian", "IMAGE_DEBIAN_MIRROR")
    );
    let (ok, out, err) = print_mirror(
        sources,
        Some("http://cache.example:3142/debian"),
        &["--mirror", "file:/srv/mirror/debian"],
    );
    assert!(ok, "{err}");
    assert_eq!(out, chosen("file:/srv/mirror/debian", "--mirror"));
    let (ok, out, err) = print_mirror(sources, None, &["--mirror", "not a uri"]);
    assert!(!ok, "{out}");
    assert!(err.contains("is not a URI"), "{err}");
}

/// A process that is killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// busybox udhcpd for one address, with a lease of `LEASE_S` seconds.
fn dhcp_server(ns: &Netns, dir: &Path, address: &str) -> Killed {
    let conf = dir.join(format!("udhcpd-{address}.conf"));
    let leases = dir.join(format!("leases-{address}"));
    std::fs::write(
        &conf,
        format!(
            "start {address}\nend {address}\ninterface veth0\n\
             lease_file {}\npidfile {}\nmin_lease 4\n\
             option subnet 255.255.255.0\noption router 192.0.2.1\n\
             option dns 192.0.2.1\noption lease {LEASE_S}\n",
            leases.display(),
            dir.join(format!("udhcpd-{address}.pid")).display()
        ),
    )
    .unwrap();
    std::fs::write(&leases, b"").unwrap();
    let log = dir.join(format!("udhcpd-{address}.log"));
    Killed(ns.spawn(&["busybox", "udhcpd", "-f", conf.to_str().unwrap()], &log))
}

/// The lease the test's DHCP server gives: renewed every 4 s.
const LEASE_S: u32 = 8;

/// The image's DHCP client, for months: image/root/inittab's udhcpc command
/// line and image/root/udhcpc.script, run against busybox udhcpd in a pair of
/// network namespaces joined by a veth pair (192.0.2.0/24, TEST-NET-1: no
/// packet leaves them). With an 8 s lease: the lease is renewed (and each
/// renewal logged); a cable pulled for longer than the lease and plugged in
/// again is survived; a new address from the server is taken and the change
/// logged. About a minute: run with the image tests (tests/emulated.sh).
#[test]
#[ignore = "about a minute: tests/emulated.sh runs it with the image tests (--include-ignored)"]
fn image_dhcp_client_renews_survives_a_pulled_cable_and_logs_address_changes() {
    let test = "image_dhcp_client_renews_survives_a_pulled_cable_and_logs_address_changes";
    if !require_root(test) || !require_tool("ip", test) || !require_tool("busybox", test) {
        return;
    }
    let project = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let inittab = std::fs::read_to_string(project.join("image/root/inittab")).unwrap();
    let command = inittab
        .lines()
        .find_map(|l| l.strip_prefix("::respawn:/bin/udhcpc "))
        .expect("inittab starts udhcpc");
    assert!(!command.split_whitespace().any(|w| w == "-q"), "{command}");
    let script = project.join("image/root/udhcpc.script");
    let command = command.replace("/etc/udhcpc.script", script.to_str().unwrap());

    let dir = TempDir::new("dhcp");
    let id = std::process::id();
    let server = Netns::new(format!("rs-dhcp-server-{id}"));
    let board = Netns::new(format!("rs-dhcp-board-{id}"));
    server.ip(&[
        "link", "add", "veth0", "type", "veth", "peer", "name", "eth0", "netns", &board.0,
    ]);
    server.ip(&["addr", "add", "192.0.2.1/24", "dev", "veth0"]);
    server.ip(&["link", "set", "veth0", "up"]);
    board.ip(&["link", "set", "lo", "up"]);
    board.ip(&["link", "set", "eth0", "up"]);
    let mut udhcpd = dhcp_server(&server, dir.path(), "192.0.2.100");

    // The board's /run (the script's state, resolv.conf) is a tmpfs of its
    // own: `ip netns exec` gives the command a mount namespace.
    let client_log = dir.path().join("udhcpc.log");
    let _udhcpc = Killed(board.spawn(
        &[
            "sh",
            "-c",
            &format!(
                "mount -t tmpfs tmpfs /run && PATH=/usr/sbin:/usr/bin:/sbin:/bin exec busybox udhcpc {command}"
            ),
        ],
        &client_log,
    ));
    let log = || std::fs::read_to_string(&client_log).unwrap_or_default();
    let wait = |what: &str, count: usize| {
        let seen = eventually(Duration::from_secs(40), || {
            log().matches(what).count() >= count
        });
        assert!(
            seen,
            "no {count} × {what:?} in the client's output:\n{}",
            log()
        );
    };
    let address = || board.ip(&["-4", "addr", "show", "dev", "eth0"]);

    let bound = "rest-server image: dhcp: lease of 192.0.2.100/24 on eth0 for 8s (router 192.0.2.1, DNS 192.0.2.1)";
    wait(bound, 1);
    assert!(address().contains("inet 192.0.2.100/24"), "{}", address());
    // Renewed (busybox makes the lease at least some 30 s, and renews at
    // half of it); without -q udhcpc stays.
    let renewed = "rest-server image: dhcp: lease of 192.0.2.100 on eth0 renewed for 8s";
    wait(renewed, 1);

    // The cable pulled for a while. busybox udhcpc cannot read its socket
    // then and tries again every few seconds (no busy loop), without moving
    // on to expire the lease; once the cable is in again it renews (or, had
    // the server given the address away, asks anew: below).
    board.ip(&["link", "set", "eth0", "down"]);
    let down = "udhcpc: read error: Network is down, reopening socket";
    wait(down, 1);
    let unplugged = Instant::now();
    wait(down, 3);
    assert!(
        unplugged.elapsed() >= Duration::from_secs(4),
        "udhcpc retries without pause:\n{}",
        log()
    );
    let renewals = log().matches(renewed).count();
    board.ip(&["link", "set", "eth0", "up"]);
    wait(renewed, renewals + 1);
    assert!(address().contains("inet 192.0.2.100/24"), "{}", address());

    // The server now hands out another address (a new router, a reset
    // lease table) and ignores the renewals of the old one: once it runs
    // out, the new one is taken and the change logged.
    let _ = udhcpd.0.kill();
    let _ = udhcpd.0.wait();
    udhcpd = dhcp_server(&server, dir.path(), "192.0.2.101");
    wait(
        "rest-server image: dhcp: lease of 192.0.2.100 on eth0 lost; asking again",
        1,
    );
    wait(
        "rest-server image: dhcp: address changed on eth0: 192.0.2.100 -> 192.0.2.101",
        1,
    );
    // The script logs a change once it is made, so the address is checked
    // at once: a line ahead of the change would show a bare eth0 here.
    let now = address();
    assert!(
        now.contains("inet 192.0.2.101/24") && !now.contains("192.0.2.100"),
        "eth0 after the change was logged: {now:?}\n{}",
        log()
    );
    drop(udhcpd);
}

/// `rest-server mdns`, which the image runs, on a LAN of two network
/// namespaces joined by a veth pair (192.0.2.0/24, TEST-NET-1): it announces
/// `rest-server.local` when it starts, and answers a multicast question
/// (QM), a unicast-response question (QU) and a plain DNS query from
/// another port (legacy unicast: its id and a 10 s TTL back), from a Python
/// asker (tests/mdns/ask.py); after the board's address changes, the
/// answers carry the new one without a restart.
#[test]
fn mdns_responder_answers_for_the_board_name_on_the_lan() {
    let test = "mdns_responder_answers_for_the_board_name_on_the_lan";
    if !require_root(test) || !require_tool("ip", test) || !require_tool("python3", test) {
        return;
    }
    let dir = TempDir::new("mdns");
    let id = std::process::id();
    let board = Netns::new(format!("rs-mdns-board-{id}"));
    let asker = Netns::new(format!("rs-mdns-asker-{id}"));
    board.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &asker.0,
    ]);
    for (ns, address) in [(&board, "192.0.2.1/24"), (&asker, "192.0.2.2/24")] {
        ns.ip(&["link", "set", "lo", "up"]);
        ns.ip(&["addr", "add", address, "dev", "eth0"]);
        ns.ip(&["link", "set", "eth0", "up"]);
        // Multicast goes out on eth0, as the image's default route makes it.
        ns.ip(&["route", "add", "224.0.0.0/4", "dev", "eth0"]);
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/mdns/ask.py");
    let ask = |round: &str, args: &[&str]| -> (Killed, PathBuf) {
        let out = dir.path().join(format!("ask-{round}.log"));
        let mut command = vec!["python3", script.to_str().unwrap(), "rest-server.local"];
        command.extend_from_slice(args);
        (Killed(asker.spawn(&command, &out)), out)
    };
    let wait_for = |log: &Path, text: &str| {
        let seen = eventually(Duration::from_secs(20), || {
            std::fs::read_to_string(log)
                .unwrap_or_default()
                .contains(text)
        });
        let text_now = std::fs::read_to_string(log).unwrap_or_default();
        assert!(seen, "no {text:?} from the asker:\n{text_now}");
    };

    let (_first, first_log) = ask("first", &["--announce"]);
    wait_for(&first_log, "ready");
    let bin = binary();
    let responder_log = dir.path().join("responder.log");
    let _responder = Killed(board.spawn(
        &[bin.to_str().unwrap(), "mdns", "--name", "rest-server.local"],
        &responder_log,
    ));
    wait_for(&first_log, "announce 192.0.2.1\n");
    wait_for(&first_log, "multicast 192.0.2.1 120\n");
    wait_for(&first_log, "unicast 192.0.2.1 120\n");
    wait_for(&first_log, "legacy 0x4242 192.0.2.1 10\n");
    let log = std::fs::read_to_string(&responder_log).unwrap();
    assert!(
        log.contains("mdns: rest-server.local is 192.0.2.1"),
        "{log}"
    );

    // A new address (a new DHCP lease, whose script sets the route again:
    // the kernel drops a device's routes with its last address): answered
    // with at once.
    board.ip(&["addr", "flush", "dev", "eth0"]);
    board.ip(&["addr", "add", "192.0.2.9/24", "dev", "eth0"]);
    board.ip(&["route", "add", "224.0.0.0/4", "dev", "eth0"]);
    let (_second, second_log) = ask("second", &[]);
    wait_for(&second_log, "multicast 192.0.2.9 120\n");
    wait_for(&second_log, "legacy 0x4242 192.0.2.9 10\n");
}
