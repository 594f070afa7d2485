//! Healing from the offsite mirror (`rest-server scrub --repair`): a damaged
//! local object is fetched from the bucket, checked against its name while
//! it is written to a temp file beside the original, and only then put in
//! place of the damaged copy ([`FsUpload::replace_damaged`](crate::store::fs::FsUpload::replace_damaged), which hashes
//! the local copy once more first). A mirror copy that is missing or wrong
//! changes nothing.

use crate::repo::Key;
use crate::repo::range::Want;
use crate::repo::{ObjectId, RepoPath};
use crate::runtime::pool::{ComputePool, Sha256};
use crate::store::fs::{FsStore, Replaced};
use crate::store::s3::S3Store;
use crate::store::{ErrorKind, ObjectReader as _, OpenError, Store, Upload as _};

use super::state::Place;

/// What came of one repair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Healed {
    /// The mirror's copy is in place.
    Replaced,
    NotInMirror,
    /// The mirror's copy does not match the name either.
    MirrorDamaged,
    /// The local copy verified when read again: left alone.
    IntactMeanwhile,
    /// The local copy was deleted meanwhile: not brought back.
    GoneMeanwhile,
    Failed(String),
}

impl Healed {
    /// The line `rest-server scrub --repair` prints.
    pub(crate) fn describe(&self, place: &Place) -> String {
        match self {
            Healed::Replaced => format!("REPAIRED {place}: replaced by the mirror's copy"),
            Healed::NotInMirror => format!("NOT REPAIRED {place}: not in the mirror"),
            Healed::MirrorDamaged => {
                format!("NOT REPAIRED {place}: the mirror's copy does not match its name either")
            }
            Healed::IntactMeanwhile => format!("{place}: intact when read again; left alone"),
            Healed::GoneMeanwhile => format!("{place}: deleted meanwhile; not brought back"),
            Healed::Failed(why) => format!("NOT REPAIRED {place}: {why}"),
        }
    }

    /// Whether the object no longer counts as damaged.
    pub(crate) fn settled(&self) -> bool {
        matches!(
            self,
            Healed::Replaced | Healed::IntactMeanwhile | Healed::GoneMeanwhile
        )
    }
}

/// The data directory and its mirror.
pub(crate) struct Healer {
    pub(crate) local: FsStore,
    pub(crate) remote: S3Store,
    pub(crate) compute: ComputePool,
}

impl Healer {
    pub(crate) async fn heal(&self, repo: &RepoPath, place: &Place) -> Healed {
        let id = ObjectId::parse(&place.id).expect("a place holds a valid id");
        let key = Key::Object(place.kind(), &id);
        let mut reader = match self.remote.open(repo, key, Want::All).await {
            Ok(reader) => reader,
            Err(OpenError::Store(e)) if e.kind == ErrorKind::NotFound => {
                return Healed::NotInMirror;
            }
            Err(OpenError::Store(e)) => return Healed::Failed(format!("mirror: {e}")),
            Err(OpenError::Range(e)) => return Healed::Failed(format!("mirror: {e}")),
        };
        let mut upload = match self.local.begin_replacement(repo, key).await {
            Ok(upload) => upload,
            Err(e) => return Healed::Failed(e.to_string()),
        };
        let mut sha = Sha256::new(self.compute.clone());
        loop {
            let chunk = match std::future::poll_fn(|cx| reader.poll_chunk(cx)).await {
                None => break,
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => {
                    upload.abort().await;
                    return Healed::Failed(format!("mirror: {e}"));
                }
            };
            let hashed = sha.push(chunk.clone()).await;
            if let Err(e) = upload.push(chunk).await {
                upload.abort().await;
                return Healed::Failed(e.to_string());
            }
            if hashed.is_err() {
                upload.abort().await;
                return Healed::Failed("stopping".to_string());
            }
        }
        match sha.finish().await {
            Ok(digest) if digest == id.digest() => {}
            Ok(_) => {
                upload.abort().await;
                return Healed::MirrorDamaged;
            }
            Err(_) => {
                upload.abort().await;
                return Healed::Failed("stopping".to_string());
            }
        }
        match upload.replace_damaged(id.digest()).await {
            Ok(Replaced::Done) => Healed::Replaced,
            Ok(Replaced::WasIntact) => Healed::IntactMeanwhile,
            Ok(Replaced::Gone) => Healed::GoneMeanwhile,
            Err(e) => Healed::Failed(e.to_string()),
        }
    }
}
