//! `rest-server scrub`: one pass now, in the foreground, with a progress
//! line; it waits for the running server's scrub to pause, and optionally
//! heals each damaged object from the mirror as it finds it.

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::runtime::pool::ComputePool;
use crate::store::Store;

use super::ScrubError;
use super::error::OpState as _;
use super::pace::Pace;
use super::repair;
use super::state::{Counts, Damage, Files, Finished, State};
use super::verify::{Verdict, count, verify};
use super::walk::Walk;

/// `rest-server scrub`: one pass now, over every repository or `only`
/// one, at most `rate` bytes per second (0: no limit). Prints each damaged
/// object on stdout as it is found, and a progress line on stderr when that
/// is a terminal. With `files` (a data directory), it records what it found
/// and, for a whole pass, its result; it waits for the lock first, which
/// the server's scrub gives up after its current slice. With
/// `require_repos`, a store with no repository at all is an error, not a
/// clean pass (a bucket location with a mistyped prefix).
pub(crate) async fn once<S: Store>(
    store: &S,
    files: Option<Files>,
    compute: ComputePool,
    rate: u64,
    only: Option<&str>,
    healer: Option<&repair::Healer>,
    require_repos: bool,
) -> Result<Outcome, ScrubError> {
    let lock = match &files {
        None => None,
        Some(files) => {
            let try_files = files.clone();
            match crate::store::blocking(move || try_files.lock(false).op_state()).await? {
                Some(lock) => Some(lock),
                None => {
                    eprintln!("waiting for the running server's scrub to pause...");
                    let files = files.clone();
                    crate::store::blocking(move || files.lock(true).op_state()).await?
                }
            }
        }
    };
    let repos = store.repos().await?;
    if require_repos && repos.is_empty() {
        return Err(ScrubError::NoRepos);
    }
    let labels: Vec<String> = match only {
        None => repos.keys().cloned().collect(),
        Some(repo) => {
            let label = repo.trim_matches('/').to_string();
            if !repos.contains_key(&label) {
                return Err(ScrubError::NoSuchRepo(repo.to_string()));
            }
            vec![label]
        }
    };
    let total: u64 = labels.iter().map(|l| repos[l].bytes).sum();
    let known = match &files {
        Some(files) => {
            let files = files.clone();
            crate::store::blocking(move || Ok(files.load())).await?
        }
        None => State::default(),
    };
    let started = (crate::time::unix_now(), Instant::now());
    let mut progress = Progress::new(total);
    let mut pace = Pace::new(rate, Rc::new(|| false));
    let mut walk = Walk::<S>::new(labels.clone(), None);
    let (mut counts, mut found, mut forget) = (Counts::default(), Vec::new(), Vec::new());
    let mut repaired = 0;
    while let Some((repo, place)) = walk.next(store).await? {
        let verdict = verify(store, &compute, &repo, &place, &mut pace, &|_| {}).await?;
        count(&mut counts, &verdict);
        match verdict {
            Verdict::Gone => {}
            Verdict::Intact(_) => {
                if known.damaged.iter().any(|d| d.place == place) {
                    progress.say(&format!("intact again: {place}"));
                    forget.push(place);
                }
            }
            Verdict::Damaged(_, what) => {
                progress.say(&format!("DAMAGED {place}: {what}"));
                if let Some(healer) = healer {
                    let healed = healer.heal(&repo, &place).await;
                    progress.say(&healed.describe(&place));
                    if healed.settled() {
                        repaired += u64::from(healed == repair::Healed::Replaced);
                        forget.push(place);
                        continue;
                    }
                }
                found.push(Damage {
                    place,
                    found: crate::time::unix_now(),
                    what,
                });
            }
        }
        progress.show(&counts);
    }
    progress.done();
    let seconds = started.1.elapsed().as_secs_f64();
    println!(
        "{} objects, {} bytes verified in {seconds:.1} s ({:.1} MB/s): {} damaged{}",
        counts.objects,
        counts.bytes,
        counts.bytes as f64 / seconds.max(0.001) / 1e6,
        counts.damaged,
        match healer {
            Some(_) => format!(", {repaired} repaired"),
            None => String::new(),
        }
    );
    let outcome = Outcome {
        counts,
        still_damaged: found.len() as u64,
    };
    if let (Some(files), Some(lock)) = (files, lock) {
        // Known damage in what was scrubbed, and since deleted, is forgotten.
        for damage in &known.damaged {
            let scrubbed = labels.contains(&damage.place.repo);
            let seen = found.iter().any(|d| d.place == damage.place);
            if scrubbed && !seen && !forget.contains(&damage.place) {
                forget.push(damage.place.clone());
            }
        }
        let whole = only.is_none();
        let end = Finished {
            started: started.0,
            finished: crate::time::unix_now(),
            counts,
        };
        crate::store::blocking(move || {
            files
                .update(&lock, |state| {
                    found.into_iter().for_each(|d| state.add_damage(d));
                    forget.iter().for_each(|p| state.clear_damage(p));
                    if whole {
                        state.last = Some(end);
                    }
                })
                .op_state()
        })
        .await?;
    }
    Ok(outcome)
}

/// What `rest-server scrub` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) counts: Counts,
    /// Damaged and not repaired.
    pub(crate) still_damaged: u64,
}

/// The command's progress line, on stderr when that is a terminal.
struct Progress {
    total: u64,
    terminal: bool,
    shown: Option<Instant>,
}

impl Progress {
    fn new(total: u64) -> Progress {
        use std::io::IsTerminal as _;
        Progress {
            total,
            terminal: std::io::stderr().is_terminal(),
            shown: None,
        }
    }

    fn show(&mut self, counts: &Counts) {
        let due = self
            .shown
            .is_none_or(|at| at.elapsed() >= Duration::from_millis(500));
        if self.terminal && due {
            eprint!(
                "\r{} objects, {} of {} MB ({:.0}%)   ",
                counts.objects,
                counts.bytes / 1_000_000,
                self.total / 1_000_000,
                counts.bytes as f64 * 100.0 / self.total.max(1) as f64
            );
            self.shown = Some(Instant::now());
        }
    }

    /// A line on stdout, with the progress line out of its way.
    fn say(&mut self, line: &str) {
        self.done();
        println!("{line}");
    }

    fn done(&mut self) {
        if self.terminal && self.shown.take().is_some() {
            eprint!("\r\x1b[K");
        }
    }
}
