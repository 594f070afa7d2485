//! The scrub: finds bit rot before a restore needs the data. Every restic
//! object but the config is named by the SHA-256 of its content, so the
//! server can re-hash what it stores, without any key, and tell which
//! objects no longer match their names.
//!
//! It reads through the store interface like a download (constant memory),
//! hashes on the compute pool, keeps to `--scrub-rate` (a tenth of it while
//! clients are being served), and works in slices of a few seconds between
//! which it saves where it got to ([`state`]), so a restart resumes the pass.
//! The background scrub never deletes, renames or rewrites anything: what it
//! finds is logged, counted in `/metrics`, and remembered in the state file
//! until the object verifies again or is deleted. Only `rest-server scrub
//! --repair` replaces a damaged object, with a verified copy from the mirror
//! ([`repair`]).
//!
//! The files: [`verify`] checks one object, [`walk`] lists them in order,
//! [`pace`] keeps to the rate; [`background`] is the server's scrub,
//! [`once`](mod@once) the command's pass, [`report`] the `--status` text; [`status`]
//! is what the server shows (the page, [`metrics`], the delete handler);
//! [`state`] is the file they share.

mod background;
mod error;
mod metrics;
mod once;
mod pace;
pub(crate) mod repair;
mod report;
pub(crate) mod state;
mod status;
mod verify;
mod walk;

pub(crate) use background::Scrubber;
pub(crate) use error::ScrubError;
pub(crate) use once::once;
pub(crate) use report::status_report;
pub(crate) use status::{ScrubSummary, Status};
