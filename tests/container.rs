//! The container image (board/container/, docs/container.md): the archive
//! board/container/build.sh makes (three platforms, each image's
//! configuration, its one layer and the static binary in it), then the
//! amd64 image under podman: restic end to end on a named volume, a stop
//! and a start, the healthcheck, the environment variables and the start
//! checks. tests/emulated.sh builds the archive, names it in
//! REST_SERVER_CONTAINER_ARCHIVE and runs these, ignored by a plain `cargo
//! test`, with `--include-ignored`.
//!
//! Each container gets a network namespace of its own (loopback only), so
//! that the server takes the image's port 8000 and nothing outside the test
//! can reach it; the test talks to it from inside the namespace. One podman
//! storage below the temp dir holds the image for the tests running at the
//! same time (tests/util/podman.rs).

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use crate::util::json::Json;
use crate::util::podman::{Container, Podman, Volume};
use crate::util::*;

/// Names the archive built by board/container/build.sh.
const ARCHIVE_VAR: &str = "REST_SERVER_CONTAINER_ARCHIVE";

/// The server's uid and gid in the image.
const IMAGE_UID: u32 = 1000;

/// The archive, or None after reporting why the test cannot run.
fn archive(test: &str) -> Option<PathBuf> {
    let archive = std::env::var_os(ARCHIVE_VAR).map(PathBuf::from);
    if archive.is_none() {
        skip_or_fail(
            test,
            &format!("{ARCHIVE_VAR} is not set (tests/emulated.sh builds the image and sets it)"),
        );
    }
    archive
}

/// The shared podman storage with the image loaded, once root and the tools
/// (podman, runc, ip, and `more`) are there; None after reporting what is
/// missing.
fn podman(test: &str, more: &[&str]) -> Option<Arc<Podman>> {
    let archive = archive(test)?;
    if !require_root(test) {
        return None;
    }
    for tool in ["podman", "runc", "ip"].iter().chain(more) {
        if !require_tool(tool, test) {
            return None;
        }
    }
    Some(Podman::shared(&archive))
}

/// A name for this test run's container, volume or network namespace `tag`.
fn name(tag: &str) -> String {
    format!("rs-ct-{tag}-{}", std::process::id())
}

/// `podman run` options that put the container into `ns`.
fn network(ns: &Netns) -> String {
    format!("--network=ns:{}", ns.path().display())
}

// ---------------------------------------------------------------------------
// The archive

/// The blob `digest` (`sha256:HEX`) of the unpacked archive `dir`, checked
/// against its digest.
fn blob(dir: &Path, digest: &str) -> PathBuf {
    let hex = digest
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("not a sha256 digest: {digest}"));
    let path = dir.join("blobs/sha256").join(hex);
    let content = std::fs::read(&path).unwrap_or_else(|e| panic!("{digest}: {e}"));
    assert_eq!(sha256_hex(&content), hex, "blob {digest} is damaged");
    path
}

/// An image of the archive: its platform, and what `file` says of its
/// binary.
struct Platform {
    architecture: &'static str,
    variant: Option<&'static str>,
    /// In `file`'s description of the binary.
    machine: &'static str,
    /// The emulator that runs the binary here (None: natively).
    runner: Option<&'static str>,
}

const PLATFORMS: [Platform; 3] = [
    Platform {
        architecture: "amd64",
        variant: None,
        machine: "x86-64",
        runner: None,
    },
    Platform {
        architecture: "arm64",
        variant: None,
        machine: "ARM aarch64",
        runner: Some("qemu-aarch64-static"),
    },
    Platform {
        architecture: "arm",
        variant: Some("v7"),
        machine: "ARM, EABI5",
        runner: Some("qemu-arm-static"),
    },
];

