//! A file of a repository as the store is asked for it: the config, or an
//! object by type and id.

use super::object::{ObjectId, ObjectType};

/// A file of a repository: its config, or an object named by its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key<'a> {
    Config,
    Object(ObjectType, &'a ObjectId),
}

impl Key<'_> {
    /// The object type, for metrics and limits; None for the config.
    pub(crate) fn kind(self) -> Option<ObjectType> {
        match self {
            Key::Config => None,
            Key::Object(kind, _) => Some(kind),
        }
    }
}

/// A [`Key`] that owns its id: for work that outlives the request that
/// named the file (the mirror's queue, what follows a commit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyBuf {
    Config,
    Object(ObjectType, ObjectId),
}

impl KeyBuf {
    pub(crate) fn of(key: Key<'_>) -> KeyBuf {
        match key {
            Key::Config => KeyBuf::Config,
            Key::Object(kind, id) => KeyBuf::Object(kind, id.clone()),
        }
    }

    pub(crate) fn key(&self) -> Key<'_> {
        match self {
            KeyBuf::Config => Key::Config,
            KeyBuf::Object(kind, id) => Key::Object(*kind, id),
        }
    }
}
