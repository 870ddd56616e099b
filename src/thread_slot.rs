//! Per-thread slots keyed by a shared owner: the thread-local state behind
//! [`SharedClockBound`](crate::SharedClockBound)'s hot path.
//!
//! A thread keeps one slot per owner (one per `SharedClockBound` value it has used) in a
//! thread-local [`ThreadSlots`]. The slot it used last sits apart, so that the usual case,
//! one value per thread, costs a thread-local access and one pointer compare. Every other
//! slot is filed in a table under its owner's [`SlotKey`], a small integer the owner holds
//! for life, so finding it is one index whatever the number of owners: a thread that uses
//! ten thousand values in turn takes as few steps per call as one that alternates between
//! two.
//!
//! Keys are handed out by a process-wide allocator, lowest free index first, and given back
//! when their owner is dropped, so they stay below the largest number of owners ever alive
//! at once. The table holds one pointer per index up to the highest key the thread has
//! used: a thread that has used the owner with key 9,999 keeps 10,000 pointers (80 KB on a
//! 64-bit target), besides one slot per owner it has used (see [`slot_bytes`]).
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
//! A slot holds a [`Weak`] to its owner: dropping the owner is never delayed by threads.
//! A thread releases the slot of a dropped owner
//! - if it is the recent slot, the next time the thread looks past it;
//! - when it next uses that owner's key for a new owner (the index is reused: the dead slot
//!   found there is replaced);
//! - through a sweep that examines one table entry each time the thread looks past its
//!   recent slot, so a dead slot goes within one pass: at most as many such look-ups as the
//!   table has entries (each pass ends by trimming empty entries off the table's end);
//! - at the latest when the thread exits, which drops all its slots.
//!
//! A thread that only ever uses its recent slot does no sweeping, so its slots of dropped
//! owners stay until it looks past that slot again or exits; their number is bounded by
//! the keys it has used. A slot is aligned and sized to whole cache lines, so no two
//! threads' slots share one.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Weak};
use std::thread::LocalKey;

use parking_lot::Mutex;

/// An owner's index into every thread's slot table: unique among live owners, small, and
/// handed out again once the owner is dropped.
///
/// The owner makes one when it is created (it takes a process-wide lock, so never per
/// call), keeps it for its whole life, and passes it to [`ThreadSlots::with`]. Dropping it
/// gives the index back: this must happen no earlier than the owner's `Arc` is dropped,
/// which holding it as a field of the owner guarantees.
#[derive(Debug)]
pub(crate) struct SlotKey {
    index: usize,
}

impl SlotKey {
    /// The lowest index no live owner holds.
    pub(crate) fn new() -> SlotKey {
        SlotKey {
            index: KEYS.lock().take(),
        }
    }
}

impl Drop for SlotKey {
    fn drop(&mut self) {
        KEYS.lock().give_back(self.index);
    }
}

/// The process-wide key allocator.
static KEYS: Mutex<KeyAllocator> = Mutex::new(KeyAllocator::new());

/// Hands out indices, lowest free first, so that threads' tables stay as short as the
/// number of live owners allows.
struct KeyAllocator {
    /// Indices given back.
    free: BinaryHeap<Reverse<usize>>,
    /// The lowest index never handed out.
    next: usize,
}

impl KeyAllocator {
    const fn new() -> KeyAllocator {
        KeyAllocator {
            free: BinaryHeap::new(),
            next: 0,
        }
    }

    fn take(&mut self) -> usize {
        if let Some(Reverse(index)) = self.free.pop() {
            return index;
        }
        let index = self.next;
        // Bounded by the number of live keys, each held by a live heap allocation: it
        // cannot reach `usize::MAX`.
        self.next += 1;
        index
    }

    fn give_back(&mut self, index: usize) {
        self.free.push(Reverse(index));
    }
}

