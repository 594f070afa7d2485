//! The S3 stores the S3 tests run on, behind one type: SeaweedFS (`weed
//! mini`, started per test), Ceph RGW (one cluster per test binary, a bucket
//! per test) and moto (AWS's dialect: a non-default region, virtual-host
//! addressing, session tokens; started per test). A test body takes an
//! [`S3Test`] and [`per_store!`] makes one `#[test]` per store of it, named
//! `<body>::seaweedfs`, `<body>::ceph` and `<body>::moto`.
//!
//! What each store guarantees beyond the S3 basics is in [`Dialect`]; the
//! table of tested stores in docs/s3.md says the same, and
//! `s3::the_store_answers_as_its_dialect_says` checks it.
//!
//! From any test file (the mirror's, say):
//!
//! ```text
//! per_store!(the_mirror_copies_everything, ["restic"]);
//! fn the_mirror_copies_everything(store: &S3Test) {
//!     let mut command = Command::new(binary());
//!     command.arg("--path").arg(&data).args(["--no-auth", "--listen", "127.0.0.1:0"]);
//!     command.args(store.mirror_args(&store.location("offsite/board"), dir.path()));
//!     store.credentials(&mut command);
//!     let server = Server::spawn(command, &data);
//!     // ... then restic directly on the bucket:
//!     store.restic(&store.location("offsite/board/laptop"), &store.secret_key, &cache)
//! }
//! ```
//!
//! A test that needs one store only calls `S3Test::start(Kind::…, test)`
//! (None: skipped); one that stops and restarts its store (an outage) takes
//! SeaweedFS's own handle with [`S3Test::seaweed`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use super::ceph::{self, CephRgw};
use super::moto::{self, Moto};
use super::seaweed::{self, SeaweedFs};
use super::sigv4::Signer;
use super::{PASSWORD, require_tool};

/// Which store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    SeaweedFs,
    Ceph,
    Moto,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::SeaweedFs => "seaweedfs",
            Kind::Ceph => "ceph",
            Kind::Moto => "moto",
        }
    }

    /// The programs the store needs.
    fn tools(self) -> &'static [&'static str] {
        match self {
            Kind::SeaweedFs => &["weed"],
            Kind::Ceph => ceph::TOOLS,
            Kind::Moto => &["moto_server"],
        }
    }

    /// How the store answers where S3 stores differ (as tried here).
    pub fn dialect(self) -> Dialect {
        match self {
            Kind::SeaweedFs => Dialect {
                virtual_host: false,
                region: "us-east-1",
                session_token: false,
                checks_payload_hash: false,
                checks_checksum: true,
                honours_if_none_match: true,
                dates_uploads: true,
            },
            Kind::Ceph => Dialect {
                virtual_host: true,
                region: "us-east-1",
                session_token: false,
                checks_payload_hash: true,
                // Pacific (16.2) predates the checksum headers.
                checks_checksum: false,
                honours_if_none_match: true,
                dates_uploads: true,
            },
            Kind::Moto => Dialect {
                virtual_host: true,
                region: moto::REGION,
                session_token: true,
                checks_payload_hash: false,
                checks_checksum: false,
                honours_if_none_match: true,
                dates_uploads: false,
            },
        }
    }
}

/// Where S3 stores differ, for one store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    /// Serves `<bucket>.localhost:PORT` (virtual-host addressing); the
    /// suite then runs that way on it.
    pub virtual_host: bool,
    /// The region its buckets are in and requests are signed for.
    pub region: &'static str,
    /// The suite's credentials are temporary ones with a session token.
    pub session_token: bool,
    /// Refuses a body whose SHA-256 is not the signed `x-amz-content-sha256`.
    pub checks_payload_hash: bool,
    /// Refuses a body whose SHA-256 is not its `x-amz-checksum-sha256`.
    pub checks_checksum: bool,
    /// Refuses a PUT with `If-None-Match: *` on an existing name (412).
    pub honours_if_none_match: bool,
    /// Lists each multipart upload with the time it began (moto lists
    /// every one as begun in 2010, so `cleanup` takes all as old).
    pub dates_uploads: bool,
}

/// A running store with a bucket of its own, and everything a test needs
/// to point the server or restic at it.
pub struct S3Test {
    pub kind: Kind,
    /// `http://HOST:PORT`, as the server is given it: `localhost` where the
    /// store takes virtual hosts (the server then sends `Host:
    /// <bucket>.localhost:PORT` but connects to `localhost` itself, so no
    /// name needs to resolve), else `127.0.0.1`.
    pub endpoint: String,
    /// `127.0.0.1:PORT`, for raw requests.
    pub addr: String,
    /// This test's bucket, created in the store's region.
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
    /// The lines every `--s3-config` for this store starts with.
    pub settings: String,
    running: Running,
}

