//! Flags from the environment, in the container image: NAS users configure
//! containers with variables, and the image has no shell to turn them into
//! flags, so the server reads them itself. The names and meanings are those
//! of restic/rest-server's image where they make sense (docs/container.md).
//!
//! Read only when [`crate::container::MARKER`] is set (the image sets it),
//! so that a stray `OPTIONS` in a user's shell changes nothing elsewhere.
//! Layers, each replacing the flags of the ones before it that it names
//! again: the variables, then `OPTIONS`, then the flags of the server that
//! is PID 1 (for `health` and `user` run beside it with `exec`), then the
//! command line itself.

use super::CliError;
use super::normalize::{is_switch, normalize_args};

/// The variables read, as docs/container.md lists them (a test compares).
pub const VARIABLES: [&str; 4] = [
    "DATA_DIRECTORY",
    "PASSWORD_FILE",
    "DISABLE_AUTHENTICATION",
    "OPTIONS",
];

/// `args` (normalized) with the flags the environment adds, when `env`
/// (a variable's value by name) marks a container; `server` is PID 1's
/// command line when that is a rest-server.
pub fn with_environment(
    args: Vec<String>,
    env: &dyn Fn(&str) -> Option<String>,
    server: Option<Vec<String>>,
) -> Result<Vec<String>, CliError> {
    let value = |name: &str| env(name).filter(|v| !v.is_empty());
    let mut flags = Vec::new();
    if let Some(dir) = value(VARIABLES[0]) {
        flags.extend(["--path".to_string(), dir]);
    }
    if let Some(file) = value(VARIABLES[1]) {
        flags.extend(["--htpasswd-file".to_string(), file]);
    }
    if let Some(text) = value(VARIABLES[2]) {
        match text.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => flags.push("--no-auth".to_string()),
            "0" | "false" | "no" | "off" => {}
            _ => return Err(CliError::Environment(VARIABLES[2], text)),
        }
    }
    if let Some(text) = value(VARIABLES[3]) {
        // Split as the shell splits an unquoted $OPTIONS: on white space,
        // quotes taken literally.
        let words: Vec<String> = text.split_whitespace().map(str::to_string).collect();
        let options = normalize_args(&words)?;
        if flags_end(&options) < options.len() {
            return Err(CliError::Environment(VARIABLES[3], text));
        }
        flags = over(flags, options);
    }
    if let Some(server) = server {
        // Its flags only: a server started as `... scrub` is no server.
        let mut server = normalize_args(&server)?;
        server.truncate(flags_end(&server));
        flags = over(flags, server);
    }
    Ok(over(flags, args))
}

/// Where the flags at the start of `args` end: the first argument that is
/// neither a flag nor a flag's value (a subcommand), or the end.
fn flags_end(args: &[String]) -> usize {
    let mut at = 0;
    while let Some(arg) = args.get(at) {
        match flag_name(arg) {
            Some(name) if is_switch(name) => at += 1,
            Some(_) => at += 2,
            None => break,
        }
    }
    at.min(args.len())
}

/// `--name` or `-h` as `name` or `h`; None for anything else.
fn flag_name(arg: &str) -> Option<&str> {
    match arg.trim_start_matches('-') {
        name if name.len() < arg.len() && !name.is_empty() => Some(name),
        _ => None,
    }
}

