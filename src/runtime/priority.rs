//! Bulk threads run at a lower CPU priority than the event loop and the file
//! I/O pool: on a board whose cores are busy hashing and writing uploads, a
//! small GET (restic reading a key or a lock) still gets a core at once, and
//! the bulk work takes whatever is left. The fourth module with `unsafe`,
//! because nix does not wrap `nice`.
//!
//! Sound: the one `unsafe` block passes an integer; the call reads and writes
//! no memory of ours.

#![allow(unsafe_code)]

use std::io;

use nix::libc;

/// How much lower the bulk threads run than the rest of the server: at 10,
/// the kernel gives a thread at the server's own level about ten times the
/// CPU share of a bulk thread when both want a core; an idle core still goes
/// to the bulk work.
pub(crate) const BULK_NICE_INCREMENT: i32 = 10;

/// Lowers the calling thread's priority by `increment` (on Linux the nice
/// value belongs to the thread, not the process), relative to what the
/// server was started with, up to the lowest there is.
pub(crate) fn lower_this_thread(increment: i32) -> io::Result<()> {
    nix::errno::Errno::clear();
    // SAFETY: see the module comment: an integer in, an integer out.
    let nice = unsafe { libc::nice(increment) };
    // -1 is also a nice value: only errno tells a failure apart.
    if nice == -1 && nix::errno::Errno::last_raw() != 0 {
        return Err(io::Error::from(nix::errno::Errno::last()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The thread that lowers itself runs lower; the others do not.
    #[test]
    fn only_the_calling_thread_is_lowered() {
        let nice_of = |tid: i32| -> i32 {
            let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
            // Field 19 (nice), counted after the command's closing parenthesis.
            let after = &stat[stat.rfind(')').unwrap() + 2..];
            after.split(' ').nth(16).unwrap().parse().unwrap()
        };
        let main = nix::unistd::gettid().as_raw();
        let before = nice_of(main);
        let lowered = std::thread::spawn(move || {
            lower_this_thread(BULK_NICE_INCREMENT).unwrap();
            nice_of(nix::unistd::gettid().as_raw())
        })
        .join()
        .unwrap();
        assert_eq!(lowered, (before + BULK_NICE_INCREMENT).min(19));
        assert_eq!(nice_of(main), before);
    }
}