enum Running {
    SeaweedFs(SeaweedFs),
    Ceph(&'static CephRgw),
    Moto(Moto),
}

impl S3Test {
    /// Starts (or, for Ceph, joins) a store of `kind` for `test`, with a new
    /// bucket; None when a tool is missing and the test is to be skipped
    /// (see [`require_tool`]).
    pub fn start(kind: Kind, test: &str) -> Option<S3Test> {
        for tool in kind.tools() {
            if !require_tool(tool, test) {
                return None;
            }
        }
        static BUCKETS: AtomicU32 = AtomicU32::new(0);
        let bucket = format!("test-{}", BUCKETS.fetch_add(1, Ordering::Relaxed));
        let test = match kind {
            Kind::SeaweedFs => {
                let store = SeaweedFs::start();
                S3Test {
                    kind,
                    endpoint: store.endpoint.clone(),
                    addr: store.endpoint.trim_start_matches("http://").to_string(),
                    bucket,
                    access_key: seaweed::ACCESS_KEY.into(),
                    secret_key: seaweed::SECRET_KEY.into(),
                    session_token: None,
                    settings: String::new(),
                    running: Running::SeaweedFs(store),
                }
            }
            Kind::Ceph => {
                let cluster = CephRgw::shared();
                S3Test {
                    kind,
                    endpoint: format!("http://localhost:{}", cluster.port),
                    addr: format!("127.0.0.1:{}", cluster.port),
                    bucket,
                    access_key: ceph::ACCESS_KEY.into(),
                    secret_key: ceph::SECRET_KEY.into(),
                    session_token: None,
                    // Ceph's preset is path-style: virtual hosts are asked
                    // for, as a user of `rgw dns name` would.
                    settings: "provider = Ceph\nforce_path_style = false\n".into(),
                    running: Running::Ceph(cluster),
                }
            }
            Kind::Moto => {
                let moto = Moto::start();
                let keys = moto.role.clone();
                S3Test {
                    kind,
                    endpoint: format!("http://localhost:{}", moto.port),
                    addr: moto.addr.clone(),
                    bucket,
                    access_key: keys.access_key,
                    secret_key: keys.secret_key,
                    session_token: keys.session_token,
                    // AWS's preset: virtual hosts, and a LocationConstraint
                    // for a bucket outside us-east-1.
                    settings: format!("provider = AWS\nregion = {}\n", moto::REGION),
                    running: Running::Moto(moto),
                }
            }
        };
        test.create_bucket();
        Some(test)
    }

    pub fn dialect(&self) -> Dialect {
        self.kind.dialect()
    }

    /// Creates the bucket, in the store's region.
    fn create_bucket(&self) {
        let path = format!("/{}", self.bucket);
        let mut request = super::sigv4::SignedRequest::new("PUT", &self.addr, &path);
        if self.dialect().region != "us-east-1" {
            request.body = format!(
                "<CreateBucketConfiguration><LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                self.dialect().region
            )
            .into_bytes();
        }
        let answer = self.signer().send(&self.addr, &request);
        assert_eq!(
            answer.status,
            200,
            "create bucket {} on {}: {}\n{}",
            self.bucket,
            self.kind.name(),
            answer.text(),
            self.log()
        );
    }

    /// `bucket/prefix`: a location in this test's bucket.
    pub fn location(&self, prefix: &str) -> String {
        format!("{}/{prefix}", self.bucket)
    }

    /// `s3:<endpoint>/<location>`: the server's `--path`.
    pub fn path(&self, location: &str) -> String {
        format!("s3:{}/{location}", self.endpoint)
    }

    /// Writes a settings file (`--s3-config`, readable by its owner only)
    /// into `dir`: the store's own lines, then `extra`.
    pub fn settings_file(&self, dir: &Path, extra: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        static FILES: AtomicU32 = AtomicU32::new(0);
        let n = FILES.fetch_add(1, Ordering::Relaxed);
        let file = dir.join(format!("{}-{n}.conf", self.kind.name()));
        std::fs::write(&file, format!("{}{extra}", self.settings)).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        file
    }

    /// The server on `location` (`--no-auth`, `127.0.0.1:0`, `--debug`)
    /// with the store's settings plus `extra_settings` and this store's
    /// identity in its environment, and nothing from the machine's own AWS
    /// settings. Start it with `Server::spawn`, or add a subcommand.
    pub fn server(&self, location: &str, dir: &Path, extra_settings: &str) -> Command {
        let mut command = self.bare_server(location, dir, extra_settings);
        self.credentials(&mut command);
        command
    }

    /// [`Self::server`] without credentials: a test adds its own.
    pub fn bare_server(&self, location: &str, dir: &Path, extra_settings: &str) -> Command {
        let mut command = Command::new(super::binary());
        command
            .arg("--path")
            .arg(self.path(location))
            .arg("--s3-config")
            .arg(self.settings_file(dir, extra_settings))
            .args(["--no-auth", "--listen", "127.0.0.1:0", "--debug"]);
        for name in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SECRET_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_SHARED_CREDENTIALS_FILE",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
        ] {
            command.env_remove(name);
        }
        command
    }