/// One thread's slot for one owner.
#[repr(align(64))]
pub(crate) struct ThreadSlot<O, T> {
    owner: Weak<O>,
    /// The owner's key index: where the slot is filed in the thread's table.
    index: usize,
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

/// The heap block of one slot: what one thread keeps per owner (plus one pointer per key
/// index in its table, see the module docs).
pub(crate) const fn slot_bytes<O, T>() -> usize {
    std::mem::size_of::<ThreadSlot<O, T>>()
}

/// A thread's slots of one kind. Declare one per kind with `thread_local!` and
/// [`ThreadSlots::new`], and reach it through [`ThreadSlots::with`].
pub(crate) struct ThreadSlots<O: 'static, T: 'static> {
    /// The slot used last, owned here and moved out while in use: whoever holds it holds
    /// the only reference, so it needs no run-time borrow flag.
    recent: Cell<Option<Box<ThreadSlot<O, T>>>>,
    /// The thread's other slots, by key index.
    table: RefCell<SlotTable<O, T>>,
}

/// A thread's slots apart from the recent one, each at its owner's key index.
struct SlotTable<O, T> {
    /// `None` where the thread has no slot, or where it is the recent or in use.
    slots: Vec<Option<Box<ThreadSlot<O, T>>>>,
    /// The entry the sweep examines next.
    sweep: usize,
}

impl<O, T> SlotTable<O, T> {
    const fn new() -> SlotTable<O, T> {
        SlotTable {
            slots: Vec::new(),
            sweep: 0,
        }
    }

    /// Takes out whatever slot is filed at `index`.
    fn take(&mut self, index: usize) -> Option<Box<ThreadSlot<O, T>>> {
        count_steps(1);
        self.slots.get_mut(index)?.take()
    }

    /// Files `slot` at its index, returning the slot it displaced there, if any.
    fn file(&mut self, slot: Box<ThreadSlot<O, T>>) -> Option<Box<ThreadSlot<O, T>>> {
        count_steps(1);
        if let Some(entry) = self.slots.get_mut(slot.index) {
            return entry.replace(slot);
        }
        count_steps(slot.index - self.slots.len());
        self.slots.resize_with(slot.index, || None);
        self.slots.push(Some(slot));
        None
    }

    /// One step of the sweep: examines the next entry and takes out its slot if the owner
    /// is gone. At the end of a pass, trims empty entries off the end, and gives memory
    /// back once the table uses under a quarter of it; that costs at most one step per
    /// entry, once per pass, so a look-up still costs a constant number of steps on
    /// average.
    fn sweep_step(&mut self) -> Option<Box<ThreadSlot<O, T>>> {
        count_steps(1);
        let Some(entry) = self.slots.get_mut(self.sweep) else {
            let len = self.slots.len();
            while let Some(None) = self.slots.last() {
                self.slots.pop();
            }
            count_steps(len - self.slots.len());
            if self.slots.capacity() / 4 > self.slots.len() {
                self.slots.shrink_to(self.slots.len() * 2);
            }
            self.sweep = 0;
            return None;
        };
        self.sweep += 1;
        if entry.as_ref()?.owner.strong_count() > 0 {
            return None;
        }
        entry.take()
    }
}

impl<O: 'static, T: 'static> ThreadSlots<O, T> {
    /// No slots yet (a `const` initialiser, so the thread-local needs no lazy set-up).
    pub(crate) const fn new() -> ThreadSlots<O, T> {
        ThreadSlots {
            recent: Cell::new(None),
            table: RefCell::new(SlotTable::new()),
        }
    }

    /// Runs `f` on this thread's value for `owner`, created by `make` on first use.
    /// `slot_key` is the owner's own key (see [`SlotKey`]); passing another one finds no
    /// slot, so `make` runs again, but never gives `f` another owner's value: a slot is
    /// always checked against `owner`.
    ///
    /// `None` (and `f` not run) only when the thread is exiting and its thread-locals are
    /// gone: the caller then falls back to a throwaway state. (Were `f` to re-enter `with`
    /// for the same owner, which nothing in this crate does, the inner call would find the
    /// slot taken and work on a second, fresh one: a duplicate cache, never a panic.)
    #[inline(always)]
    pub(crate) fn with<R>(
        key: &'static LocalKey<ThreadSlots<O, T>>,
        owner: &Arc<O>,
        slot_key: &SlotKey,
        make: impl FnOnce() -> T,
        f: impl FnOnce(&mut T) -> R,
    ) -> Option<R> {
        let mut slot = key
            .try_with(|slots| slots.take(owner, slot_key, make))
            .ok()?;
        let result = f(&mut slot.value);
        // If the thread-locals went away meanwhile, the slot is simply dropped.
        let _ = key.try_with(|slots| slots.put_back(slot));
        Some(result)
    }

