//! `rest-server`: parses the flags, hands over to the library, and turns the
//! outcome into an exit code in one place ([`exit`]).

use std::error::Error;
use std::process::ExitCode;

use argh::FromArgs;
use rest_server::app::AppError;
use rest_server::cli::{
    CliError, Command, Flags, MirrorAction, MirrorArgs, TlsAction, TlsGenerate, TrashAction,
    UserAction, normalize_args, with_environment,
};
use rest_server::commands::error::CommandError;
use rest_server::commands::probe::ProbeError;
use rest_server::commands::{certgen, trash, user as users};
use rest_server::config::Deployment;
use rest_server::container;

fn main() -> ExitCode {
    match run() {
        Ok(()) => {
            // The log's writer thread does not outlive the process.
            rest_server::logging::flush();
            ExitCode::SUCCESS
        }
        Err(failure) => exit(&failure),
    }
}

/// Why the process stops with a failure.
#[derive(Debug)]
enum Failure {
    /// The command line is wrong; nothing ran.
    Usage(CliError),
    /// A subcommand (`user ...`, `tls generate`) failed.
    Command(CommandError),
    /// The server could not start, or stopped on an error.
    App(AppError),
}

impl From<CliError> for Failure {
    fn from(e: CliError) -> Failure {
        Failure::Usage(e)
    }
}

impl From<CommandError> for Failure {
    fn from(e: CommandError) -> Failure {
        Failure::Command(e)
    }
}

impl From<AppError> for Failure {
    fn from(e: AppError) -> Failure {
        Failure::App(e)
    }
}

impl Failure {
    /// 2 for a command line to fix (as argh and Go's flag package do), 1 for
    /// everything that failed while running; 3 for a `health` that cannot
    /// ask in this setup (the init script then reports the server running,
    /// its health unchecked).
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Command(CommandError::Probe(ProbeError::CannotAsk(_))) => 3,
            Failure::Command(_) | Failure::App(_) => 1,
        }
    }

    fn error(&self) -> &(dyn Error + 'static) {
        match self {
            Failure::Usage(e) => e,
            Failure::Command(e) => e,
            Failure::App(e) => e,
        }
    }
}

/// Prints `failure` once on stderr, with its causes, and gives its exit code.
/// A failure while running (the server's, or a `cleanup` or `scrub` store's)
/// also goes to the log, as every other server event does.
fn exit(failure: &Failure) -> ExitCode {
    let message = with_causes(failure.error());
    // Two branches rather than one flag: the flag's form built 12 KiB more
    // code on aarch64 (measured; LLVM inlined differently).
    if let Failure::App(_) = failure {
        log::error!("{message}");
    } else if let Failure::Command(e) = failure
        && e.goes_to_the_log()
    {
        log::error!("{message}");
    }
    // The log's lines first, then this one: stderr keeps their order.
    rest_server::logging::flush();
    eprintln!("rest-server: {message}");
    ExitCode::from(failure.exit_code())
}

/// `error: cause: cause's cause`. A cause whose text is already in the
/// message is left out: some errors show their source in their own text as
/// well (bcrypt's `Rand`, our `AppError`), which would print it twice.
fn with_causes(error: &(dyn Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let text = e.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = e.source();
    }
    message
}

