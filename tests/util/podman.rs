//! Podman for the container image's tests (tests/container.rs): a storage of
//! its own below the temp dir, into which the image archive's native image is
//! loaded once for the tests that run at the same time, and containers and
//! volumes that are removed when dropped, however the test ends.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::eventually;
use super::tempdir::TempDir;

/// Longest a test waits for a container to start serving or to exit.
pub const CONTAINER_TIMEOUT: Duration = Duration::from_secs(20);

/// A podman storage of its own with the image loaded; removed, with every
/// container and volume in it, when the last test holding it is done.
pub struct Podman {
    dir: TempDir,
    /// The loaded image's ID (`podman load` of a multi-platform archive
    /// loads the native image without a name).
    pub image: String,
}

impl Podman {
    /// The podman storage the tests running now share, with the native
    /// image of `archive` loaded; made (and the image loaded) when none is
    /// held, so each test run loads the image once while its tests overlap,
    /// and the storage goes as soon as no test holds it.
    pub fn shared(archive: &Path) -> Arc<Podman> {
        static SHARED: Mutex<Weak<Podman>> = Mutex::new(Weak::new());
        // A test that panicked while loading leaves the lock poisoned, not
        // the Weak inconsistent.
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(podman) = shared.upgrade() {
            return podman;
        }
        let podman = Arc::new(Podman::load(archive));
        *shared = Arc::downgrade(&podman);
        podman
    }

    fn load(archive: &Path) -> Podman {
        let mut podman = Podman {
            dir: TempDir::new("podman"),
            image: String::new(),
        };
        let out = podman.ok(&["load", "--quiet", "-i", archive.to_str().unwrap()]);
        // "Loaded image: sha256:..." (a name instead, had the archive one).
        podman.image = out
            .lines()
            .find_map(|line| line.strip_prefix("Loaded image"))
            .and_then(|rest| rest.split_once(": "))
            .map(|(_, id)| id.trim().to_string())
            .unwrap_or_else(|| panic!("no image loaded from {}: {out}", archive.display()));
        podman
    }

    /// `podman` with this storage and the settings that work without
    /// systemd and under the machine's resource limits.
    pub fn command(&self) -> Command {
        let dir = self.dir.path();
        let mut command = Command::new("podman");
        command
            // Plain directories: no overlay mount is left behind by a test
            // that ends early, and the image is a few MB to copy.
            .args(["--storage-driver", "vfs", "--root"])
            .arg(dir.join("root"))
            .arg("--runroot")
            .arg(dir.join("run"))
            // Exit files and the events log, else in /run/libpod.
            .arg("--tmpdir")
            .arg(dir.join("tmp"))
            // Neither needs systemd (a CI machine or a container may not run
            // it): cgroups written directly, events to a file in --tmpdir.
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            .args(["--runtime", "runc"]);
        command
    }

    /// `podman args...`; its exit code and its stdout and stderr together.
    pub fn run(&self, args: &[&str]) -> (i32, String) {
        let out = self.command().args(args).stdin(Stdio::null()).output();
        let out = out.expect("run podman");
        (out.status.code().unwrap_or(-1), text(&out))
    }

