//! The workers: each takes the next operation the queue allows, copies the
//! file to the bucket (read from disk, hashed on the compute pool, sent
//! paced with the same verified PUT as the S3 store uses, so a local file
//! that no longer matches its name is reported, not copied) or deletes it
//! there, and books the outcome. Failures retry with a backoff shared by all
//! workers, forever.

use std::pin::pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::pace::{Throttled, paced_piece};
use super::queue::{Class, Item};
use super::{Mirror, State};
use crate::repo::Key;
use crate::repo::range::Want;
use crate::store::either::AnyStore;
use crate::store::{ErrorKind, ObjectReader as _, Store};
use crate::upload::{Checks, ReaderBody, Received, Receiver, UploadError, upload_body};

/// Longest wait between two attempts while the store fails.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Longest pause while reading a local file for upload.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// What came of one attempt.
enum Outcome {
    Done,
    /// The bucket has it already (another server, or an earlier run).
    AlreadyThere,
    /// Gone from the data directory since it was queued: nothing to copy.
    Vanished,
    /// A delete of a file that is in the data directory again: not sent.
    Superseded,
    /// The local file does not match its name, or cannot be read: reported,
    /// not copied.
    Corrupt(&'static str),
    /// The bucket holds other content under the name: not replaced.
    Conflict,
    /// Try again after the backoff.
    Retry(String),
}

impl Mirror {
    /// Takes the next item, copies or deletes it, and books the outcome,
    /// for as long as the server runs.
    pub(super) async fn worker(self: Rc<Self>) {
        loop {
            let (item, class) = self.next().await;
            let outcome = match class {
                Class::Delete => self.delete(&item).await,
                _ => self.upload(&item).await,
            };
            self.finish(item, class, outcome);
        }
    }

    /// Waits for an item the rules let a worker take, and for the backoff.
    async fn next(&self) -> (Item, Class) {
        loop {
            let mut changed = pin!(self.changed.notified());
            changed.as_mut().enable();
            let paused = self.state.borrow().paused_until;
            if let Some(until) = paused
                && until > Instant::now()
            {
                tokio::time::sleep_until(until.into()).await;
                continue;
            }
            if let Some(next) = self.state.borrow_mut().queue.take() {
                return next;
            }
            changed.await;
        }
    }

    /// Copies `item`'s file to the bucket, paced, verified against its name.
    async fn upload(&self, item: &Item) -> Outcome {
        let key = item.name.key();
        let reader = match self.local.open(&item.repo, key, Want::All).await {
            Ok(reader) => reader,
            Err(crate::store::OpenError::Store(e)) if e.kind == ErrorKind::NotFound => {
                return Outcome::Vanished;
            }
            Err(e) => return Outcome::Retry(e.to_string()),
        };
        let size = reader.size();
        let body = Throttled::new(
            ReaderBody(reader),
            paced_piece(&self.settings).zip(self.bandwidth.clone()),
        );
        let receiver = Receiver {
            checks: Checks {
                max_bytes: None,
                expected: match key {
                    Key::Object(_, id) => Some(id.digest()),
                    Key::Config => None,
                },
            },
            quota: &self.unlimited,
            compute: &self.compute,
            buffers: &self.buffers,
            // A bandwidth pause is not a stalled disk.
            body_timeout: READ_TIMEOUT
                + self.settings.bandwidth.map_or(Duration::ZERO, |rate| {
                    Duration::from_secs_f64(
                        self.settings.uploads as f64 * (1u64 << 20) as f64 / rate as f64,
                    )
                }),
        };
        match receiver
            .receive(
                // As the server's store: the upload pipeline is compiled
                // once, for the store the server runs on.
                &AnyStore::S3(self.remote.clone()),
                &item.repo,
                key,
                Some(size),
                upload_body(body),
                Box::new(|_| Box::pin(async {})),
            )
            .await
        {
            Ok(Received::Stored(_)) => Outcome::Done,
            Ok(Received::Same) => Outcome::AlreadyThere,
            // The bucket holds other content under this name: never replaced.
            Err(UploadError::Taken) => Outcome::Conflict,
            Err(UploadError::Storage(e)) if e.kind == ErrorKind::AlreadyExists => {
                Outcome::AlreadyThere
            }
            Err(UploadError::HashMismatch) => Outcome::Corrupt("does not match its name"),
            // The local file could not be read: a disk problem, reported;
            // the next start's comparison queues it again, and so does a
            // new upload of it.
            Err(UploadError::BodyRead(_)) => Outcome::Corrupt("could not be read"),
            // A disk that stalls (an SD card's garbage collection) may
            // answer again: tried again after the backoff.
            Err(UploadError::BodyTimeout) => Outcome::Retry("the local disk stalled".to_string()),
            Err(e) => Outcome::Retry(e.to_string()),
        }
    }