/// What `tar -tv` lists in the layer blobs `layers`: path -> (mode, owner).
fn layer_entries(layers: &[PathBuf]) -> BTreeMap<String, (String, String)> {
    let mut entries = BTreeMap::new();
    for layer in layers {
        // GNU tar finds out the compression by itself.
        let out = Command::new("tar")
            .args(["--numeric-owner", "-tvf"])
            .arg(layer)
            .output()
            .unwrap();
        assert!(out.status.success(), "tar -tvf {}", layer.display());
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // drwxr-xr-x 1000/1000 0 2025-01-01 12:00 data/
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert!(fields.len() >= 6, "a tar listing line: {line}");
            entries.insert(
                fields[5..].join(" "),
                (fields[0].to_string(), fields[1].to_string()),
            );
        }
    }
    entries
}

/// The image configuration `config` of `platform`, as the Containerfile
/// has it.
fn check_config(config: &Json, platform: &Platform) {
    let arch = platform.architecture;
    assert_eq!(config.must("os"), "linux");
    assert_eq!(config.must("architecture"), arch);
    assert_eq!(
        config.string("variant").as_deref(),
        platform.variant,
        "{arch}"
    );
    let c = |key: &str| format!("config.{key}");
    assert_eq!(config.must(&c("User")), "1000:1000", "{arch}");
    assert_eq!(
        config.strings(&c("Entrypoint")),
        ["/usr/bin/rest-server"],
        "{arch}"
    );
    // No CMD: arguments given to the container are all flags.
    let cmd = config.0.get(&c("Cmd")).map(String::as_str);
    assert!(
        matches!(cmd, None | Some("null" | "[]")),
        "{arch}: Cmd {cmd:?}"
    );
    assert_eq!(config.keys(&c("ExposedPorts")), ["8000/tcp"], "{arch}");
    assert_eq!(config.keys(&c("Volumes")), ["/data"], "{arch}");
    assert_eq!(config.must(&c("StopSignal")), "SIGTERM", "{arch}");
    assert_eq!(
        config.strings(&c("Healthcheck.Test")),
        ["CMD", "/usr/bin/rest-server", "health"],
        "{arch}"
    );
    let env = config.strings(&c("Env"));
    for var in [
        "REST_SERVER_CONTAINER=1",
        "DATA_DIRECTORY=/data",
        "PASSWORD_FILE=/data/.htpasswd",
    ] {
        assert!(env.iter().any(|e| e == var), "{arch}: no {var} in {env:?}");
    }
    let label = |name: &str| config.string(&c(&format!("Labels.org.opencontainers.image.{name}")));
    assert_eq!(
        label("version").as_deref(),
        Some(env!("CARGO_PKG_VERSION")),
        "{arch}"
    );
    assert_eq!(label("licenses").as_deref(), Some("BSD-2-Clause"), "{arch}");
    assert_eq!(label("title").as_deref(), Some("rest-server"), "{arch}");
    assert!(
        label("description").is_some_and(|d| !d.is_empty()),
        "{arch}"
    );
    // The git remote the image was built from: empty in a checkout without
    // one, but always there.
    assert!(label("source").is_some(), "{arch}: no source label");
}

