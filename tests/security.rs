//! Paths that must never reach the filesystem, whatever the method.

use std::io::{Read as _, Write as _};
use std::time::Duration;

use crate::util::*;

/// Request paths that try to leave the data directory or name what no route
/// names. `secret` sits beside the data directory.
const ATTEMPTS: &[&str] = &[
    "/../secret/config",
    "/%2e%2e/secret/config",
    "/%2E%2E/secret/config",
    "/..%2fsecret/config",
    "/repo/..%2f..%2fsecret/config",
    "/a%2fb/config",
    "/a%2Fb/config",
    "/a%5cb/config",
    "/a%00/config",
    "/%00/config",
    "/./config",
    "/.hidden/config",
    "/repo/../../secret/config",
    "/repo/data/../../../secret/config",
    "//secret/config",
];

#[test]
fn traversal_attempts_touch_nothing() {
    let dir = TempDir::new("traversal");
    let secret = dir.path().join("secret");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("config"), "top secret").unwrap();
    let server = server_with_repo(&dir, &[]);
    let before = files_below(dir.path());
    for path in ATTEMPTS {
        for method in ["GET", "HEAD", "DELETE"] {
            let response = server.request(method, path);
            assert!(
                matches!(response.status, 400 | 404),
                "{method} {path}: {}",
                response.status
            );
            assert!(!response.text().contains("top secret"), "{method} {path}");
        }
        let post = server.send(&Request::new("POST", path).body("overwritten"));
        assert!(
            matches!(post.status, 400 | 404),
            "POST {path}: {}",
            post.status
        );
        let create_path = path.trim_end_matches("config");
        let create = server.request("POST", &format!("{create_path}?create=true"));
        assert!(
            matches!(create.status, 400 | 404),
            "POST {create_path}?create=true: {}",
            create.status
        );
    }
    assert_eq!(
        std::fs::read_to_string(secret.join("config")).unwrap(),
        "top secret"
    );
    assert_eq!(
        files_below(dir.path()),
        before,
        "nothing created or removed"
    );
    let leftover: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let mut leftover = leftover;
    leftover.sort();
    assert_eq!(leftover, vec!["data", "secret"]);
    // Each refusal is logged.
    assert!(server.wait_for_log("/a%2fb/config", Duration::from_secs(5)));
    assert!(server.log().contains(" 404 "));
}

#[test]
fn raw_nul_and_garbage_request_lines_are_refused() {
    let dir = TempDir::new("garbage");
    let server = server_with_repo(&dir, &[]);
    for raw in [
        &b"GET /repo/\0/config HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"[..],
        b"GET /repo\\..\\config HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
    ] {
        let mut stream = server.connect();
        stream.write_all(raw).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 400") || text.starts_with("HTTP/1.1 404"),
            "{text}"
        );
    }
    // Still serving.
    assert_eq!(server.request("GET", "/repo/keys/").status, 200);
}

#[test]
fn encoded_layout_names_mean_the_layout_names() {
    let dir = TempDir::new("encoded-names");
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    assert_eq!(server.request("POST", "/?create=true").status, 200);
    let before = files_below(&data);
    let key = b"a key";
    let id = sha256_hex(key);
    // Not a repository named `keys` with a folder named like the key: that
    // would shadow the root repository's own keys/.
    for path in [
        format!("/%6beys/{id}/?create=true"),
        format!("/%6Beys/{id}/?create=true"),
        format!("/%64ata/{id}/?create=true"),
    ] {
        assert_eq!(server.request("POST", &path).status, 404, "{path}");
    }
    assert_eq!(files_below(&data), before, "nothing created");
    for kind in ["keys", "data"] {
        let folder = data.join(kind).join(&id);
        assert!(!folder.exists(), "{} was created", folder.display());
    }
    // The encoded path is the plain one: the key lands in keys/ and is listed.
    let put = server.send(&Request::new("POST", &format!("/%6beys/{id}")).body(key.to_vec()));
    assert_eq!(put.status, 200);
    assert_eq!(std::fs::read(data.join("keys").join(&id)).unwrap(), key);
    assert_eq!(
        server.request("GET", "/keys/").text(),
        format!("[\"{id}\"]")
    );
    assert_eq!(
        server.request("GET", "/%63onfig").status,
        404,
        "no config yet"
    );
}

