//! HTTPS: key types, minimum version, bad files, reload on SIGHUP, client
//! certificates, and restic over TLS. Certificates are made with openssl.

use std::io::Write as _;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::util::*;

/// `-newkey` arguments for the other key types.
const RSA: &[&str] = &["-newkey", "rsa:2048"];
const ED25519: &[&str] = &["-newkey", "ed25519"];

/// A self-signed server certificate for 127.0.0.1: (cert, key) in `dir`.
/// Not a CA: webpki refuses a CA certificate as a server's own.
fn self_signed(dir: &Path, name: &str, key_type: &[&str]) -> (PathBuf, PathBuf) {
    let (cert, key) = (format!("{name}.crt"), format!("{name}.key"));
    certificate(
        dir,
        &cert,
        &key,
        key_type,
        "basicConstraints=critical,CA:FALSE",
    )
}

/// A self-signed CA certificate.
fn certificate_authority(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (format!("{name}.crt"), format!("{name}.key"));
    certificate(dir, &cert, &key, ECDSA, "basicConstraints=critical,CA:TRUE")
}

/// Client options for [`https`].
#[derive(Default)]
struct Client<'a> {
    ca: Option<&'a Path>,
    tls12_only: bool,
    identity: Option<(&'a Path, &'a Path)>,
    /// Offer ChaCha20-Poly1305 before AES-GCM (as a client without AES
    /// instructions does).
    chacha_first: bool,
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Connects over TLS and completes the handshake.
fn https(addr: std::net::SocketAddr, client: &Client) -> std::io::Result<TlsStream> {
    let mut provider = rustls::crypto::ring::default_provider();
    if client.chacha_first {
        provider
            .cipher_suites
            .sort_by_key(|suite| !is_chacha(suite.suite()));
    }
    let provider = Arc::new(provider);
    let versions: &[&rustls::SupportedProtocolVersion] = if client.tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = client.ca {
        for cert in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let config = match client.identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
            builder
                .with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key).unwrap())
                .unwrap()
        }
    };
    let name = ServerName::try_from("127.0.0.1").unwrap().to_owned();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(std::io::Error::other)?;
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

fn is_chacha(suite: rustls::CipherSuite) -> bool {
    format!("{suite:?}").contains("CHACHA20")
}

fn get_over_tls(stream: &mut TlsStream, path: &str) -> Response {
    stream
        .write_all(&Request::new("GET", path).to_bytes())
        .unwrap();
    stream.flush().unwrap();
    read_response(stream, false)
}

fn tls_server(data: &Path, cert: &Path, key: &Path, extra: &[&str]) -> Server {
    let mut args = vec![
        "--no-auth",
        "--listen",
        "127.0.0.1:0",
        "--tls",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Server::start_with(data, &args)
}

#[test]
fn serves_https_with_rsa_ecdsa_and_ed25519_keys() {
    if !require_tool("openssl", "serves_https_with_rsa_ecdsa_and_ed25519_keys") {
        return;
    }
    let dir = TempDir::new("tls-keys");
    for (name, key_type) in [("rsa", RSA), ("ecdsa", ECDSA), ("ed25519", ED25519)] {
        let (cert, key) = self_signed(dir.path(), name, key_type);
        let server = tls_server(&dir.path().join(name), &cert, &key, &[]);
        let client = Client {
            ca: Some(&cert),
            ..Client::default()
        };
        let mut stream =
            https(server.tcp_addr(), &client).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            get_over_tls(&mut stream, "/keys/").status,
            404,
            "{name}: no repository yet"
        );
        // Plain HTTP on the TLS port gets nothing useful.
        let plain = std::panic::catch_unwind(|| server.request("GET", "/keys/"));
        assert!(plain.map_or(true, |r| r.status == 400), "{name}");
    }
}

/// `rest-server health` with the server's flags: (exit code, stdout, stderr).
fn probe(data: &Path, listen: &str, cert: &Path) -> (i32, String, String) {
    let (data, cert) = (data.to_str().unwrap(), cert.to_str().unwrap());
    run_cli(&[
        "--path",
        data,
        "--no-auth",
        "--listen",
        listen,
        "--tls",
        "--tls-cert",
        cert,
        "health",
    ])
}

