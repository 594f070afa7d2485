//! What the scrub remembers across restarts and power cuts, in
//! `<data>/.scrub/state` (a dot name: never served): the pass in progress
//! and where it got to, the last finished pass, and every damaged object
//! found and not yet repaired or deleted.
//!
//! A small text file, replaced whole (temp file, fsync, rename, fsync of the
//! folder), so a power cut leaves the old state or the new one. A file that
//! cannot be read is ignored with a warning: the scrub starts a new pass,
//! which costs time, never data. The server and `rest-server scrub` share
//! the file: each change is read, applied and written under the lock
//! ([`Lock`]), which also keeps two scrubs from running at once.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::repo::ObjectType;

/// The scrub's folder in the data directory.
pub(crate) const DIR: &str = ".scrub";
const FILE: &str = "state";
const LOCK_FILE: &str = "lock";
const HEADER: &str = "rest-server scrub state 1";

/// An object, by repository label (`alice/laptop`, empty for the root
/// repository), type and id (hex).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Place {
    pub(crate) repo: String,
    /// Index into [`ORDER`]: the order a pass takes the types in.
    pub(crate) kind: usize,
    pub(crate) id: String,
}

/// The types a pass verifies, in its order. Locks are short-lived; the
/// config is not named by its hash.
pub(crate) const ORDER: [ObjectType; 4] = [
    ObjectType::Data,
    ObjectType::Index,
    ObjectType::Snapshots,
    ObjectType::Keys,
];

impl Place {
    pub(crate) fn kind(&self) -> ObjectType {
        ORDER[self.kind]
    }

    fn parse(fields: &[&str]) -> Option<Place> {
        let [repo, kind, id] = fields else {
            return None;
        };
        let kind = ObjectType::from_segment(kind)?;
        Some(Place {
            repo: repo.to_string(),
            kind: ORDER.iter().position(|k| *k == kind)?,
            id: crate::repo::ObjectId::parse(id)?.as_str().to_string(),
        })
    }

    fn fields(&self) -> String {
        format!("{}\t{}\t{}", self.repo, self.kind().dir_name(), self.id)
    }
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "/{}", self.repo)?;
        if !self.repo.is_empty() {
            f.write_str("/")?;
        }
        write!(f, "{}/{}", self.kind().dir_name(), self.id)
    }
}

/// The counts of a pass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) objects: u64,
    pub(crate) bytes: u64,
    pub(crate) damaged: u64,
}

/// The background pass in progress.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Pass {
    /// Unix seconds.
    pub(crate) started: u64,
    /// Bytes stored when it started: the measure of its progress.
    pub(crate) total_bytes: u64,
    pub(crate) counts: Counts,
    /// The last object verified; the pass goes on after it.
    pub(crate) at: Option<Place>,
}

/// A finished pass, by the server or by `rest-server scrub`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Finished {
    pub(crate) started: u64,
    pub(crate) finished: u64,
    pub(crate) counts: Counts,
}

/// A damaged object, remembered until it verifies again or is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Damage {
    pub(crate) place: Place,
    /// Unix seconds when it was first found.
    pub(crate) found: u64,
    pub(crate) what: String,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct State {
    pub(crate) pass: Option<Pass>,
    pub(crate) last: Option<Finished>,
    pub(crate) damaged: Vec<Damage>,
}

impl State {
    /// Remembers a damaged object (once).
    pub(crate) fn add_damage(&mut self, damage: Damage) {
        match self.damaged.iter_mut().find(|d| d.place == damage.place) {
            Some(known) => known.what = damage.what,
            None => self.damaged.push(damage),
        }
    }

    /// Forgets an object: it verified, or it is gone.
    pub(crate) fn clear_damage(&mut self, place: &Place) {
        self.damaged.retain(|d| d.place != *place);
    }

