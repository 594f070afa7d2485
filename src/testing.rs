//! Helpers for the crate's own tests: the std-and-ring-only files of the
//! integration tests' helpers (`tests/util/`), included here so that each
//! helper exists once for unit tests, integration tests and the benchmark.

#[path = "../tests/util/tempdir.rs"]
mod tempdir;
pub(crate) use tempdir::TempDir;

// `pseudo_random`, the file's other helper, has no unit test that uses it.
#[allow(dead_code)]
#[path = "../tests/util/hash.rs"]
mod hash;
pub(crate) use hash::sha256_hex;
