//! One object checked: read through the store like a download, hashed on the
//! compute pool, and the digest compared with the object's name; the
//! [`Verdict`] tells intact from damaged (or deleted meanwhile), and a read
//! error that says the stored bytes are bad from a passing trouble.

use crate::repo::Key;
use crate::repo::range::Want;
use crate::repo::{ObjectId, RepoPath};
use crate::runtime::pool::{ComputePool, Sha256};
use crate::store::{ErrorKind, ObjectReader as _, OpenError, Store, StoreError};

use super::ScrubError;
use super::pace::Pace;
use super::state::{Counts, Place};

/// What one object's check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    Intact(u64),
    /// Read (the bytes read) but does not match its name, or could not be
    /// read.
    Damaged(u64, String),
    /// Deleted since the listing.
    Gone,
}

/// Reads one object through the store and compares its hash with its name.
pub(super) async fn verify<S: Store>(
    store: &S,
    compute: &ComputePool,
    repo: &RepoPath,
    place: &Place,
    pace: &mut Pace,
    read_bytes: &dyn Fn(u64),
) -> Result<Verdict, ScrubError> {
    let id = ObjectId::parse(&place.id).expect("a place holds a valid id");
    let mut reader = match store
        .open(repo, Key::Object(place.kind(), &id), Want::All)
        .await
    {
        Ok(reader) => reader,
        Err(OpenError::Store(e)) if e.kind == ErrorKind::NotFound => return Ok(Verdict::Gone),
        Err(OpenError::Store(e)) if is_damage(&e) => {
            return Ok(Verdict::Damaged(0, unreadable(&e)));
        }
        Err(OpenError::Store(e)) => return Err(e.into()),
        Err(OpenError::Range(e)) => return Err(StoreError::internal("scrub", e.to_string()).into()),
    };
    let mut sha = Sha256::new(compute.clone());
    let mut read = 0u64;
    loop {
        match std::future::poll_fn(|cx| reader.poll_chunk(cx)).await {
            None => break,
            Some(Ok(chunk)) => {
                read += chunk.len() as u64;
                read_bytes(chunk.len() as u64);
                pace.take(chunk.len()).await;
                sha.push(chunk).await.map_err(|_| ScrubError::Stopping)?;
            }
            Some(Err(e)) if is_damage(&e) => return Ok(Verdict::Damaged(read, unreadable(&e))),
            Some(Err(e)) => return Err(e.into()),
        }
    }
    let digest = sha.finish().await.map_err(|_| ScrubError::Stopping)?;
    Ok(if digest == id.digest() {
        Verdict::Intact(read)
    } else {
        Verdict::Damaged(read, "does not match its name".to_string())
    })
}

/// Whether a read error says the stored bytes are bad (the disk or the file
/// system reports damage, or the file ends before its size), rather than a
/// passing trouble of the machine (no file descriptors, no memory) or of the
/// network, which stops the slice or the command instead of being reported
/// as damage.
fn is_damage(e: &StoreError) -> bool {
    use nix::errno::Errno;
    let Some(source) = e.io() else {
        return false;
    };
    source.kind() == std::io::ErrorKind::UnexpectedEof
        || matches!(
            source.raw_os_error().map(Errno::from_raw),
            Some(Errno::EIO | Errno::EBADMSG | Errno::EUCLEAN | Errno::ENODATA)
        )
}

fn unreadable(e: &dyn std::fmt::Display) -> String {
    // One line, no tabs: it goes into the state file.
    format!("could not be read ({e})").replace(['\t', '\n'], " ")
}

/// Adds one verdict to a pass's counts.
pub(super) fn count(counts: &mut Counts, verdict: &Verdict) {
    match verdict {
        Verdict::Gone => {}
        Verdict::Intact(bytes) => {
            counts.objects += 1;
            counts.bytes += bytes;
        }
        Verdict::Damaged(bytes, _) => {
            counts.objects += 1;
            counts.bytes += bytes;
            counts.damaged += 1;
        }
    }
}