#[test]
fn the_health_command_asks_over_tls_pinning_the_servers_certificate() {
    let test = "the_health_command_asks_over_tls_pinning_the_servers_certificate";
    if !require_tool("openssl", test) {
        return;
    }
    let dir = TempDir::new("tls-probe");
    // The certificate names neither localhost nor 127.0.0.1: pinned, not
    // checked by name.
    let (cert, key) = self_signed(dir.path(), "nas.example", ECDSA);
    let data = dir.path().join("data");
    let server = tls_server(&data, &cert, &key, &[]);
    let listen = server.tcp_addr().to_string();
    let (code, out, err) = probe(&data, &listen, &cert);
    assert_eq!((code, out.as_str()), (0, "ok\n"), "{err}");
    // Another certificate in --tls-cert: not the server it means.
    let (other, _) = self_signed(dir.path(), "other", ECDSA);
    let (code, _, err) = probe(&data, &listen, &other);
    assert_eq!(code, 1);
    assert!(err.contains("not the one in --tls-cert"), "{err}");
    // A server that wants client certificates cannot be asked: exit code 3,
    // which the init script reports as running, health not checked.
    let (data_arg, cert_arg) = (data.to_str().unwrap(), cert.to_str().unwrap());
    let (code, _, err) = run_cli(&[
        "--path",
        data_arg,
        "--no-auth",
        "--listen",
        &listen,
        "--tls",
        "--tls-cert",
        cert_arg,
        "--tls-client-ca",
        cert_arg,
        "health",
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("health not checked: the server requires client certificates"),
        "{err}"
    );
    drop(server);
    let (code, _, err) = probe(&data, &listen, &cert);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("nothing answers at {listen}")),
        "{err}"
    );
}

