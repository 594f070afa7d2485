//! The status page (`GET /` from a browser), loaded by a real browser:
//! Debian's headless Chromium renders it with credentials in the URL, the
//! test reads the rendered DOM, and a phone-sized screenshot is kept in
//! `target/test-artifacts/status-page.png`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use crate::util::*;

const TEST: &str = "status::a_browser_shows_each_repository_its_last_backup_and_refused_logins";

/// Longest a headless browser may take to load the page.
const BROWSER_TIMEOUT_SECS: &str = "90";

/// Runs headless Chromium on `url` with `args` (what to produce), in a
/// profile of its own, with everything that would reach beyond loopback
/// turned off.
fn chromium(profile: &Path, args: &[&str], url: &str) -> Output {
    let out = Command::new("timeout")
        .args(["-k", "5", BROWSER_TIMEOUT_SECS, "chromium", "--headless"])
        // As root (CI), Chromium's sandbox cannot start; the page is ours.
        .args(["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        .args([
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .env("HOME", profile)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The page as the browser rendered it, for `user`.
fn rendered(profile: &Path, server: &Server, user: &str, password: &str) -> String {
    let url = format!("http://{user}:{password}@{}/", server.tcp_addr());
    String::from_utf8(chromium(profile, &["--dump-dom"], &url).stdout).unwrap()
}

/// The table row that names `repo`, from `<tr` to `</tr>`.
fn row<'a>(html: &'a str, repo: &str) -> &'a str {
    let cell = format!("<td>{repo}</td>");
    let at = html
        .find(&cell)
        .unwrap_or_else(|| panic!("no row for {repo} in\n{html}"));
    let start = html[..at].rfind("<tr").unwrap();
    let end = at + html[at..].find("</tr>").unwrap();
    &html[start..end]
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_browser_shows_each_repository_its_last_backup_and_refused_logins() {
    if !require_tool("chromium", TEST) || !require_tool("restic", TEST) {
        return;
    }
    let dir = TempDir::new("status");
    let data = dir.path().join("data");
    let users = [
        bcrypt_line("alice", "alice-pw"),
        bcrypt_line("bob", "bob-pw"),
        bcrypt_line("metrics", "metrics-pw"),
    ]
    .concat();
    let source = dir.path().join("source");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("a"), pseudo_random(300_000, 1)).unwrap();
    std::fs::write(source.join("b"), b"small").unwrap();
    let cache = dir.path().join("cache");
    {
        let server = Server::start_with_users(&data, &users, &["--private-repos"]);
        for (user, password, repo) in [
            ("alice", "alice-pw", "alice/laptop"),
            ("bob", "bob-pw", "bob/desktop"),
        ] {
            let url = format!(
                "rest:http://{user}:{password}@{}/{repo}/",
                server.tcp_addr()
            );
            ok(restic(&url, &cache, &["init"]), "init");
            ok(
                restic(&url, &cache, &["backup", source.to_str().unwrap()]),
                "backup",
            );
        }
    }
    // Bob's laptop stopped backing up five days ago: his snapshot's file is
    // dated back while the server is down (its startup scan reads the dates).
    let five_days_ago = SystemTime::now() - Duration::from_secs(5 * 86_400);
    for entry in std::fs::read_dir(data.join("bob/desktop/snapshots")).unwrap() {
        let file = std::fs::File::options()
            .write(true)
            .open(entry.unwrap().path())
            .unwrap();
        file.set_modified(five_days_ago).unwrap();
    }
    // Budgets: each user's, and the whole server's (which sums everyone's).
    let quotas = dir.path().join("quotas");
    std::fs::write(&quotas, "/$user/* 10M\n/* 100M\n").unwrap();
    let flags = [
        "--private-repos",
        "--quota-file",
        quotas.to_str().unwrap(),
        "--trash-days",
        "30",
    ];
    let server = Server::start_with_users(&data, &users, &flags);
    // Alice's laptop backs up three times more, then someone forgets all
    // but the last: three of her four snapshots deleted within the day
    // raise the deletion alarm, and the trash holds them.
    let alice_url = format!(
        "rest:http://alice:alice-pw@{}/alice/laptop/",
        server.tcp_addr()
    );
    for round in 0..3u64 {
        std::fs::write(source.join("b"), pseudo_random(100, round)).unwrap();
        let backup = restic(&alice_url, &cache, &["backup", source.to_str().unwrap()]);
        ok(backup, "backup");
    }
    ok(
        restic(&alice_url, &cache, &["forget", "--keep-last", "1"]),
        "forget",
    );

    // A password guess from another machine on the LAN.
    let mut guess = connect_from([127, 0, 0, 2].into(), server.tcp_addr());
    std::io::Write::write_all(
        &mut guess,
        &Request::new("GET", "/bob/desktop/config")
            .basic("bob", "guess")
            .to_bytes(),
    )
    .unwrap();
    assert_eq!(read_response(&mut guess, false).status, 401);

    // Without credentials the browser is asked for them; restic (which never
    // sends Accept: text/html) gets what it always got.
    let page = Request::new("GET", "/").header("Accept", "text/html,*/*;q=0.8");
    let anonymous = server.send(&page);
    assert_eq!(anonymous.status, 401);
    assert!(anonymous.header("www-authenticate").is_some());
    let plain = server.send(&Request::new("GET", "/").basic("metrics", "metrics-pw"));
    assert_eq!(plain.status, 405, "{}", plain.text());
    let raw = server.send(&page.basic("metrics", "metrics-pw"));
    assert_eq!(raw.status, 200);
    assert_eq!(raw.header("content-type"), Some("text/html; charset=utf-8"));
    let size = raw.body.len();
    eprintln!("status page: {size} bytes for 2 repositories, 3 budgets, 1 refused address");
    assert!(size < 8 * 1024, "the page should be a few KiB: {size}");

    let profile = dir.path().join("chromium");
    let admin = rendered(&profile, &server, "metrics", "metrics-pw");
    // Each repository with its object count as on disk; Bob's in red.
    for repo in ["alice/laptop", "bob/desktop"] {
        let objects = files_below(&data.join(repo))
            .iter()
            .filter(|name| name.as_str() != "config")
            .count();
        let row = row(&admin, &format!("/{repo}"));
        assert!(
            row.contains(&format!("<td class=\"n\">{objects}</td>")),
            "{objects} objects expected: {row}"
        );
    }
    let alice = row(&admin, "/alice/laptop");
    assert!(!alice.contains("bad"), "{alice}");
    assert!(
        alice.contains("just now") || alice.contains("min ago"),
        "{alice}"
    );
    let bob = row(&admin, "/bob/desktop");
    assert!(bob.starts_with("<tr class=\"bad\">"), "{bob}");
    assert!(bob.contains("5 d ago"), "{bob}");
    assert!(
        admin.contains("<b>") && admin.contains(" free</b>"),
        "{admin}"
    );
    assert!(
        admin.contains(
            "<p class=\"bad\">/alice/laptop: 3 of 4 snapshots deleted in the last 24 hours.</p>"
        ),
        "{admin}"
    );
    assert!(
        admin.contains("<p>Trash: 3 file(s), ") && admin.contains("each kept 30 day(s)"),
        "{admin}"
    );
    // The guess, by address, without the name it tried.
    let guess = row(&admin, "127.0.0.2");
    assert!(guess.contains("wrong password"), "{guess}");
    assert!(!guess.contains("bob"), "{guess}");
    assert!(admin.contains("signed in as metrics"));
    for group in ["/alice", "/bob", "/"] {
        assert!(row(&admin, group).contains("MiB</td>"), "{admin}");
    }

    // Alice sees her own repository, and nothing of the server's.
    let own = rendered(&profile, &server, "alice", "alice-pw");
    assert!(own.contains("<td>/alice/laptop</td>"), "{own}");
    assert!(!own.contains("bob/desktop"), "{own}");
    assert!(!own.contains("Refused logins"), "{own}");
    assert!(own.contains("only the repositories you may read"), "{own}");
    assert!(
        own.contains("Deletion alarm"),
        "her repository's alarm: {own}"
    );
    // Her own budget, not the server's: its use would tell of bob's.
    assert!(
        row(&own, "/alice").contains("<code>/$user/*</code>"),
        "{own}"
    );
    assert!(!own.contains("<td>/</td>"), "{own}");

    // As a phone shows it.
    let shot = artifacts().join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let url = format!("http://metrics:metrics-pw@{}/", server.tcp_addr());
    let arg = format!("--screenshot={}", shot.display());
    chromium(&profile, &["--window-size=412,915", &arg], &url);
    let png = std::fs::read(&shot).expect("the screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // IHDR's width: the window's.
    assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 412);
    eprintln!("screenshot: {}", shot.display());
}
