//! Per-thread slots keyed by a shared owner: the thread-local state behind
//! [`SharedClockBound`](crate::SharedClockBound)'s hot path.
//!
//! A thread keeps one slot per owner (one per `SharedClockBound` value it has used) in a
//! thread-local [`ThreadSlots`]. The slot it used last sits apart, so that the usual case,
//! one value per thread, costs a thread-local access and one pointer compare, with no
//! search. Other values' slots are found by a short search on the cold path.
//!
//! Why slots are boxed and *moved out* of the thread-local while in use:
//! [`LocalKey::try_with`] only lends the thread-local to a closure, and a closure holding the
//! whole `now()` computation is too big for the compiler to inline. Out of line, the
//! caller's window escapes to it by address, stays in memory, and is then copied in 16-byte
//! pieces it was stored in 8-byte ones: a store-forwarding stall on every call that cost
//! more than the thread-local lookup. So the closure only takes the slot's `Box` out (one
//! pointer), the computation runs inline in the caller on a slot it owns outright (no
//! run-time borrow flag), and the slot is put back afterwards.
//!
//! A slot holds a [`Weak`] to its owner: dropping the owner is never delayed by threads,
//! and slots of dropped owners are pruned the next time the thread looks past its recent
//! slot (or when it exits). A slot is aligned and sized to whole cache lines, so no two
//! threads' slots share one.

use std::cell::{Cell, RefCell};
use std::sync::{Arc, Weak};
use std::thread::LocalKey;

/// One thread's slot for one owner.
#[repr(align(64))]
pub(crate) struct ThreadSlot<O, T> {
    owner: Weak<O>,
    value: T,
}

impl<O, T> ThreadSlot<O, T> {
    /// Whether this slot belongs to `owner`. (A slot's `Weak` keeps the owner's allocation,
    /// so no other owner can appear at the same address while the slot exists.)
    #[inline(always)]
    fn owned_by(&self, owner: &Arc<O>) -> bool {
        std::ptr::eq(self.owner.as_ptr(), Arc::as_ptr(owner))
    }
}

/// The heap block of one slot: what one thread keeps per owner (plus, for all but the
/// most recently used, one pointer in [`ThreadSlots::others`]).
pub(crate) const fn slot_bytes<O, T>() -> usize {
    std::mem::size_of::<ThreadSlot<O, T>>()
}

/// A thread's slots of one kind. Declare one per kind with `thread_local!` and
/// [`ThreadSlots::new`], and reach it through [`ThreadSlots::with`].
pub(crate) struct ThreadSlots<O: 'static, T: 'static> {
    /// The slot used last, owned here and moved out while in use: whoever holds it holds
    /// the only reference, so it needs no run-time borrow flag.
    recent: Cell<Option<Box<ThreadSlot<O, T>>>>,
    /// The thread's other slots.
    others: RefCell<Vec<Box<ThreadSlot<O, T>>>>,
}

impl<O: 'static, T: 'static> ThreadSlots<O, T> {
    /// No slots yet (a `const` initialiser, so the thread-local needs no lazy set-up).
    pub(crate) const fn new() -> ThreadSlots<O, T> {
        ThreadSlots {
            recent: Cell::new(None),
            others: RefCell::new(Vec::new()),
        }
    }

    /// Runs `f` on this thread's value for `owner`, created by `make` on first use.
    ///
    /// `None` (and `f` not run) only when the thread is exiting and its thread-locals are
    /// gone: the caller then falls back to a throwaway state. (Were `f` to re-enter `with`
    /// for the same owner, which nothing in this crate does, the inner call would find the
    /// slot taken and work on a second, fresh one: a duplicate cache, never a panic.)
    #[inline(always)]
    pub(crate) fn with<R>(
        key: &'static LocalKey<ThreadSlots<O, T>>,
        owner: &Arc<O>,
        make: impl FnOnce() -> T,
        f: impl FnOnce(&mut T) -> R,
    ) -> Option<R> {
        let mut slot = key.try_with(|slots| slots.take(owner, make)).ok()?;
        let result = f(&mut slot.value);
        // If the thread-locals went away meanwhile, the slot is simply dropped.
        let _ = key.try_with(|slots| slots.put_back(slot));
        Some(result)
    }

