//! Start checks in the container image (docs/container.md). A restart
//! policy restarts a server that exits, so each refusal says in one log line
//! what to change: a data directory that is not there (no volume where the
//! flags say) or that the server's user cannot write (a volume made by an
//! image that runs as root, or mounted read-only). A missing users file is
//! created empty, as restic/rest-server's image does, so that the server
//! starts and `exec ... rest-server user add` can run beside it.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::{AccessFlags, access, getegid, geteuid};

use crate::config::{AuthMode, Config, Storage};

/// Why a data directory cannot be used.
#[derive(Debug)]
pub(super) enum Unusable {
    /// Not there: nothing is mounted where the flags point.
    Missing(PathBuf),
    /// On a file system mounted read-only.
    ReadOnly(PathBuf),
    /// Not writable by this process's user: the directory and its owner.
    NotOurs {
        dir: PathBuf,
        uid: u32,
        gid: u32,
    },
    Unreadable(PathBuf, io::Error),
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unusable::Missing(dir) => write!(
                f,
                "the data directory {} does not exist or is no directory: mount a volume there \
                 (-v NAME:{0}), or set DATA_DIRECTORY to where one is mounted",
                dir.display()
            ),
            Unusable::ReadOnly(dir) => write!(
                f,
                "the data directory {} is on a read-only mount: mount the volume read-write",
                dir.display()
            ),
            Unusable::NotOurs { dir, uid, gid } => write!(
                f,
                "{} belongs to uid {uid} gid {gid} and is not writable by the server's \
                 uid {} gid {}: give the volume to {1}:{2} (chown -R {1}:{2} on the host) \
                 or run the container with --user {uid}:{gid}",
                dir.display(),
                geteuid(),
                getegid()
            ),
            Unusable::Unreadable(dir, e) => {
                write!(f, "cannot read the data directory {}: {e}", dir.display())
            }
        }
    }
}

/// Checks the volume and creates a missing users file.
pub(super) fn prepare(config: &Config) -> Result<(), Unusable> {
    if let Storage::Local(dir) = &config.storage {
        check(dir)?;
    }
    if let AuthMode::Htpasswd(file) = &config.auth {
        let created = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(file);
        match created {
            Ok(_) => log::info!("created an empty users file {}", file.display()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            // Loading it says why.
            Err(_) => {}
        }
    }
    Ok(())
}

/// `dir` and the folders directly in it (repositories, or users' folders
/// of them) can be written by this process.
fn check(dir: &Path) -> Result<(), Unusable> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(Unusable::Missing(dir.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Unusable::Missing(dir.to_path_buf()));
        }
        Err(e) => return Err(Unusable::Unreadable(dir.to_path_buf(), e)),
    }
    writable(dir)?;
    let entries = fs::read_dir(dir).map_err(|e| Unusable::Unreadable(dir.to_path_buf(), e))?;
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            writable(&entry.path())?;
        }
    }
    Ok(())
}

fn writable(dir: &Path) -> Result<(), Unusable> {
    match access(dir, AccessFlags::W_OK | AccessFlags::X_OK) {
        Ok(()) => Ok(()),
        Err(Errno::EROFS) => Err(Unusable::ReadOnly(dir.to_path_buf())),
        Err(_) => {
            let meta = fs::metadata(dir).map_err(|e| Unusable::Unreadable(dir.to_path_buf(), e))?;
            Err(Unusable::NotOurs {
                dir: dir.to_path_buf(),
                uid: meta.uid(),
                gid: meta.gid(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    // A folder the server's user cannot write is refused by tests/container.rs,
    // with the image run as another uid: these tests run as root in CI, and
    // root may write anything.
    use super::*;
    use crate::testing::TempDir;

    #[test]
    fn a_missing_directory_is_named() {
        let tmp = TempDir::new("volume-missing");
        let dir = tmp.path().join("data");
        let refused = check(&dir).unwrap_err();
        assert!(matches!(refused, Unusable::Missing(_)));
        assert!(refused.to_string().contains(&*dir.to_string_lossy()));
    }

    #[test]
    fn a_writable_directory_passes_and_the_users_file_is_made() {
        let tmp = TempDir::new("volume-ok");
        fs::create_dir(tmp.path().join("repo")).unwrap();
        check(tmp.path()).unwrap();
        let mut config = Config::new(tmp.path().to_path_buf());
        let users = tmp.path().join(".htpasswd");
        config.auth = AuthMode::Htpasswd(users.clone());
        prepare(&config).unwrap();
        let meta = fs::metadata(&users).unwrap();
        assert_eq!((meta.len(), meta.permissions().mode() & 0o777), (0, 0o600));
        // A file that is there is left as it is.
        fs::write(&users, "alice:x\n").unwrap();
        prepare(&config).unwrap();
        assert_eq!(fs::read_to_string(&users).unwrap(), "alice:x\n");
    }
}
