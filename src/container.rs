//! What the server knows of the container image it may run in: the variable
//! that marks it (the image sets it), and the server that is PID 1 there,
//! whose flags the commands run beside it (`health`, `user add`) follow and
//! which `user add` asks to reload. docs/container.md.

use std::ffi::OsStr;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Set (to anything but empty or `0`) by the container image: the server
/// then reads its environment variables (`cli::environment`) and checks its
/// volume at start.
pub const MARKER: &str = "REST_SERVER_CONTAINER";

/// Whether a value of [`MARKER`] marks a container.
pub fn marked(value: Option<&OsStr>) -> bool {
    matches!(value, Some(v) if !v.is_empty() && v != "0")
}

/// The command-line arguments (without the program) of PID 1 when it is a
/// rest-server and not this process: the server whose container this
/// command runs in. None elsewhere (an init, a shell, or PID 1 itself).
pub fn server_args() -> Option<Vec<String>> {
    if std::process::id() == 1 {
        return None;
    }
    let raw = std::fs::read("/proc/1/cmdline").ok()?;
    let mut args = raw
        .split(|b| *b == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned());
    let program = args.next()?;
    if std::path::Path::new(&program).file_name()? != "rest-server" {
        return None;
    }
    // The list ends with a NUL: the last piece is empty.
    let mut args: Vec<String> = args.collect();
    if args.last().is_some_and(String::is_empty) {
        args.pop();
    }
    Some(args)
}

/// Asks the server that is PID 1 to reload its files now (SIGHUP), rather
/// than at its next check; whether one was asked.
pub fn ask_server_to_reload() -> bool {
    server_args().is_some() && kill(Pid::from_raw(1), Signal::SIGHUP).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_values() {
        assert!(marked(Some(OsStr::new("1"))));
        assert!(marked(Some(OsStr::new("yes"))));
        assert!(!marked(Some(OsStr::new("0"))));
        assert!(!marked(Some(OsStr::new(""))));
        assert!(!marked(None));
    }

    #[test]
    fn pid_1_of_a_test_is_no_server() {
        // Tests run under an init or a shell, never as rest-server's PID 1.
        assert_eq!(server_args(), None);
        assert!(!ask_server_to_reload());
    }
}
