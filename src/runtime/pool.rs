//! Pools of our own threads, apart from tokio's file I/O pool
//! ([`crate::runtime::io_pool`]) and at a lower CPU priority ([`crate::runtime::priority`]), so
//! that bulk work cannot starve small requests:
//!
//! - the compute pool: the SHA-256 of uploads and bcrypt checks;
//! - the upload writers: the writes and final fsync of uploads
//!   (see [`crate::store::fs`]).
//!
//! Before these pools, each verified upload held one I/O thread hashing and
//! one writing, so four large uploads occupied the whole I/O pool and a small
//! GET waited behind them (docs/benchmarks.md, "Latency under load"). A job waits in its pool's
//! queue, and a busy pool takes the next job without going to sleep.
//!
//! Jobs travel as a concrete enum through one queue: hashing, the per-chunk
//! path, allocates nothing but its one-shot reply.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use ring::digest;
use tokio::sync::oneshot;

use crate::runtime::priority::BULK_NICE_INCREMENT;

/// Most compute threads started, whatever the machine has: uploads beyond
/// this many at once share them.
pub(crate) const MAX_COMPUTE_THREADS: usize = 4;

/// Work a pool's threads do: a concrete type per pool, so that queueing a job
/// allocates nothing beyond what the job carries.
pub(crate) trait Job: Send + 'static {
    fn run(self);
}

/// A handle to a pool; clones share it. The threads end when the last handle
/// is dropped.
pub(crate) struct Pool<J> {
    shared: Arc<Shared<J>>,
}

/// The queue a pool's threads take jobs from. Idle threads wait on one
/// condition variable, so a job wakes one thread once (a receiver behind a
/// mutex, as before, woke a second thread for the mutex with every job).
struct Shared<J> {
    state: Mutex<State<J>>,
    job_ready: Condvar,
}

struct State<J> {
    jobs: VecDeque<J>,
    /// Threads waiting for a job.
    idle: usize,
    /// Threads running; none left only when jobs panicked.
    alive: usize,
    handles: usize,
}

impl<J> Clone for Pool<J> {
    fn clone(&self) -> Pool<J> {
        self.shared.state().handles += 1;
        Pool {
            shared: self.shared.clone(),
        }
    }
}

impl<J> Drop for Pool<J> {
    fn drop(&mut self) {
        let mut state = self.shared.state();
        state.handles -= 1;
        if state.handles == 0 {
            self.shared.job_ready.notify_all();
        }
    }
}

/// A pool's threads are gone (they only end when every handle is dropped, or
/// when a job panicked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolGone;

impl std::fmt::Display for PoolGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a worker thread pool is gone")
    }
}

impl std::error::Error for PoolGone {}

impl<J: Job> Pool<J> {
    /// Starts `threads` threads (at least one) named `name-N`.
    pub(crate) fn start(name: &str, threads: usize) -> std::io::Result<Pool<J>> {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                idle: 0,
                alive: 0,
                handles: 1,
            }),
            job_ready: Condvar::new(),
        });
        for n in 0..threads {
            let worker = Worker::new(&shared);
            let name = format!("{name}-{n}");
            let spawned = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || {
                    // Bulk work yields the cores to small requests.
                    if let Err(e) = crate::runtime::priority::lower_this_thread(BULK_NICE_INCREMENT)
                    {
                        log::warn!("thread {name}: could not lower its priority: {e}");
                    }
                    worker.run()
                });
            if let Err(e) = spawned {
                // The threads already started end (the failed one's worker
                // was dropped with its closure).
                shared.state().handles = 0;
                shared.job_ready.notify_all();
                return Err(e);
            }
        }
        Ok(Pool { shared })
    }

    /// Queues `job`; a busy thread takes it next, an idle one wakes for it.
    /// The wake-up comes after the lock is let go: else the woken thread
    /// would find it held and sleep again until the unlock woke it.
    pub(crate) fn send(&self, job: J) -> Result<(), PoolGone> {
        let mut state = self.shared.state();
        if state.alive == 0 {
            return Err(PoolGone);
        }
        state.jobs.push_back(job);
        let wake = state.idle > 0;
        drop(state);
        if wake {
            self.shared.job_ready.notify_one();
        }
        Ok(())
    }
}

