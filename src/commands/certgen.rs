//! `rest-server tls generate`: a self-signed certificate and key, so that an
//! appliance can serve HTTPS without openssl; clients pin the certificate
//! (`restic --cacert`) or compare its fingerprint.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use crate::commands::error::CommandError;

/// Host names put in the certificate when none are given.
pub const DEFAULT_NAMES: &[&str] = &["localhost", "rest-server", "rest-server.local"];

/// Writes a new ECDSA P-256 key (mode 0600) and a self-signed certificate for
/// `names` (host names or IP addresses) and returns the certificate's SHA-256
/// fingerprint (`AB:CD:...`). Existing files are replaced only with `force`;
/// missing folders are created (mode 0700), as the server creates its data
/// directory. Run as root, the files get the owner of their folder, so that
/// the service user can read its key.
pub fn generate(
    cert_path: &Path,
    key_path: &Path,
    names: &[String],
    force: bool,
) -> Result<String, CommandError> {
    if !force {
        for path in [key_path, cert_path] {
            if path.exists() {
                return Err(CommandError::FileExists(path.to_path_buf()));
            }
        }
    }
    for path in [key_path, cert_path] {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(CommandError::io(dir))?;
        }
    }
    let certified =
        rcgen::generate_simple_self_signed(names.to_vec()).map_err(CommandError::Certificate)?;
    write(
        key_path,
        certified.signing_key.serialize_pem().as_bytes(),
        0o600,
        force,
    )
    .map_err(CommandError::io(key_path))?;
    if let Err(e) = write(cert_path, certified.cert.pem().as_bytes(), 0o644, force) {
        let _ = std::fs::remove_file(key_path);
        return Err(CommandError::io(cert_path)(e));
    }
    Ok(fingerprint(certified.cert.der()))
}

/// SHA-256 of a certificate's DER, as `openssl x509 -fingerprint -sha256` shows it.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Writes `path` through a temp file renamed into place: never replaces
/// anything unless `replace`, and never leaves half a file.
fn write(path: &Path, content: &[u8], mode: u32, replace: bool) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        file.write_all(content)?;
        if nix::unistd::geteuid().is_root() {
            use std::os::unix::fs::MetadataExt as _;
            let owner = std::fs::metadata(dir)?;
            std::os::unix::fs::chown(&temp, Some(owner.uid()), Some(owner.gid()))?;
        }
        file.sync_all()?;
        if replace {
            std::fs::rename(&temp, path)?;
        } else {
            // A link fails if the name was taken meanwhile; where links do
            // not exist (vfat), the check made before has to do.
            match std::fs::hard_link(&temp, path) {
                Ok(()) => std::fs::remove_file(&temp)?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(e),
                Err(_) if !path.exists() => std::fs::rename(&temp, path)?,
                Err(e) => return Err(e),
            }
        }
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}
