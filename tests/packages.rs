//! The Debian packages (board/deb/): the manual page against `--help`; the
//! packages tests/emulated.sh builds (named by REST_SERVER_DEB_DIR), their
//! contents and lintian; and the amd64 one installed, upgraded, purged and
//! installed again in a throwaway Debian root made with mmdebstrap. The last
//! two are ignored by a plain `cargo test`: tests/emulated.sh builds the
//! packages and runs them with `--include-ignored`.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use nix::sys::signal::Signal;

use crate::util::*;

fn project() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Debian release the root is made of: Raspberry Pi OS's base.
const SUITE: &str = "bookworm";
/// Architectures and the packages' names for them.
const ARCHES: &[&str] = &["arm64", "armhf", "amd64"];

/// What every package holds, besides its folders.
const FILES: &[&str] = &[
    "etc/default/rest-server",
    "lib/systemd/system/rest-server.service",
    "lib/systemd/system/rest-server.socket",
    "usr/bin/rest-server",
    "usr/share/doc/rest-server/changelog.Debian.gz",
    "usr/share/doc/rest-server/copyright",
    "usr/share/lintian/overrides/rest-server",
    "usr/share/man/man8/rest-server.8.gz",
];

/// The `--flag` names and subcommand names in an argh `--help` text.
fn help_entries(help: &str) -> (Vec<String>, Vec<String>) {
    let (mut flags, mut commands) = (Vec::new(), Vec::new());
    let mut section = "";
    for line in help.lines() {
        if !line.starts_with(' ') {
            section = line.trim_end_matches(':');
            continue;
        }
        // An entry starts two spaces in; its wrapped description further in.
        let Some(name) = line.strip_prefix("  ").filter(|l| !l.starts_with(' ')) else {
            continue;
        };
        let name = name.split([' ', ',']).next().unwrap().to_string();
        match section {
            "Options" if name.starts_with("--") => flags.push(name),
            "Commands" => commands.push(name),
            _ => {}
        }
    }
    (flags, commands)
}

/// Every flag of the server and of each subcommand, and each command line
/// (`user add`, `tls generate`, ...), from the binary's own `--help`.
fn cli(prefix: &[String], flags: &mut BTreeSet<String>, commands: &mut Vec<String>) {
    let out = Command::new(binary())
        .args(prefix)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{prefix:?} --help");
    let (own, subs) = help_entries(&String::from_utf8_lossy(&out.stdout));
    flags.extend(own);
    if subs.is_empty() && !prefix.is_empty() {
        commands.push(prefix.join(" "));
    }
    for sub in subs {
        let mut next = prefix.to_vec();
        next.push(sub);
        cli(&next, flags, commands);
    }
}

/// Every `--word` a text names (a flag, or something written like one).
fn flags_named(text: &str) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    for (i, _) in text.match_indices("--") {
        let name: String = text[i + 2..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        // `---` is a Markdown table's rule, not a flag.
        if name.starts_with(|c: char| c.is_ascii_alphabetic()) {
            named.insert(format!("--{name}"));
        }
    }
    named
}

#[test]
fn man_page_names_every_flag_and_command_and_no_other() {
    let (mut flags, mut commands) = (BTreeSet::new(), Vec::new());
    cli(&[], &mut flags, &mut commands);
    assert!(flags.contains("--private-repos") && flags.contains("--update"));
    assert!(commands.contains(&"user add".to_string()), "{commands:?}");
    let page = std::fs::read_to_string(project().join("board/deb/rest-server.8"))
        .unwrap()
        .replace("\\-", "-");
    let in_page = flags_named(&page);
    let missing: Vec<_> = flags.difference(&in_page).collect();
    assert!(missing.is_empty(), "rest-server.8 lacks {missing:?}");
    // Words that are not flags of the server: Go's forms (`--flag=value`,
    // `--switch=true`) and systemctl's `enable --now` in EXAMPLES.
    let others = ["--flag", "--switch", "--now"];
    let stale: Vec<_> = in_page
        .difference(&flags)
        .filter(|f| !others.contains(&f.as_str()))
        .collect();
    assert!(
        stale.is_empty(),
        "rest-server.8 names unknown flags {stale:?}"
    );
    for command in &commands {
        assert!(
            page.contains(command.as_str()),
            "rest-server.8 lacks `{command}`"
        );
    }
}

