//! restic's object types and names: the folders of a repository that hold
//! objects named by their content's SHA-256, and those names.

use std::fmt;

/// Length of an object name: the hex SHA-256 of its content.
pub(crate) const OBJECT_ID_LEN: usize = 64;

/// The folders of a restic repository that hold objects named by their hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ObjectType {
    Data,
    Keys,
    Locks,
    Snapshots,
    Index,
}

impl ObjectType {
    pub(crate) const ALL: [ObjectType; 5] = [
        ObjectType::Data,
        ObjectType::Keys,
        ObjectType::Locks,
        ObjectType::Snapshots,
        ObjectType::Index,
    ];

    pub(crate) fn from_segment(segment: &str) -> Option<ObjectType> {
        Some(match segment {
            "data" => ObjectType::Data,
            "keys" => ObjectType::Keys,
            "locks" => ObjectType::Locks,
            "snapshots" => ObjectType::Snapshots,
            "index" => ObjectType::Index,
            _ => return None,
        })
    }

    /// The folder name inside the repository, which is also the URL segment.
    pub(crate) fn dir_name(self) -> &'static str {
        match self {
            ObjectType::Data => "data",
            ObjectType::Keys => "keys",
            ObjectType::Locks => "locks",
            ObjectType::Snapshots => "snapshots",
            ObjectType::Index => "index",
        }
    }

    /// Whether uploads of this type are small metadata (kilobytes), so that a
    /// body size cap applies. Data packs and index files can be many MiB.
    pub(crate) fn is_small(self) -> bool {
        matches!(
            self,
            ObjectType::Keys | ObjectType::Locks | ObjectType::Snapshots
        )
    }
}

impl fmt::Display for ObjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir_name())
    }
}

/// An object name: exactly 64 lowercase hex characters.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ObjectId(heapless::String<OBJECT_ID_LEN>);

impl ObjectId {
    pub(crate) fn parse(s: &str) -> Option<ObjectId> {
        if s.len() != OBJECT_ID_LEN || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut id = heapless::String::new();
        id.push_str(s).ok()?;
        Some(ObjectId(id))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The fan-out folder of a data pack: its first two hex characters.
    pub(crate) fn prefix(&self) -> &str {
        &self.0[..2]
    }

    /// The SHA-256 digest this name stands for.
    pub(crate) fn digest(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        let hex = self.0.as_bytes();
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = (hex_value(hex[2 * i]) << 4) | hex_value(hex[2 * i + 1]);
        }
        out
    }
}

fn hex_value(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => 0, // unreachable: parse() admits only lowercase hex
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