/// One of a pool's threads.
struct Worker<J>(Arc<Shared<J>>);

impl<J> Worker<J> {
    /// Counts a thread as running until the worker is dropped.
    fn new(shared: &Arc<Shared<J>>) -> Worker<J> {
        shared.state().alive += 1;
        Worker(shared.clone())
    }
}

impl<J: Job> Worker<J> {
    fn run(&self) {
        while let Some(job) = self.next() {
            job.run();
        }
    }

    /// The next job; None once every handle is dropped.
    fn next(&self) -> Option<J> {
        let mut state = self.0.state();
        loop {
            if let Some(job) = state.jobs.pop_front() {
                return Some(job);
            }
            if state.handles == 0 {
                return None;
            }
            state.idle += 1;
            state = self
                .0
                .job_ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.idle -= 1;
        }
    }
}

/// Also when a job panics (in tests: release builds abort on a panic): the
/// last thread to go drops the jobs left, so that their callers hear that the
/// pool is gone rather than wait forever.
impl<J> Drop for Worker<J> {
    fn drop(&mut self) {
        let left = {
            let mut state = self.0.state();
            state.alive -= 1;
            if state.alive > 0 {
                return;
            }
            std::mem::take(&mut state.jobs)
        };
        drop(left);
    }
}

impl<J> Shared<J> {
    /// The queue's state. No code panics while holding the lock (jobs run
    /// and are dropped outside it), so a poisoned lock still holds a
    /// consistent state.
    fn state(&self) -> MutexGuard<'_, State<J>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The compute pool's work.
// The hash job is the common one: boxing its context would allocate per chunk.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Compute {
    /// Feeds one chunk of an upload to its SHA-256 context.
    Hash {
        context: digest::Context,
        chunk: Bytes,
        done: oneshot::Sender<digest::Context>,
    },
    /// Anything else: a bcrypt check, rare and slow next to the cost of a box.
    Run(Box<dyn FnOnce() + Send>),
}

impl Job for Compute {
    fn run(self) {
        match self {
            Compute::Hash {
                mut context,
                chunk,
                done,
            } => {
                context.update(&chunk);
                // Before the reply: the caller reuses the buffer once it has it.
                drop(chunk);
                let _ = done.send(context);
            }
            Compute::Run(work) => work(),
        }
    }
}

/// The compute pool: SHA-256 of uploads and bcrypt.
pub(crate) type ComputePool = Pool<Compute>;

impl Pool<Compute> {
    /// One thread per core, at most [`MAX_COMPUTE_THREADS`].
    pub(crate) fn compute() -> std::io::Result<ComputePool> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Pool::start("compute", cores.clamp(1, MAX_COMPUTE_THREADS))
    }

    /// Hashes `chunk` into `context` on the pool; the reply brings the
    /// context back.
    fn hash(
        &self,
        context: digest::Context,
        chunk: Bytes,
    ) -> Result<oneshot::Receiver<digest::Context>, PoolGone> {
        let (done, reply) = oneshot::channel();
        self.send(Compute::Hash {
            context,
            chunk,
            done,
        })?;
        Ok(reply)
    }

    /// Runs `work` on the pool and waits for its result.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PoolGone> {
        let (done, reply) = oneshot::channel();
        self.send(Compute::Run(Box::new(move || {
            let _ = done.send(work());
        })))?;
        reply.await.map_err(|_| PoolGone)
    }
}

