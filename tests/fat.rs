//! The data directory on a FAT file system, as on a USB disk plugged into a
//! board, and the no-replace guarantee under racing uploads there and on the
//! temp dir's own file system (tmpfs or ext4).
//!
//! The FAT image is mounted with fusefat: the kernel here need not have
//! vfat, and under FUSE `renameat2(RENAME_NOREPLACE)` is refused (EINVAL)
//! and hard links are too (EPERM), so every commit goes down the server's
//! whole fallback chain to its last step.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Barrier;

use crate::util::*;

/// Concurrent uploads of one name per round: more than the default four
/// upload writer threads, so commits queue up as well as overlap.
const RACERS: usize = 12;
/// Rounds of racing uploads; each round names a new object.
const ROUNDS: usize = 25;
/// Size of each racing body: equal sizes, so a late upload that finds the
/// name taken compares bytes instead of being refused on its length alone.
const RACE_BODY_BYTES: usize = 16 * 1024;
/// Size of the FAT image: a sparse file, large enough for FAT32 with 32 KiB
/// clusters (see [`FatDisk::mount`]).
const IMAGE_BYTES: u64 = 4 << 30;

/// A FAT image mounted with fusefat, unmounted when dropped (before its temp
/// dir goes).
struct FatDisk {
    mount: PathBuf,
    _dir: TempDir,
}

impl FatDisk {
    /// Makes and mounts a fresh image in `dir`; None when FUSE cannot mount
    /// here (a container without /dev/fuse, say).
    fn mount(dir: TempDir) -> Option<FatDisk> {
        let image = dir.path().join("fat.img");
        let mount = dir.path().join("mnt");
        std::fs::create_dir_all(&mount).unwrap();
        std::fs::File::create(&image)
            .unwrap()
            .set_len(IMAGE_BYTES)
            .unwrap();
        // FAT32 with 32 KiB clusters, as on an SD card or USB disk of 32 GB.
        // Also a workaround: fusefat loses part of a long name whose entries
        // cross a cluster boundary when it deletes it (a file named by the
        // name's first 13 characters is left), and 32 KiB keeps every folder
        // of these tests in one cluster.
        let made = Command::new("mkfs.vfat")
            .args(["-F", "32", "-s", "64"])
            .arg(&image)
            .output()
            .unwrap();
        assert!(
            made.status.success(),
            "mkfs.vfat: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        // fusefat returns once the file system is mounted, and serves it
        // from a background process until it is unmounted. `-s`: one request
        // at a time, so that what races is the server's commits, never
        // fusefat's own bookkeeping.
        let mounted = Command::new("fusefat")
            .args(["-s", "-o", "rw+"])
            .arg(&image)
            .arg(&mount)
            .output()
            .unwrap();
        if !mounted.status.success() {
            return None;
        }
        let disk = FatDisk { mount, _dir: dir };
        let kind = nix::sys::statfs::statfs(&disk.mount)
            .unwrap()
            .filesystem_type();
        assert_eq!(kind, nix::sys::statfs::FUSE_SUPER_MAGIC, "not mounted");
        Some(disk)
    }
}

impl Drop for FatDisk {
    fn drop(&mut self) {
        let unmounted = Command::new("fusermount")
            .arg("-u")
            .arg(&self.mount)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Still busy (a panic left a server running): detach it anyway.
            let _ = Command::new("fusermount")
                .args(["-u", "-z"])
                .arg(&self.mount)
                .status();
        }
    }
}

/// A freshly mounted FAT disk for `test`, or None when the test cannot run
/// here (it skips, or fails under REST_SERVER_TEST_REQUIRE_TOOLS).
fn fat_disk(test: &str, tag: &str) -> Option<FatDisk> {
    if !require_root(test)
        || !require_tool("fusefat", test)
        || !require_tool("fusermount", test)
        || !require_tool("mkfs.vfat", test)
    {
        return None;
    }
    let disk = FatDisk::mount(TempDir::new(tag));
    if disk.is_none() {
        skip_or_fail(test, "fusefat cannot mount a FAT image here");
    }
    disk
}

