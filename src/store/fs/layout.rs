//! restic's local layout under the data directory: where an object of a
//! repository lives, and the folders a new repository gets. Every path is
//! built here, from typed keys, so it is always inside the data directory.
//!
//! ```text
//! <root>/<repo segments...>/config
//! <root>/<repo segments...>/{keys,locks,snapshots,index}/<id>
//! <root>/<repo segments...>/data/<first two hex chars of id>/<id>
//! ```

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::store::FsStore;
use crate::config::Modes;
use crate::repo::{Key, ObjectType, RepoPath};
use crate::store::{Op as _, StoreError};

impl FsStore {
    pub(super) fn repo_dir(&self, repo: &RepoPath) -> PathBuf {
        let mut path = PathBuf::from(self.root.as_path());
        path.extend(repo.segments());
        path
    }

    pub(super) fn type_dir(&self, repo: &RepoPath, kind: ObjectType) -> PathBuf {
        self.repo_dir(repo).join(kind.dir_name())
    }

    pub(super) fn path(&self, repo: &RepoPath, key: Key<'_>) -> PathBuf {
        match key {
            Key::Config => self.repo_dir(repo).join("config"),
            Key::Object(kind, id) => {
                let mut path = self.type_dir(repo, kind);
                if is_fanned_out(kind) {
                    path.push(id.prefix());
                }
                path.push(id.as_str());
                path
            }
        }
    }
}

/// Data packs live one level deeper, in `data/{first two hex chars}/`, as
/// restic's local backend lays them out.
pub(super) fn is_fanned_out(kind: ObjectType) -> bool {
    kind == ObjectType::Data
}

/// Creates a repository's folders, including `data/00`..`data/ff`. Idempotent.
pub(super) fn create_repo(dir: &Path, modes: Modes) -> Result<(), StoreError> {
    let mut builder = DirBuilder::new();
    builder.mode(modes.dir).recursive(true);
    builder.create(dir).op("create repository")?;
    for kind in ObjectType::ALL {
        ensure_dir(&dir.join(kind.dir_name()), modes)?;
    }
    let data = dir.join(ObjectType::Data.dir_name());
    let mut name = [0u8; 2];
    for byte in 0..=255u8 {
        let hex = hex_pair(byte, &mut name);
        ensure_dir(&data.join(hex), modes)?;
    }
    Ok(())
}

/// Makes `path` a folder with the server's mode (its parent must exist); an
/// existing folder is fine.
pub(super) fn ensure_dir(path: &Path, modes: Modes) -> Result<(), StoreError> {
    let mut builder = DirBuilder::new();
    builder.mode(modes.dir);
    match builder.create(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other.op("create folder"),
    }
}

fn hex_pair(byte: u8, out: &mut [u8; 2]) -> &str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out[0] = DIGITS[usize::from(byte >> 4)];
    out[1] = DIGITS[usize::from(byte & 0xf)];
    std::str::from_utf8(out).unwrap_or("00")
}

/// Size of a regular file; a folder or anything else counts as missing.
pub(super) fn file_len(path: &Path) -> Result<u64, StoreError> {
    let meta = fs::metadata(path).op("stat")?;
    if !meta.is_file() {
        return Err(StoreError::not_found("stat"));
    }
    Ok(meta.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_pairs_cover_all_bytes() {
        let mut buf = [0u8; 2];
        assert_eq!(hex_pair(0, &mut buf), "00");
        assert_eq!(hex_pair(0xa7, &mut buf), "a7");
        assert_eq!(hex_pair(0xff, &mut buf), "ff");
    }
}