/// The image's files in its layers: /data owned by the server's user, and
/// the static binary for the platform, which runs and tells its version.
fn check_layers(dir: &Path, layers: &[PathBuf], platform: &Platform) {
    let arch = platform.architecture;
    let entries = layer_entries(layers);
    let names: Vec<&str> = entries.keys().map(String::as_str).collect();
    // FROM scratch: the binary and the volume's mount point, nothing else.
    assert_eq!(
        names,
        ["data/", "usr/", "usr/bin/", "usr/bin/rest-server"],
        "{arch}"
    );
    let (mode, owner) = &entries["data/"];
    assert!(mode.starts_with('d'), "{arch}: /data is {mode}");
    assert_eq!(owner, "1000/1000", "{arch}: /data");
    let (mode, _) = &entries["usr/bin/rest-server"];
    assert_eq!(mode, "-rwxr-xr-x", "{arch}: /usr/bin/rest-server");

    let out = dir.join(format!("layer-{arch}"));
    std::fs::create_dir_all(&out).unwrap();
    for layer in layers {
        let unpacked = Command::new("tar")
            .arg("-xf")
            .arg(layer)
            .arg("-C")
            .arg(&out)
            .status()
            .unwrap();
        assert!(unpacked.success(), "tar -xf {}", layer.display());
    }
    let binary = out.join("usr/bin/rest-server");
    let described = Command::new("file")
        .arg("-b")
        .arg(&binary)
        .output()
        .unwrap();
    let described = String::from_utf8_lossy(&described.stdout);
    assert!(
        described.contains("statically linked") || described.contains("static-pie linked"),
        "{arch}: {described}"
    );
    assert!(described.contains(platform.machine), "{arch}: {described}");

    let mut version = match platform.runner {
        Some(emulator) => {
            let mut command = Command::new(emulator);
            command.arg(&binary);
            command
        }
        // Natively only on the machine it is for.
        None if cfg!(target_arch = "x86_64") => Command::new(&binary),
        None => return,
    };
    let ran = version.arg("--version").output().unwrap();
    assert!(ran.status.success(), "{arch}: {ran:?}");
    assert_eq!(
        String::from_utf8_lossy(&ran.stdout).trim(),
        format!("rest-server {}", env!("CARGO_PKG_VERSION")),
        "{arch}"
    );
}

/// The archive: an OCI layout whose index names one manifest list of
/// exactly linux/amd64, linux/arm64 and linux/arm/v7, each a Docker
/// manifest (whose configuration keeps the HEALTHCHECK) of one image
/// configured as the Containerfile says, with /data owned by uid 1000 and
/// the static binary for its platform, which runs (the ARM ones under
/// qemu) and prints the crate's version. Every blob read matches its digest.
#[test]
#[ignore = "needs the image archive: tests/emulated.sh builds it and runs this with --include-ignored"]
fn archive_holds_the_static_binary_for_three_platforms_configured_alike() {
    let test = "archive_holds_the_static_binary_for_three_platforms_configured_alike";
    let Some(archive) = archive(test) else { return };
    for tool in ["tar", "python3", "file"]
        .into_iter()
        .chain(PLATFORMS.iter().filter_map(|p| p.runner))
    {
        if !require_tool(tool, test) {
            return;
        }
    }
    let dir = TempDir::new("container-archive");
    let unpacked = Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(unpacked.success(), "tar -xf {}", archive.display());
    let layout = std::fs::read_to_string(dir.path().join("oci-layout")).unwrap();
    assert!(layout.contains("\"imageLayoutVersion\""), "{layout}");

    let index = Json::read(&dir.path().join("index.json"));
    assert_eq!(index.len("manifests"), 1, "{:#?}", index.0);
    let list = Json::read(&blob(dir.path(), &index.must("manifests.0.digest")));
    assert_eq!(
        list.must("mediaType"),
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    let mut found = Vec::new();
    for i in 0..list.len("manifests") {
        let entry = |key: &str| list.string(&format!("manifests.{i}.{key}"));
        let architecture = entry("platform.architecture").unwrap();
        let variant = entry("platform.variant");
        assert_eq!(entry("platform.os").as_deref(), Some("linux"));
        let platform = PLATFORMS
            .iter()
            .find(|p| p.architecture == architecture && p.variant == variant.as_deref())
            .unwrap_or_else(|| panic!("an image for {architecture} {variant:?}"));
        found.push(format!("{architecture}{}", variant.unwrap_or_default()));

        let manifest = Json::read(&blob(dir.path(), &entry("digest").unwrap()));
        assert_eq!(
            manifest.must("mediaType"),
            "application/vnd.docker.distribution.manifest.v2+json"
        );
        let config = Json::read(&blob(dir.path(), &manifest.must("config.digest")));
        check_config(&config, platform);
        let layers: Vec<PathBuf> = (0..manifest.len("layers"))
            .map(|j| blob(dir.path(), &manifest.must(&format!("layers.{j}.digest"))))
            .collect();
        check_layers(dir.path(), &layers, platform);
    }
    found.sort();
    assert_eq!(found, ["amd64", "arm64", "armv7"]);
}

// ---------------------------------------------------------------------------
// The amd64 image under podman

/// Runs Debian's restic inside `ns` on `repo`, with its cache in `cache`.
fn restic_in(ns: &Netns, repo: &str, cache: &Path, args: &[&str]) -> Output {
    restic_by(ns.command("restic"), repo, cache, args)
}

/// `rest-server user add NAME` run in the container with `podman exec -i`,
/// the password on stdin; fails the test unless it succeeds.
fn user_add(container: &Container, name: &str, password: &str) {
    let exec = container.exec(&["-i"], &["rest-server", "user", "add", name]);
    let (code, out, err) = run_with_stdin(exec, &format!("{password}\n"));
    assert_eq!(code, 0, "user add {name}: {out}{err}");
}

/// A request as `user` with `password` to the container in `ns` on `port`:
/// its status.
fn status_as(ns: &Netns, port: u16, method: &str, path: &str, user: &str, password: &str) -> u16 {
    ns.send(port, &Request::new(method, path).basic(user, password))
        .status
}

/// The line of `/proc/PID/status` that starts with `key`, split.
fn proc_status(pid: &str, key: &str) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"));
    line.split_whitespace().map(str::to_string).collect()
}

