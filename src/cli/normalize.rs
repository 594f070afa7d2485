//! Go's flag syntax, for argh: [`normalize_args`] rewrites `--flag=value`,
//! `--switch=true|false` and `-flag` before argh parses the command line, so
//! that unit files written for Go's rest-server keep working.

use super::CliError;

/// Switches, whose `--name=true|false` form Go accepts. Kept by hand: argh
/// does not tell switches from options at run time. The test
/// `switches_lists_every_switch` compares it with the switches argh's
/// `ArgsInfo` finds, which is why every argh type here derives it in tests.
const SWITCHES: &[&str] = &[
    "debug",
    "mirror-deletes",
    "update",
    "force",
    "no-auth",
    "append-only",
    "private-repos",
    "no-verify-upload",
    "prometheus",
    "prometheus-no-auth",
    "tls",
    "group-accessible-repos",
    "version",
    "status",
    "repair",
    "dry-run",
];

/// Whether `name` (without dashes) is a switch, which takes no value:
/// one of [`SWITCHES`], or argh's `--help` / `-h`.
pub(super) fn is_switch(name: &str) -> bool {
    matches!(name, "help" | "h") || SWITCHES.contains(&name)
}

/// Rewrites Go-style `--flag=value` into `--flag value`, `--switch=true` into
/// `--switch` and drops `--switch=false`. Also accepts Go's single-dash form.
pub fn normalize_args(args: &[String]) -> Result<Vec<String>, CliError> {
    let mut out = Vec::with_capacity(args.len());
    let mut only_positionals = false;
    for arg in args {
        if only_positionals || !arg.starts_with('-') || arg == "-" {
            out.push(arg.clone());
            continue;
        }
        if arg == "--" {
            only_positionals = true;
            out.push(arg.clone());
            continue;
        }
        // Go accepts -flag as well as --flag.
        let long = if arg.starts_with("--") || arg == "-h" {
            arg.clone()
        } else {
            format!("-{arg}")
        };
        match long.split_once('=') {
            Some((name, value)) if SWITCHES.contains(&&name[2..]) => match value {
                "true" | "1" | "t" | "T" | "TRUE" | "True" => out.push(name.to_string()),
                "false" | "0" | "f" | "F" | "FALSE" | "False" => {}
                _ => {
                    return Err(CliError::SwitchValue {
                        switch: name.to_string(),
                        value: value.to_string(),
                    });
                }
            },
            Some((name, value)) => {
                out.push(name.to_string());
                out.push(value.to_string());
            }
            None => out.push(long),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use argh::ArgsInfo;

    use super::super::{Flags, args};
    use super::*;

    #[test]
    fn go_style_flags_are_understood() {
        let normalized = normalize_args(&args(&[
            "--path=/srv/restic",
            "-listen",
            ":9000",
            "--append-only=true",
            "--debug=false",
            "--no-auth",
        ]))
        .unwrap();
        assert_eq!(
            normalized,
            args(&[
                "--path",
                "/srv/restic",
                "--listen",
                ":9000",
                "--append-only",
                "--no-auth"
            ])
        );
        assert!(normalize_args(&args(&["--tls=maybe"])).is_err());
    }

    /// Adds the switches of `command` and of its subcommands, without `--`.
    fn switches_of(command: &argh::CommandInfoWithArgs, found: &mut BTreeSet<String>) {
        for flag in command.flags {
            // argh's own --help takes no Go-style value.
            if flag.kind == argh::FlagInfoKind::Switch && flag.long != "--help" {
                found.insert(flag.long.trim_start_matches("--").to_string());
            }
        }
        for sub in &command.commands {
            switches_of(&sub.command, found);
        }
    }

    #[test]
    fn switches_lists_every_switch() {
        // A switch missing from SWITCHES would take `--it=true` as an option
        // with a value and fail; one that is no longer a switch would turn
        // `--it=value` into `--it`.
        let mut declared = BTreeSet::new();
        switches_of(&Flags::get_args_info(), &mut declared);
        let listed: BTreeSet<String> = SWITCHES.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            declared, listed,
            "SWITCHES must name exactly the switches of Flags and its subcommands"
        );
        for switch in SWITCHES {
            let on = normalize_args(&args(&[&format!("--{switch}=true")])).unwrap();
            assert_eq!(on, args(&[&format!("--{switch}")]));
            let off = normalize_args(&args(&[&format!("-{switch}=false")])).unwrap();
            assert!(off.is_empty(), "{off:?}");
        }
    }
}