    /// Gives `command` this store's identity in the environment (with its
    /// session token, if any), and none of the machine's own AWS settings.
    /// The region is in the settings file ([`Self::settings_file`]); a
    /// command without one gets it here too.
    pub fn credentials<'c>(&self, command: &'c mut Command) -> &'c mut Command {
        command
            .env("AWS_ACCESS_KEY_ID", &self.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_key)
            .env("AWS_REGION", self.dialect().region)
            .env_remove("AWS_SHARED_CREDENTIALS_FILE")
            .env_remove("AWS_PROFILE");
        match &self.session_token {
            Some(token) => command.env("AWS_SESSION_TOKEN", token),
            None => command.env_remove("AWS_SESSION_TOKEN"),
        }
    }

    /// restic on `s3:` at `location` directly (path-style, as restic's
    /// client addresses any store but AWS's own hosts), with `secret` as
    /// the secret key.
    pub fn restic(&self, location: &str, secret: &str, cache: &Path) -> Command {
        let mut command = Command::new("restic");
        command
            .arg("--repo")
            .arg(format!("s3:http://{}/{location}", self.addr))
            .args(["-o", &format!("s3.region={}", self.dialect().region)])
            .arg("--cache-dir")
            .arg(cache)
            .env("RESTIC_PASSWORD", PASSWORD)
            // Meant for real endpoints; a test store is plain http.
            .env_remove("AWS_CA_BUNDLE")
            .env_remove("RESTIC_REPOSITORY");
        self.credentials(&mut command);
        command.env("AWS_SECRET_ACCESS_KEY", secret);
        command
    }

    /// `--mirror <s3:…> --s3-config <file>`: the arguments that make a
    /// server (or `scrub --repair`) mirror to `location` on this store; its
    /// identity goes in with [`Self::credentials`].
    pub fn mirror_args(&self, location: &str, dir: &Path) -> Vec<std::ffi::OsString> {
        vec![
            "--mirror".into(),
            self.path(location).into(),
            "--s3-config".into(),
            self.settings_file(dir, "").into(),
        ]
    }

    /// A SigV4 signer with this test's identity, for raw requests to
    /// [`Self::addr`].
    pub fn signer(&self) -> Signer {
        Signer {
            access_key: self.access_key.clone(),
            secret_key: self.secret_key.clone(),
            session_token: self.session_token.clone(),
            region: self.dialect().region.into(),
            service: "s3",
        }
    }

    /// The SeaweedFS process behind a [`Kind::SeaweedFs`] store, to stop and
    /// restart it; None for the others (Ceph's cluster is shared by the
    /// tests, moto keeps its objects in memory only).
    pub fn seaweed(&mut self) -> Option<&mut SeaweedFs> {
        match &mut self.running {
            Running::SeaweedFs(store) => Some(store),
            _ => None,
        }
    }

    /// What the store printed, for a failure message.
    pub fn log(&self) -> String {
        match &self.running {
            Running::SeaweedFs(store) => store.log(),
            Running::Ceph(cluster) => cluster.log(),
            Running::Moto(moto) => moto.log(),
        }
    }
}

impl Drop for S3Test {
    /// A failing test shows what its store said: libtest prints a failed
    /// test's captured output, this included.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(60)..].join("\n");
            eprintln!("--- the end of {}'s log:\n{tail}", self.kind.name());
        }
    }
}

/// Runs `body` on a store of `kind` as test `test`, after checking that the
/// `tools` it needs besides the store are installed.
pub fn run(kind: Kind, test: &str, tools: &[&str], body: fn(&S3Test)) {
    let test = format!("{test}::{}", kind.name());
    let test = test.trim_start_matches("integration::");
    for tool in tools {
        if !require_tool(tool, test) {
            return;
        }
    }
    if let Some(store) = S3Test::start(kind, test) {
        body(&store);
    }
}

/// `per_store!(body, ["restic"])`: one `#[test]` per store running the
/// function `body(&S3Test)`, in a module named after it; the list names the
/// tools the body needs besides the store's own.
macro_rules! per_store {
    ($body:ident, [$($tool:expr),*]) => {
        mod $body {
            use crate::util::stores::{Kind, run};
            const TOOLS: &[&str] = &[$($tool),*];
            #[test]
            fn seaweedfs() {
                run(Kind::SeaweedFs, module_path!(), TOOLS, super::$body);
            }
            #[test]
            fn ceph() {
                run(Kind::Ceph, module_path!(), TOOLS, super::$body);
            }
            #[test]
            fn moto() {
                run(Kind::Moto, module_path!(), TOOLS, super::$body);
            }
        }
    };
}
pub(crate) use per_store;
