//! What a test does when an external tool or a privilege it needs is
//! missing: skip, saying so, on a laptop; fail in CI (`REQUIRE_TOOLS_VAR`).

use std::io::Write;
use std::process::{Command, Stdio};

/// Set to anything but empty or `0`, a test whose tool or privilege is missing
/// fails instead of skipping. `.ci/run` sets it; docs/testing.md.
pub const REQUIRE_TOOLS_VAR: &str = "REST_SERVER_TEST_REQUIRE_TOOLS";
/// A file each skip appends its line to; `tests/all.sh` sets it and lists the
/// skips at the end of the run.
pub const SKIP_LOG_VAR: &str = "REST_SERVER_TEST_SKIP_LOG";

/// What a test does when something it needs is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing {
    /// Report `SKIP <test>: <what>` and pass (the default, for local runs).
    Skip,
    /// Panic, naming the test and what is missing (CI).
    Fail,
}

impl Missing {
    /// The policy for a value of [`REQUIRE_TOOLS_VAR`].
    pub fn from_value(value: Option<&std::ffi::OsStr>) -> Missing {
        match value {
            Some(v) if !v.is_empty() && v != "0" => Missing::Fail,
            _ => Missing::Skip,
        }
    }

    /// The policy this run was started with.
    pub fn from_env() -> Missing {
        Missing::from_value(std::env::var_os(REQUIRE_TOOLS_VAR).as_deref())
    }
}

/// `test` cannot run because it lacks `what`: under [`Missing::Fail`] panics
/// naming both, under [`Missing::Skip`] hands `report` the line
/// `SKIP <test>: <what>`.
pub fn skip_or_fail_with(policy: Missing, test: &str, what: &str, report: &mut dyn FnMut(&str)) {
    match policy {
        Missing::Fail => panic!(
            "{test} cannot run: {what} ({REQUIRE_TOOLS_VAR} is set, so this fails instead of skipping)"
        ),
        Missing::Skip => report(&format!("SKIP {test}: {what}")),
    }
}

/// Reports a skip where it is seen: on stderr, and in the file named by
/// [`SKIP_LOG_VAR`] if set.
fn report_skip(line: &str) {
    // libtest captures `eprintln!` and shows it only for failing tests; a
    // write to the stderr handle itself is not captured, so the line shows in
    // the run's output.
    let _ = writeln!(std::io::stderr().lock(), "{line}");
    if let Some(path) = std::env::var_os(SKIP_LOG_VAR) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
        if let Ok(mut log) = log {
            let _ = log.write_all(format!("{line}\n").as_bytes());
        }
    }
}

/// `test` cannot run because it lacks `what`: under [`REQUIRE_TOOLS_VAR`]
/// this panics, otherwise it reports the skip. The caller then returns.
pub fn skip_or_fail(test: &str, what: &str) {
    skip_or_fail_with(Missing::from_env(), test, what, &mut report_skip);
}

/// Whether the program `name` is on the PATH.
pub fn tool_installed(name: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// [`require_tool`] under an explicit policy and skip reporter.
pub fn require_tool_with(
    policy: Missing,
    name: &str,
    test: &str,
    report: &mut dyn FnMut(&str),
) -> bool {
    if tool_installed(name) {
        return true;
    }
    skip_or_fail_with(policy, test, &format!("`{name}` is not installed"), report);
    false
}

/// Whether the external program `name`, which `test` needs, is installed. If
/// not: panics under [`REQUIRE_TOOLS_VAR`], otherwise reports the skip and
/// returns false (the test then returns).
pub fn require_tool(name: &str, test: &str) -> bool {
    require_tool_with(Missing::from_env(), name, test, &mut report_skip)
}

/// Whether the tests run as root, which `test` needs; like [`require_tool`].
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    skip_or_fail(test, "needs root");
    false
}

// The policy is a parameter here, not the environment variable: the variable
// is process-wide and these run in parallel with the tests that read it.
#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    const NO_SUCH_TOOL: &str = "rest-server-test-no-such-tool";

    #[test]
    fn the_variable_turns_skips_into_failures() {
        assert_eq!(Missing::from_value(None), Missing::Skip);
        assert_eq!(Missing::from_value(Some(OsStr::new(""))), Missing::Skip);
        assert_eq!(Missing::from_value(Some(OsStr::new("0"))), Missing::Skip);
        assert_eq!(Missing::from_value(Some(OsStr::new("1"))), Missing::Fail);
        assert_eq!(Missing::from_value(Some(OsStr::new("yes"))), Missing::Fail);
    }

    #[test]
    fn a_missing_tool_is_skipped_by_default() {
        let mut reported = Vec::new();
        let ran = require_tool_with(Missing::Skip, NO_SUCH_TOOL, "some_test", &mut |line| {
            reported.push(line.to_owned())
        });
        assert!(!ran);
        assert_eq!(
            reported,
            [format!("SKIP some_test: `{NO_SUCH_TOOL}` is not installed")]
        );
    }

    #[test]
    fn a_missing_tool_fails_when_required_naming_test_and_tool() {
        let failed = std::panic::catch_unwind(|| {
            require_tool_with(Missing::Fail, NO_SUCH_TOOL, "some_test", &mut |line| {
                panic!("reported a skip: {line}")
            })
        });
        let payload = failed.expect_err("no panic");
        let message = payload
            .downcast_ref::<String>()
            .expect("a formatted panic message");
        assert_eq!(
            message,
            &format!(
                "some_test cannot run: `{NO_SUCH_TOOL}` is not installed ({REQUIRE_TOOLS_VAR} is set, so this fails instead of skipping)"
            )
        );
    }

    #[test]
    fn an_installed_tool_runs_under_either_policy() {
        for policy in [Missing::Skip, Missing::Fail] {
            assert!(require_tool_with(policy, "sh", "some_test", &mut |line| {
                panic!("reported a skip: {line}")
            }));
        }
    }
}