    /// Takes the slot for `owner`: `recent` when it is that one (the hot path), else the
    /// one filed under `slot_key` or a new one.
    #[inline(always)]
    fn take(
        &self,
        owner: &Arc<O>,
        slot_key: &SlotKey,
        make: impl FnOnce() -> T,
    ) -> Box<ThreadSlot<O, T>> {
        match self.recent.take() {
            Some(slot) if slot.owned_by(owner) => slot,
            other => self.take_other(other, owner, slot_key, make),
        }
    }

    /// Makes `slot` the recent one again.
    #[inline(always)]
    fn put_back(&self, slot: Box<ThreadSlot<O, T>>) {
        if let Some(displaced) = self.recent.replace(Some(slot)) {
            self.keep(displaced);
        }
    }

    /// The slot for `owner` out of the table, or a new one, after filing `previous` (the
    /// slot that was recent) and taking one step of the sweep. A constant number of steps
    /// (on average, see [`SlotTable::sweep_step`]) whatever the number of slots.
    #[cold]
    #[inline(never)]
    fn take_other(
        &self,
        previous: Option<Box<ThreadSlot<O, T>>>,
        owner: &Arc<O>,
        slot_key: &SlotKey,
        make: impl FnOnce() -> T,
    ) -> Box<ThreadSlot<O, T>> {
        if let Some(previous) = previous {
            self.keep(previous);
        }
        // Slots are dropped and made only once the table is no longer borrowed, so their
        // drops and `make` could use `ThreadSlots` again.
        let (found, released) = match self.table.try_borrow_mut() {
            Ok(mut table) => (table.take(slot_key.index), table.sweep_step()),
            Err(_) => (None, None),
        };
        drop(released);
        match found {
            Some(slot) if slot.owned_by(owner) => slot,
            // Nothing here yet, or the slot of the owner that held this key before: it is
            // dropped, so its slot goes (its `Weak` is dead, as keys are given back only
            // after their owner's last `Arc`).
            stale => {
                drop(stale);
                Box::new(ThreadSlot {
                    owner: Arc::downgrade(owner),
                    index: slot_key.index,
                    value: make(),
                })
            }
        }
    }

    /// Files `slot` in the table (dropped instead if its owner is gone, or if the table is
    /// in use, which only a re-entrant call could cause). A slot already filed at its index
    /// (a duplicate left by a re-entrant call) is dropped.
    #[cold]
    fn keep(&self, slot: Box<ThreadSlot<O, T>>) {
        if slot.owner.strong_count() == 0 {
            return;
        }
        let displaced = match self.table.try_borrow_mut() {
            Ok(mut table) => table.file(slot),
            Err(_) => Some(slot),
        };
        drop(displaced);
    }

    /// How many slots this thread holds (tests).
    #[cfg(test)]
    pub(crate) fn count(key: &'static LocalKey<ThreadSlots<O, T>>) -> usize {
        key.with(|slots| {
            let recent = slots.recent.take();
            let filed = slots.table.borrow().slots.iter().flatten().count();
            let count = usize::from(recent.is_some()) + filed;
            slots.recent.set(recent);
            count
        })
    }

