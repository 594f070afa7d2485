//! board/: service scripts and units, the install script, and running the
//! init.d script under busybox with the built binary.

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util::*;

fn project() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every shell script the project ships or runs.
const SCRIPTS: &[&str] = &[
    "board/install.sh",
    "board/init.d/rest-server",
    "board/openrc/rest-server",
    "board/openwrt/rest-server",
    "board/deb/build.sh",
    "board/deb/postinst",
    "board/deb/prerm",
    "board/deb/postrm",
    "image/build.sh",
    "image/initramfs-init",
    "image/root/rc.boot",
    "image/root/udhcpc.script",
    "image/root/service/functions",
    "image/root/service/mdns",
    "image/root/service/ntp",
    "image/root/service/rest-server",
    "image/root/service/watchdog",
    "tests/all.sh",
    "tests/emulated.sh",
    ".ci/run",
];

#[test]
fn scripts_pass_shellcheck() {
    if !require_tool("shellcheck", "scripts_pass_shellcheck") {
        return;
    }
    let out = Command::new("shellcheck")
        .args(SCRIPTS)
        .current_dir(project())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn systemd_units_verify() {
    if !require_tool("systemd-analyze", "systemd_units_verify") {
        return;
    }
    // systemd-analyze checks that ExecStart's program exists: point it at the
    // built binary in a copy of the units.
    let dir = TempDir::new("units");
    for unit in ["rest-server.service", "rest-server.socket"] {
        let text = std::fs::read_to_string(project().join("board/systemd").join(unit)).unwrap();
        let text = text.replace("/usr/local/bin/rest-server", binary().to_str().unwrap());
        std::fs::write(dir.path().join(unit), text).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path().join("rest-server.service"))
        .arg(dir.path().join("rest-server.socket"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A folder of busybox applet links, so that scripts run with busybox's
/// start-stop-daemon, kill, sleep... as on a busybox-based board.
fn busybox_path(dir: &Path) -> Option<PathBuf> {
    let busybox = which("busybox")?;
    let bin = dir.join("busybox-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let ok = Command::new(&busybox)
        .arg("--install")
        .arg("-s")
        .arg(&bin)
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(bin)
}

fn which(name: &str) -> Option<PathBuf> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Kills the server whose pid is in the file when the test ends, also when
/// an assertion fails before the script's own `stop`.
struct StopOnDrop<'a>(&'a Path);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        let pid = std::fs::read_to_string(self.0).ok();
        if let Some(pid) = pid.and_then(|p| p.trim().parse().ok()) {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

#[test]
fn busybox_init_script_starts_reports_and_stops() {
    if !require_tool("busybox", "busybox_init_script_starts_reports_and_stops") {
        return;
    }
    let dir = TempDir::new("initd");
    let bin = busybox_path(dir.path()).expect("busybox applets");
    let busybox = which("busybox").unwrap();
    let data = dir.path().join("data");
    // Port 0: the test reads the bound address from the server's log.
    let config = dir.path().join("config");
    std::fs::write(
        &config,
        format!(
            "REST_SERVER_PATH={}\nREST_SERVER_LISTEN=127.0.0.1:0\nREST_SERVER_USER=\nREST_SERVER_ARGS=\"--no-auth --append-only\"\n",
            data.display()
        ),
    )
    .unwrap();
    let (pidfile, logfile) = (dir.path().join("pid"), dir.path().join("log"));
    let script = |action: &str| {
        Command::new(&busybox)
            .arg("sh")
            .arg(project().join("board/init.d/rest-server"))
            .arg(action)
            .env("PATH", &bin)
            .env("CONFIG", &config)
            .env("DAEMON", binary())
            .env("PIDFILE", &pidfile)
            .env("LOGFILE", &logfile)
            .output()
            .unwrap()
    };
    let _stop = StopOnDrop(&pidfile);
    let started = script("start");
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    // The server really serves, with the settings from the config file.
    let mut addr = None;
    assert!(eventually(Duration::from_secs(10), || {
        let log = std::fs::read_to_string(&logfile).unwrap_or_default();
        addr = log
            .lines()
            .find_map(|l| l.split("start server on ").nth(1))
            .map(|a| a.trim().to_string());
        addr.is_some()
    }));
    let addr = Addr::Tcp(addr.unwrap().parse().unwrap());
    let mut stream = connect(&addr);
    stream
        .write_all(&Request::new("POST", "/repo/?create=true").to_bytes())
        .unwrap();
    assert_eq!(read_response(&mut stream, false).status, 200);
    let log = std::fs::read_to_string(&logfile).unwrap();
    assert!(log.contains("append-only mode: on"), "{log}");
    // status asks GET /health, at the address the server took.
    let Addr::Tcp(bound) = &addr else {
        unreachable!()
    };
    let settings = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, settings.replace("127.0.0.1:0", &bound.to_string())).unwrap();
    let status = script("status");
    let said = String::from_utf8_lossy(&status.stdout).into_owned();
    assert_eq!(status.status.code(), Some(0), "{said}");
    assert!(
        said.contains("is running (pid ") && said.ends_with("): ok\n"),
        "{said}"
    );
    // Running but not answering: not OK.
    std::fs::write(&config, settings.replace("127.0.0.1:0", "127.0.0.1:1")).unwrap();
    let status = script("status");
    let said = String::from_utf8_lossy(&status.stdout).into_owned();
    assert_eq!(status.status.code(), Some(1), "{said}");
    assert!(
        said.contains("but not healthy: rest-server: nothing answers at 127.0.0.1:1"),
        "{said}"
    );
    std::fs::write(&config, settings).unwrap();
    // Starting twice is harmless.
    assert!(script("start").status.success());

    let stopped = script("stop");
    assert!(stopped.status.success());
    assert_eq!(script("status").status.code(), Some(3), "not running");
    assert!(!pidfile.exists());
    assert!(
        std::fs::read_to_string(&logfile)
            .unwrap()
            .contains("stopped")
    );
    assert!(
        script("stop").status.success(),
        "stopping twice is harmless"
    );
}

#[test]
fn install_script_is_idempotent_and_uninstalls() {
    let dir = TempDir::new("install");
    let expected: &[(&str, &[&str])] = &[
        (
            "systemd",
            &[
                "etc/systemd/system/rest-server.service",
                "etc/systemd/system/rest-server.socket",
                "usr/local/bin/rest-server",
            ],
        ),
        (
            "openrc",
            &["etc/init.d/rest-server", "usr/local/bin/rest-server"],
        ),
        (
            "openwrt",
            &["etc/init.d/rest-server", "usr/bin/rest-server"],
        ),
        (
            "sysvinit",
            &["etc/init.d/rest-server", "usr/local/bin/rest-server"],
        ),
    ];
    for (init, files) in expected {
        let root = dir.path().join(init);
        let install = |extra: &[&str]| {
            let out = Command::new("sh")
                .arg(project().join("board/install.sh"))
                .args(["--init", init, "--root"])
                .arg(&root)
                .arg("--binary")
                .arg(binary())
                .args(extra)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{init}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        install(&[]);
        // An admin's edit of the config survives a reinstall.
        let config = root.join("etc/default/rest-server");
        std::fs::write(&config, "REST_SERVER_PATH=/mnt/usb\n").unwrap();
        install(&[]);
        assert_eq!(
            std::fs::read_to_string(&config).unwrap(),
            "REST_SERVER_PATH=/mnt/usb\n"
        );
        for file in *files {
            assert!(root.join(file).is_file(), "{init}: {file}");
        }
        let mode = |f: &str| {
            std::fs::metadata(root.join(f))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(files.last().unwrap()), 0o755);
        assert!(root.join("srv/restic").is_dir());
        install(&["--uninstall"]);
        for file in *files {
            assert!(!root.join(file).exists(), "{init}: {file} removed");
        }
        assert!(config.exists(), "the config is kept");
    }
}

#[test]
fn user_add_as_root_keeps_the_file_readable_by_the_service_user() {
    if !require_root("user_add_as_root_keeps_the_file_readable_by_the_service_user") {
        return;
    }
    let dir = TempDir::new("owner");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // The service user owns the data directory (nobody stands in for it).
    std::os::unix::fs::chown(&data, Some(65534), Some(65534)).unwrap();
    let mut command = Command::new(binary());
    command
        .arg("--path")
        .arg(&data)
        .args(["user", "add", "alice"]);
    let (code, _, err) = run_with_stdin(command, "pw\n");
    assert_eq!(code, 0, "{err}");
    let meta = std::fs::metadata(data.join(".htpasswd")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
}

/// README.md and every page of docs/, with their paths from the project's root.
fn documentation() -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut names = vec!["README.md".to_string()];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".md") {
            names.push(format!("docs/{name}"));
        }
    }
    names.sort_unstable();
    names
        .into_iter()
        .map(|name| {
            let text = std::fs::read_to_string(root.join(&name)).unwrap();
            (name, text)
        })
        .collect()
}

#[test]
fn every_script_the_documentation_runs_is_executable() {
    let docs = documentation();
    let mut scripts: Vec<(&str, &str)> = docs
        .iter()
        .flat_map(|(doc, text)| {
            text.split(|c: char| c.is_whitespace() || "`()[]|".contains(c))
                .filter(|word| {
                    word.ends_with(".sh") && word.contains('/') && !word.starts_with('/')
                })
                .map(move |word| (word, doc.as_str()))
        })
        .collect();
    scripts.sort_unstable();
    scripts.dedup_by_key(|(script, _)| *script);
    let names: Vec<&str> = scripts.iter().map(|(script, _)| *script).collect();
    assert!(names.contains(&"board/install.sh"), "{names:?}");
    assert!(names.contains(&"tests/all.sh"), "{names:?}");
    for (script, doc) in scripts {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{doc} names {script}: {e}"))
            .permissions()
            .mode();
        assert!(mode & 0o111 != 0, "{script} is not executable ({mode:o})");
    }
}

/// Every relative link in README.md and docs/ (`](path)`, `](path#anchor)`)
/// names a file that exists, and an anchor names a heading of that file.
#[test]
fn every_link_in_the_documentation_resolves() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = documentation();
    // GitHub's anchor for a heading: lowercase, punctuation dropped, spaces
    // to hyphens.
    let anchors = |text: &str| -> Vec<String> {
        let mut fenced = false;
        let mut found = Vec::new();
        for line in text.lines() {
            if line.starts_with("```") {
                fenced = !fenced;
            } else if !fenced && line.starts_with('#') {
                let heading = line.trim_start_matches('#').trim().to_lowercase();
                let anchor: String = heading
                    .chars()
                    .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
                    .map(|c| if c == ' ' { '-' } else { c })
                    .collect();
                found.push(anchor);
            }
        }
        found
    };
    let mut checked = 0;
    for (doc, text) in &docs {
        for (i, _) in text.match_indices("](") {
            let target = text[i + 2..].split(')').next().unwrap();
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
            let folder = std::path::Path::new(doc).parent().unwrap();
            let (path, shown) = if file.is_empty() {
                (root.join(doc), doc.clone())
            } else {
                (
                    root.join(folder).join(file),
                    folder.join(file).display().to_string(),
                )
            };
            assert!(
                path.exists(),
                "{doc} links to {target}: {shown} does not exist"
            );
            if !anchor.is_empty() {
                let headings = anchors(&std::fs::read_to_string(&path).unwrap());
                assert!(
                    headings.iter().any(|h| h == anchor),
                    "{doc} links to {target}: no heading of {shown} has that anchor"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} links found");
}

#[test]
fn an_unreadable_folder_in_the_data_directory_does_not_stop_the_service() {
    let test = "board::an_unreadable_folder_in_the_data_directory_does_not_stop_the_service";
    if !require_root(test) || !require_tool("setpriv", test) {
        return;
    }
    // As on a dedicated ext4 disk, where the service user meets root's
    // lost+found: here the server runs as root without any capability (so
    // the binary, wherever the build put it, stays reachable) and meets a
    // folder of another user's that it may not read.
    let dir = TempDir::new("lost-found");
    let data = dir.path().join("data");
    let lost = data.join("lost+found");
    std::fs::create_dir_all(&lost).unwrap();
    std::fs::set_permissions(&lost, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&lost, Some(65534), Some(65534)).unwrap();
    let mut command = Command::new("setpriv");
    command
        .args(["--bounding-set=-all", "--inh-caps=-all", "--"])
        .arg(binary())
        .args([
            "--no-auth",
            "--listen",
            "127.0.0.1:0",
            "--max-size",
            "1000000",
        ])
        .arg("--path")
        .arg(&data);
    let server = Server::spawn(command, &data);
    assert!(server.log().contains("skipping"), "{}", server.log());
    assert_eq!(server.request("POST", "/repo/?create=true").status, 200);
    let (_, put) = upload(&server, "keys", b"stored by the service user");
    assert_eq!(put.status, 200);
}