/// The amd64 image as docs/container.md runs it, on a named volume and with
/// a read-only root file system: the first start creates an empty users file
/// and logs what to exec; a user added with `podman exec -i` is accepted at
/// once; restic (through the namespace) inits, backs up a tree, checks
/// every byte and restores it identically. The server is PID 1 and runs as
/// uid/gid 1000; the healthcheck says healthy. `podman stop` ends it by
/// SIGTERM within a fraction of the 10 s before podman's SIGKILL (exit code
/// 0, "stopped" logged); after `podman start` the snapshot and the user are
/// still there.
#[test]
#[ignore = "needs the image archive: tests/emulated.sh builds it and runs this with --include-ignored"]
fn image_serves_restic_as_uid_1000_and_keeps_the_volume_over_a_restart() {
    let test = "image_serves_restic_as_uid_1000_and_keeps_the_volume_over_a_restart";
    let Some(podman) = podman(test, &["restic"]) else {
        return;
    };
    let dir = TempDir::new("container-restic");
    let ns = Netns::loopback_only(name("e2e"));
    let volume = Volume::new(&podman, &name("e2e"));
    let container = Container::run(
        &podman,
        &name("e2e"),
        &[
            &network(&ns),
            "--read-only",
            "--volume",
            &format!("{}:/data", volume.name),
        ],
        &[],
    );
    container.wait_until_serving(1);
    let hint = "rest-server user add <name>";
    container.wait_for_log(hint, 1);
    let users = volume.path().join(".htpasswd");
    let meta = std::fs::metadata(&users).unwrap();
    assert_eq!(
        (meta.len(), meta.mode() & 0o777, meta.uid(), meta.gid()),
        (0, 0o600, IMAGE_UID, IMAGE_UID),
        "the users file made at first start"
    );

    // A user added beside the server is taken at once (SIGHUP), not at the
    // next check 30 s later.
    user_add(&container, "alice", "alice-pw");
    container.wait_for_log("received SIGHUP: reloading", 1);
    container.wait_for_log("htpasswd /data/.htpasswd: loaded 1 user(s)", 1);
    assert_eq!(
        status_as(&ns, 8000, "GET", "/alice/config", "alice", "wrong"),
        401
    );

    let source = dir.path().join("source");
    std::fs::create_dir_all(source.join("docs")).unwrap();
    for i in 0..30u64 {
        let file = source.join(format!("docs/f{i}"));
        std::fs::write(file, pseudo_random(10_000 + i as usize * 997, i)).unwrap();
    }
    std::fs::write(source.join("big"), pseudo_random(4 << 20, 99)).unwrap();
    let cache = dir.path().join("cache");
    let repo = "rest:http://alice:alice-pw@127.0.0.1:8000/alice/";
    let restic = |args: &[&str]| restic_in(&ns, repo, &cache, args);
    ok(restic(&["init"]), "init");
    ok(restic(&["backup", source.to_str().unwrap()]), "backup");
    ok(restic(&["check", "--read-data"]), "check --read-data");
    restore_matches(restic, &source, &dir.path().join("restored"));

    // The server itself: PID 1 of the container, as uid and gid 1000.
    let pid = container.inspect("{{.State.Pid}}");
    assert_eq!(proc_status(&pid, "Uid:"), ["1000"; 4], "uids of the server");
    assert_eq!(proc_status(&pid, "Gid:"), ["1000"; 4], "gids of the server");
    let nspid = proc_status(&pid, "NSpid:");
    assert_eq!(nspid.last().map(String::as_str), Some("1"), "{nspid:?}");
    let (code, out) = container.healthcheck();
    assert_eq!(code, 0, "healthcheck: {out}");

    // Stopped by SIGTERM: the server shuts down gracefully within its
    // shutdown timeout (10 s by default, which is also when podman would
    // send SIGKILL: exit code 137, where a graceful stop gives 0).
    let took = container.stop();
    assert!(took < Duration::from_secs(10), "podman stop took {took:?}");
    assert_eq!(container.inspect("{{.State.ExitCode}}"), "0");
    let logs = container.logs();
    assert!(logs.contains("[INFO] received SIGTERM"), "{logs}");
    assert!(logs.contains("[INFO] stopped"), "{logs}");

    container.start();
    container.wait_until_serving(2);
    let snapshots = ok(restic(&["snapshots", "--json"]), "snapshots");
    assert_eq!(snapshots.matches("\"short_id\"").count(), 1, "{snapshots}");
    // A users file with a user in it: no hint this time.
    assert_eq!(container.logs().matches(hint).count(), 1);
}

