//! restic's names for what a repository holds: the repository's path, the
//! object types and ids, a file of a repository (its key), and the bytes of an
//! object a read asks for. The store, the request path, the mirror and the
//! scrub all speak these; they import nothing of the server.

mod key;
mod object;
mod path;
pub(crate) mod range;

pub(crate) use key::{Key, KeyBuf};
pub(crate) use object::{ObjectId, ObjectType};
pub(crate) use path::{MAX_REPO_DEPTH, RepoPath, is_reserved_name};
