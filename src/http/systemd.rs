//! systemd socket activation: one of the two small modules with `unsafe`
//! (the other is `store/noreplace.rs`).
//!
//! systemd passes listening sockets from fd 3 on and says so in `LISTEN_PID`
//! and `LISTEN_FDS`. Taking ownership of a raw fd number is `unsafe` in Rust
//! because nothing proves the fd is open and unowned; the checks below are
//! that proof.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// First fd systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

static TAKEN: AtomicBool = AtomicBool::new(false);

/// The socket systemd passed us, if it passed one to this very process.
/// More than one is an error: rest-server serves one listener.
pub(crate) fn take_listen_fd() -> io::Result<Option<OwnedFd>> {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|pid| pid.parse::<i32>().ok())
        .is_some_and(|pid| pid == nix::unistd::getpid().as_raw());
    if !for_us {
        return Ok(None);
    }
    let count: u32 = match std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        None | Some(0) => return Ok(None),
        Some(n) => n,
    };
    if count != 1 {
        return Err(io::Error::other(format!(
            "got {count} sockets from systemd, expected one"
        )));
    }
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Ok(None);
    }
    // SAFETY: F_GETFD only reads the fd's flags; on a closed fd it fails with
    // EBADF and touches no memory.
    if unsafe { nix::libc::fcntl(LISTEN_FDS_START, nix::libc::F_GETFD) } < 0 {
        return Err(io::Error::other(format!(
            "systemd socket fd {LISTEN_FDS_START} is not open: {}",
            io::Error::last_os_error()
        )));
    }
    // SAFETY: LISTEN_PID names this process, so systemd (or a test standing in
    // for it) opened fd 3 for us; F_GETFD above proved it is open; TAKEN makes
    // sure this ownership is claimed only once in the process.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(LISTEN_FDS_START) }))
}