    /// Takes the slot for `owner`: `recent` when it is that one (the hot path), else one
    /// found in or added to `others`.
    #[inline(always)]
    fn take(&self, owner: &Arc<O>, make: impl FnOnce() -> T) -> Box<ThreadSlot<O, T>> {
        match self.recent.take() {
            Some(slot) if slot.owned_by(owner) => slot,
            other => self.take_other(other, owner, make),
        }
    }

    /// Makes `slot` the recent one again.
    #[inline(always)]
    fn put_back(&self, slot: Box<ThreadSlot<O, T>>) {
        if let Some(displaced) = self.recent.replace(Some(slot)) {
            self.keep(displaced);
        }
    }

    /// The slot for `owner` out of `others`, or a new one, after filing `previous` (the
    /// slot that was recent) among the others and forgetting slots of dropped owners.
    #[cold]
    #[inline(never)]
    fn take_other(
        &self,
        previous: Option<Box<ThreadSlot<O, T>>>,
        owner: &Arc<O>,
        make: impl FnOnce() -> T,
    ) -> Box<ThreadSlot<O, T>> {
        if let Some(previous) = previous {
            self.keep(previous);
        }
        let found = self.others.try_borrow_mut().ok().and_then(|mut others| {
            others.retain(|slot| slot.owner.strong_count() > 0);
            let index = others.iter().position(|slot| slot.owned_by(owner))?;
            Some(others.swap_remove(index))
        });
        found.unwrap_or_else(|| {
            Box::new(ThreadSlot {
                owner: Arc::downgrade(owner),
                value: make(),
            })
        })
    }

    /// Files `slot` among the others (dropped instead if its owner is gone, or if the list
    /// is in use, which only a re-entrant call could cause).
    #[cold]
    fn keep(&self, slot: Box<ThreadSlot<O, T>>) {
        if slot.owner.strong_count() > 0 {
            if let Ok(mut others) = self.others.try_borrow_mut() {
                others.push(slot);
            }
        }
    }

    /// How many slots this thread holds (tests).
    #[cfg(test)]
    pub(crate) fn count(key: &'static LocalKey<ThreadSlots<O, T>>) -> usize {
        key.with(|slots| {
            let recent = slots.recent.take();
            let count = usize::from(recent.is_some()) + slots.others.borrow().len();
            slots.recent.set(recent);
            count
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static SLOTS: ThreadSlots<String, u64> = const { ThreadSlots::new() };
    }

    fn bump(owner: &Arc<String>) -> Option<u64> {
        ThreadSlots::with(
            &SLOTS,
            owner,
            || 100,
            |n| {
                *n += 1;
                *n
            },
        )
    }

    #[test]
    fn one_slot_per_owner_kept_across_calls() {
        let a = Arc::new("a".to_string());
        let b = Arc::new("b".to_string());
        assert_eq!(bump(&a), Some(101));
        assert_eq!(bump(&a), Some(102));
        assert_eq!(bump(&b), Some(101)); // b's own slot
        assert_eq!(bump(&a), Some(103)); // a's slot found again after b's use
        assert_eq!(ThreadSlots::count(&SLOTS), 2);
    }

    #[test]
    fn slots_of_dropped_owners_are_pruned_on_the_next_add() {
        let a = Arc::new("a".to_string());
        bump(&a);
        drop(a);
        let b = Arc::new("b".to_string());
        bump(&b);
        assert_eq!(ThreadSlots::count(&SLOTS), 1);
    }

    #[test]
    fn a_slot_does_not_keep_its_owner_alive() {
        let a = Arc::new("a".to_string());
        bump(&a);
        assert_eq!(Arc::strong_count(&a), 1);
    }

    #[test]
    fn reentering_for_the_same_owner_works_on_a_second_slot_not_a_panic() {
        let a = Arc::new("a".to_string());
        let nested = ThreadSlots::with(&SLOTS, &a, || 0, |_| bump(&a));
        // The inner call found the slot taken (the outer holds it) and made another.
        assert_eq!(nested, Some(Some(101)));
        assert_eq!(ThreadSlots::count(&SLOTS), 2);
    }

    #[test]
    fn each_thread_has_its_own_slot() {
        let a = Arc::new("a".to_string());
        assert_eq!(bump(&a), Some(101));
        let other = {
            let a = Arc::clone(&a);
            std::thread::spawn(move || bump(&a)).join().unwrap()
        };
        assert_eq!(other, Some(101));
        assert_eq!(bump(&a), Some(102));
    }
}