/// docs/command-line.md, like the manual page, names every flag and command
/// line `--help` lists, and no flag or command that does not exist (each
/// command line is a row of its "Subcommands" table).
#[test]
fn docs_name_every_flag_and_command_and_no_other() {
    let (mut flags, mut commands) = (BTreeSet::new(), Vec::new());
    cli(&[], &mut flags, &mut commands);
    assert!(
        commands.contains(&"tls generate".to_string()),
        "{commands:?}"
    );
    let doc = std::fs::read_to_string(project().join("docs/command-line.md")).unwrap();
    let in_doc = flags_named(&doc);
    let missing: Vec<_> = flags.difference(&in_doc).collect();
    assert!(missing.is_empty(), "docs/command-line.md lacks {missing:?}");
    // Go's forms of a flag, written out as examples, and restic's
    // `forget --prune`.
    let others = ["--flag", "--switch", "--prune"];
    let stale: Vec<_> = in_doc
        .difference(&flags)
        .filter(|f| !others.contains(&f.as_str()))
        .collect();
    assert!(
        stale.is_empty(),
        "docs/command-line.md names unknown flags {stale:?}"
    );
    // A row of the Subcommands table: `| `user add [--update] NAME` | ...`;
    // its command line is the lowercase words before the first argument.
    let table = doc
        .split("\n## Subcommands")
        .nth(1)
        .expect("docs/command-line.md has a \"Subcommands\" section");
    let table = table.split("\n## ").next().unwrap();
    let rows: Vec<String> = table
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .map(|cell| {
            let cell = cell.split('`').next().unwrap();
            let words = cell
                .split(' ')
                .take_while(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase()));
            words.collect::<Vec<_>>().join(" ")
        })
        .collect();
    for command in &commands {
        assert!(
            rows.contains(command),
            "docs/command-line.md has no row for `{command}` ({rows:?})"
        );
    }
    for row in &rows {
        assert!(
            commands.contains(row),
            "docs/command-line.md names `{row}`, which is no command ({commands:?})"
        );
    }
}

/// The folder of built packages, or None after reporting why the test cannot run.
fn deb_dir(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("REST_SERVER_DEB_DIR").map(PathBuf::from);
    if dir.is_none() {
        skip_or_fail(
            test,
            "REST_SERVER_DEB_DIR is not set (tests/emulated.sh builds the packages and sets it)",
        );
    }
    dir
}

/// The package for `arch` in `dir`, if there is one.
fn package(dir: &Path, arch: &str) -> Option<PathBuf> {
    let version = env!("CARGO_PKG_VERSION");
    let deb = dir.join(format!("rest-server_{version}-1_{arch}.deb"));
    deb.is_file().then_some(deb)
}

