//! S3 faults found by reading (issue 23, section 3, and the wrong-key
//! message of section 2): what the user sees when the bucket, the
//! credentials, the region or a header is wrong. Some run on SeaweedFS;
//! where a store's particular answer is the point (AWS's region redirect), a
//! scripted fake store on 127.0.0.1 gives it.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use crate::util::seaweed::{ACCESS_KEY, SECRET_KEY, SeaweedFs, with_credentials};
use crate::util::*;

/// A store that answers from a script: each request's head (request line
/// and headers, as received) goes to `answer`, which returns the whole
/// response. Every head is kept for the test to look at. Stopped on drop.
struct FakeStore {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

type Answer = dyn Fn(&str) -> String + Send + Sync;

impl FakeStore {
    fn start(answer: impl Fn(&str) -> String + Send + Sync + 'static) -> FakeStore {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let answer: Arc<Answer> = Arc::new(answer);
        let (seen, stopping) = (heads.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (seen, answer) = (seen.clone(), answer.clone());
                std::thread::spawn(move || serve_fake(stream, &seen, &*answer));
            }
        });
        FakeStore { addr, heads, stop }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

impl Drop for FakeStore {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// One connection: requests (bodies read by Content-Length and dropped)
/// until the client closes it.
fn serve_fake(stream: TcpStream, seen: &Mutex<Vec<String>>, answer: &Answer) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let length: u64 = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        if std::io::copy(&mut (&mut reader).take(length), &mut std::io::sink()).is_err() {
            return;
        }
        seen.lock().unwrap().push(head.clone());
        if writer.write_all(answer(&head).as_bytes()).is_err() {
            return;
        }
    }
}

