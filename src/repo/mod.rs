//! restic's names for what a repository holds: the repository's path, the
//! object types and ids, and the bytes of an object a read asks for. The
//! store, the request path, the mirror and the scrub all speak these.

pub(crate) mod range;