fn run(command: &mut Command) -> Output {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
#[ignore = "needs the packages: tests/emulated.sh builds them and runs this with --include-ignored"]
fn packages_hold_their_files_and_pass_lintian() {
    let test = "packages_hold_their_files_and_pass_lintian";
    let Some(dir) = deb_dir(test) else { return };
    for tool in ["dpkg-deb", "lintian"] {
        if !require_tool(tool, test) {
            return;
        }
    }
    let mut debs = Vec::new();
    for arch in ARCHES {
        match package(&dir, arch) {
            Some(deb) => debs.push(deb),
            // Locally a cross build may have been skipped (and said so).
            None => skip_or_fail(test, &format!("no {arch} package in {}", dir.display())),
        }
    }
    assert!(!debs.is_empty(), "no package in {}", dir.display());
    for deb in &debs {
        let field = |name: &str| {
            let out = run(Command::new("dpkg-deb").arg("--field").arg(deb).arg(name));
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let name = deb.file_name().unwrap().to_str().unwrap();
        assert!(name.ends_with(&format!("_{}.deb", field("Architecture"))));
        assert_eq!(field("Version"), format!("{}-1", env!("CARGO_PKG_VERSION")));
        assert_eq!(field("Depends"), "adduser");
        let listing = run(Command::new("dpkg-deb").arg("--contents").arg(deb));
        let files: Vec<String> = String::from_utf8_lossy(&listing.stdout)
            .lines()
            .filter(|line| !line.starts_with('d'))
            .map(|line| {
                line.rsplit(' ')
                    .next()
                    .unwrap()
                    .trim_start_matches("./")
                    .to_string()
            })
            .collect();
        assert_eq!(files, FILES, "{name}");
        let info = run(Command::new("dpkg-deb")
            .arg("--info")
            .arg(deb)
            .arg("conffiles"));
        assert_eq!(
            String::from_utf8_lossy(&info.stdout),
            "/etc/default/rest-server\n"
        );
    }
    // Every tag lintian reports is either fixed or overridden with a reason
    // (board/deb/lintian-overrides), info and pedantic ones included.
    let out = Command::new("lintian")
        .args(["--display-info", "--pedantic"])
        .args(["--fail-on", "error,warning,info,pedantic"])
        .args(&debs)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let tags: Vec<&str> = text
        .lines()
        .filter(|line| !line.contains("running with root privileges is not recommended"))
        .collect();
    assert!(out.status.success() && tags.is_empty(), "lintian:\n{text}");
}

/// A throwaway Debian root: commands run in it with chroot, in a clean
/// environment.
struct Root {
    path: PathBuf,
}

impl Root {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("chroot");
        command
            .arg(&self.path)
            .args(["env", "-i", "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C"])
            .arg("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .args(args);
        command
    }

    /// Runs `args` in the root; fails the test unless it succeeds; stdout.
    fn ok(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&run(&mut self.command(args)).stdout).into_owned()
    }

    fn file(&self, path: &str) -> PathBuf {
        self.path.join(path.trim_start_matches('/'))
    }

    fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.file(path)).unwrap()
    }

    /// The `rest-server` user's uid and gid, from the root's passwd file.
    fn service_user(&self) -> Option<(u32, u32)> {
        self.read("/etc/passwd").lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields[0] == "rest-server")
                .then(|| (fields[2].parse().unwrap(), fields[3].parse().unwrap()))
        })
    }

    /// Copies `deb` in and installs it as README.md says (`apt install ./...`).
    fn install(&self, deb: &Path) -> String {
        let name = deb.file_name().unwrap().to_str().unwrap();
        std::fs::copy(deb, self.file("/tmp").join(name)).unwrap();
        self.ok(&["apt-get", "install", "-y", &format!("/tmp/{name}")])
    }

    /// Stand-ins for systemctl and deb-systemd-invoke that only write down
    /// how they were called (to /tmp/systemd-calls), so the test sees what
    /// the maintainer scripts would have started or restarted. In /usr/sbin,
    /// ahead of the real deb-systemd-invoke in /usr/bin on the PATH apt gives
    /// dpkg (DPkg::Path); deb-systemd-helper looks for systemctl in /bin and
    /// /usr/bin only, so it still makes the enable links itself.
    fn stand_in_for_systemd(&self) {
        for tool in ["systemctl", "deb-systemd-invoke"] {
            let path = self.file("/usr/sbin").join(tool);
            std::fs::write(
                &path,
                format!("#!/bin/sh\necho \"{tool} $*\" >>/tmp/systemd-calls\n"),
            )
            .unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    /// From now on the maintainer scripts see systemd as PID 1: the folder
    /// they look for, as debhelper's snippets do.
    fn systemd_running(&self) {
        std::fs::create_dir_all(self.file("/run/systemd/system")).unwrap();
    }

    /// The calls the stand-ins saw since the last time, one per line.
    fn systemd_calls(&self) -> String {
        let path = self.file("/tmp/systemd-calls");
        let calls = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = std::fs::remove_file(&path);
        calls
    }

    fn enabled(&self) -> bool {
        let link = self.file("/etc/systemd/system/multi-user.target.wants/rest-server.service");
        std::fs::read_link(link)
            .is_ok_and(|target| target == Path::new("/lib/systemd/system/rest-server.service"))
    }
}

/// The Debian mirror, chosen as image/build.sh chooses it.
fn debian_mirror() -> String {
    let out = run(Command::new(project().join("image/build.sh")).arg("--print-mirror"));
    // "build.sh: Debian mirror URI (from WHERE)"
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|word| *word != "mirror")
        .nth(1)
        .unwrap_or_else(|| panic!("no mirror in {text}"))
        .to_string()
}

