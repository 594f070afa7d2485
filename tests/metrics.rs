//! `--prometheus`: content, rest-server's access rule, and a real parser.

use std::process::Command;

use crate::util::*;

/// Checks the text with Prometheus' own parser (`promtool check metrics`,
/// Debian's prometheus package); without promtool `test` skips this check
/// (or fails under REST_SERVER_TEST_REQUIRE_TOOLS).
pub fn promtool_accepts(text: &str, test: &str) {
    if !require_tool("promtool", test) {
        return;
    }
    let mut command = Command::new("promtool");
    command.args(["check", "metrics"]);
    let (code, out, err) = run_with_stdin(command, text);
    // promtool fails on parse errors and on lint findings (names, help, types).
    assert_eq!(code, 0, "promtool: {err}{out}");
}

fn value(text: &str, series: &str) -> Option<u64> {
    find_metric(text, series).and_then(|v| v.parse().ok())
}

#[test]
fn counts_blobs_repositories_and_refusals() {
    let dir = TempDir::new("metrics");
    let server = server_with_repo(&dir, &["--prometheus"]);
    let (id, put) = upload(&server, "data", &pseudo_random(1000, 1));
    assert_eq!(put.status, 200);
    let (_, put) = upload(&server, "snapshots", b"snapshot");
    assert_eq!(put.status, 200);
    assert_eq!(
        server.request("GET", &format!("/repo/data/{id}")).status,
        200
    );
    let bad =
        server.send(&Request::new("POST", &format!("/repo/keys/{}", sha256_hex(b"x"))).body("y"));
    assert_eq!(bad.status, 400);
    assert_eq!(
        server.request("DELETE", &format!("/repo/data/{id}")).status,
        200
    );

    let response = server.request("GET", "/metrics");
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text();
    let labels = "{repo=\"repo\",type=\"data\",user=\"\"}";
    assert_eq!(
        value(&text, &format!("rest_server_blob_write_total{labels}")),
        Some(1)
    );
    assert_eq!(
        value(
            &text,
            &format!("rest_server_blob_write_bytes_total{labels}")
        ),
        Some(1000)
    );
    assert_eq!(
        value(&text, &format!("rest_server_blob_read_bytes_total{labels}")),
        Some(1000)
    );
    assert_eq!(
        value(
            &text,
            &format!("rest_server_blob_delete_bytes_total{labels}")
        ),
        Some(1000)
    );
    assert_eq!(
        value(&text, "rest_server_repo_stored_bytes{repo=\"repo\"}"),
        Some(8)
    );
    assert!(
        value(
            &text,
            "rest_server_repo_newest_snapshot_timestamp_seconds{repo=\"repo\"}"
        )
        .is_some()
    );
    assert_eq!(
        value(&text, "rest_server_upload_verification_failures_total"),
        Some(1)
    );
    assert!(value(&text, "rest_server_filesystem_free_bytes").unwrap() > 0);
    assert!(value(&text, "rest_server_filesystem_size_bytes").unwrap() > 0);
    promtool_accepts(&text, "counts_blobs_repositories_and_refusals");
    drop(server);

    // Counted again from the disk at startup.
    let server = Server::start(&dir.path().join("data"), &["--prometheus"]);
    let text = server.request("GET", "/metrics").text();
    assert_eq!(
        value(&text, "rest_server_repo_stored_bytes{repo=\"repo\"}"),
        Some(8)
    );
    assert!(
        value(
            &text,
            "rest_server_repo_newest_snapshot_timestamp_seconds{repo=\"repo\"}"
        )
        .is_some()
    );
}

#[test]
fn who_may_read_the_metrics() {
    let dir = TempDir::new("metrics-auth");
    let users = format!(
        "{}{}",
        bcrypt_line("alice", "a"),
        bcrypt_line("metrics", "m")
    );
    let get = |server: &Server, user: Option<(&str, &str)>| {
        let request = Request::new("GET", "/metrics");
        let request = match user {
            Some((u, p)) => request.basic(u, p),
            None => request,
        };
        server.send(&request).status
    };

    let server = Server::start_with_users(&dir.path().join("a"), &users, &["--prometheus"]);
    assert_eq!(get(&server, None), 401);
    assert_eq!(get(&server, Some(("alice", "wrong"))), 401);
    assert_eq!(
        get(&server, Some(("alice", "a"))),
        200,
        "any user, as in rest-server"
    );
    let text = server
        .send(&Request::new("GET", "/metrics").basic("metrics", "m"))
        .text();
    assert_eq!(
        value(
            &text,
            "rest_server_auth_failures_total{reason=\"no credentials\"}"
        ),
        Some(1)
    );
    assert_eq!(
        value(
            &text,
            "rest_server_auth_failures_total{reason=\"wrong password\"}"
        ),
        Some(1)
    );
    promtool_accepts(&text, "who_may_read_the_metrics");

    let private = Server::start_with_users(
        &dir.path().join("b"),
        &users,
        &["--prometheus", "--private-repos"],
    );
    assert_eq!(
        get(&private, Some(("alice", "a"))),
        401,
        "only `metrics` with --private-repos"
    );
    // The log says why, not "no access to this repository".
    assert!(
        private.wait_for_log("only the user \"metrics\" may read /metrics", IO_TIMEOUT),
        "{}",
        private.log()
    );
    assert_eq!(get(&private, Some(("metrics", "m"))), 200);

    let open = Server::start_with_users(
        &dir.path().join("c"),
        &users,
        &["--prometheus", "--prometheus-no-auth", "--private-repos"],
    );
    assert_eq!(get(&open, None), 200);
    assert_eq!(
        open.request("GET", "/alice/keys/").status,
        401,
        "only /metrics is open"
    );

    let off = Server::start_with_users(&dir.path().join("d"), &users, &[]);
    assert_eq!(
        get(&off, Some(("metrics", "m"))),
        404,
        "no /metrics without --prometheus"
    );
}

#[test]
fn requests_for_missing_repositories_leave_the_metrics_bounded() {
    let dir = TempDir::new("metrics-bounded");
    let server = Server::start(&dir.path().join("data"), &["--prometheus"]);
    assert_eq!(server.request("POST", "/real/?create=true").status, 200);
    let id = "cd".repeat(32);
    // One keep-alive connection, as a client that names endless paths would.
    let mut stream = server.connect();
    for i in 0..2000 {
        let method = if i % 2 == 0 { "DELETE" } else { "GET" };
        let request = Request::new(method, &format!("/gone{i}/data/{id}")).keep_alive();
        stream.write_all(&request.to_bytes()).unwrap();
        let response = read_response(&mut stream, false);
        assert!(
            response.status == 200 || response.status == 404,
            "{}",
            response.status
        );
    }
    let text = server.request("GET", "/metrics").text();
    let leaked: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("gone"))
        .take(5)
        .collect();
    assert!(
        leaked.is_empty(),
        "a missing repository got a series: {leaked:?}"
    );
    // Before: 1000 DELETEs gave 1000 series in each of 6 families.
    assert!(text.len() < 16 * 1024, "/metrics is {} bytes", text.len());
    assert!(
        value(
            &text,
            "rest_server_blob_delete_total{type=\"data\",user=\"\"}"
        ) == Some(1000)
    );
    assert!(text.contains("rest_server_repo_stored_bytes{repo=\"real\"} 0"));
    promtool_accepts(
        &text,
        "requests_for_missing_repositories_leave_the_metrics_bounded",
    );
}
