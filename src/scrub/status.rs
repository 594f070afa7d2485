//! What the server's scrub shows while it runs ([`Status`]): the state as
//! last saved, the bytes and objects verified since startup, and the deletes
//! by clients not yet written to the state file; [`ScrubSummary`] is the
//! status page's view of it, `/metrics` renders it (`metrics.rs`).

use std::cell::{Cell, RefCell};

use crate::repo::Key;
use crate::repo::RepoPath;

use super::state::{ORDER, Place, State};

/// The scrub at a glance, for the status page.
pub(crate) struct ScrubSummary {
    /// When the last full pass finished (Unix seconds).
    pub(crate) last_finished: Option<u64>,
    /// How far the pass under way is, 0 to 1.
    pub(crate) progress: Option<f64>,
    /// `/repo/type/id` of each damaged object.
    pub(crate) damaged: Vec<String>,
}

/// What the server's scrub shows: in `/metrics`, on the status page, and to
/// the delete handler.
#[derive(Default)]
pub(crate) struct Status {
    pub(super) verified_objects: Cell<u64>,
    pub(super) verified_bytes: Cell<u64>,
    /// The state as last saved.
    pub(super) state: RefCell<State>,
    /// Objects deleted by clients since the last save: forgotten then.
    pub(super) deleted: RefCell<Vec<Place>>,
}

impl Status {
    /// A client deleted an object: if it was damaged, it is no longer.
    pub(crate) fn deleted(&self, repo: &RepoPath, key: Key<'_>) {
        let Key::Object(kind, id) = key else {
            return;
        };
        let Some(kind) = ORDER.iter().position(|k| *k == kind) else {
            return;
        };
        let place = Place {
            repo: repo.label(),
            kind,
            id: id.as_str().to_string(),
        };
        let mut state = self.state.borrow_mut();
        if state.damaged.iter().any(|d| d.place == place) {
            state.clear_damage(&place);
            self.deleted.borrow_mut().push(place);
        }
    }

    /// Shows `state` as read from the file, less the deletes not written
    /// to it yet: a delete that came while the file was being read is not
    /// undone in `/metrics`.
    pub(super) fn publish(&self, mut state: State) {
        for place in self.deleted.borrow().iter() {
            state.clear_damage(place);
        }
        self.state.replace(state);
    }

    pub(super) fn read(&self, bytes: u64) {
        self.verified_bytes.set(self.verified_bytes.get() + bytes);
    }

    pub(super) fn verified(&self) {
        self.verified_objects.set(self.verified_objects.get() + 1);
    }

    /// What the status page shows.
    pub(crate) fn summary(&self) -> ScrubSummary {
        let state = self.state.borrow();
        ScrubSummary {
            last_finished: state.last.map(|last| last.finished),
            progress: state
                .pass
                .as_ref()
                .map(|pass| pass.counts.bytes as f64 / pass.total_bytes.max(1) as f64),
            damaged: state.damaged.iter().map(|d| d.place.to_string()).collect(),
        }
    }
}
