//! Threads of our own beside tokio's one: the compute and writer pools, the
//! file-I/O pool, nice levels, pacing, and the files reloaded on SIGHUP.

pub(crate) mod io_pool;
pub(crate) mod pool;
pub(crate) mod priority;
pub(crate) mod rate;
pub(crate) mod reload;

use std::future::Future;
use std::io;

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
