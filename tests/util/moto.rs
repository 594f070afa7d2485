//! AWS's S3 dialect for the tests: moto's server (PyPI `moto[server]`,
//! `moto_server`) on 127.0.0.1, with its IAM emulation switched on so that
//! every request must carry a valid SigV4 signature, an IAM user whose
//! policy allows S3, and an assumed role whose temporary credentials come
//! with a session token. Stopped on drop.
//!
//! moto is an emulator: it checks signatures and session tokens, but
//! neither the signed payload hash nor `x-amz-checksum-sha256`, and it
//! answers an unsigned request with 500. It stands for AWS's addressing,
//! regions and credentials; the real stores (SeaweedFS, Ceph) stand for
//! what is stored.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};

use super::sigv4::{SignedRequest, Signer, xml_value};
use super::{START_TIMEOUT, TempDir};

/// The region the test buckets are created in: not AWS's default, so a
/// client that ignores the region would show.
pub const REGION: &str = "eu-west-1";

/// moto's default account, which its ARNs name.
const ACCOUNT: &str = "123456789012";

/// One identity's keys.
#[derive(Debug, Clone)]
pub struct Keys {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
}

pub struct Moto {
    child: Option<Child>,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    pub port: u16,
    /// The IAM user's long-term keys.
    pub user: Keys,
    /// The assumed role's temporary keys, with their session token.
    pub role: Keys,
    log: Arc<Mutex<Vec<String>>>,
    _dir: TempDir,
}

impl Moto {
    /// Starts moto on a port of its choosing, sets up the identities, then
    /// turns authentication on.
    pub fn start() -> Moto {
        let dir = TempDir::new("moto");
        let mut child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", "0"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start moto_server");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // Werkzeug says where it listens: ` * Running on http://127.0.0.1:PORT`.
                if let Some(port) = line.split("Running on http://127.0.0.1:").nth(1) {
                    let _ = tx.send(port.trim().parse::<u16>());
                }
                sink.lock().unwrap().push(line);
            }
        });
        // moto imports every AWS service it emulates before it listens.
        let port = match rx.recv_timeout(START_TIMEOUT * 3) {
            Ok(Ok(port)) => port,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "moto_server did not say where it listens:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        let addr = format!("127.0.0.1:{port}");
        let no_keys = Keys {
            access_key: "AKIASETUP".into(),
            secret_key: "setup".into(),
            session_token: None,
        };
        let mut moto = Moto {
            child: Some(child),
            addr,
            port,
            user: no_keys.clone(),
            role: no_keys,
            log,
            _dir: dir,
        };
        moto.set_up_identities();
        moto
    }

    /// While authentication is off (moto's start), makes the user, its keys
    /// and the role, then switches authentication on for every request
    /// after.
    fn set_up_identities(&mut self) {
        let allow_s3 = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
        let trust = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{ACCOUNT}:root"}},"Action":"sts:AssumeRole"}}]}}"#
        );
        let iam = |form: &[(&str, &str)]| self.form("iam", "2010-05-08", form, &self.user);
        iam(&[("Action", "CreateUser"), ("UserName", "tester")]);
        iam(&[
            ("Action", "PutUserPolicy"),
            ("UserName", "tester"),
            ("PolicyName", "s3"),
            ("PolicyDocument", allow_s3),
        ]);
        let created = iam(&[("Action", "CreateAccessKey"), ("UserName", "tester")]);
        let user = Keys {
            access_key: xml_value(&created, "AccessKeyId").unwrap().into(),
            secret_key: xml_value(&created, "SecretAccessKey").unwrap().into(),
            session_token: None,
        };
        iam(&[
            ("Action", "CreateRole"),
            ("RoleName", "backup"),
            ("AssumeRolePolicyDocument", &trust),
        ]);
        iam(&[
            ("Action", "PutRolePolicy"),
            ("RoleName", "backup"),
            ("PolicyName", "s3"),
            ("PolicyDocument", allow_s3),
        ]);
        let role_arn = format!("arn:aws:iam::{ACCOUNT}:role/backup");
        let assumed = self.form(
            "sts",
            "2011-06-15",
            &[
                ("Action", "AssumeRole"),
                ("RoleArn", &role_arn),
                ("RoleSessionName", "rest-server-test"),
            ],
            &user,
        );
        self.role = Keys {
            access_key: xml_value(&assumed, "AccessKeyId").unwrap().into(),
            secret_key: xml_value(&assumed, "SecretAccessKey").unwrap().into(),
            session_token: Some(xml_value(&assumed, "SessionToken").unwrap().into()),
        };
        self.user = user;
        // From here on every request is authenticated and authorised.
        let answer = self.plain_post("/moto-api/reset-auth", "0");
        assert!(answer.contains("\"ok\""), "reset-auth: {answer}");
    }

    /// An IAM or STS query call (a form POST), signed by `keys`; its answer.
    fn form(
        &self,
        service: &'static str,
        version: &str,
        form: &[(&str, &str)],
        keys: &Keys,
    ) -> String {
        let mut body: Vec<String> = form
            .iter()
            .map(|(k, v)| format!("{k}={}", form_encode(v)))
            .collect();
        body.push(format!("Version={version}"));
        let mut request = SignedRequest::new("POST", &self.addr, "/");
        request.headers.push((
            "content-type",
            "application/x-www-form-urlencoded".to_string(),
        ));
        request.body = body.join("&").into_bytes();
        let answer = self.signer(keys, service).send(&self.addr, &request);
        assert_eq!(
            answer.status,
            200,
            "{service} {form:?}: {}\n{}",
            answer.text(),
            self.log()
        );
        answer.text()
    }

    /// A POST with a text body and no signature (moto's own API).
    fn plain_post(&self, path: &str, body: &str) -> String {
        use std::io::Write as _;
        let mut stream = std::net::TcpStream::connect(&self.addr).unwrap();
        stream.set_read_timeout(Some(super::IO_TIMEOUT)).unwrap();
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .unwrap();
        super::read_response(&mut stream, false).text()
    }

    /// A signer for `keys`, in [`REGION`].
    pub fn signer(&self, keys: &Keys, service: &'static str) -> Signer {
        Signer {
            access_key: keys.access_key.clone(),
            secret_key: keys.secret_key.clone(),
            session_token: keys.session_token.clone(),
            region: REGION.into(),
            service,
        }
    }

    /// What moto printed so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `application/x-www-form-urlencoded` for a value (RFC 3986 unreserved kept).
fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