    /// The length of this thread's table (tests).
    #[cfg(test)]
    fn table_len(key: &'static LocalKey<ThreadSlots<O, T>>) -> usize {
        key.with(|slots| slots.table.borrow().slots.len())
    }
}

/// Counts the table entries examined or moved, per thread, so that tests can check that a
/// look-up does not search.
#[cfg(test)]
fn count_steps(steps: usize) {
    STEPS.with(|count| count.set(count.get() + steps));
}

#[cfg(not(test))]
#[inline(always)]
fn count_steps(_steps: usize) {}

#[cfg(test)]
thread_local! {
    static STEPS: Cell<usize> = const { Cell::new(0) };
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static SLOTS: ThreadSlots<String, u64> = const { ThreadSlots::new() };
        static TOKENS: ThreadSlots<String, Arc<()>> = const { ThreadSlots::new() };
    }

    /// A test owner with its key, as an owner type holds one.
    struct Owner {
        arc: Arc<String>,
        key: SlotKey,
    }

    fn owner(name: &str) -> Owner {
        Owner {
            arc: Arc::new(name.to_string()),
            key: SlotKey::new(),
        }
    }

    fn bump(owner: &Owner) -> Option<u64> {
        bump_with(&owner.arc, &owner.key)
    }

    fn bump_with(owner: &Arc<String>, key: &SlotKey) -> Option<u64> {
        ThreadSlots::with(
            &SLOTS,
            owner,
            key,
            || 100,
            |n| {
                *n += 1;
                *n
            },
        )
    }

    fn steps() -> usize {
        STEPS.with(Cell::get)
    }

    #[test]
    fn one_slot_per_owner_kept_across_calls() {
        let a = owner("a");
        let b = owner("b");
        assert_eq!(bump(&a), Some(101));
        assert_eq!(bump(&a), Some(102));
        assert_eq!(bump(&b), Some(101)); // b's own slot
        assert_eq!(bump(&a), Some(103)); // a's slot found again after b's use
        assert_eq!(bump(&b), Some(102));
        assert_eq!(ThreadSlots::count(&SLOTS), 2);
    }

    #[test]
    fn a_look_up_takes_constant_steps_with_ten_thousand_owners_used_in_turn() {
        // A linear search examines every other slot on each miss: about 10,000 steps per
        // look-up here, 300 million in all.
        let owners: Vec<Owner> = (0..10_000).map(|i| owner(&i.to_string())).collect();
        let before = steps();
        let mut look_ups = 0;
        for round in 1..=3 {
            for owner in &owners {
                // Each owner's own slot, found again in every round.
                assert_eq!(bump(owner), Some(100 + round));
                look_ups += 1;
            }
        }
        let taken = steps() - before;
        assert!(
            taken <= 5 * look_ups,
            "{taken} steps for {look_ups} look-ups"
        );
        assert_eq!(ThreadSlots::count(&SLOTS), owners.len());
    }

    #[test]
    fn the_recent_slot_is_found_without_the_table() {
        let a = owner("a");
        bump(&a);
        let before = steps();
        for _ in 0..100 {
            bump(&a);
        }
        assert_eq!(steps(), before);
    }

    #[test]
    fn a_dropped_owners_slot_is_released_when_its_key_is_reused() {
        let a = Arc::new("a".to_string());
        let key = SlotKey::new();
        let c = owner("c");
        bump_with(&a, &key);
        bump(&c); // a's slot is now filed in the table
        drop(a);
        // A new owner with the same key index, as the allocator hands it out once `a` (and
        // with it its key) is gone.
        let b = Arc::new("b".to_string());
        assert_eq!(bump_with(&b, &key), Some(101)); // a fresh slot, not a's
        assert_eq!(ThreadSlots::count(&SLOTS), 2); // b's and c's
    }

    #[test]
    fn a_dropped_owners_recent_slot_is_released_on_the_next_miss() {
        let a = owner("a");
        bump(&a);
        drop(a);
        let b = owner("b");
        bump(&b);
        assert_eq!(ThreadSlots::count(&SLOTS), 1);
    }

