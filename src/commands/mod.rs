//! The board tools: the subcommands other than serving (`user`, `tls
//! generate`, `health`, `ntp`, `mdns`, `cleanup`, `scrub`), each a body of
//! its own that `main` calls once the flags are read.

pub mod certgen;
pub mod cleanup;
pub mod error;
pub mod mdns;
pub mod mirror;
pub mod ntp;
pub mod probe;
pub mod scrub;
pub mod trash;
pub mod user;
