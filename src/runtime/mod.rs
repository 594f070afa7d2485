//! Threads of our own beside tokio's one: the compute and writer pools, the
//! file-I/O pool, nice levels, pacing, and the files reloaded on SIGHUP.

pub(crate) mod io_pool;
pub(crate) mod pool;
pub(crate) mod priority;
pub(crate) mod rate;
pub(crate) mod reload;

use std::future::Future;
use std::io;
use std::pin::Pin;

/// Runs `work` to its end on tokio's one-threaded runtime, in a `LocalSet`
/// (our tasks hold `Rc`s): the server and each subcommand that needs tokio
/// start here. `max_blocking` caps tokio's blocking pool, our file-I/O pool
/// ([`io_pool`]); None keeps tokio's default.
pub(crate) fn block_on<F: Future>(max_blocking: Option<usize>, work: F) -> io::Result<F::Output> {
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_all();
    if let Some(threads) = max_blocking {
        builder.max_blocking_threads(threads);
    }
    let runtime = builder.build()?;
    Ok(tokio::task::LocalSet::new().block_on(&runtime, work))
}

/// [`block_on`] for a subcommand's work, boxed: the runtime's setup, its
/// `LocalSet` and its teardown are compiled once for all the callers, not
/// once per future type (3-4 KiB of the aarch64 binary each).
pub(crate) fn block_on_boxed<T>(work: impl Future<Output = T>) -> io::Result<T> {
    let mut out = None;
    run_boxed(Box::pin(async {
        out = Some(work.await);
    }))?;
    Ok(out.expect("block_on runs the work to its end"))
}

fn run_boxed(work: Pin<Box<dyn Future<Output = ()> + '_>>) -> io::Result<()> {
    block_on(None, work)
}