    fn render(&self) -> String {
        let mut out = format!("{HEADER}\n");
        if let Some(pass) = &self.pass {
            let c = pass.counts;
            let _ = writeln!(
                out,
                "pass\t{}\t{}\t{}\t{}\t{}",
                pass.started, pass.total_bytes, c.objects, c.bytes, c.damaged
            );
            if let Some(at) = &pass.at {
                let _ = writeln!(out, "at\t{}", at.fields());
            }
        }
        if let Some(last) = &self.last {
            let c = last.counts;
            let _ = writeln!(
                out,
                "last\t{}\t{}\t{}\t{}\t{}",
                last.started, last.finished, c.objects, c.bytes, c.damaged
            );
        }
        for d in &self.damaged {
            let _ = writeln!(
                out,
                "damaged\t{}\t{}\t{}",
                d.place.fields(),
                d.found,
                d.what
            );
        }
        out
    }

    /// Parses the file; None if it is not one we wrote.
    fn parse(text: &str) -> Option<State> {
        let mut lines = text.lines();
        if lines.next()? != HEADER {
            return None;
        }
        let mut state = State::default();
        for line in lines {
            let fields: Vec<&str> = line.split('\t').collect();
            let num = |i: usize| fields.get(i)?.parse::<u64>().ok();
            match fields[0] {
                "pass" => {
                    state.pass = Some(Pass {
                        started: num(1)?,
                        total_bytes: num(2)?,
                        counts: Counts {
                            objects: num(3)?,
                            bytes: num(4)?,
                            damaged: num(5)?,
                        },
                        at: None,
                    })
                }
                "at" => state.pass.as_mut()?.at = Some(Place::parse(&fields[1..])?),
                "last" => {
                    state.last = Some(Finished {
                        started: num(1)?,
                        finished: num(2)?,
                        counts: Counts {
                            objects: num(3)?,
                            bytes: num(4)?,
                            damaged: num(5)?,
                        },
                    })
                }
                "damaged" if fields.len() == 6 => state.damaged.push(Damage {
                    place: Place::parse(&fields[1..4])?,
                    found: num(4)?,
                    what: fields[5].to_string(),
                }),
                _ => return None,
            }
        }
        Some(state)
    }
}

/// The scrub's files of one data directory.
#[derive(Debug, Clone)]
pub(crate) struct Files {
    dir: PathBuf,
}

impl Files {
    pub(crate) fn new(data_dir: &Path) -> Files {
        Files {
            dir: data_dir.join(DIR),
        }
    }