    /// `podman args...`, which must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.command().args(args).stdin(Stdio::null()).output();
        let out = out.expect("run podman");
        assert!(out.status.success(), "podman {args:?}:\n{}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Each test removes its own; this is for one whose removal failed.
        let _ = self.run(&["rm", "--all", "--force", "--time", "0"]);
        let _ = self.run(&["volume", "rm", "--all", "--force"]);
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A named volume, removed when dropped.
pub struct Volume {
    podman: Arc<Podman>,
    pub name: String,
}

impl Volume {
    pub fn new(podman: &Arc<Podman>, name: &str) -> Volume {
        podman.ok(&["volume", "create", name]);
        Volume {
            podman: podman.clone(),
            name: name.to_string(),
        }
    }

    /// Where the volume's files are on this machine.
    pub fn path(&self) -> PathBuf {
        let format = "{{.Mountpoint}}";
        let out = self
            .podman
            .ok(&["volume", "inspect", "--format", format, &self.name]);
        PathBuf::from(out.trim())
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = self.podman.run(&["volume", "rm", "--force", &self.name]);
    }
}

/// A container of the loaded image, removed with its anonymous volume (the
/// image's VOLUME, when no volume is given for /data) when dropped, killed
/// first if it runs.
pub struct Container {
    podman: Arc<Podman>,
    pub name: String,
}

impl Container {
    /// `podman run --detach` of the image as `name`, with `options` for
    /// podman and `args` as the container's command (after the image's
    /// ENTRYPOINT, the server).
    pub fn run(podman: &Arc<Podman>, name: &str, options: &[&str], args: &[&str]) -> Container {
        let mut command = vec!["run", "--detach", "--name", name, "--pull", "never"];
        // podman's default limits are above this machine's hard limits (a
        // CI container's, say), which runc may not raise: "error setting
        // rlimits for ready process".
        command.extend([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=4096:4096",
        ]);
        command.extend(options);
        command.push(&podman.image);
        command.extend(args);
        // The guard first: a container made but not started is removed too.
        let container = Container {
            podman: podman.clone(),
            name: name.to_string(),
        };
        podman.ok(&command);
        container
    }

    /// Everything the container wrote to stdout and stderr, over all its
    /// starts.
    pub fn logs(&self) -> String {
        let (code, out) = self.podman.run(&["logs", &self.name]);
        assert_eq!(code, 0, "podman logs {}: {out}", self.name);
        out
    }

    /// Waits until the log holds `text` `count` times; fails the test,
    /// showing the log, if the container exits first or it takes longer
    /// than [`CONTAINER_TIMEOUT`].
    pub fn wait_for_log(&self, text: &str, count: usize) {
        let mut exited = false;
        let seen = eventually(CONTAINER_TIMEOUT, || {
            if self.logs().matches(text).count() >= count {
                return true;
            }
            // Looked at after the log: its last lines are in by then.
            exited = self.inspect("{{.State.Status}}") != "running";
            exited
        });
        assert!(
            seen && !exited,
            "no {count} × {text:?} in the log of {} ({}):\n{}",
            self.name,
            self.inspect("{{.State.Status}} {{.State.ExitCode}}"),
            self.logs()
        );
    }

    /// Waits until the server started (for the `count`-th time) and listens.
    pub fn wait_until_serving(&self, count: usize) {
        self.wait_for_log(crate::util::OURS_REPORTS, count);
    }

    /// Waits for the container to exit (`podman wait`, bounded); its exit
    /// code.
    pub fn wait_exit(&self) -> i32 {
        let mut waiting = self
            .podman
            .command()
            .args(["wait", &self.name])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("podman wait");
        let deadline = Instant::now() + CONTAINER_TIMEOUT;
        while waiting.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = waiting.kill();
                let _ = waiting.wait();
                panic!(
                    "{} did not exit within {CONTAINER_TIMEOUT:?}; log:\n{}",
                    self.name,
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = waiting.wait_with_output().unwrap();
        let code = String::from_utf8_lossy(&out.stdout);
        code.trim()
            .parse()
            .unwrap_or_else(|_| panic!("podman wait {}: {code:?}", self.name))
    }

    /// `podman inspect --format FORMAT` of the container, trimmed.
    pub fn inspect(&self, format: &str) -> String {
        let out = self.podman.ok(&["inspect", "--format", format, &self.name]);
        out.trim().to_string()
    }

    /// `podman exec` of `args` in the container, with `options` for podman
    /// (`-i` to give it stdin), for the test to run.
    pub fn exec(&self, options: &[&str], args: &[&str]) -> Command {
        let mut command = self.podman.command();
        command.arg("exec").args(options).arg(&self.name).args(args);
        command
    }

    /// `podman healthcheck run`: the image's HEALTHCHECK now; its exit code
    /// (0 healthy, 1 unhealthy) and what podman printed.
    pub fn healthcheck(&self) -> (i32, String) {
        self.podman.run(&["healthcheck", "run", &self.name])
    }

    /// `podman stop` (the image's STOPSIGNAL, then SIGKILL after 10 s) and
    /// how long it took.
    pub fn stop(&self) -> Duration {
        let started = Instant::now();
        self.podman.ok(&["stop", &self.name]);
        started.elapsed()
    }

    pub fn start(&self) {
        self.podman.ok(&["start", &self.name]);
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self
            .podman
            .run(&["rm", "--force", "--volumes", "--time", "0", &self.name]);
    }
}
