//! The upload buffers all uploads draw from: memory bounded however many
//! uploads there are and however they behave (see the folder's overview).

use std::cell::Cell;
use std::rc::Rc;

/// Smallest upload buffer: what each of [`BUFFERED_UPLOADS`] uploads at once
/// gets from the budget.
pub(super) const MIN_BUFFER_BYTES: usize = 192 * 1024;

/// Largest upload buffer, for uploads that have the budget to few of them.
/// Each buffer is one hand-off to the hasher and one to the writer, each
/// costing thread wake-ups: 512 KiB buffers cut the server's CPU per uploaded
/// GiB by a fifth against 192 KiB ones, and 1 MiB ones did no better (4 MiB
/// ones did worse: they no longer stay in the CPU's caches between the copy
/// in, the hash and the write).
pub(super) const MAX_BUFFER_BYTES: usize = 512 * 1024;

/// Buffer sizes are multiples of this.
pub(super) const BUFFER_STEP_BYTES: usize = 64 * 1024;

/// Uploads that may hold their two buffers at once at the smallest size:
/// 3 MiB in all, which covers the eight concurrent streams the memory budget
/// is measured with.
pub(crate) const BUFFERED_UPLOADS: usize = 8;

/// The upload buffers all uploads draw from (see the folder's overview, `upload/mod.rs`), in bytes.
/// Each upload holding buffers gets an equal share, between the smallest and
/// the largest size; an upload that finds no room counts as waiting, and the
/// others shrink to make room for it with the next data they receive (a
/// buffer over the new share is handed over then, full or not). There is
/// never a wait for a buffer, so no upload can hold up another; a client trickling bytes to keep its
/// buffers only pushes the others onto the unbuffered path.
#[derive(Debug)]
pub(crate) struct BufferBudget {
    pub(super) total: usize,
    pub(super) free: Cell<usize>,
    /// Uploads holding buffers.
    pub(super) holders: Cell<usize>,
    /// Uploads going without for want of room.
    pub(super) waiting: Cell<usize>,
}

impl BufferBudget {
    /// A budget for `uploads` uploads at once at the smallest size; fewer
    /// get larger buffers.
    pub(crate) fn new(uploads: usize) -> Rc<BufferBudget> {
        let total = uploads * 2 * MIN_BUFFER_BYTES;
        Rc::new(BufferBudget {
            total,
            free: Cell::new(total),
            holders: Cell::new(0),
            waiting: Cell::new(0),
        })
    }

    /// The size of each buffer as the budget is shared now.
    fn current_share(&self) -> usize {
        self.share(self.holders.get() + self.waiting.get())
    }

    /// The size of each buffer when `uploads` share the budget.
    fn share(&self, uploads: usize) -> usize {
        let each = self.total / (2 * uploads.max(1));
        (each / BUFFER_STEP_BYTES * BUFFER_STEP_BYTES).clamp(MIN_BUFFER_BYTES, MAX_BUFFER_BYTES)
    }

    /// Two buffers' room for an upload that has none: its share, or less
    /// while the others shrink to their new share, or nothing (and the
    /// upload is then counted in `waiting` until it ends or gets room).
    pub(super) fn grant(self: &Rc<Self>, waiting: &mut Option<Waiting>) -> Option<Grant> {
        let uploads = self.holders.get() + self.waiting.get() + usize::from(waiting.is_none());
        let room = self.free.get() / 2 / BUFFER_STEP_BYTES * BUFFER_STEP_BYTES;
        let size = self.share(uploads).min(room);
        if size < MIN_BUFFER_BYTES {
            waiting.get_or_insert_with(|| Waiting::new(self));
            return None;
        }
        *waiting = None;
        self.free.set(self.free.get() - 2 * size);
        self.holders.set(self.holders.get() + 1);
        Some(Grant {
            budget: self.clone(),
            held: 2 * size,
        })
    }
}

/// An upload's room in the budget, returned on drop.
pub(super) struct Grant {
    budget: Rc<BufferBudget>,
    /// Bytes held: the sizes of the upload's two buffers.
    pub(super) held: usize,
}

impl Grant {
    /// Whether a buffer of `size` is larger than the share it would get
    /// now, while an upload waits for room.
    pub(super) fn over_share(&self, size: usize) -> bool {
        self.budget.waiting.get() > 0 && size > self.budget.current_share()
    }

    /// The size a buffer of `size` should have when it is filled again: the
    /// current share, when that is smaller or there is room to grow.
    pub(super) fn resize(&mut self, size: usize) -> usize {
        let budget = &self.budget;
        let share = budget.current_share();
        let free = budget.free.get();
        if share < size || share - size <= free {
            budget.free.set(free + size - share);
            self.held = self.held + share - size;
            share
        } else {
            size
        }
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        let budget = &self.budget;
        budget.free.set(budget.free.get() + self.held);
        budget.holders.set(budget.holders.get() - 1);
    }
}

/// An upload counted as waiting for room, until dropped.
pub(super) struct Waiting(Rc<BufferBudget>);

impl Waiting {
    fn new(budget: &Rc<BufferBudget>) -> Waiting {
        budget.waiting.set(budget.waiting.get() + 1);
        Waiting(budget.clone())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.waiting.set(self.0.waiting.get() - 1);
    }
}