/// The healthcheck (`podman healthcheck run`: the image's HEALTHCHECK, which
/// runs `rest-server health` in the container) against a 4 MiB tmpfs of
/// this machine as the data directory, with `--health-min-free 1 MiB` given
/// as the container's command: healthy; unhealthy once a file fills it to
/// under 1 MiB free, healthy again when it is removed; unhealthy when the
/// file system is remounted read-only under the running server.
#[test]
#[ignore = "needs the image archive: tests/emulated.sh builds it and runs this with --include-ignored"]
fn healthcheck_turns_unhealthy_when_the_volume_fills_up_or_turns_read_only() {
    let test = "healthcheck_turns_unhealthy_when_the_volume_fills_up_or_turns_read_only";
    let Some(podman) = podman(test, &["mount"]) else {
        return;
    };
    let dir = TempDir::new("container-health");
    let options = format!("size=4m,uid={IMAGE_UID},gid={IMAGE_UID},mode=0700");
    let Some(disk) = SmallDisk::mount_with(&dir.path().join("data"), &options) else {
        skip_or_fail(test, "cannot mount a tmpfs, even as root");
        return;
    };
    let ns = Netns::loopback_only(name("health"));
    let container = Container::run(
        &podman,
        &name("health"),
        &[
            &network(&ns),
            "--volume",
            &format!("{}:/data", disk.path().display()),
        ],
        &["--health-min-free", "1048576"],
    );
    container.wait_until_serving(1);
    let health = || {
        let exec = container.exec(&[], &["rest-server", "health"]);
        run_with_stdin(exec, "").1
    };
    let healthy = |why: &str| {
        let (code, out) = container.healthcheck();
        assert_eq!(code, 0, "{why}: {out}\n{}", container.logs());
    };
    let unhealthy = |why: &str, reason: &str| {
        let (code, out) = container.healthcheck();
        assert_eq!(code, 1, "{why}: {out}\n{}", container.logs());
        let said = health();
        assert!(said.contains(reason), "{why}: {said:?}");
    };
    healthy("at start");

    // 3.5 of the 4 MiB (the users file and the scrub's state take a page
    // each): under 1 MiB left.
    let filler = disk.path().join("filler");
    std::fs::write(&filler, vec![0u8; 3584 << 10]).unwrap();
    unhealthy("full", "below --health-min-free");
    std::fs::remove_file(&filler).unwrap();
    healthy("room again");

    disk.remount("ro");
    unhealthy("read-only", "read-only");
    disk.remount("rw");
    healthy("writable again");
}