/// Rounds of [`RACERS`] uploads of different bodies to one name, all
/// committing at once: exactly one is stored and answered 200, every other
/// is refused (403), the stored bytes are the winner's, and no temp file is
/// left once the answers are in.
fn racing_uploads_keep_one(data: &Path) {
    // Unverified, so that different bodies may carry one name: with
    // verification they would be refused for their hash before the commit.
    let server = Server::start(data, &["--no-verify-upload"]);
    assert_eq!(server.request("POST", "/repo/?create=true").status, 200);
    for round in 0..ROUNDS {
        let id = sha256_hex(format!("round {round}").as_bytes());
        let path = format!("/repo/data/{id}");
        let bodies: Vec<Vec<u8>> = (0..RACERS)
            .map(|racer| pseudo_random(RACE_BODY_BYTES, (round * RACERS + racer + 1) as u64))
            .collect();
        // Each racer sends all but the last byte of its request, then waits
        // for the others: the last bytes go out together, so the uploads
        // reach their commits together.
        let all_sent = Barrier::new(RACERS);
        let statuses: Vec<u16> = std::thread::scope(|scope| {
            let racers: Vec<_> = bodies
                .iter()
                .map(|body| {
                    let (all_sent, path, addr) = (&all_sent, &path, &server.addr);
                    scope.spawn(move || {
                        let request = Request::new("POST", path).body(body.clone()).to_bytes();
                        let (head, last) = request.split_at(request.len() - 1);
                        let mut stream = connect(addr);
                        stream.write_all(head).unwrap();
                        all_sent.wait();
                        stream.write_all(last).unwrap();
                        read_response(&mut stream, false).status
                    })
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 403),
            "round {round}: {statuses:?}\n{}",
            server.log()
        );
        let winners: Vec<usize> = (0..RACERS).filter(|&i| statuses[i] == 200).collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: answers {statuses:?}; more than one upload was told its \
             body was stored under one name, so one replaced another"
        );
        let stored = server.request("GET", &path);
        assert_eq!(stored.status, 200, "round {round}");
        assert!(
            stored.body == bodies[winners[0]],
            "round {round}: the stored body is not the one answered 200"
        );
    }
    // Only the objects: each refused commit removed its temp file before
    // its answer was sent.
    let files = files_below(&data.join("repo/data"));
    assert_eq!(files.len(), ROUNDS, "{files:#?}");
    assert!(
        files.iter().all(|name| !name.contains(".rest-server-tmp-")),
        "{files:#?}"
    );
}

#[test]
fn racing_uploads_on_fat_never_replace() {
    let Some(disk) = fat_disk("fat::racing_uploads_on_fat_never_replace", "fat-race") else {
        return;
    };
    // The premise: no hard links here, so the commits cannot use `link`.
    let probe = disk.mount.join("probe");
    std::fs::write(&probe, b"x").unwrap();
    assert!(std::fs::hard_link(&probe, disk.mount.join("probe-link")).is_err());
    std::fs::remove_file(&probe).unwrap();
    racing_uploads_keep_one(&disk.mount.join("data"));
}

#[test]
fn racing_uploads_on_the_temp_dir_never_replace() {
    let dir = TempDir::new("race");
    racing_uploads_keep_one(&dir.path().join("data"));
}

#[test]
fn uploads_on_fat_are_kept_listed_and_deleted() {
    let Some(disk) = fat_disk("fat::uploads_on_fat_are_kept_listed_and_deleted", "fat-api") else {
        return;
    };
    let data = disk.mount.join("data");
    let server = Server::start(&data, &[]);
    assert_eq!(server.request("POST", "/repo/?create=true").status, 200);
    let put = server.send(&Request::new("POST", "/repo/config").body("config"));
    assert_eq!(put.status, 200);
    let body = pseudo_random(300_000, 7);
    let (id, put) = upload(&server, "data", &body);
    assert_eq!(put.status, 200, "{}", put.text());
    // A retry of the same bytes: 200, as restic expects after a lost answer.
    let (_, again) = upload(&server, "data", &body);
    assert_eq!(again.status, 200);
    // Other bytes under the taken name: refused, the stored file kept.
    let path = format!("/repo/data/{id}");
    let other = server.send(&Request::new("POST", &path).body(pseudo_random(300_000, 8)));
    assert_eq!(other.status, 403);
    let config = server.send(&Request::new("POST", "/repo/config").body("other"));
    assert_eq!(config.status, 403);
    assert!(server.request("GET", &path).body == body);
    assert_eq!(server.request("GET", "/repo/config").text(), "config");
    let listed = server.send(
        &Request::new("GET", "/repo/data/").header("Accept", "application/vnd.x.restic.rest.v2"),
    );
    assert_eq!(listed.status, 200);
    assert!(listed.text().contains(&id), "{}", listed.text());
    assert_eq!(server.request("DELETE", &path).status, 200);
    assert_eq!(server.request("GET", &path).status, 404);
    assert_eq!(files_below(&data.join("repo/data")), Vec::<String>::new());
}

#[test]
fn restic_backs_up_to_fat_checks_and_restores() {
    let test = "fat::restic_backs_up_to_fat_checks_and_restores";
    if !require_tool("restic", test) {
        return;
    }
    let Some(disk) = fat_disk(test, "fat-restic") else {
        return;
    };
    let dir = TempDir::new("fat-restic-client");
    let (source, cache) = (dir.path().join("source"), dir.path().join("cache"));
    std::fs::create_dir_all(source.join("sub")).unwrap();
    for i in 0..20u64 {
        let file = source.join(format!("sub/file{i}.bin"));
        std::fs::write(file, pseudo_random((i as usize * 3001) % 20_000, i)).unwrap();
    }
    std::fs::write(source.join("big.bin"), pseudo_random(3 << 20, 99)).unwrap();
    let server = Server::start(&disk.mount.join("data"), &[]);
    let repo = format!("rest:http://{}/laptop/", server.tcp_addr());
    let run = |args: &[&str]| restic(&repo, &cache, args);
    ok(run(&["init"]), "init");
    ok(run(&["backup", source.to_str().unwrap()]), "backup");
    ok(run(&["check", "--read-data"]), "check --read-data");
    restore_matches(run, &source, &dir.path().join("restore"));
}
