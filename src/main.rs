//! `rest-server`: parses the flags and hands over to the library.

use std::process::ExitCode;

use argh::FromArgs;
use rest_server::cli::{Command, Flags, TlsAction, normalize_args};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let command = args.first().map_or("rest-server", String::as_str);
    let normalized = match normalize_args(&args[1.min(args.len())..]) {
        Ok(normalized) => normalized,
        Err(e) => {
            eprintln!("rest-server: {e}");
            return ExitCode::from(2);
        }
    };
    let refs: Vec<&str> = normalized.iter().map(String::as_str).collect();
    let flags = match Flags::from_args(&[command], &refs) {
        Ok(flags) => flags,
        Err(early) => {
            // --help goes to stdout with success; parse errors to stderr.
            return match early.status {
                Ok(()) => {
                    println!("{}", early.output);
                    ExitCode::SUCCESS
                }
                Err(()) => {
                    eprintln!("{}", early.output);
                    ExitCode::from(2)
                }
            };
        }
    };
    if flags.version {
        println!("rest-server {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if let Some(Command::Tls(args)) = &flags.command {
        let TlsAction::Generate(generate) = &args.action;
        let (cert, key) = flags.tls_paths();
        let names: Vec<String> = if generate.name.is_empty() {
            rest_server::certgen::DEFAULT_NAMES
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            generate.name.clone()
        };
        return match rest_server::certgen::generate(&cert, &key, &names) {
            Ok(fingerprint) => {
                eprintln!("wrote {} and {}", cert.display(), key.display());
                println!("SHA-256 fingerprint: {fingerprint}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("rest-server: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::User(args)) = &flags.command {
        let file = flags.htpasswd_path();
        return match rest_server::users::run(args.action.clone(), &file) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rest-server: {e}");
                ExitCode::FAILURE
            }
        };
    }
    rest_server::logging::init(flags.debug);
    let config = match flags.resolve() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("rest-server: {e}");
            return ExitCode::from(2);
        }
    };
    match rest_server::app::run(config) {
        Ok(()) => {
            rest_server::logging::flush();
            ExitCode::SUCCESS
        }
        Err(e) => {
            log::error!("{e}");
            rest_server::logging::flush();
            eprintln!("rest-server: {e}");
            ExitCode::FAILURE
        }
    }
}