/// `DISABLE_AUTHENTICATION`: `1` serves without a login, `off` keeps
/// authentication on (a request without one is refused), and a value that
/// is no boolean stops the start with exit code 2 and a line naming the
/// variable; so does an `OPTIONS` with a subcommand in it.
#[test]
#[ignore = "needs the image archive: tests/emulated.sh builds it and runs this with --include-ignored"]
fn disable_authentication_takes_booleans_only() {
    let test = "disable_authentication_takes_booleans_only";
    let Some(podman) = podman(test, &[]) else {
        return;
    };
    for (value, create) in [("1", 200), ("off", 401)] {
        let tag = format!("noauth-{value}");
        let ns = Netns::loopback_only(name(&tag));
        let container = Container::run(
            &podman,
            &name(&tag),
            &[
                &network(&ns),
                "--env",
                &format!("DISABLE_AUTHENTICATION={value}"),
            ],
            &[],
        );
        container.wait_until_serving(1);
        let created = ns.send(8000, &Request::new("POST", "/repo/?create=true"));
        assert_eq!(created.status, create, "DISABLE_AUTHENTICATION={value}");
    }

    for (env, named) in [
        ("DISABLE_AUTHENTICATION=maybe", "DISABLE_AUTHENTICATION"),
        ("OPTIONS=--no-auth user list", "OPTIONS"),
    ] {
        let tag = format!("refused-{}", named.to_lowercase());
        let container = Container::run(
            &podman,
            &name(&tag),
            &["--network", "none", "--env", env],
            &[],
        );
        assert_eq!(container.wait_exit(), 2, "{env}:\n{}", container.logs());
        let logs = container.logs();
        assert!(logs.contains(named), "{env}:\n{logs}");
        assert!(!logs.contains(OURS_REPORTS), "{env}:\n{logs}");
    }
}

/// `OPTIONS` adds flags: `--append-only` refuses to delete a data object
/// (403) and takes uploads. The container's arguments come after it and
/// win: with `OPTIONS="--listen :9000 --append-only=true"` (Go's form of a
/// switch) and the argument `--listen :8000`, the server serves on 8000,
/// nothing listens on 9000, and append-only holds.
#[test]
#[ignore = "needs the image archive: tests/emulated.sh builds it and runs this with --include-ignored"]
fn options_add_flags_and_the_container_arguments_win() {
    let test = "options_add_flags_and_the_container_arguments_win";
    let Some(podman) = podman(test, &[]) else {
        return;
    };
    let runs: [(&str, &str, &[&str]); 2] = [
        ("options", "--append-only", &[]),
        (
            "args",
            "--listen :9000 --append-only=true",
            &["--listen", ":8000"],
        ),
    ];
    for (tag, options, args) in runs {
        let ns = Netns::loopback_only(name(tag));
        let container = Container::run(
            &podman,
            &name(tag),
            &[
                &network(&ns),
                "--env",
                "DISABLE_AUTHENTICATION=1",
                "--env",
                &format!("OPTIONS={options}"),
            ],
            args,
        );
        container.wait_until_serving(1);
        let logs = container.logs();
        assert!(logs.contains("start server on [::]:8000"), "{logs}");
        assert!(logs.contains("append-only mode: on"), "{logs}");
        let send = |method: &str, path: &str, body: &[u8]| {
            ns.send(8000, &Request::new(method, path).body(body)).status
        };
        assert_eq!(send("POST", "/repo/?create=true", b""), 200, "{options}");
        let content = pseudo_random(5000, 1);
        let object = format!("/repo/data/{}", sha256_hex(&content));
        assert_eq!(send("POST", &object, &content), 200, "{options}");
        assert_eq!(send("DELETE", &object, b""), 403, "{options}");
        assert_eq!(send("HEAD", &object, b""), 200, "{options}");
        let refused = ns.connect(std::net::SocketAddr::from(([127, 0, 0, 1], 9000)));
        assert!(refused.is_err(), "{options}: something listens on 9000");
    }
}

