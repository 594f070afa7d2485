//! What a start recovers. The queue's durable record is the data directory
//! itself, so at every start the mirror replays the delete journal and then
//! compares the local and the remote listings, queueing whatever the bucket
//! lacks: nothing a crash or power cut interrupted is lost. Snapshots and
//! deletes wait until the comparison has finished (see [`Queue::take`]).
//!
//! [`Queue::take`]: super::queue::Queue::take

use std::collections::HashSet;
use std::path::PathBuf;
use std::rc::Rc;

use super::queue::{Class, Item};
use super::worker::backoff;
use super::{COPIED, Mirror};
use crate::repo::{Key, KeyBuf, RepoPath};
use crate::store::{ErrorKind, Store, StoreError};

impl Mirror {
    /// Replays the delete journal, then compares listings until that works.
    /// With a lock, the renewal follows, for as long as the server runs
    /// (one task: a task type of its own costs 12 KiB of the binary).
    pub(super) async fn prepare(self: Rc<Self>, repos: Vec<String>, state_dir: PathBuf) {
        match self.journal.read().await {
            Ok(items) if !items.is_empty() && !self.settings.deletes => log::warn!(
                "mirror: {} delete(s) journalled earlier are not mirrored: deletes are off \
                 now (--mirror-deletes, never with --append-only); the journal is kept",
                items.len()
            ),
            Ok(items) => {
                if !items.is_empty() {
                    log::info!(
                        "mirror: {} delete(s) from the journal still to mirror",
                        items.len()
                    );
                }
                for item in items {
                    self.queue_class(item, Class::Delete);
                }
            }
            Err(e) => log::error!("mirror: cannot read the delete journal: {e}"),
        }
        let mut failures = 0;
        loop {
            match self.compare(&repos).await {
                Ok(queued) => {
                    log::info!(
                        "mirror: compared {} repositories with the bucket: {queued} file(s) to copy",
                        repos.len()
                    );
                    let mut state = self.state.borrow_mut();
                    state.queue.compared = true;
                    state.generation += 1;
                    self.say_if_current(&mut state);
                    drop(state);
                    // Snapshots and deletes waited for this: wake the
                    // workers, or they would wait for the next commit.
                    self.changed.notify_waiters();
                    self.status_changed.notify_one();
                    break;
                }
                Err(e) => {
                    failures += 1;
                    let wait = backoff(failures);
                    log::warn!(
                        "mirror: cannot compare with the bucket ({e}); trying again in {}s",
                        wait.as_secs()
                    );
                    {
                        // The status file says why soon, not at its next
                        // refresh.
                        let mut state = self.state.borrow_mut();
                        state.last_error = Some(e.to_string());
                        state.generation += 1;
                    }
                    self.status_changed.notify_one();
                    tokio::time::sleep(wait).await;
                }
            }
        }
        if let Some(lock) = self.settings.lock {
            self.renew_locks(state_dir, lock).await;
        }
    }

    /// Queues what the bucket lacks, repository by repository.
    async fn compare(&self, repos: &[String]) -> Result<u64, StoreError> {
        self.remote.prepare().await?;
        let mut queued = 0;
        for label in repos {
            let Some(repo) = RepoPath::from_label(label) else {
                continue;
            };
            if let Ok(size) = self.local.size(&repo, Key::Config).await
                && let Err(e) = self.remote.size(&repo, Key::Config).await
            {
                if e.kind != ErrorKind::NotFound {
                    return Err(e);
                }
                self.queue(Item {
                    repo: repo.clone(),
                    name: KeyBuf::Config,
                    size,
                    since: crate::time::unix_now(),
                });
                queued += 1;
            }
            for kind in COPIED {
                let local = self.local_files(&repo, kind).await?;
                if local.is_empty() {
                    continue;
                }
                let remote: HashSet<String> =
                    crate::store::collect(self.remote.list(&repo, kind).await?)
                        .await?
                        .into_iter()
                        .map(|(id, _)| id.as_str().to_string())
                        .collect();
                for (id, size) in local {
                    if !remote.contains(id.as_str()) {
                        self.queue(Item {
                            repo: repo.clone(),
                            name: KeyBuf::Object(kind, id),
                            size,
                            since: crate::time::unix_now(),
                        });
                        queued += 1;
                    }
                }
            }
        }
        Ok(queued)
    }
}
