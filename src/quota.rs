//! `--max-size`: one byte budget for the whole data directory.
//!
//! Counted once at startup, then kept up to date on the event-loop thread only
//! (hence `Cell`): uploads reserve bytes as they stream, deletes give them back.

use std::cell::Cell;
use std::rc::Rc;

#[derive(Debug)]
pub(crate) struct Quota {
    limit: Option<u64>,
    used: Cell<u64>,
}

impl Quota {
    pub(crate) fn new(limit: Option<u64>, used: u64) -> Quota {
        Quota {
            limit,
            used: Cell::new(used),
        }
    }

    #[cfg(test)]
    fn used(&self) -> u64 {
        self.used.get()
    }

    /// Whether `bytes` more would pass the limit (checked against a declared
    /// Content-Length before anything is written).
    pub(crate) fn would_exceed(&self, bytes: u64) -> bool {
        self.limit
            .is_some_and(|limit| self.used.get().saturating_add(bytes) > limit)
    }

    fn try_take(&self, bytes: u64) -> bool {
        if self.would_exceed(bytes) {
            return false;
        }
        self.used.set(self.used.get() + bytes);
        true
    }

    /// Gives back the space of a deleted file.
    pub(crate) fn release(&self, bytes: u64) {
        self.used.set(self.used.get().saturating_sub(bytes));
    }
}

/// Bytes an upload in progress has taken from the quota. Dropped without
/// [`Reservation::keep`], it gives them back: an upload that fails or is
/// abandoned leaves the count as it was.
#[derive(Debug)]
pub(crate) struct Reservation {
    quota: Rc<Quota>,
    bytes: u64,
}

impl Reservation {
    pub(crate) fn new(quota: Rc<Quota>) -> Reservation {
        Reservation { quota, bytes: 0 }
    }

    /// Takes `bytes` more, or returns false when that would pass the limit.
    pub(crate) fn grow(&mut self, bytes: u64) -> bool {
        if !self.quota.try_take(bytes) {
            return false;
        }
        self.bytes += bytes;
        true
    }

    /// The upload is stored: its bytes stay counted.
    pub(crate) fn keep(mut self) {
        self.bytes = 0;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.quota.release(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_returned_unless_kept() {
        let quota = Rc::new(Quota::new(Some(100), 10));
        let mut a = Reservation::new(quota.clone());
        assert!(a.grow(60));
        assert!(!a.grow(31), "would reach 101");
        assert!(a.grow(30));
        drop(a);
        assert_eq!(quota.used(), 10);
        let mut b = Reservation::new(quota.clone());
        assert!(b.grow(90));
        b.keep();
        assert_eq!(quota.used(), 100);
        assert!(quota.would_exceed(1));
        quota.release(50);
        assert!(!quota.would_exceed(50));
    }

    #[test]
    fn no_limit_never_refuses() {
        let quota = Rc::new(Quota::new(None, 0));
        let mut r = Reservation::new(quota.clone());
        assert!(r.grow(u64::MAX / 2));
        assert!(!quota.would_exceed(u64::MAX / 4));
    }
}