#[test]
fn minimum_version_and_bad_files() {
    if !require_tool("openssl", "minimum_version_and_bad_files") {
        return;
    }
    let dir = TempDir::new("tls-version");
    let (cert, key) = self_signed(dir.path(), "a", ECDSA);
    let old_client = Client {
        ca: Some(&cert),
        tls12_only: true,
        ..Client::default()
    };
    let server = tls_server(&dir.path().join("d1"), &cert, &key, &[]);
    assert!(
        https(server.tcp_addr(), &old_client).is_ok(),
        "1.2 is accepted by default"
    );
    let strict = tls_server(
        &dir.path().join("d2"),
        &cert,
        &key,
        &["--tls-min-ver", "1.3"],
    );
    assert!(
        https(strict.tcp_addr(), &old_client).is_err(),
        "1.2 refused with --tls-min-ver 1.3"
    );
    let modern = Client {
        ca: Some(&cert),
        ..Client::default()
    };
    assert!(https(strict.tcp_addr(), &modern).is_ok());

    let run = |args: &[&str]| {
        let out = Command::new(binary())
            .args(["--no-auth", "--listen", "127.0.0.1:0", "--tls"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let missing = dir.path().join("missing.key");
    let (code, err) = run(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("missing.key"), "{err}");
    let (other_cert, _) = self_signed(dir.path(), "b", ECDSA);
    let (code, err) = run(&[
        "--tls-cert",
        other_cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "a key that is not the certificate's: {err}");
    assert!(err.contains("b.crt"), "{err}");
    // Defaults: public_key and private_key in the data directory.
    let data = dir.path().join("d3");
    std::fs::create_dir_all(&data).unwrap();
    let (code, err) = run(&["--path", data.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("public_key"), "{err}");
}

#[test]
fn sighup_swaps_in_a_renewed_certificate() {
    if !require_tool("openssl", "sighup_swaps_in_a_renewed_certificate") {
        return;
    }
    let dir = TempDir::new("tls-reload");
    let (old_cert, old_key) = self_signed(dir.path(), "old", ECDSA);
    let (new_cert, new_key) = self_signed(dir.path(), "new", ECDSA);
    let (cert, key) = (dir.path().join("live.crt"), dir.path().join("live.key"));
    std::fs::copy(&old_cert, &cert).unwrap();
    std::fs::copy(&old_key, &key).unwrap();
    let server = tls_server(&dir.path().join("data"), &cert, &key, &[]);
    let trusts = |ca: &Path| {
        https(
            server.tcp_addr(),
            &Client {
                ca: Some(ca),
                ..Client::default()
            },
        )
        .is_ok()
    };
    assert!(trusts(&old_cert));
    assert!(!trusts(&new_cert));
    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    kill(server.pid(), Signal::SIGHUP).unwrap();
    assert!(eventually(Duration::from_secs(10), || trusts(&new_cert)));
    assert!(!trusts(&old_cert));
    // A broken renewal keeps the working certificate.
    std::fs::write(&key, "not a key").unwrap();
    kill(server.pid(), Signal::SIGHUP).unwrap();
    assert!(server.wait_for_log("keeping the current certificate", Duration::from_secs(10)));
    assert!(trusts(&new_cert));
}

#[test]
fn client_certificates_can_be_required() {
    if !require_tool("openssl", "client_certificates_can_be_required") {
        return;
    }
    let dir = TempDir::new("tls-client");
    let d = dir.path();
    let (cert, key) = self_signed(d, "server", ECDSA);
    let (ca_cert, ca_key) = certificate_authority(d, "ca");
    std::fs::write(d.join("ext.cnf"), "extendedKeyUsage=clientAuth\n").unwrap();
    openssl(
        &[
            "req",
            "-new",
            "-nodes",
            "-subj",
            "/CN=alice",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-keyout",
            "alice.key",
            "-out",
            "alice.csr",
        ],
        d,
    );
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "alice.csr",
            "-CA",
            ca_cert.to_str().unwrap(),
            "-CAkey",
            ca_key.to_str().unwrap(),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "alice.crt",
        ],
        d,
    );
    let server = tls_server(
        &d.join("data"),
        &cert,
        &key,
        &["--tls-client-ca", ca_cert.to_str().unwrap()],
    );
    let anonymous = Client {
        ca: Some(&cert),
        ..Client::default()
    };
    let refused = https(server.tcp_addr(), &anonymous).and_then(|mut s| {
        s.write_all(&Request::new("GET", "/keys/").to_bytes())?;
        let mut buf = [0u8; 1];
        std::io::Read::read(&mut s, &mut buf)
    });
    assert!(
        refused.is_err() || refused.is_ok_and(|n| n == 0),
        "no client certificate"
    );
    let (alice_cert, alice_key) = (d.join("alice.crt"), d.join("alice.key"));
    let alice = Client {
        ca: Some(&cert),
        identity: Some((&alice_cert, &alice_key)),
        ..Client::default()
    };
    let mut stream = https(server.tcp_addr(), &alice).unwrap();
    assert_eq!(get_over_tls(&mut stream, "/keys/").status, 404);
}

#[test]
fn tls_generate_makes_a_certificate_the_server_and_clients_accept() {
    let dir = TempDir::new("tls-generate");
    // Before the server's first start: the data directory does not exist.
    let data = dir.path().join("data");
    let generate = || {
        Command::new(binary())
            .arg("--path")
            .arg(&data)
            .args([
                "tls",
                "generate",
                "--name",
                "127.0.0.1",
                "--name",
                "backup.lan",
            ])
            .output()
            .unwrap()
    };
    let out = generate();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    let cert = data.join("public_key");
    let key = data.join("private_key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The printed fingerprint is the SHA-256 of the certificate.
    let der = CertificateDer::from_pem_file(&cert).unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
    let expected: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    assert_eq!(
        printed.trim(),
        format!("SHA-256 fingerprint: {}", expected.join(":"))
    );
    // Existing files are kept, and the error says which and what to do.
    let before = std::fs::read(&cert).unwrap();
    let again = generate();
    assert!(!again.status.success());
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(
        said.contains("private_key exists") && said.contains("--force"),
        "{said}"
    );
    assert_eq!(std::fs::read(&cert).unwrap(), before);
    // The server serves it by default with --tls, and a client pinning it connects.
    let server = Server::start_with(&data, &["--no-auth", "--listen", "127.0.0.1:0", "--tls"]);
    let client = Client {
        ca: Some(&cert),
        ..Client::default()
    };
    let mut stream = https(server.tcp_addr(), &client).unwrap();
    assert_eq!(get_over_tls(&mut stream, "/keys/").status, 404);
    drop(server);
    // --force makes a new pair.
    let forced = Command::new(binary())
        .arg("--path")
        .arg(&data)
        .args(["tls", "generate", "--force"])
        .output()
        .unwrap();
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    assert_ne!(std::fs::read(&cert).unwrap(), before);
}

#[test]
fn tls_generate_as_root_leaves_files_the_service_user_can_read() {
    if !require_root("tls_generate_as_root_leaves_files_the_service_user_can_read") {
        return;
    }
    let dir = TempDir::new("tls-generate-owner");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // The data directory belongs to the service user (nobody stands in).
    std::os::unix::fs::chown(&data, Some(65534), Some(65534)).unwrap();
    let out = Command::new(binary())
        .arg("--path")
        .arg(&data)
        .args(["tls", "generate"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use std::os::unix::fs::MetadataExt as _;
    for name in ["private_key", "public_key"] {
        let meta = std::fs::metadata(data.join(name)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (65534, 65534), "{name}");
    }
}

#[test]
fn stalled_tls_handshakes_make_room_at_the_cap() {
    if !require_tool("openssl", "stalled_tls_handshakes_make_room_at_the_cap") {
        return;
    }
    let dir = TempDir::new("tls-cap");
    let (cert, key) = self_signed(dir.path(), "server", ECDSA);
    let server = tls_server(
        &dir.path().join("data"),
        &cert,
        &key,
        &["--max-connections", "3"],
    );
    let addr = server.tcp_addr();
    // Half a ClientHello on every slot, then nothing.
    let stalled: Vec<_> = (0..3)
        .map(|_| {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(&[0x16, 0x03, 0x01, 0x00, 0xf0, 0x01]).unwrap();
            c
        })
        .collect();
    let started = std::time::Instant::now();
    let mut stream = https(
        addr,
        &Client {
            ca: Some(&cert),
            ..Client::default()
        },
    )
    .expect("handshake");
    let response = get_over_tls(&mut stream, "/");
    let waited = started.elapsed();
    assert_ne!(response.status, 0);
    // Before: until the stalled handshakes timed out (--header-timeout, 15 s).
    assert!(
        waited < Duration::from_secs(5),
        "a new client waited {waited:?}"
    );
    drop(stalled);
}

/// The cipher follows the server's CPU: with AES instructions (x86 `flags`
/// or ARM `Features` in /proc/cpuinfo say `aes`) the client's order is
/// followed; without, ChaCha20-Poly1305 is chosen whatever the client's
/// order. Both TLS versions; the choice is logged at startup.
#[test]
fn the_cipher_follows_the_cpu() {
    if !require_tool("openssl", "the_cipher_follows_the_cpu") {
        return;
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let aes = cpuinfo.lines().any(|line| {
        line.split_once(':').is_some_and(|(key, value)| {
            matches!(key.trim(), "flags" | "Features")
                && value.split_whitespace().any(|f| f == "aes")
        })
    });
    let dir = TempDir::new("tls-ciphers");
    let (cert, key) = self_signed(dir.path(), "server", ECDSA);
    let server = tls_server(&dir.path().join("data"), &cert, &key, &[]);
    for tls12_only in [false, true] {
        for chacha_first in [false, true] {
            let client = Client {
                ca: Some(&cert),
                tls12_only,
                chacha_first,
                ..Client::default()
            };
            let mut stream = https(server.tcp_addr(), &client).unwrap();
            let suite = stream.conn.negotiated_cipher_suite().unwrap().suite();
            let expect_chacha = chacha_first || !aes;
            assert_eq!(
                is_chacha(suite),
                expect_chacha,
                "{suite:?} (CPU has AES: {aes}; TLS 1.2 only: {tls12_only}; client offers ChaCha20 first: {chacha_first})"
            );
            assert_eq!(get_over_tls(&mut stream, "/keys/").status, 404);
        }
    }
    let expected_log = if aes {
        "TLS ciphers: AES instructions present"
    } else {
        "TLS ciphers: no AES instructions: ChaCha20-Poly1305 preferred"
    };
    assert!(server.log().contains(expected_log), "{}", server.log());
}