/// `upper` after the flags of `lower` that `upper` does not name.
fn over(lower: Vec<String>, upper: Vec<String>) -> Vec<String> {
    let named = |name: &str| {
        upper[..flags_end(&upper)]
            .iter()
            .any(|a| flag_name(a) == Some(name))
    };
    let mut out = Vec::with_capacity(lower.len() + upper.len());
    let mut at = 0;
    let end = flags_end(&lower);
    while at < end {
        let width = match flag_name(&lower[at]) {
            Some(name) if is_switch(name) => 1,
            _ => 2,
        };
        let flag = &lower[at..(at + width).min(end)];
        if !flag_name(&flag[0]).is_some_and(named) {
            out.extend_from_slice(flag);
        }
        at += width;
    }
    out.extend(upper);
    out
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use super::super::args;
    use super::*;

    fn layered(
        vars: &[(&str, &str)],
        server: Option<&[&str]>,
        own: &[&str],
    ) -> Result<Vec<String>, CliError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        with_environment(args(own), &|name| vars.get(name).cloned(), server.map(args))
    }

    const IMAGE: [(&str, &str); 2] = [
        ("DATA_DIRECTORY", "/data"),
        ("PASSWORD_FILE", "/data/.htpasswd"),
    ];

    #[test]
    fn the_image_variables_give_path_and_users_file() {
        let got = layered(&IMAGE, None, &[]).unwrap();
        assert_eq!(
            got,
            args(&["--path", "/data", "--htpasswd-file", "/data/.htpasswd"])
        );
        // Empty is unset.
        let got = layered(&[("DATA_DIRECTORY", ""), ("OPTIONS", " ")], None, &[]).unwrap();
        assert!(got.is_empty(), "{got:?}");
    }

    #[test]
    fn command_line_beats_options_beats_variables() {
        let vars = [IMAGE[0], IMAGE[1], ("OPTIONS", "--path=/opt --append-only")];
        let got = layered(&vars, None, &["--path", "/cmd", "--debug"]).unwrap();
        assert_eq!(
            got,
            args(&[
                "--htpasswd-file",
                "/data/.htpasswd",
                "--append-only",
                "--path",
                "/cmd",
                "--debug"
            ])
        );
    }

    #[test]
    fn disable_authentication_takes_booleans_only() {
        for on in ["1", "true", "YES", "on"] {
            let got = layered(&[("DISABLE_AUTHENTICATION", on)], None, &[]).unwrap();
            assert_eq!(got, args(&["--no-auth"]), "{on}");
        }
        for off in ["0", "false", "no", "Off", ""] {
            let got = layered(&[("DISABLE_AUTHENTICATION", off)], None, &[]).unwrap();
            assert!(got.is_empty(), "{off}");
        }
        let refused = layered(&[("DISABLE_AUTHENTICATION", "maybe")], None, &[]).unwrap_err();
        assert!(refused.to_string().contains("DISABLE_AUTHENTICATION"));
    }

    #[test]
    fn options_hold_flags_only() {
        let refused = layered(&[("OPTIONS", "--debug user list")], None, &[]).unwrap_err();
        assert!(refused.to_string().contains("OPTIONS"), "{refused}");
        assert!(layered(&[("OPTIONS", "--tls=maybe")], None, &[]).is_err());
    }

    #[test]
    fn commands_beside_the_server_follow_its_flags() {
        let server: &[&str] = &["--listen", ":8001", "--tls"];
        let got = layered(&IMAGE, Some(server), &["health"]).unwrap();
        assert_eq!(
            got,
            args(&[
                "--path",
                "/data",
                "--htpasswd-file",
                "/data/.htpasswd",
                "--listen",
                ":8001",
                "--tls",
                "health"
            ])
        );
        // Their own flags win; a subcommand of PID 1's is not taken.
        let server: &[&str] = &["--htpasswd-file", "/a", "scrub", "--status"];
        let got = layered(
            &[],
            Some(server),
            &["--htpasswd-file", "/b", "user", "list"],
        )
        .unwrap();
        assert_eq!(got, args(&["--htpasswd-file", "/b", "user", "list"]));
    }

    #[test]
    fn docs_and_image_name_the_variables_read() {
        // The table of docs/container.md's "Environment variables".
        let doc = include_str!("../../docs/container.md");
        let section = doc.split("\n## Environment variables\n").nth(1).unwrap();
        let section = section.split("\n## ").next().unwrap();
        let listed: BTreeSet<&str> = section
            .lines()
            .filter_map(|line| line.strip_prefix("| `"))
            .filter_map(|rest| rest.split('`').next())
            .collect();
        let mut read: BTreeSet<&str> = VARIABLES.into_iter().collect();
        read.insert(crate::container::MARKER);
        assert_eq!(listed, read, "docs/container.md's table of variables");
        // What the Containerfile sets is read.
        let containerfile = include_str!("../../board/container/Containerfile");
        let mut set = Vec::new();
        let mut in_env = false;
        for line in containerfile.lines() {
            in_env = in_env || line.starts_with("ENV ");
            if in_env {
                let words = line.split_whitespace().filter_map(|w| w.split_once('='));
                set.extend(words.map(|(name, _)| name));
                in_env = line.ends_with('\\');
            }
        }
        assert_eq!(set.len(), 3, "{set:?}");
        for name in set {
            assert!(
                read.contains(name),
                "the Containerfile sets {name}, which is not read"
            );
        }
    }
}