/// The SHA-256 of an upload, computed on the pool one chunk at a time while
/// the chunks are written; a chunk is handed over once the previous one is
/// hashed, so the order holds.
pub(crate) struct Sha256 {
    pool: ComputePool,
    /// None while a chunk is being hashed.
    context: Option<digest::Context>,
    in_flight: Option<oneshot::Receiver<digest::Context>>,
}

impl Sha256 {
    pub(crate) fn new(pool: ComputePool) -> Sha256 {
        Sha256 {
            pool,
            context: Some(digest::Context::new(&digest::SHA256)),
            in_flight: None,
        }
    }

    async fn settle(&mut self) -> Result<digest::Context, PoolGone> {
        match (self.context.take(), self.in_flight.take()) {
            (Some(context), _) => Ok(context),
            (None, Some(reply)) => reply.await.map_err(|_| PoolGone),
            (None, None) => Err(PoolGone),
        }
    }

    /// Hands over the next chunk (after the previous one is done).
    pub(crate) async fn push(&mut self, chunk: Bytes) -> Result<(), PoolGone> {
        let context = self.settle().await?;
        self.in_flight = Some(self.pool.hash(context, chunk)?);
        Ok(())
    }

    /// Returns once the chunk pushed last is hashed (and no longer held).
    pub(crate) async fn settled(&mut self) -> Result<(), PoolGone> {
        let context = self.settle().await?;
        self.context = Some(context);
        Ok(())
    }

    /// The digest of everything pushed.
    pub(crate) async fn finish(mut self) -> Result<[u8; 32], PoolGone> {
        let context = self.settle().await?;
        let mut out = [0u8; 32];
        out.copy_from_slice(context.finish().as_ref());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn hashes_chunks_in_order() {
        let pool = ComputePool::start("test", 2).unwrap();
        let mut sha = Sha256::new(pool.clone());
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        for chunk in data.chunks(997) {
            sha.push(Bytes::copy_from_slice(chunk)).await.unwrap();
        }
        let expected = digest::digest(&digest::SHA256, &data);
        assert_eq!(sha.finish().await.unwrap().as_slice(), expected.as_ref());
        assert_eq!(pool.run(|| 6 * 7).await, Ok(42));
    }

    #[test]
    fn queued_jobs_run_after_the_last_handle_is_dropped() {
        let pool = ComputePool::start("test", 1).unwrap();
        let (done, ran) = std::sync::mpsc::channel();
        for i in 0..10 {
            let done = done.clone();
            let job = Compute::Run(Box::new(move || done.send(i).unwrap()));
            pool.send(job).unwrap();
        }
        drop(pool);
        let wait = std::time::Duration::from_secs(10);
        let order: Vec<i32> = (0..10).map(|_| ran.recv_timeout(wait).unwrap()).collect();
        assert_eq!(order, (0..10).collect::<Vec<_>>());
    }

    /// A job that panics ends its thread; with no thread left, callers hear
    /// that the pool is gone, also those whose jobs were already queued.
    #[tokio::test(flavor = "current_thread")]
    async fn a_pool_without_threads_is_gone() {
        let pool = ComputePool::start("test", 1).unwrap();
        let limit = std::time::Duration::from_secs(10);
        let (go, gate) = std::sync::mpsc::channel::<()>();
        let panicking = pool.run(move || -> u32 {
            let _ = gate.recv();
            panic!("a job panics (on purpose)")
        });
        let queued = pool.run(|| 1);
        // Once both are queued (join polls in order), the first may panic.
        let open = async {
            tokio::task::yield_now().await;
            go.send(()).unwrap();
        };
        let all = async { tokio::join!(panicking, queued, open) };
        let (panicking, queued, ()) = tokio::time::timeout(limit, all).await.unwrap();
        assert_eq!((panicking, queued), (Err(PoolGone), Err(PoolGone)));
        let next = tokio::time::timeout(limit, pool.run(|| 1)).await;
        assert_eq!(next, Ok(Err(PoolGone)));
    }
}