    pub(crate) fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// The state; empty when there is none, or none we can read (warned).
    pub(crate) fn load(&self) -> State {
        let path = self.path();
        match fs::read_to_string(&path) {
            Ok(text) => State::parse(&text).unwrap_or_else(|| {
                log::warn!(
                    "scrub: {} is not a state file this server can read; ignored (a new pass starts)",
                    path.display()
                );
                State::default()
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => State::default(),
            Err(e) => {
                log::warn!("scrub: cannot read {}: {e}; ignored", path.display());
                State::default()
            }
        }
    }

    /// Replaces the state file: the old one or the new one survives a power
    /// cut, never half of either.
    pub(crate) fn save(&self, state: &State) -> io::Result<()> {
        self.ensure_dir()?;
        let temp = self.dir.join(".state.tmp");
        let mut file = File::create(&temp)?;
        file.write_all(state.render().as_bytes())?;
        file.sync_data()?;
        fs::rename(&temp, self.path())?;
        File::open(&self.dir)?.sync_all()
    }

    /// Reads the state, applies `change` and writes it back, under the lock
    /// the caller holds.
    pub(crate) fn update(&self, lock: &Lock, change: impl FnOnce(&mut State)) -> io::Result<State> {
        self.update_if(lock, true, change)
    }

    /// [`Files::update`] when `changed`; else only reads the state.
    pub(crate) fn update_if(
        &self,
        _lock: &Lock,
        changed: bool,
        change: impl FnOnce(&mut State),
    ) -> io::Result<State> {
        let mut state = self.load();
        if changed {
            change(&mut state);
            self.save(&state)?;
        }
        Ok(state)
    }

    /// The state for `rest-server scrub --status`: a file that cannot be
    /// read or parsed is an error there, not an empty state.
    pub(crate) fn read(&self) -> Result<State, String> {
        let path = self.path();
        match fs::read_to_string(&path) {
            Ok(text) => State::parse(&text).ok_or_else(|| {
                format!(
                    "{} is not a state file this version can read",
                    path.display()
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Takes the scrub lock of the data directory, waiting for it when
    /// `wait`; None when another scrub holds it and `wait` is false.
    pub(crate) fn lock(&self, wait: bool) -> io::Result<Option<Lock>> {
        self.ensure_dir()?;
        // flock needs no write access: a lock file another user made (root,
        // running the command) still locks.
        let path = self.dir.join(LOCK_FILE);
        let file = match File::open(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?,
            other => other?,
        };
        let how = if wait {
            FlockArg::LockExclusive
        } else {
            FlockArg::LockExclusiveNonblock
        };
        match Flock::lock(file, how) {
            Ok(lock) => Ok(Some(Lock(lock))),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) if !wait => Ok(None),
            Err((_, errno)) => Err(errno.into()),
        }
    }

    /// Makes the scrub's folder in the data directory, which must exist (a
    /// mistyped `--path` is an error, not a new empty data directory).
    fn ensure_dir(&self) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt as _;
        match fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            other => other,
        }
    }
}

/// One scrub at a time per data directory; released on drop.
pub(crate) struct Lock(#[allow(dead_code)] Flock<File>);

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn place(repo: &str, kind: usize) -> Place {
        Place {
            repo: repo.to_string(),
            kind,
            id: ID.to_string(),
        }
    }

    #[test]
    fn the_state_round_trips() {
        let state = State {
            pass: Some(Pass {
                started: 10,
                total_bytes: 1000,
                counts: Counts {
                    objects: 3,
                    bytes: 300,
                    damaged: 1,
                },
                at: Some(place("", 1)),
            }),
            last: Some(Finished {
                started: 1,
                finished: 5,
                counts: Counts {
                    objects: 7,
                    bytes: 700,
                    damaged: 0,
                },
            }),
            damaged: vec![Damage {
                place: place("alice/laptop", 0),
                found: 9,
                what: "does not match its name".into(),
            }],
        };
        assert_eq!(State::parse(&state.render()), Some(state.clone()));
        assert_eq!(
            State::parse(&State::default().render()),
            Some(State::default())
        );
        assert_eq!(
            place("alice/laptop", 0).to_string(),
            format!("/alice/laptop/data/{ID}")
        );
        assert_eq!(place("", 3).to_string(), format!("/keys/{ID}"));
    }

    #[test]
    fn a_broken_file_is_not_a_state() {
        for text in [
            "",
            "something else\n",
            &format!("{HEADER}\npass\t1\t2\n"),
            &format!("{HEADER}\nat\t\tdata\t{ID}\n"),
            &format!("{HEADER}\npass\t1\t2\t3\t4\t5\nat\t\tlocks\t{ID}\n"),
            &format!("{HEADER}\ndamaged\t\tdata\tnothex\t1\tx\n"),
            &format!("{HEADER}\nbogus\n"),
        ] {
            assert_eq!(State::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn damage_is_remembered_once_and_forgotten() {
        let mut state = State::default();
        let damage = |what: &str| Damage {
            place: place("r", 0),
            found: 1,
            what: what.into(),
        };
        state.add_damage(damage("a"));
        state.add_damage(damage("b"));
        assert_eq!(state.damaged, vec![damage("b")]);
        state.clear_damage(&place("r", 0));
        assert!(state.damaged.is_empty());
    }

    #[test]
    fn saved_and_loaded_under_the_lock() {
        let dir = crate::testing::TempDir::new("scrub-state");
        let files = Files::new(dir.path());
        assert_eq!(files.load(), State::default());
        let lock = files.lock(false).unwrap().expect("the lock is free");
        assert!(files.lock(false).unwrap().is_none(), "held");
        let saved = files
            .update(&lock, |s| {
                s.add_damage(Damage {
                    place: place("", 0),
                    found: 2,
                    what: "could not be read".into(),
                })
            })
            .unwrap();
        assert_eq!(files.load(), saved);
        drop(lock);
        assert!(files.lock(false).unwrap().is_some(), "released");
        fs::write(files.path(), "garbage").unwrap();
        assert_eq!(files.load(), State::default());
    }
}
