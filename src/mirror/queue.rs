//! The mirror's queue: what waits for the bucket, in the order that keeps
//! the bucket restorable, and the bookkeeping per file name (which file has
//! an operation in flight, which was asked for again meanwhile, which could
//! not be copied) that keeps two operations on one name from overtaking
//! each other.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::repo::{KeyBuf, ObjectType, RepoPath};

/// One operation waiting or in flight: the file it is about.
#[derive(Debug, Clone)]
pub(super) struct Item {
    pub(super) repo: RepoPath,
    pub(super) name: KeyBuf,
    pub(super) size: u64,
    /// Unix seconds since when the bucket lacks it.
    pub(super) since: u64,
}

impl Item {
    /// Identifies the file across queues (`repo/config`, `repo/data/<id>`).
    pub(super) fn id(&self) -> String {
        match &self.name {
            KeyBuf::Config => format!("{}/config", self.repo.label()),
            KeyBuf::Object(kind, id) => format!("{}/{}/{id}", self.repo.label(), kind.dir_name()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    /// Packs, index, keys, config.
    First,
    /// Snapshots: only once nothing of the first class is waiting.
    Snapshot,
    Delete,
}

/// Which queue a copy of `name` goes to; None for what is never mirrored
/// (locks).
pub(super) fn class_of(name: &KeyBuf) -> Option<Class> {
    match name {
        KeyBuf::Object(ObjectType::Locks, _) => None,
        KeyBuf::Object(ObjectType::Snapshots, _) => Some(Class::Snapshot),
        _ => Some(Class::First),
    }
}

fn index(class: Class) -> usize {
    match class {
        Class::First => 0,
        Class::Snapshot => 1,
        Class::Delete => 2,
    }
}

/// Identifies an operation: deletes are prefixed `delete `, so a file's
/// copy and its delete can both wait.
fn known_id(class: Class, item: &Item) -> String {
    match class {
        Class::Delete => format!("delete {}", item.id()),
        _ => item.id(),
    }
}

/// The three queues and what is in flight.
#[derive(Default)]
pub(super) struct Queue {
    queues: [VecDeque<Item>; 3],
    /// Every operation queued or in flight, by [`known_id`], with the time
    /// since when it waits.
    known: HashMap<String, u64>,
    in_flight: [usize; 3],
    /// Files ([`Item::id`]) with an upload or a delete in flight, and which:
    /// a second operation on the same name waits for it, so that a delete
    /// sent before a re-upload cannot land after it.
    busy: HashMap<String, Class>,
    /// Operations ([`known_id`]) asked for again while the same one was in
    /// flight: a file committed again during its upload, deleted again
    /// during its delete. Queued once more unless the one in flight did the
    /// job.
    again: HashSet<String>,
    /// Files that could not be copied (the local copy does not match its
    /// name, or the bucket holds other content under it), by
    /// [`Item::id`]: the mirror is not current while there are any.
    pub(super) failed: HashSet<String>,
    /// Files and bytes queued or in flight.
    pub(super) backlog_files: u64,
    pub(super) backlog_bytes: u64,
    /// Whether the startup comparison of listings finished.
    pub(super) compared: bool,
    /// With a lock: nothing goes out before the comparison, which checks
    /// that the bucket has object lock (a store may ignore lock headers on
    /// a bucket without it, and an unlocked copy protects nothing).
    pub(super) hold_until_compared: bool,
}

impl Queue {
    /// Queues `class`'s operation on `item`, unless the same operation waits
    /// or runs already; whether it was queued.
    pub(super) fn push(&mut self, class: Class, item: Item) -> bool {
        let id = known_id(class, &item);
        if self.known.contains_key(&id) {
            return false;
        }
        self.known.insert(id, item.since);
        self.backlog_files += 1;
        self.backlog_bytes += item.size;
        self.queues[index(class)].push_back(item);
        true
    }

    /// The next item a worker may take, by the ordering rules.
    pub(super) fn take(&mut self) -> Option<(Item, Class)> {
        let uploads_busy = |s: &Queue, upto: usize| {
            (0..upto).any(|i| !s.queues[i].is_empty() || s.in_flight[i] > 0)
        };
        // Until the startup comparison has queued what the bucket lacks, no
        // snapshot (its packs may be among those) and no delete (the new
        // index may be) goes out.
        let class = if !self.compared && self.hold_until_compared {
            return None;
        } else if !self.queues[0].is_empty() {
            Class::First
        } else if !self.compared {
            return None;
        } else if !self.queues[1].is_empty() && !uploads_busy(self, 1) {
            Class::Snapshot
        } else if !self.queues[2].is_empty() && !uploads_busy(self, 2) {
            Class::Delete
        } else {
            return None;
        };
        let i = index(class);
        // The first whose name has nothing in flight.
        let at = self.queues[i]
            .iter()
            .position(|item| !self.busy.contains_key(&item.id()))?;
        let item = self.queues[i].remove(at)?;
        self.busy.insert(item.id(), class);
        self.in_flight[i] += 1;
        Some((item, class))
    }

    /// Takes a queued operation on `item`'s file out of `class`'s queue;
    /// whether there was one.
    pub(super) fn cancel(&mut self, class: Class, item: &Item) -> bool {
        let queue = &mut self.queues[index(class)];
        let Some(at) = queue
            .iter()
            .position(|i| i.repo == item.repo && i.name == item.name)
        else {
            return false;
        };
        let dropped = queue.remove(at).map_or(0, |i| i.size);
        self.known.remove(&known_id(class, item));
        self.backlog_files -= 1;
        self.backlog_bytes -= dropped;
        true
    }

    /// Notes that `class`'s operation on `item` is asked for again while
    /// the same operation is in flight (the queue holds one of each).
    pub(super) fn again_if_in_flight(&mut self, class: Class, item: &Item) {
        let in_flight = match self.busy.get(&item.id()) {
            Some(Class::Delete) => class == Class::Delete,
            Some(_) => class != Class::Delete,
            None => false,
        };
        if in_flight {
            self.again.insert(known_id(class, item));
        }
    }

    /// Ends the operation a worker took ([`Queue::take`]); whether it was
    /// asked for again meanwhile.
    pub(super) fn end(&mut self, class: Class, item: &Item) -> bool {
        self.in_flight[index(class)] -= 1;
        self.busy.remove(&item.id());
        self.again.remove(&known_id(class, item))
    }

    /// Queues an operation that failed once more, at the back: one file the
    /// store keeps refusing must not hold up the others.
    pub(super) fn retry(&mut self, class: Class, item: Item) {
        self.queues[index(class)].push_back(item);
    }

    /// Drops an operation that ended for good from the backlog.
    pub(super) fn done(&mut self, class: Class, item: &Item) {
        self.known.remove(&known_id(class, item));
        self.backlog_files -= 1;
        self.backlog_bytes -= item.size;
    }

    /// Whether no delete waits or runs.
    pub(super) fn deletes_idle(&self) -> bool {
        let i = index(Class::Delete);
        self.queues[i].is_empty() && self.in_flight[i] == 0
    }

    /// What `mirror status` may call current: compared, nothing waits, and
    /// nothing failed for good.
    pub(super) fn current(&self) -> bool {
        self.compared && self.backlog_files == 0 && self.failed.is_empty()
    }

    /// Since when the oldest operation waits (Unix seconds).
    pub(super) fn oldest(&self) -> Option<u64> {
        self.known.values().copied().min()
    }
}

/// An item for a file named as in a request path (`/a/b/config`,
/// `/r/data/<id>`), for tests.
#[cfg(test)]
pub(super) fn test_item(path: &str) -> Item {
    use crate::repo::ObjectId;
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (repo, name) = match segments.as_slice() {
        [repo @ .., "config"] => (repo, KeyBuf::Config),
        [repo @ .., kind, id] => (
            repo,
            KeyBuf::Object(
                ObjectType::from_segment(kind).unwrap(),
                ObjectId::parse(id).unwrap(),
            ),
        ),
        _ => panic!("{path}"),
    };
    Item {
        repo: RepoPath::from_label(&repo.join("/")).unwrap(),
        name,
        size: 1,
        since: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_wait_for_packs_and_deletes_for_everything() {
        let item = test_item;
        let id = |c: char| c.to_string().repeat(64);
        let mut state = Queue::default();
        state.queues[1].push_back(item(&format!("/r/snapshots/{}", id('a'))));
        // Nothing but packs before the startup comparison is done.
        assert!(state.take().is_none());
        state.compared = true;
        state.queues[2].push_back(item(&format!("/r/data/{}", id('b'))));
        state.queues[0].push_back(item(&format!("/r/data/{}", id('c'))));
        let (first, class) = state.take().unwrap();
        assert_eq!(
            (class, first.id()),
            (Class::First, format!("r/data/{}", id('c')))
        );
        // The pack is in flight: neither the snapshot nor the delete may go.
        assert!(state.take().is_none());
        state.in_flight[0] = 0;
        assert_eq!(state.take().unwrap().1, Class::Snapshot);
        assert!(state.take().is_none());
        state.in_flight[1] = 0;
        assert_eq!(state.take().unwrap().1, Class::Delete);
    }
}