#[test]
#[ignore = "needs the packages: tests/emulated.sh builds them and runs this with --include-ignored"]
fn package_installs_upgrades_and_purges_in_a_debian_root() {
    let test = "package_installs_upgrades_and_purges_in_a_debian_root";
    let Some(dir) = deb_dir(test) else { return };
    if !require_root(test) {
        return;
    }
    for tool in ["mmdebstrap", "chroot", "dpkg-deb"] {
        if !require_tool(tool, test) {
            return;
        }
    }
    let Some(v1) = package(&dir, "amd64") else {
        panic!("no amd64 package in {}", dir.display());
    };
    let work = TempDir::new("deb-root");
    let root = Root {
        path: work.path().join("root"),
    };
    let started = Instant::now();
    run(Command::new("mmdebstrap")
        .args(["--quiet", "--variant=apt", "--include=adduser", SUITE])
        .arg(&root.path)
        .arg(debian_mirror()));
    let bootstrap = started.elapsed();

    // The same binary, one revision up: the upgrade.
    let unpacked = work.path().join("v1");
    run(Command::new("dpkg-deb").arg("-x").arg(&v1).arg(&unpacked));
    let v2_dir = work.path().join("v2");
    run(Command::new(project().join("board/deb/build.sh"))
        .arg("--out")
        .arg(&v2_dir)
        .args(["--revision", "2"])
        .arg(format!(
            "amd64={}",
            unpacked.join("usr/bin/rest-server").display()
        )));
    let v2 = v2_dir.join(format!(
        "rest-server_{}-2_amd64.deb",
        env!("CARGO_PKG_VERSION")
    ));

    // 1. A first install where systemd is not running (a chroot): the user
    // and the data directory are made, nothing is enabled or started (nor
    // would be without users), and the output says what to do next.
    root.stand_in_for_systemd();
    let out = root.install(&v1);
    assert!(
        out.contains("not started") && out.contains("user add NAME"),
        "{out}"
    );
    let (uid, gid) = root.service_user().expect("the rest-server user");
    let data = std::fs::metadata(root.file("/srv/restic")).unwrap();
    assert!(data.is_dir());
    assert_eq!(
        (data.uid(), data.gid(), data.mode() & 0o777),
        (uid, gid, 0o700)
    );
    for file in FILES {
        assert!(root.file(file).is_file(), "{file}");
    }
    assert!(!root.enabled());
    // Installing it again changes nothing.
    root.install(&v1);
    assert_eq!(root.service_user(), Some((uid, gid)));
    assert_eq!(root.systemd_calls(), "", "systemd is not running");

    // 2. The binary runs as the service user with the shipped settings, and
    // serves a user added as README.md says.
    let add = root.command(&[
        "rest-server",
        "--path",
        "/srv/restic",
        "user",
        "add",
        "alice",
    ]);
    let (code, _, err) = run_with_stdin(add, "alice pw\n");
    assert_eq!(code, 0, "{err}");
    let users = std::fs::metadata(root.file("/srv/restic/.htpasswd")).unwrap();
    assert_eq!((users.uid(), users.mode() & 0o777), (uid, 0o600));
    let config = root.read("/etc/default/rest-server");
    let args = config
        .lines()
        .find_map(|line| line.strip_prefix("REST_SERVER_ARGS="))
        .unwrap();
    assert_eq!(args, "--private-repos");
    let mut server = Command::new("chroot");
    server
        // Numbers: the names are the root's, not this machine's.
        .arg(format!("--userspec={uid}:{gid}"))
        .arg(format!("--groups={gid}"))
        .arg(&root.path)
        .args([
            "/usr/bin/rest-server",
            "--path",
            "/srv/restic",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(args.split_whitespace());
    let mut server = Server::spawn(server, &root.file("/srv/restic"));
    let create = |user: &str| {
        server.send(&Request::new("POST", "/alice/laptop/?create=true").basic(user, "alice pw"))
    };
    assert_eq!(create("alice").status, 200);
    assert_eq!(create("bob").status, 401);
    let repo = std::fs::metadata(root.file("/srv/restic/alice/laptop/keys")).unwrap();
    assert_eq!(repo.uid(), uid);
    assert!(server.stop_with(Signal::SIGTERM).success());

    // 3. An upgrade keeps the edited settings, the users and the data, and
    // restarts the service only if it was running (try-restart); it was
    // never enabled, so it stays so.
    root.systemd_running();
    let edited = config.replace(
        "REST_SERVER_ARGS=--private-repos",
        "REST_SERVER_ARGS=--private-repos --append-only",
    );
    assert_ne!(edited, config);
    std::fs::write(root.file("/etc/default/rest-server"), &edited).unwrap();
    let htpasswd = root.read("/srv/restic/.htpasswd");
    let out = root.install(&v2);
    assert!(!out.contains("not started"), "users exist now: {out}");
    assert_eq!(
        root.ok(&["dpkg-query", "-W", "-f", "${Version}", "rest-server"]),
        format!("{}-2", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(root.read("/etc/default/rest-server"), edited);
    assert_eq!(root.read("/srv/restic/.htpasswd"), htpasswd);
    assert!(root.file("/srv/restic/alice/laptop/keys").is_dir());
    assert_eq!(root.service_user(), Some((uid, gid)));
    assert_eq!(
        root.systemd_calls(),
        "systemctl --system daemon-reload\ndeb-systemd-invoke try-restart rest-server.service\n"
    );
    assert!(!root.enabled());

    // 4. Purge stops the service, removes the package's files and the
    // settings; the repositories, the users and the service user stay.
    let out = root.ok(&["apt-get", "purge", "-y", "rest-server"]);
    assert!(out.contains("kept the data directory"), "{out}");
    assert!(
        root.systemd_calls()
            .contains("deb-systemd-invoke stop rest-server.socket rest-server.service\n")
    );
    for file in FILES {
        assert!(!root.file(file).exists(), "{file} left after purge");
    }
    assert_eq!(root.read("/srv/restic/.htpasswd"), htpasswd);
    assert!(root.file("/srv/restic/alice/laptop/keys").is_dir());
    assert_eq!(root.service_user(), Some((uid, gid)));
    assert!(
        !root
            .file("/var/lib/systemd/deb-systemd-helper-enabled/rest-server.service.dsh-also")
            .exists()
    );

    // 5. Installed again over the kept data, which has users: the service is
    // enabled and started at once; the settings are the shipped ones again.
    let out = root.install(&v2);
    assert!(!out.contains("not started"), "{out}");
    assert!(root.enabled());
    assert!(
        root.systemd_calls()
            .contains("deb-systemd-invoke start rest-server.service\n")
    );
    assert_eq!(root.read("/etc/default/rest-server"), config);
    let data = std::fs::metadata(root.file("/srv/restic")).unwrap();
    assert_eq!(
        (data.uid(), data.gid(), data.mode() & 0o777),
        (uid, gid, 0o700)
    );

    // What the test costs, for docs/packages.md: the bootstrap is most of it.
    let _ = std::io::Write::write_all(
        &mut std::io::stderr().lock(),
        format!(
            "{test}: mmdebstrap {} s, all {} s\n",
            bootstrap.as_secs(),
            started.elapsed().as_secs()
        )
        .as_bytes(),
    );
}
