//! [`Pace`]: the scrub's reads kept to `--scrub-rate`, and to a tenth of it
//! while clients are being served.

use std::rc::Rc;

use crate::runtime::rate::TokenBucket;

/// While clients are being served, the scrub reads at this fraction of its
/// rate.
const BUSY_SHARE: usize = 10;

/// Keeps reads to a byte rate; a tenth of it while `busy` says clients are
/// being served.
pub(super) struct Pace {
    bucket: Option<TokenBucket>,
    busy: Rc<dyn Fn() -> bool>,
}

impl Pace {
    /// `rate` in bytes per second; 0 for no limit.
    pub(super) fn new(rate: u64, busy: Rc<dyn Fn() -> bool>) -> Pace {
        Pace {
            bucket: (rate > 0).then(|| TokenBucket::new(rate)),
            busy,
        }
    }

    pub(super) async fn take(&mut self, bytes: usize) {
        let share = if (self.busy)() { BUSY_SHARE } else { 1 };
        if let Some(bucket) = &mut self.bucket {
            let wait = bucket.take(bytes * share);
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn the_pace_keeps_to_its_rate_and_to_a_tenth_while_clients_are_served() {
        let busy = Rc::new(Cell::new(false));
        let serving = busy.clone();
        let mut pace = Pace::new(1000, Rc::new(move || serving.get()));
        let start = tokio::time::Instant::now();
        // A second's worth at once, then 1000 bytes a second.
        for _ in 0..3 {
            pace.take(1000).await;
        }
        assert_eq!(start.elapsed().as_secs(), 2);
        busy.set(true);
        let start = tokio::time::Instant::now();
        pace.take(1000).await;
        assert_eq!(start.elapsed().as_secs(), 10);
        let mut unlimited = Pace::new(0, Rc::new(|| true));
        let start = tokio::time::Instant::now();
        unlimited.take(1 << 30).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