fn run() -> Result<(), Failure> {
    let args: Vec<String> = std::env::args().collect();
    let command = args.first().map_or("rest-server", String::as_str);
    let mut normalized = normalize_args(args.get(1..).unwrap_or_default())?;
    let deployment = match container::marked(std::env::var_os(container::MARKER).as_deref()) {
        true => Deployment::Container,
        false => Deployment::Host,
    };
    if deployment == Deployment::Container {
        let env = |name: &str| std::env::var(name).ok();
        normalized = with_environment(normalized, &env, container::server_args())?;
    }
    let refs: Vec<&str> = normalized.iter().map(String::as_str).collect();
    let flags = match Flags::from_args(&[command], &refs) {
        Ok(flags) => flags,
        // --help is no failure: its text goes to stdout.
        Err(early) if early.status.is_ok() => {
            println!("{}", early.output);
            return Ok(());
        }
        Err(early) => return Err(CliError::Parse(early.output).into()),
    };
    if flags.version {
        println!("rest-server {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    match &flags.command {
        Some(Command::Tls(args)) => {
            let TlsAction::Generate(generate) = &args.action;
            Ok(tls_generate(&flags, generate)?)
        }
        Some(Command::Cleanup(cleanup)) => {
            rest_server::logging::init(flags.debug);
            let target = flags.cleanup_target()?;
            let aborted = rest_server::commands::cleanup::cleanup(&target, cleanup.min_age)?;
            println!("aborted {aborted} unfinished multipart upload(s)");
            Ok(())
        }
        Some(Command::Mirror(MirrorArgs {
            action: MirrorAction::Recover(recover),
        })) => {
            rest_server::logging::init(flags.debug);
            let target = flags.mirror_target()?;
            Ok(rest_server::commands::mirror::recover(
                &target,
                recover.repo.as_deref(),
                &recover.since,
                recover.dry_run,
            )?)
        }
        Some(Command::Mirror(_)) => {
            let dir = flags.data_dir()?;
            let (report, current) = rest_server::commands::mirror::status(&dir)?;
            print!("{report}");
            if current {
                Ok(())
            } else {
                Err(CommandError::MirrorNotCurrent.into())
            }
        }
        Some(Command::Scrub(args)) => {
            let target = flags.scrub_target(args)?;
            if args.status {
                let (report, damaged) = rest_server::commands::scrub::status(&target)?;
                print!("{report}");
                return match damaged {
                    true => Err(CommandError::ScrubDamageKnown.into()),
                    false => Ok(()),
                };
            }
            rest_server::logging::init(flags.debug);
            match rest_server::commands::scrub::scrub(&target, args.repo.as_deref(), args.rate)? {
                0 => Ok(()),
                damaged => Err(CommandError::ScrubFoundDamage(damaged).into()),
            }
        }
        Some(Command::Health(_)) => {
            let config = flags.resolve()?;
            let answer = match rest_server::commands::probe::health(&config) {
                // A container's healthcheck knows healthy (0) and unhealthy
                // (anything else): one that can never ask would mark the
                // container unhealthy for good, and get it restarted in a
                // loop by tools that heal containers.
                Err(e @ ProbeError::CannotAsk(_)) if deployment == Deployment::Container => {
                    println!("{e}");
                    return Ok(());
                }
                answer => answer.map_err(CommandError::Probe)?,
            };
            println!("{}", answer.text);
            match answer.healthy {
                true => Ok(()),
                false => Err(CommandError::Unhealthy.into()),
            }
        }
        Some(Command::Ntp(args)) => {
            if args.servers.is_empty() {
                return Err(CliError::Parse("ntp: name at least one server".into()).into());
            }
            rest_server::logging::init(flags.debug);
            let interval = std::time::Duration::from_secs(args.interval.max(1));
            rest_server::commands::ntp::run(&args.servers, interval)
        }
        Some(Command::Mdns(args)) => {
            rest_server::logging::init(flags.debug);
            // The error names the port it is about, as a path would.
            rest_server::commands::mdns::run(&args.name)
                .map_err(CommandError::io("mdns (udp port 5353)"))?;
            Ok(())
        }
        Some(Command::Trash(args)) => {
            let target = flags.trash_target()?;
            Ok(rest_server::commands::trash::run(
                trash_action(&args.action, flags.trash_days),
                &target,
                flags.group_accessible_repos,
            )?)
        }
        Some(Command::User(args)) => Ok(users::run(
            user_action(&args.action),
            &flags.htpasswd_path()?,
            deployment,
        )?),
        None => {
            rest_server::logging::init(flags.debug);
            let config = flags.resolve()?.deployed(deployment);
            Ok(rest_server::app::run(config)?)
        }
    }
}

/// `user ...` as the plain data its body takes: `commands` sits below the
/// command line and does not import it.
fn user_action(action: &UserAction) -> users::Action {
    match action {
        UserAction::List(_) => users::Action::List,
        UserAction::Remove(remove) => users::Action::Remove {
            name: remove.name.clone(),
        },
        UserAction::Add(add) => users::Action::Add {
            name: add.name.clone(),
            update: add.update,
        },
    }
}

/// `trash ...` as the plain data its body takes.
fn trash_action(action: &TrashAction, trash_days: Option<u64>) -> trash::Action {
    match action {
        TrashAction::List(list) => trash::Action::List {
            repo: list.repo.clone(),
            since: list.since.clone(),
        },
        TrashAction::Restore(restore) => trash::Action::Restore {
            repo: restore.repo.clone(),
            since: restore.since.clone(),
            kind: restore.kind.clone(),
        },
        TrashAction::Purge(purge) => trash::Action::Purge {
            older_than: purge.older_than.clone(),
            trash_days,
        },
    }
}

/// `tls generate`: the files' names on stderr, the fingerprint on stdout.
fn tls_generate(flags: &Flags, generate: &TlsGenerate) -> Result<(), Failure> {
    let (cert, key) = flags.tls_paths()?;
    let names: Vec<String> = if generate.name.is_empty() {
        certgen::DEFAULT_NAMES
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        generate.name.clone()
    };
    let fingerprint = certgen::generate(&cert, &key, &names, generate.force)?;
    eprintln!("wrote {} and {}", cert.display(), key.display());
    println!("SHA-256 fingerprint: {fingerprint}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[test]
    fn exit_codes() {
        let usage = Failure::from(CliError::UnixSocketPath);
        let command = Failure::from(CommandError::EmptyPassword);
        assert_eq!(usage.exit_code(), 2);
        assert_eq!(command.exit_code(), 1);
    }

    #[test]
    fn causes_are_chained_once() {
        let os = || io::Error::from(io::ErrorKind::PermissionDenied);
        let e = CommandError::io("/d/.htpasswd")(os());
        assert_eq!(with_causes(&e), format!("/d/.htpasswd: {}", os()));
        assert_eq!(with_causes(&CommandError::EmptyPassword), "empty password");
        // An error that shows its source and returns it too.
        #[derive(Debug)]
        struct Both(io::Error);
        impl std::fmt::Display for Both {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "both: {}", self.0)
            }
        }
        impl Error for Both {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&self.0)
            }
        }
        assert_eq!(with_causes(&Both(os())), format!("both: {}", os()));
    }
}
