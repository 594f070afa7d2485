//! Pools of our own threads, apart from tokio's file I/O pool
//! ([`crate::io_pool`]), so that bulk work cannot starve small requests:
//!
//! - the compute pool: the SHA-256 of uploads and bcrypt checks;
//! - the upload writers: the writes and final fsync of uploads
//!   (see [`crate::store::fs`]).
//!
//! Before these pools, each verified upload held one I/O thread hashing and
//! one writing, so four large uploads occupied the whole I/O pool and a small
//! GET waited behind them (README, "Benchmark"). A job waits in its pool's
//! queue, and a busy pool takes the next job without going to sleep.
//!
//! Jobs travel as a concrete enum over one channel: hashing, the per-chunk
//! path, allocates nothing but its one-shot reply.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ring::digest;
use tokio::sync::oneshot;

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
    jobs: mpsc::Sender<J>,
}

impl<J> Clone for Pool<J> {
    fn clone(&self) -> Pool<J> {
        Pool {
            jobs: self.jobs.clone(),
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
        let (jobs, queue) = mpsc::channel::<J>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{n}"))
                .spawn(move || worker(&queue))?;
        }
        Ok(Pool { jobs })
    }

    /// Queues `job`; a busy thread takes it next, an idle one wakes for it.
    pub(crate) fn send(&self, job: J) -> Result<(), PoolGone> {
        self.jobs.send(job).map_err(|_| PoolGone)
    }
}

fn worker<J: Job>(queue: &Mutex<mpsc::Receiver<J>>) {
    loop {
        // The lock is held only while waiting for the next job.
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job.run(),
            Err(_) => return,
        }
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
}