    /// Deletes `item`'s file from the bucket, unless it is back locally.
    async fn delete(&self, item: &Item) -> Outcome {
        // A file uploaded again since it was deleted (restic's retry, or a
        // journal replayed after a restart) stays in the bucket. Checked
        // while the name is busy: a commit from now on queues an upload
        // that waits for this delete.
        match self.local.size(&item.repo, item.name.key()).await {
            Ok(_) => return Outcome::Superseded,
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => return Outcome::Retry(e.to_string()),
        }
        match self.remote.delete(&item.repo, item.name.key(), None).await {
            Ok(_) => Outcome::Done,
            Err(e) => Outcome::Retry(e.to_string()),
        }
    }

    /// Removes the delete journal once no delete waits (see
    /// [`Journal::clear_if`](super::journal::Journal::clear_if)).
    async fn clear_journal(self: Rc<Self>) {
        self.journal
            .clear_if(|| self.state.borrow().queue.deletes_idle())
            .await;
    }

    /// Books what came of an operation: retried after the backoff, done,
    /// or reported; queued once more if it was asked for again meanwhile.
    fn finish(self: &Rc<Self>, item: Item, class: Class, outcome: Outcome) {
        let mut state = self.state.borrow_mut();
        state.generation += 1;
        // Asked for again while this one ran: queued once more unless this
        // one did the job (the bucket holds the file, or it is deleted).
        let again = state.queue.end(class, &item)
            && !matches!(
                outcome,
                Outcome::Done | Outcome::AlreadyThere | Outcome::Retry(_)
            );
        match outcome {
            Outcome::Retry(reason) => {
                state.totals.failures += 1;
                state.failures_in_row += 1;
                let wait = backoff(state.failures_in_row);
                if state.failures_in_row == 1 || state.failures_in_row.is_multiple_of(10) {
                    state.said_current = false;
                    log::warn!(
                        "mirror: {} failed ({reason}); {} attempt(s) in a row, next in {}s",
                        item.id(),
                        state.failures_in_row,
                        wait.as_secs()
                    );
                }
                state.last_error = Some(reason);
                state.paused_until = Some(Instant::now() + wait);
                state.queue.retry(class, item);
            }
            outcome => {
                match outcome {
                    Outcome::Done if class == Class::Delete => state.totals.deleted_files += 1,
                    Outcome::Done => {
                        state.totals.uploaded_files += 1;
                        state.totals.uploaded_bytes += item.size;
                    }
                    Outcome::Corrupt(why) => {
                        state.totals.corrupt_files += 1;
                        state.queue.failed.insert(item.id());
                        log::error!(
                            "mirror: {} {why} on the local disk: not copied \
                             (run restic check --read-data)",
                            item.id()
                        );
                    }
                    Outcome::Conflict => {
                        state.totals.corrupt_files += 1;
                        state.queue.failed.insert(item.id());
                        log::error!(
                            "mirror: the bucket holds other content under {}: not replaced \
                             (is another repository at this prefix?)",
                            item.id()
                        );
                    }
                    _ => {}
                }
                if state.failures_in_row > 0 {
                    log::info!("mirror: the bucket works again");
                }
                state.failures_in_row = 0;
                state.paused_until = None;
                state.last_error = None;
                state.queue.done(class, &item);
                if again {
                    drop(state);
                    self.queue_class(
                        Item {
                            since: crate::time::unix_now(),
                            ..item
                        },
                        class,
                    );
                    state = self.state.borrow_mut();
                }
                if state.queue.current() {
                    self.say_if_current(&mut state);
                    // Without deletes on, a journal from before is kept.
                    if self.settings.deletes {
                        tokio::task::spawn_local(self.clone().clear_journal());
                    }
                }
            }
        }
        drop(state);
        self.changed.notify_waiters();
        self.status_changed.notify_one();
    }

    /// Logs that the mirror is current, once per change of state: after the
    /// start, or once the log has said it was behind or failing.
    pub(super) fn say_if_current(&self, state: &mut State) {
        if state.queue.current() && !state.said_current {
            state.said_current = true;
            log::info!(
                "mirror is current: {} file(s), {} bytes copied since start",
                state.totals.uploaded_files,
                state.totals.uploaded_bytes
            );
        }
    }
}

/// The wait after `failures` failed attempts in a row.
pub(super) fn backoff(failures: u32) -> Duration {
    let secs = 1u64 << failures.saturating_sub(1).min(6);
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }
}
