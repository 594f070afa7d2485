//! --append-only, --max-size, --group-accessible-repos, and a full disk.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::util::*;

#[test]
fn append_only_refuses_deletes_but_locks() {
    let dir = TempDir::new("append");
    let server = server_with_repo(&dir, &["--append-only"]);
    assert!(server.log().contains("append-only mode: on"));
    assert_eq!(
        server
            .send(&Request::new("POST", "/repo/config").body("c"))
            .status,
        200
    );
    let (data_id, put) = upload(&server, "data", b"pack");
    assert_eq!(put.status, 200);
    let (lock_id, put) = upload(&server, "locks", b"lock");
    assert_eq!(put.status, 200);
    let (snap_id, put) = upload(&server, "snapshots", b"snap");
    assert_eq!(put.status, 200);

    assert_eq!(
        server
            .request("DELETE", &format!("/repo/data/{data_id}"))
            .status,
        403
    );
    assert_eq!(
        server
            .request("DELETE", &format!("/repo/snapshots/{snap_id}"))
            .status,
        403
    );
    assert_eq!(server.request("DELETE", "/repo/config").status, 403);
    assert_eq!(server.request("GET", "/repo/config").text(), "c");
    let overwrite = server.send(&Request::new("POST", "/repo/config").body("new"));
    assert_eq!(overwrite.status, 403);
    // A retry of what is stored is no overwrite, in append-only mode too.
    assert_eq!(
        server
            .send(&Request::new("POST", "/repo/config").body("c"))
            .status,
        200
    );
    assert_eq!(upload(&server, "data", b"pack").1.status, 200);
    assert_eq!(
        server
            .request("DELETE", &format!("/repo/locks/{lock_id}"))
            .status,
        200
    );
    assert_eq!(
        server
            .request("GET", &format!("/repo/data/{data_id}"))
            .text(),
        "pack"
    );
}

#[test]
fn max_size_quota() {
    let dir = TempDir::new("quota");
    let server = server_with_repo(&dir, &["--max-size", "1000"]);
    let (first, put) = upload(&server, "data", &pseudo_random(600, 1));
    assert_eq!(put.status, 200);

    // Declared too large: refused before anything is written.
    let (_, put) = upload(&server, "data", &pseudo_random(600, 2));
    assert_eq!(put.status, 507);
    // Undeclared (chunked) and too large: aborted while streaming.
    let body = pseudo_random(600, 3);
    let id = sha256_hex(&body);
    let put = server.send(
        &Request::new("POST", &format!("/repo/data/{id}"))
            .body(body)
            .chunked(),
    );
    assert_eq!(put.status, 507);
    assert_eq!(
        files_below(&dir.path().join("data/repo/data")).len(),
        1,
        "nothing left"
    );

    // Deleting gives the space back.
    assert_eq!(
        server
            .request("DELETE", &format!("/repo/data/{first}"))
            .status,
        200
    );
    let (_, put) = upload(&server, "data", &pseudo_random(900, 4));
    assert_eq!(put.status, 200);
    drop(server);

    // Counted again at startup: 900 bytes used, 200 more will not fit.
    let server = Server::start(&dir.path().join("data"), &["--max-size", "1000"]);
    assert!(server.log().contains("900 in use"), "{}", server.log());
    let (_, put) = upload(&server, "keys", &pseudo_random(200, 5));
    assert_eq!(put.status, 507);
    let (_, put) = upload(&server, "keys", &pseudo_random(100, 6));
    assert_eq!(put.status, 200);
}

#[test]
fn group_accessible_repos() {
    let dir = TempDir::new("group");
    let data = dir.path().join("data");
    // The server applies the process umask, as rest-server does; a unit file
    // sets UMask=007 for this mode. Run it under that umask.
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(r#"umask 007; exec "$0" "$@""#)
        .arg(binary())
        .args([
            "--path".as_ref(),
            data.as_os_str(),
            "--no-auth".as_ref(),
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--group-accessible-repos".as_ref(),
        ]);
    let server = Server::spawn(command, &data);
    assert_eq!(server.request("POST", "/repo/?create=true").status, 200);
    let (id, put) = upload(&server, "keys", b"key");
    assert_eq!(put.status, 200);
    let mode = |p: &str| {
        std::fs::metadata(data.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("repo/keys"), 0o770);
    assert_eq!(mode("repo/data/ab"), 0o770);
    assert_eq!(mode(&format!("repo/keys/{id}")), 0o660);
}

/// Mounts a small tmpfs for the test's lifetime; needs root.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(at: &std::path::Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk(at.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn full_disk_is_507_and_leaves_nothing() {
    let test = "full_disk_is_507_and_leaves_nothing";
    if !require_root(test) || !require_tool("mount", test) {
        return;
    }
    let dir = TempDir::new("fulldisk");
    let data = dir.path().join("data");
    let Some(_disk) = SmallDisk::mount(&data, "2m") else {
        // Root without the right to mount: a container without CAP_SYS_ADMIN.
        skip_or_fail(test, "cannot mount a tmpfs, even as root");
        return;
    };
    let server = Server::start(&data, &[]);
    assert_eq!(server.request("POST", "/repo/?create=true").status, 200);
    let (_, put) = upload(&server, "data", &pseudo_random(3 << 20, 11));
    assert_eq!(put.status, 507, "{}", put.text());
    let leftovers: Vec<_> = files_below(&data);
    assert_eq!(leftovers, Vec::<String>::new());
    // Space is still there for what fits.
    let (_, put) = upload(&server, "data", &pseudo_random(100_000, 12));
    assert_eq!(put.status, 200);
    drop(server);
}
