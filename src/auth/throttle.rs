//! Throttling failed logins per client address, so that a password-guessing
//! loop cannot keep a one-core board busy with bcrypt.
//!
//! The rule: each address has a bucket of [`BURST`] attempts that refills by
//! one every [`REFILL`]. A check of credentials that are not already cached
//! takes a token before it is queued for bcrypt (so a hundred concurrent
//! guesses get [`BURST`] checks, not a hundred), and a check that succeeds
//! gives it back. While the bucket is empty, such credentials are refused at
//! once (401) without being checked. A client that mistypes a password a few
//! times is not slowed down; a guessing loop gets one attempt per [`REFILL`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

/// Failures an address may have in a row before it is throttled.
pub(crate) const BURST: u32 = 5;
/// Time for one failure to be forgiven.
pub(crate) const REFILL: Duration = Duration::from_secs(2);
/// Addresses tracked at most; beyond that the fully forgiven ones are dropped,
/// then the oldest, so the table cannot grow without bound.
pub(crate) const MAX_TRACKED: usize = 1024;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Failures still allowed, scaled by 1000 to refill smoothly.
    milli_tokens: u64,
    updated: Instant,
}

impl Bucket {
    /// Credits the time since the last refill. Only the time the credited
    /// tokens stand for is used up: the rest carries over, so that attempts
    /// arriving faster than a token's worth of time apart cannot keep the
    /// bucket from ever refilling.
    fn refill(&mut self, now: Instant) {
        let full = u64::from(BURST) * 1000;
        let elapsed = now.saturating_duration_since(self.updated).as_micros();
        let per_milli_token = REFILL.as_micros() / 1000;
        let gained = u64::try_from(elapsed / per_milli_token).unwrap_or(u64::MAX);
        if self.milli_tokens.saturating_add(gained) >= full {
            self.milli_tokens = full;
            self.updated = now;
        } else {
            self.milli_tokens += gained;
            let used = u128::from(gained) * per_milli_token;
            self.updated += Duration::from_micros(u64::try_from(used).unwrap_or(u64::MAX));
        }
    }

    fn is_full(&self) -> bool {
        self.milli_tokens >= u64::from(BURST) * 1000
    }
}

#[derive(Debug, Default)]
pub(crate) struct Throttle {
    buckets: HashMap<IpAddr, Bucket>,
}

impl Throttle {
    /// Takes a token for a check of `peer`'s credentials; false when its
    /// bucket is empty (then nothing is checked).
    pub(crate) fn take(&mut self, peer: IpAddr, now: Instant) -> bool {
        if !self.buckets.contains_key(&peer) && self.buckets.len() >= MAX_TRACKED {
            self.evict(now);
        }
        let bucket = self.buckets.entry(peer).or_insert(Bucket {
            milli_tokens: u64::from(BURST) * 1000,
            updated: now,
        });
        bucket.refill(now);
        if bucket.milli_tokens < 1000 {
            return false;
        }
        bucket.milli_tokens -= 1000;
        true
    }

    /// Gives back the token of a check that succeeded: only failures count.
    pub(crate) fn succeeded(&mut self, peer: IpAddr, now: Instant) {
        if let Some(bucket) = self.buckets.get_mut(&peer) {
            bucket.refill(now);
            bucket.milli_tokens = (bucket.milli_tokens + 1000).min(u64::from(BURST) * 1000);
        }
    }

    fn evict(&mut self, now: Instant) {
        self.buckets.retain(|_, bucket| {
            bucket.refill(now);
            !bucket.is_full()
        });
        if self.buckets.len() >= MAX_TRACKED
            && let Some(oldest) = self
                .buckets
                .iter()
                .min_by_key(|(_, b)| b.updated)
                .map(|(ip, _)| *ip)
        {
            self.buckets.remove(&oldest);
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn a_burst_then_one_attempt_per_refill() {
        let mut throttle = Throttle::default();
        let peer = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
        let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let start = Instant::now();
        for _ in 0..BURST {
            assert!(throttle.take(peer, start));
        }
        assert!(!throttle.take(peer, start), "bucket empty");
        assert!(throttle.take(other, start), "other addresses unaffected");
        assert!(!throttle.take(peer, start + REFILL / 2));
        assert!(throttle.take(peer, start + REFILL));
        assert!(!throttle.take(peer, start + REFILL));
        // A success gives its token back.
        throttle.succeeded(peer, start + REFILL);
        assert!(throttle.take(peer, start + REFILL));
        assert!(throttle.take(peer, start + REFILL * (BURST + 2)));
    }

    #[test]
    fn the_bucket_refills_however_fast_attempts_arrive() {
        let mut throttle = Throttle::default();
        let peer = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
        let start = Instant::now();
        for _ in 0..BURST {
            assert!(throttle.take(peer, start));
        }
        // An attempt every millisecond: refused until one refill's time has
        // passed, then let through.
        let mut let_through = None;
        for ms in 1..=3000 {
            let now = start + Duration::from_millis(ms);
            if throttle.take(peer, now) {
                let_through = Some(ms);
                break;
            }
        }
        assert_eq!(let_through, Some(REFILL.as_millis() as u64));
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut throttle = Throttle::default();
        let now = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 100) {
            throttle.take(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), now);
        }
        assert!(throttle.tracked() <= MAX_TRACKED);
    }
}