    #[test]
    fn dropped_owners_slots_are_released_by_the_sweep_within_one_pass() {
        let mut owners: Vec<Owner> = (0..100).map(|i| owner(&i.to_string())).collect();
        for owner in &owners {
            bump(owner);
        }
        // Keep the two with the lowest keys; drop the others but keep their keys, so that
        // no index is reused and only the sweep can release their slots.
        owners.sort_by_key(|owner| owner.key.index);
        let keys: Vec<SlotKey> = owners.drain(2..).map(|owner| owner.key).collect();
        let (x, y) = (&owners[0], &owners[1]);
        let len = ThreadSlots::table_len(&SLOTS);
        assert!(len > y.key.index + 1);
        for _ in 0..len + 2 {
            bump(x);
            bump(y);
        }
        assert_eq!(ThreadSlots::count(&SLOTS), 2);
        // The end of a pass trimmed the dead entries off the table's end.
        assert!(ThreadSlots::table_len(&SLOTS) <= y.key.index + 1);
        drop(keys);
    }

    #[test]
    fn a_slot_does_not_keep_its_owner_alive() {
        let a = owner("a");
        bump(&a);
        assert_eq!(Arc::strong_count(&a.arc), 1);
    }

    #[test]
    fn reentering_for_the_same_owner_works_on_a_second_slot_not_a_panic() {
        let a = owner("a");
        let nested = ThreadSlots::with(&SLOTS, &a.arc, &a.key, || 0, |_| bump(&a));
        // The inner call found the slot taken (the outer holds it) and made another.
        assert_eq!(nested, Some(Some(101)));
        assert_eq!(ThreadSlots::count(&SLOTS), 2);
        // The duplicate goes once the thread files the other one at the same index.
        let b = owner("b");
        bump(&b);
        bump(&a);
        assert_eq!(ThreadSlots::count(&SLOTS), 2);
    }

    #[test]
    fn a_key_given_to_the_wrong_owner_never_yields_another_owners_value() {
        let a = owner("a");
        let b = Arc::new("b".to_string());
        assert_eq!(bump(&a), Some(101));
        assert_eq!(bump_with(&b, &a.key), Some(101));
        assert_eq!(bump(&a), Some(101));
    }

    #[test]
    fn each_thread_has_its_own_slot() {
        let a = Arc::new(owner("a"));
        assert_eq!(bump(&a), Some(101));
        let other = {
            let a = Arc::clone(&a);
            std::thread::spawn(move || bump(&a)).join().unwrap()
        };
        assert_eq!(other, Some(101));
        assert_eq!(bump(&a), Some(102));
    }

    #[test]
    fn a_threads_exit_drops_all_its_slots() {
        let token = Arc::new(());
        // The owners outlive the thread: only its exit can drop the slots.
        let owners: Arc<Vec<Owner>> = Arc::new((0..3).map(|i| owner(&i.to_string())).collect());
        // `join` (unlike the end of a `thread::scope`) waits for the thread's
        // thread-locals to be torn down.
        std::thread::spawn({
            let (token, owners) = (Arc::clone(&token), Arc::clone(&owners));
            move || {
                for owner in owners.iter() {
                    ThreadSlots::with(
                        &TOKENS,
                        &owner.arc,
                        &owner.key,
                        || Arc::clone(&token),
                        |_| (),
                    );
                }
                assert_eq!(ThreadSlots::count(&TOKENS), 3);
            }
        })
        .join()
        .unwrap();
        assert_eq!(Arc::strong_count(&token), 1);
    }

    #[test]
    fn live_keys_are_distinct() {
        let keys: Vec<SlotKey> = (0..100).map(|_| SlotKey::new()).collect();
        let mut indices: Vec<usize> = keys.iter().map(|key| key.index).collect();
        indices.sort_unstable();
        indices.dedup();
        assert_eq!(indices.len(), keys.len());
    }

    #[test]
    fn the_allocator_hands_out_the_lowest_free_index() {
        let mut keys = KeyAllocator::new();
        assert_eq!(
            (keys.take(), keys.take(), keys.take(), keys.take()),
            (0, 1, 2, 3)
        );
        keys.give_back(2);
        keys.give_back(0);
        assert_eq!((keys.take(), keys.take(), keys.take()), (0, 2, 4));
    }
}
