//! `rest-server user add|remove|list`: the htpasswd file, managed by the
//! server itself so that an appliance needs no apache2-utils.
//!
//! Writes are atomic (temp file, fsync, rename, fsync folder) and leave the
//! file at mode 0600; a running server picks the change up within 30 s, or at
//! once on SIGHUP, which a command run in the container image sends the
//! server beside it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::auth::htpasswd::{self, PasswordHash, Users, valid_username};
use crate::commands::error::CommandError;
use crate::config::Deployment;

/// What `rest-server user` is asked to do: the subcommand's arguments as plain
/// data, so that this body does not import the command line above it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    List,
    Remove {
        name: String,
    },
    /// With `update`, a user who exists gets a new password; without it, an
    /// existing user is refused.
    Add {
        name: String,
        update: bool,
    },
}

/// Runs a user subcommand on the htpasswd file at `file`; in a container,
/// a change is reloaded by the server at once.
pub fn run(action: Action, file: &Path, deployment: Deployment) -> Result<(), CommandError> {
    let changed = !matches!(action, Action::List);
    change(action, file)?;
    if changed && deployment == Deployment::Container && crate::container::ask_server_to_reload() {
        eprintln!("the server (PID 1) reloads its users now");
    }
    Ok(())
}

fn change(action: Action, file: &Path) -> Result<(), CommandError> {
    let shown = file.display();
    match action {
        Action::List => {
            let text = fs::read_to_string(file).map_err(CommandError::io(file))?;
            let (users, warnings) = Users::parse(&text);
            for warning in warnings {
                eprintln!("warning: {shown}: {warning}");
            }
            for name in users.names() {
                println!("{name}");
            }
            Ok(())
        }
        Action::Remove { name } => {
            let text = fs::read_to_string(file).map_err(CommandError::io(file))?;
            let (rest, found) = htpasswd::without_user(&text, &name);
            if !found {
                return Err(CommandError::NoSuchUser {
                    file: file.to_path_buf(),
                    name,
                });
            }
            write_atomically(file, &rest).map_err(CommandError::io(file))?;
            eprintln!("removed user {:?} from {shown}", name);
            Ok(())
        }
        Action::Add { name, update } => {
            if !valid_username(&name) {
                return Err(CommandError::InvalidName(name));
            }
            let text = match fs::read_to_string(file) {
                Ok(text) => text,
                Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
                Err(e) => return Err(CommandError::io(file)(e)),
            };
            let (users, _) = Users::parse(&text);
            if users.get(&name).is_some() && !update {
                return Err(CommandError::UserExists {
                    file: file.to_path_buf(),
                    name,
                });
            }
            let password = read_password(&name)?;
            let hash = PasswordHash::new_bcrypt(&password).map_err(CommandError::Bcrypt)?;
            let updated = htpasswd::with_user(&text, &name, &hash);
            if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::create_dir_all(dir).map_err(CommandError::io(dir))?;
            }
            write_atomically(file, &updated).map_err(CommandError::io(file))?;
            eprintln!("saved user {:?} in {shown}", name);
            Ok(())
        }
    }
}

/// Asks twice, without echo, on a terminal; otherwise reads one line.
fn read_password(user: &str) -> Result<String, CommandError> {
    let stdin = io::stdin();
    let password = if stdin.is_terminal() {
        let first = prompt_hidden(&format!("password for {user}: "))?;
        let second = prompt_hidden("again: ")?;
        if first != second {
            return Err(CommandError::PasswordsDiffer);
        }
        first
    } else {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(CommandError::ReadPassword)?;
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    if password.is_empty() {
        return Err(CommandError::EmptyPassword);
    }
    Ok(password)
}

fn prompt_hidden(prompt: &str) -> Result<String, CommandError> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let stdin = io::stdin();
    let saved = tcgetattr(&stdin).map_err(CommandError::Terminal)?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet).map_err(CommandError::Terminal)?;
    eprint!("{prompt}");
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    eprintln!();
    read.map_err(CommandError::ReadPassword)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Replaces `path` with `text` so that a crash leaves the old or the new file,
/// never half of one; the result has mode 0600. Run as root, the file keeps
/// its owner (a new one gets the folder's), so that the service user can
/// still read it after `sudo rest-server ... user add`.
fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(text.as_bytes())?;
        if nix::unistd::geteuid().is_root() {
            use std::os::unix::fs::MetadataExt;
            let owner = fs::metadata(path).or_else(|_| fs::metadata(dir))?;
            std::os::unix::fs::chown(&temp, Some(owner.uid()), Some(owner.gid()))?;
        }
        file.sync_all()?;
        fs::rename(&temp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}
