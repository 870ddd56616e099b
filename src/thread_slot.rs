//! Per-thread slots keyed by a shared owner: the thread-local state behind
//! [`SharedClockBound`](crate::SharedClockBound)'s hot path.
//!
//! A thread keeps one slot per owner (one per `SharedClockBound` value it has used) in a
//! thread-local [`ThreadSlots`]. The slot it used last sits apart, so that the usual case,
//! one value per thread, costs a thread-local access and one pointer compare, with no
//! search. Other values' slots are found by a short search on the cold path.
//!
//! Why slots are reference-counted: [`LocalKey::try_with`] only lends the thread-local to a
//! closure, and a closure holding the whole `now()` computation is too big for the
//! compiler to inline. Out of line, the caller's window escapes to it by address, stays in
//! memory, and is then copied in 16-byte pieces it was stored in 8-byte ones: a
//! store-forwarding stall on every call that cost more than the thread-local lookup. So the
//! closure only *takes* the slot out (moving an [`Rc`], no count change), the computation
//! runs inline in the caller, and the slot is put back afterwards.
//!
//! A slot holds a [`Weak`] to its owner: dropping the owner is never delayed by threads,
//! and slots of dropped owners are pruned the next time the thread adds a slot (or when it
//! exits). A slot is aligned and sized to whole cache lines, so no two threads' slots share
//! one.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::{Arc, Weak};
use std::thread::LocalKey;

/// One thread's slot for one owner.
#[repr(align(64))]
pub(crate) struct ThreadSlot<O, T> {
    owner: Weak<O>,
    value: RefCell<T>,
}

impl<O, T> ThreadSlot<O, T> {
    /// Whether this slot belongs to `owner`. (A slot's `Weak` keeps the owner's allocation,
    /// so no other owner can appear at the same address while the slot exists.)
    #[inline(always)]
    fn owned_by(&self, owner: &Arc<O>) -> bool {
        std::ptr::eq(self.owner.as_ptr(), Arc::as_ptr(owner))
    }
}

/// The heap block of an `Rc<ThreadSlot<O, T>>`: its two counts, padded to the slot's
/// alignment, then the slot. What one thread keeps per owner (plus one pointer in
/// [`ThreadSlots::all`]).
pub(crate) const fn slot_bytes<O, T>() -> usize {
    std::mem::align_of::<ThreadSlot<O, T>>() + std::mem::size_of::<ThreadSlot<O, T>>()
}

/// A thread's slots of one kind. Declare one per kind with `thread_local!` and
/// [`ThreadSlots::new`], and reach it through [`ThreadSlots::with`].
pub(crate) struct ThreadSlots<O: 'static, T: 'static> {
    /// The slot used last, taken out while in use.
    recent: Cell<Option<Rc<ThreadSlot<O, T>>>>,
    /// Every slot of this thread, `recent`'s included.
    all: RefCell<Vec<Rc<ThreadSlot<O, T>>>>,
}

impl<O: 'static, T: 'static> ThreadSlots<O, T> {
    /// No slots yet (a `const` initialiser, so the thread-local needs no lazy set-up).
    pub(crate) const fn new() -> ThreadSlots<O, T> {
        ThreadSlots {
            recent: Cell::new(None),
            all: RefCell::new(Vec::new()),
        }
    }

    /// Runs `f` on this thread's value for `owner`, created by `make` on first use.
    ///
    /// `None` (and `f` not run) only when the thread is exiting and its thread-locals are
    /// gone, or if `f` re-entered `with` for the same owner (nothing in this crate does):
    /// the caller then falls back to a throwaway state.
    #[inline(always)]
    pub(crate) fn with<R>(
        key: &'static LocalKey<ThreadSlots<O, T>>,
        owner: &Arc<O>,
        make: impl FnOnce() -> T,
        f: impl FnOnce(&mut T) -> R,
    ) -> Option<R> {
        let slot = key.try_with(|slots| slots.take(owner, make)).ok()?;
        let result = match slot.value.try_borrow_mut() {
            Ok(mut value) => Some(f(&mut value)),
            Err(_) => None,
        };
        // Put back even if the borrow failed; if the thread-locals went away meanwhile, the
        // slot is simply dropped (`all` held the other reference and is gone too).
        let _ = key.try_with(|slots| slots.recent.set(Some(slot)));
        result
    }

    /// Takes the slot for `owner` out of `recent`, or finds or makes it.
    #[inline(always)]
    fn take(&self, owner: &Arc<O>, make: impl FnOnce() -> T) -> Rc<ThreadSlot<O, T>> {
        match self.recent.take() {
            Some(slot) if slot.owned_by(owner) => slot,
            _ => self.find_or_add(owner, make),
        }
    }

    /// The slot for `owner` from `all`, or a new one added to it (after forgetting the
    /// slots of owners that were dropped).
    #[cold]
    #[inline(never)]
    fn find_or_add(&self, owner: &Arc<O>, make: impl FnOnce() -> T) -> Rc<ThreadSlot<O, T>> {
        if let Ok(all) = self.all.try_borrow() {
            if let Some(slot) = all.iter().find(|slot| slot.owned_by(owner)) {
                return Rc::clone(slot);
            }
        }
        let slot = Rc::new(ThreadSlot {
            owner: Arc::downgrade(owner),
            value: RefCell::new(make()),
        });
        // `make` may have used other thread-locals, never this one: the borrow succeeds.
        if let Ok(mut all) = self.all.try_borrow_mut() {
            all.retain(|slot| slot.owner.strong_count() > 0);
            all.push(Rc::clone(&slot));
        }
        slot
    }

    /// How many slots this thread holds (tests).
    #[cfg(test)]
    pub(crate) fn count(key: &'static LocalKey<ThreadSlots<O, T>>) -> usize {
        key.with(|slots| slots.all.borrow().len())
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
    fn reentering_for_the_same_owner_is_refused_not_a_panic() {
        let a = Arc::new("a".to_string());
        let nested = ThreadSlots::with(&SLOTS, &a, || 0, |_| bump(&a));
        // The inner call found the slot taken (the outer holds it), looked it up in `all`,
        // and could not borrow it: `None`, no panic.
        assert_eq!(nested, Some(None));
        assert_eq!(bump(&a), Some(1));
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
