//! Recent refused logins, for the status page: per address, how many, when
//! last and why. Bounded: the addresses refused most recently are kept.
//!
//! User names are not kept: a user who types a password into the name field
//! would see it shown on the page.

use std::cell::RefCell;
use std::net::IpAddr;

use crate::auth::AuthError;

/// Addresses remembered at most; the one refused longest ago gives way.
pub(crate) const MAX_ADDRESSES: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// None on a Unix socket.
    pub(crate) address: Option<IpAddr>,
    pub(crate) attempts: u64,
    /// Unix seconds.
    pub(crate) last: u64,
    pub(crate) reason: &'static str,
}

#[derive(Debug, Default)]
pub(crate) struct Refused {
    recent: RefCell<heapless::Vec<Refusal, MAX_ADDRESSES>>,
}

impl Refused {
    /// Remembers a refused request. A request without credentials is no
    /// login attempt (a browser asks once without them), so it is not kept.
    pub(crate) fn record(&self, address: Option<IpAddr>, error: AuthError, now: u64) {
        if error == AuthError::Missing {
            return;
        }
        let mut recent = self.recent.borrow_mut();
        if let Some(known) = recent.iter_mut().find(|r| r.address == address) {
            known.attempts += 1;
            known.last = now;
            known.reason = error.reason();
            return;
        }
        let refusal = Refusal {
            address,
            attempts: 1,
            last: now,
            reason: error.reason(),
        };
        if recent.is_full()
            && let Some(oldest) = (0..recent.len()).min_by_key(|&i| recent[i].last)
        {
            recent.swap_remove(oldest);
        }
        let _ = recent.push(refusal);
    }

    /// The addresses, most recently refused first.
    pub(crate) fn recent(&self) -> Vec<Refusal> {
        let mut all = self.recent.borrow().to_vec();
        crate::small_sort::sort_short_by(&mut all, |a, b| a.last > b.last);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([192, 168, 1, last]))
    }

    #[test]
    fn keeps_the_most_recent_addresses_and_counts_attempts() {
        let refused = Refused::default();
        refused.record(ip(1), AuthError::Missing, 1);
        assert!(refused.recent().is_empty());
        for t in 0..20u64 {
            refused.record(ip(t as u8), AuthError::WrongPassword, t);
        }
        refused.record(ip(19), AuthError::Throttled, 30);
        let recent = refused.recent();
        assert_eq!(recent.len(), MAX_ADDRESSES);
        assert_eq!(recent[0].address, ip(19));
        assert_eq!(recent[0].attempts, 2);
        assert_eq!(recent[0].reason, AuthError::Throttled.reason());
        assert_eq!(recent.last().unwrap().address, ip(12));
    }
}
