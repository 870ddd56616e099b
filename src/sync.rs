//! The atomics and back-off the seqlock uses, from `std` normally and from `loom` when the
//! crate is built with `RUSTFLAGS="--cfg loom"` so that the loom model in `tests/loom.rs`
//! explores every interleaving of the real protocol code.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering, fence};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering, fence};

/// Bounded back-off between seqlock read attempts: crossbeam's exponential spin-then-yield,
/// giving up once it would block.
#[cfg(not(loom))]
pub(crate) struct Backoff(crossbeam_utils::Backoff);

#[cfg(not(loom))]
impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff(crossbeam_utils::Backoff::new())
    }

    /// Waits a little; `false` once the retry budget is spent.
    pub(crate) fn wait(&self) -> bool {
        if self.0.is_completed() {
            return false;
        }
        self.0.snooze();
        true
    }
}

/// Under loom a retry is a yield to the model's scheduler, and the budget is tiny so the
/// state space stays small; one retry is enough to exercise the retry path.
#[cfg(loom)]
pub(crate) struct Backoff(std::cell::Cell<u8>);

#[cfg(loom)]
impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff(std::cell::Cell::new(0))
    }

    pub(crate) fn wait(&self) -> bool {
        let tries = self.0.get();
        if tries >= 1 {
            return false;
        }
        self.0.set(tries + 1);
        loom::thread::yield_now();
        true
    }
}
