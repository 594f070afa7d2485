//! Pacing bulk work to a byte rate: the mirror's uploads and the scrub's reads.

use std::time::Duration;

// tokio's clock: tests with paused time see the waits they slept.
use tokio::time::Instant;

/// A shared byte budget per second: a chunk takes its bytes at once (the
/// budget may go negative) and the next chunk waits until it is paid back.
pub(crate) struct TokenBucket {
    rate: u64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    pub(crate) fn new(rate: u64) -> TokenBucket {
        TokenBucket {
            rate: rate.max(1),
            tokens: rate as f64,
            at: Instant::now(),
        }
    }

    /// Takes `n` bytes; returns how long to wait before the next chunk.
    pub(crate) fn take(&mut self, n: usize) -> Duration {
        let now = Instant::now();
        let rate = self.rate as f64;
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * rate).min(rate);
        self.at = now;
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / rate)
        }
    }
}