/// A length that does not parse, overflows, or is one of the two values hyper
/// keeps for itself (which used to get 431 "header fields too large") is a
/// 400, logged, and the connection is closed; nothing is stored.
#[test]
fn unusable_content_lengths_are_400_and_close_the_connection() {
    let dir = TempDir::new("badlength");
    let server = server_with_repo(&dir, &[]);
    let before = files_below(dir.path());
    let id = "ab".repeat(32);
    for length in [
        "18446744073709551615",
        "18446744073709551614",
        "018446744073709551615",
        "18446744073709551616",
        "99999999999999999999999",
        "-1",
        "12abc",
    ] {
        let mark = server.log_mark();
        let mut stream = server.connect();
        // Keep-alive: the server, not the client, must end the connection.
        let head = format!(
            "POST /repo/data/{id} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\nsome body"
        );
        stream.write_all(head.as_bytes()).unwrap();
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .unwrap_or_else(|e| panic!("{length}: connection left open: {e}"));
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 400 "), "{length}: {text}");
        assert!(
            server.wait_for_log_since(mark, "bad request from", Duration::from_secs(5)),
            "{length}: not logged"
        );
    }
    assert_eq!(files_below(dir.path()), before, "nothing stored");
    assert_eq!(server.request("GET", "/repo/keys/").status, 200);
}

/// A page of another site, in a browser signed in to the status page, makes
/// requests that carry the owner's credentials: none that changes something
/// is carried out. restic (no such headers) and the server's own pages are
/// unaffected.
#[test]
fn changes_asked_by_another_sites_page_are_refused() {
    let dir = TempDir::new("cross-site");
    let data = dir.path().join("data");
    let server = Server::start_with_users(&data, &bcrypt_line("alice", "secret"), &[]);
    let as_alice = |request: Request| server.send(&request.basic("alice", "secret"));
    assert_eq!(
        as_alice(Request::new("POST", "/alice/r/?create=true")).status,
        200
    );
    let key = b"a key file".to_vec();
    let key_path = format!("/alice/r/keys/{}", sha256_hex(&key));
    assert_eq!(
        as_alice(Request::new("POST", &key_path).body(key)).status,
        200
    );

    let junk = b"junk index".to_vec();
    let junk_path = format!("/alice/r/index/{}", sha256_hex(&junk));
    let form = |request: Request| {
        request
            .header("Origin", "http://evil.example")
            .header("Sec-Fetch-Site", "cross-site")
            .header("Sec-Fetch-Mode", "no-cors")
            .header("Content-Type", "text/plain")
    };
    let refused = [
        as_alice(form(Request::new("POST", &junk_path).body(junk.clone()))),
        as_alice(
            Request::new("POST", &junk_path)
                .body(junk.clone())
                .header("Sec-Fetch-Site", "cross-site"),
        ),
        as_alice(
            Request::new("POST", &junk_path)
                .body(junk.clone())
                .header("Sec-Fetch-Site", "same-site"),
        ),
        as_alice(
            Request::new("POST", &junk_path)
                .body(junk.clone())
                .header("Origin", "http://evil.example"),
        ),
        as_alice(
            Request::new("POST", &junk_path)
                .body(junk.clone())
                .header("Origin", "null"),
        ),
        as_alice(form(Request::new("DELETE", &key_path))),
        as_alice(form(Request::new("POST", "/alice/planted/?create=true"))),
    ];
    for (i, response) in refused.iter().enumerate() {
        assert_eq!(response.status, 403, "request {i}: {}", response.text());
    }
    assert_eq!(
        as_alice(Request::new("HEAD", &junk_path)).status,
        404,
        "stored"
    );
    assert_eq!(
        as_alice(Request::new("HEAD", &key_path)).status,
        200,
        "deleted"
    );
    assert!(
        !data.join("alice/planted").exists(),
        "a repository was created"
    );
    assert!(
        server.wait_for_log("Origin: http://evil.example", START_TIMEOUT),
        "{}",
        server.log()
    );

    // Reading stays open to other sites' pages (the browser keeps the
    // answer from them), and the server's own origin may change things.
    assert_eq!(as_alice(form(Request::new("GET", &key_path))).status, 200);
    let own = Request::new("POST", &junk_path)
        .body(junk)
        .header("Origin", "http://test")
        .header("Sec-Fetch-Site", "same-origin");
    assert_eq!(as_alice(own).status, 200);
    assert_eq!(as_alice(Request::new("DELETE", &key_path)).status, 200);
}