/// An HTTP response with `headers` (lines ending in CRLF) and `body`.
fn response(status: &str, headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The answer of a store that takes everything and stores nothing: 200, and
/// an empty listing for a ListObjectsV2.
fn accept_all(head: &str) -> String {
    if head.starts_with("GET ") && head.contains("list-type=2") {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult>\
                    <IsTruncated>false</IsTruncated></ListBucketResult>";
        response("200 OK", "Content-Type: application/xml\r\n", body)
    } else {
        response("200 OK", "", "")
    }
}

/// What a started server or a command did: whether the server came up (it
/// is then stopped at once), and its stderr up to then.
struct Outcome {
    started: bool,
    code: Option<i32>,
    stderr: String,
}

/// Runs `command` until it says it serves (then kills it) or exits.
fn start_or_exit(mut command: Command) -> Outcome {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rest-server");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let mut started = false;
    while let Ok(line) = rx.recv_timeout(START_TIMEOUT) {
        started = line.contains("start server on");
        lines.push(line);
        if started {
            break;
        }
    }
    if started {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    Outcome {
        started,
        code: if started { None } else { status.code() },
        stderr: lines.join("\n"),
    }
}

/// The server on `s3:<endpoint>/<location>` with the environment's AWS
/// settings removed; the caller adds credentials.
fn s3_command(endpoint: &str, location: &str, dir: &std::path::Path) -> Command {
    let mut command = Command::new(binary());
    command
        .arg("--path")
        .arg(format!("s3:{endpoint}/{location}"))
        .args(["--no-auth", "--listen", "127.0.0.1:0"])
        .env("HOME", dir)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SECRET_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_SHARED_CREDENTIALS_FILE")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION");
    command
}

#[test]
fn a_header_that_cannot_be_built_is_an_error_not_an_unsigned_request() {
    let store = FakeStore::start(accept_all);
    let dir = TempDir::new("s3-bad-header");
    let mut command = s3_command(&store.endpoint(), "bucket", dir.path());
    command
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        // A control character cannot be in a header value.
        .env("AWS_SESSION_TOKEN", "token\u{1}with-a-control-character");
    let outcome = start_or_exit(command);
    for head in store.heads() {
        assert!(
            head.to_ascii_lowercase()
                .contains("\nauthorization: aws4-hmac-sha256"),
            "an unsigned request reached the store:\n{head}\nserver said:\n{}",
            outcome.stderr
        );
    }
    assert!(
        !outcome.started && outcome.code == Some(1),
        "the server started (or exited oddly: {:?}) with a session token it cannot send:\n{}",
        outcome.code,
        outcome.stderr
    );
    assert!(
        outcome.stderr.contains("x-amz-security-token"),
        "the error does not name the header:\n{}",
        outcome.stderr
    );
}

#[test]
fn a_wrong_secret_names_the_stores_error_and_what_to_check() {
    let test = "s3_faults::a_wrong_secret_names_the_stores_error_and_what_to_check";
    if !require_tool("weed", test) {
        return;
    }
    let store = SeaweedFs::start();
    let dir = TempDir::new("s3-wrong-secret");
    let mut command = s3_command(&store.endpoint, "bucket", dir.path());
    command
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret");
    let outcome = start_or_exit(command);
    assert!(
        !outcome.started && outcome.code == Some(1),
        "a wrong secret was accepted:\n{}",
        outcome.stderr
    );
    // The HEAD's 403 has no body: the store's code comes from asking again.
    let said = outcome.stderr;
    assert!(
        said.contains("403 Forbidden SignatureDoesNotMatch"),
        "the store's error code is not named:\n{said}"
    );
    assert!(
        said.contains("secret access key"),
        "the message does not say what to check:\n{said}"
    );
}

/// The answers of AWS to a request signed for the wrong region: the bucket
/// is in eu-west-1. `redirect`: a 301 PermanentRedirect (a request to the
/// global endpoint); else a 400 AuthorizationHeaderMalformed (a request to
/// a regional one), whose body names the region.
fn wrong_region(head: &str, redirect: bool) -> String {
    let region = "x-amz-bucket-region: eu-west-1\r\n";
    let xml = "Content-Type: application/xml\r\n";
    match (head.starts_with("HEAD "), redirect) {
        (true, true) => response("301 Moved Permanently", region, ""),
        (true, false) => response("400 Bad Request", region, ""),
        (false, true) => response(
            "301 Moved Permanently",
            &format!("{region}{xml}"),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>PermanentRedirect</Code>\
             <Message>The bucket you are attempting to access must be addressed using the \
             specified endpoint. Please send all future requests to this endpoint.</Message>\
             <Endpoint>bucket.s3.eu-west-1.amazonaws.com</Endpoint><Bucket>bucket</Bucket>\
             </Error>",
        ),
        (false, false) => response(
            "400 Bad Request",
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error>\
             <Code>AuthorizationHeaderMalformed</Code><Message>The authorization header is \
             malformed; the region 'us-east-1' is wrong; expecting 'eu-west-1'</Message>\
             <Region>eu-west-1</Region></Error>",
        ),
    }
}

#[test]
fn a_wrong_region_names_the_buckets_region() {
    for redirect in [true, false] {
        let store = FakeStore::start(move |head| wrong_region(head, redirect));
        let dir = TempDir::new("s3-wrong-region");
        let mut command = s3_command(&store.endpoint(), "bucket", dir.path());
        command
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
        let outcome = start_or_exit(command);
        let said = outcome.stderr;
        assert!(
            !outcome.started && outcome.code == Some(1),
            "started against a bucket in another region:\n{said}"
        );
        assert!(
            said.contains("region = eu-west-1"),
            "(redirect: {redirect}) the bucket's region is not named:\n{said}"
        );
        // The bucket exists: it must not be created (a 301 or 400 is not 404).
        assert!(
            !store.heads().iter().any(|h| h.starts_with("PUT ")),
            "tried to create the bucket: {:?}",
            store.heads()
        );
    }
}

#[test]
fn a_shared_credentials_file_others_may_read_is_refused() {
    let store = FakeStore::start(accept_all);
    let dir = TempDir::new("s3-shared-credentials");
    let aws = dir.path().join(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    let file = aws.join("credentials");
    std::fs::write(
        &file,
        "[default]\naws_access_key_id = AKIAFROMTHEFILE\naws_secret_access_key = s3cr3t\n",
    )
    .unwrap();
    let run = |mode: u32, by_variable: bool| {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        let mut command = s3_command(&store.endpoint(), "bucket", dir.path());
        if by_variable {
            command.env("AWS_SHARED_CREDENTIALS_FILE", &file);
        }
        start_or_exit(command)
    };
    for by_variable in [true, false] {
        for mode in [0o644, 0o640, 0o604] {
            let outcome = run(mode, by_variable);
            assert!(
                !outcome.started && outcome.code == Some(1),
                "started with credentials others may read (mode {mode:o}):\n{}",
                outcome.stderr
            );
            assert!(
                outcome.stderr.contains("chmod 600") && !outcome.stderr.contains("s3cr3t"),
                "the refusal does not say what to do:\n{}",
                outcome.stderr
            );
        }
        assert!(
            store.heads().is_empty(),
            "the store was asked with refused credentials"
        );
    }
    // Kept private, the file is used.
    let outcome = run(0o600, false);
    assert!(outcome.started, "{}", outcome.stderr);
    assert!(
        store
            .heads()
            .iter()
            .all(|h| h.contains("Credential=AKIAFROMTHEFILE/")),
        "{:?}",
        store.heads()
    );
}

/// `rest-server scrub --path s3:<store>/<location>` with the test identity.
fn scrub_s3(store: &SeaweedFs, location: &str, dir: &std::path::Path) -> (i32, String) {
    let mut command = s3_command(&store.endpoint, location, dir);
    // The subcommand after the server's own flags (those are not needed).
    let command = with_credentials(command.arg("scrub"));
    let output = command.stdin(Stdio::null()).output().expect("run scrub");
    (
        output.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[test]
fn a_scrub_of_a_missing_bucket_or_an_empty_prefix_fails_and_creates_nothing() {
    let test =
        "s3_faults::a_scrub_of_a_missing_bucket_or_an_empty_prefix_fails_and_creates_nothing";
    if !require_tool("weed", test) {
        return;
    }
    let store = SeaweedFs::start();
    let dir = TempDir::new("s3-scrub-typo");
    // Twice: had the first created the bucket, the second would find it.
    for attempt in 1..=2 {
        let (code, said) = scrub_s3(&store, "typo/board", dir.path());
        assert_ne!(
            code, 0,
            "(attempt {attempt}) a missing bucket passed as clean:\n{said}"
        );
        assert!(
            said.contains("NoSuchBucket") && said.contains("check the bucket's name"),
            "(attempt {attempt}) the missing bucket is not named:\n{said}"
        );
    }
    // A bucket that exists, with nothing under the prefix scrubbed.
    let mut server = s3_command(&store.endpoint, "real/used", dir.path());
    with_credentials(&mut server);
    let server = Server::spawn(server, dir.path());
    let created = server.request("POST", "/repo/?create=true");
    assert_eq!(created.status, 200, "{}", created.text());
    let config = server.send(&Request::new("POST", "/repo/config").body("config"));
    assert_eq!(config.status, 200, "{}", config.text());
    drop(server);
    let (code, said) = scrub_s3(&store, "real/used", dir.path());
    assert_eq!(code, 0, "{said}");
    let (code, said) = scrub_s3(&store, "real/typo", dir.path());
    assert_ne!(code, 0, "an empty prefix passed as clean:\n{said}");
    assert!(
        said.contains("no repository"),
        "the message does not say nothing was found:\n{said}"
    );
}

/// While the store's name cannot be looked up (DNS down: queries go
/// unanswered), LAN clients' disk requests are answered at once: the
/// lookup does not hold a file-I/O thread (`--io-threads 1` here).
///
/// The server runs in a mount namespace of its own (root, `unshare`) whose
/// /etc/resolv.conf names a loopback "DNS server" the test binds and never
/// answers, so getaddrinfo waits its full timeout.
#[test]
fn disk_requests_are_answered_while_the_stores_name_lookup_hangs() {
    let test = "s3_faults::disk_requests_are_answered_while_the_stores_name_lookup_hangs";
    if !require_root(test) || !require_tool("unshare", test) {
        return;
    }
    let pid = std::process::id();
    let dns_ip = format!("127.53.{}.{}", (pid >> 8) & 0xff, pid % 250 + 1);
    let dns = std::net::UdpSocket::bind((dns_ip.as_str(), 53)).expect("bind the silent DNS");
    let dir = TempDir::new("s3-dns-down");
    let resolv = dir.path().join("resolv.conf");
    // Two queries (A, AAAA) of 20 s each: the lookup hangs 40 s.
    std::fs::write(
        &resolv,
        format!("nameserver {dns_ip}\noptions timeout:20 attempts:1\n"),
    )
    .unwrap();
    let data = dir.path().join("data");
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount --bind "$0" /etc/resolv.conf && exec "$@""#)
        .arg(&resolv)
        .arg(binary())
        .arg("--path")
        .arg(&data)
        .args(["--no-auth", "--listen", "127.0.0.1:0", "--io-threads", "1"])
        .args(["--mirror", "s3:http://store.example:9/bucket"]);
    with_credentials(&mut command);
    let server = Server::spawn(command, &data);
    // The mirror's first connection to the store is looking its name up.
    dns.set_read_timeout(Some(START_TIMEOUT)).unwrap();
    let mut query = [0u8; 512];
    dns.recv_from(&mut query)
        .unwrap_or_else(|e| panic!("no DNS query came ({e}); log:\n{}", server.log()));
    // Against a lookup of 40 s that would hold the only I/O thread.
    let patience = std::time::Duration::from_secs(10);
    std::thread::scope(|scope| {
        let (done, answered) = mpsc::channel();
        let server = &server;
        scope.spawn(move || {
            let created = server.request("POST", "/repo/?create=true");
            let config = server.send(&Request::new("POST", "/repo/config").body("config"));
            let read = server.request("GET", "/repo/config");
            let _ = done.send((created.status, config.status, read.text()));
        });
        let (created, config, read) = answered.recv_timeout(patience).unwrap_or_else(|_| {
            panic!(
                "disk requests not answered within {patience:?} while the store's name lookup hung"
            )
        });
        assert_eq!((created, config, read.as_str()), (200, 200, "config"));
    });
}