/// `PASSWORD_FILE` moves the users file: the server reads
/// `/data/other/users`, and `user add` run with exec writes there (not to
/// `/data/.htpasswd`), at mode 0600; the user is accepted at once.
#[test]
#[ignore = "needs the image archive: tests/emulated.sh builds it and runs this with --include-ignored"]
fn password_file_moves_the_users_file_for_the_server_and_user_add() {
    let test = "password_file_moves_the_users_file_for_the_server_and_user_add";
    let Some(podman) = podman(test, &[]) else {
        return;
    };
    // A folder of this machine owned by the image's user, with the users
    // file's folder made (the server makes the file, not its folder).
    let dir = TempDir::new("container-users");
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("other")).unwrap();
    for path in [&data, &data.join("other")] {
        let owner = Some(nix::unistd::Uid::from_raw(IMAGE_UID));
        let group = Some(nix::unistd::Gid::from_raw(IMAGE_UID));
        nix::unistd::chown(path, owner, group).unwrap();
    }
    let ns = Netns::loopback_only(name("users"));
    let container = Container::run(
        &podman,
        &name("users"),
        &[
            &network(&ns),
            "--env",
            "PASSWORD_FILE=/data/other/users",
            "--volume",
            &format!("{}:/data", data.display()),
        ],
        &[],
    );
    container.wait_until_serving(1);
    user_add(&container, "bob", "bob-pw");
    container.wait_for_log("htpasswd /data/other/users: loaded 1 user(s)", 1);
    let users = std::fs::read_to_string(data.join("other/users")).unwrap();
    assert!(users.starts_with("bob:$2"), "{users:?}");
    let mode = std::fs::metadata(data.join("other/users"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(!data.join(".htpasswd").exists());
    assert_eq!(
        status_as(&ns, 8000, "POST", "/bob/?create=true", "bob", "bob-pw"),
        200
    );
    assert_eq!(
        status_as(&ns, 8000, "POST", "/bob/?create=true", "bob", "wrong"),
        401
    );
}

/// Flags given only as the container's command (`--listen :8001
/// --htpasswd-file /data/users`) are followed by what runs beside the
/// server with exec: the healthcheck asks port 8001 (healthy), and
/// `user add` writes /data/users, whose user the server then accepts.
#[test]
#[ignore = "needs the image archive: tests/emulated.sh builds it and runs this with --include-ignored"]
fn exec_commands_follow_the_flags_the_server_was_started_with() {
    let test = "exec_commands_follow_the_flags_the_server_was_started_with";
    let Some(podman) = podman(test, &[]) else {
        return;
    };
    let ns = Netns::loopback_only(name("flags"));
    let volume = Volume::new(&podman, &name("flags"));
    let container = Container::run(
        &podman,
        &name("flags"),
        &[&network(&ns), "--volume", &format!("{}:/data", volume.name)],
        &["--listen", ":8001", "--htpasswd-file", "/data/users"],
    );
    container.wait_until_serving(1);
    assert!(container.logs().contains("start server on [::]:8001"));
    let (code, out) = container.healthcheck();
    assert_eq!(code, 0, "healthcheck: {out}\n{}", container.logs());

    user_add(&container, "carol", "carol-pw");
    container.wait_for_log("htpasswd /data/users: loaded 1 user(s)", 1);
    let users = std::fs::read_to_string(volume.path().join("users")).unwrap();
    assert!(users.starts_with("carol:"), "{users:?}");
    assert!(!volume.path().join(".htpasswd").exists());
    assert_eq!(
        status_as(
            &ns,
            8001,
            "POST",
            "/carol/?create=true",
            "carol",
            "carol-pw"
        ),
        200
    );
}

/// The start checks: a data directory that is not there
/// (`DATA_DIRECTORY=/nonexistent`), one mounted read-only, and one the
/// server's user cannot write (`--user 1234:1234` on a volume owned by
/// 1000) each stop the container with exit code 1 and one `[ERROR]` line
/// that names the directory and what is wrong.
#[test]
#[ignore = "needs the image archive: tests/emulated.sh builds it and runs this with --include-ignored"]
fn start_checks_refuse_a_missing_read_only_or_foreign_data_directory() {
    let test = "start_checks_refuse_a_missing_read_only_or_foreign_data_directory";
    let Some(podman) = podman(test, &[]) else {
        return;
    };
    let volume = Volume::new(&podman, &name("checks"));
    let mount = format!("{}:/data", volume.name);
    let read_only = format!("{mount}:ro");
    let runs: [(&str, &[&str], &[&str]); 3] = [
        (
            "missing",
            &["--env", "DATA_DIRECTORY=/nonexistent"],
            &["/nonexistent", "mount a volume there"],
        ),
        (
            "read-only",
            &["--volume", &read_only],
            &["/data", "read-only"],
        ),
        (
            "foreign",
            &["--volume", &mount, "--user", "1234:1234"],
            &["/data", "uid 1000", "uid 1234"],
        ),
    ];
    for (tag, options, said) in runs {
        let mut all = vec!["--network", "none"];
        all.extend(options);
        let container = Container::run(&podman, &name(tag), &all, &[]);
        assert_eq!(container.wait_exit(), 1, "{tag}:\n{}", container.logs());
        let logs = container.logs();
        let errors: Vec<&str> = logs.lines().filter(|l| l.contains("[ERROR]")).collect();
        assert_eq!(errors.len(), 1, "{tag}: one [ERROR] line:\n{logs}");
        for words in said {
            assert!(
                errors[0].contains(words),
                "{tag}: {words:?} in {}",
                errors[0]
            );
        }
        assert!(!logs.contains(OURS_REPORTS), "{tag}:\n{logs}");
    }
}

/// A healthcheck that can never ask (the server wants client certificates)
/// says so and passes in the image, where it would otherwise mark the
/// container unhealthy for good; outside the image it keeps exit code 3.
/// The binary on the host, with the image's marker set or not.
#[test]
fn health_that_cannot_ask_passes_in_the_image_only() {
    let dir = TempDir::new("container-health");
    let run = |marked: bool| {
        let mut command = Command::new(binary());
        command
            .env_remove("REST_SERVER_CONTAINER")
            .env_remove("OPTIONS")
            .env_remove("DISABLE_AUTHENTICATION")
            .arg("--path")
            .arg(dir.path())
            .args(["--tls", "--tls-client-ca", "/nonexistent/ca.pem", "health"]);
        if marked {
            command.env("REST_SERVER_CONTAINER", "1");
        }
        command.output().unwrap()
    };
    let host = run(false);
    assert_eq!(host.status.code(), Some(3), "{host:?}");
    let image = run(true);
    assert_eq!(image.status.code(), Some(0), "{image:?}");
    let said = String::from_utf8_lossy(&image.stdout);
    assert!(said.starts_with("health not checked: "), "{said}");
}
