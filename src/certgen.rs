//! `rest-server tls generate`: a self-signed certificate and key, so that an
//! appliance can serve HTTPS without openssl; clients pin the certificate
//! (`restic --cacert`) or compare its fingerprint.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::command_error::CommandError;

/// Host names put in the certificate when none are given.
pub const DEFAULT_NAMES: &[&str] = &["localhost", "rest-server", "rest-server.local"];

/// Writes a new ECDSA P-256 key (mode 0600) and a self-signed certificate for
/// `names` (host names or IP addresses) and returns the certificate's SHA-256
/// fingerprint (`AB:CD:...`). Existing files are never replaced.
pub fn generate(
    cert_path: &Path,
    key_path: &Path,
    names: &[String],
) -> Result<String, CommandError> {
    let certified =
        rcgen::generate_simple_self_signed(names.to_vec()).map_err(CommandError::Certificate)?;
    write_new(
        key_path,
        certified.signing_key.serialize_pem().as_bytes(),
        0o600,
    )
    .map_err(CommandError::io(key_path))?;
    if let Err(e) = write_new(cert_path, certified.cert.pem().as_bytes(), 0o644) {
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

fn write_new(path: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(content)?;
    file.sync_all()
}
