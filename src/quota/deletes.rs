//! The deletion alarm: per repository, the snapshots and data packs deleted
//! in the last 24 hours, in hourly buckets. restic's own `forget` removes a
//! few snapshots a day; when a large share of a repository's snapshots goes
//! within a day, someone pruned with stolen credentials, or the owner's own
//! prune removed the real snapshots behind forged ones (docs/trash.md). The
//! repository is then flagged in the log, on the status page and in
//! `/metrics`; the delete itself is never refused for it.

use crate::repo::ObjectType;

/// Hours the window spans.
const HOURS: usize = 24;

/// Fewest snapshots deleted within the window that raise the alarm: one of
/// two snapshots deleted is half, and no alarm.
pub(crate) const MIN_SNAPSHOTS: u64 = 3;

/// `--delete-alarm` by default: half of a repository's snapshots.
pub(crate) const DEFAULT_PERCENT: u64 = 50;

/// One repository's deletes of the last [`HOURS`] hours.
#[derive(Debug, Default, Clone)]
pub(crate) struct Window {
    /// The hour (Unix seconds / 3600) bucket 0 counts.
    newest: u64,
    snapshots: [u32; HOURS],
    data: [u32; HOURS],
    /// Whether the alarm has been logged for the deletes in the window.
    pub(crate) logged: bool,
}

/// What a window holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recent {
    pub(crate) snapshots: u64,
    pub(crate) data: u64,
}

impl Window {
    /// Moves the window to `now` (Unix seconds): older hours drop out.
    fn advance(&mut self, now: u64) {
        let hour = now / 3600;
        let gap = hour.saturating_sub(self.newest);
        if gap == 0 {
            return;
        }
        let gap = gap.min(HOURS as u64) as usize;
        for buckets in [&mut self.snapshots, &mut self.data] {
            buckets.rotate_right(gap);
            buckets[..gap].fill(0);
        }
        self.newest = hour;
        if self.snapshots.iter().all(|&n| n == 0) {
            self.logged = false;
        }
    }

    /// Counts a delete of `kind` at `now`.
    pub(crate) fn record(&mut self, kind: Option<ObjectType>, now: u64) {
        self.advance(now);
        match kind {
            Some(ObjectType::Snapshots) => self.snapshots[0] += 1,
            Some(ObjectType::Data) => self.data[0] += 1,
            _ => {}
        }
    }

    /// The deletes within the window at `now`.
    pub(crate) fn recent(&mut self, now: u64) -> Recent {
        self.advance(now);
        let sum = |b: &[u32; HOURS]| b.iter().map(|&n| u64::from(n)).sum();
        Recent {
            snapshots: sum(&self.snapshots),
            data: sum(&self.data),
        }
    }
}

/// Whether `deleted` snapshots within the window, of a repository that
/// holds `left` now, are `percent` or more of what it held (0: never).
pub(crate) fn alarming(deleted: u64, left: u64, percent: u64) -> bool {
    percent > 0 && deleted >= MIN_SNAPSHOTS && deleted * 100 >= percent * (deleted + left)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_of_deletes_in_hourly_buckets() {
        let mut window = Window::default();
        let start = 1_000 * 3600;
        for i in 0..4 {
            window.record(Some(ObjectType::Snapshots), start + i);
        }
        window.record(Some(ObjectType::Data), start + 7200);
        window.record(Some(ObjectType::Locks), start + 7200);
        let now = window.recent(start + 7200);
        assert_eq!((now.snapshots, now.data), (4, 1));
        // 24 hours after the first hour, its deletes are gone.
        let later = window.recent(start + 24 * 3600);
        assert_eq!((later.snapshots, later.data), (0, 1));
        assert_eq!(window.recent(start + 100 * 3600).data, 0);
    }

    #[test]
    fn the_alarm_weighs_the_share_and_a_floor() {
        assert!(alarming(3, 3, 50));
        assert!(!alarming(3, 4, 50));
        assert!(!alarming(2, 0, 50), "too few to judge");
        assert!(alarming(10, 90, 10));
        assert!(!alarming(10, 0, 0), "off");
    }
}
