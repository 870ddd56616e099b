//! The [`ThreadLocal`](crate::Strategy::ThreadLocal) strategy: one reader state per thread
//! and value ([`docs::strategies`](crate::docs::strategies)).

use std::sync::Arc;

use super::{Handle, Inner, SharedLayout};
use crate::cache::SnapshotCache;
use crate::error::ShmError;
use crate::layout::Layout;
use crate::reader::ReaderState;
use crate::seqlock::SegmentCells;
use crate::thread_slot::ThreadSlots;
use crate::time::TimeWindow;

/// A thread's reader under [`Strategy::ThreadLocal`]: the reader state, and which mapping
/// it reads (0 for the value's primary one). Nothing in it keeps a mapping (segment or
/// VMClock page) alive: a slot outliving its value holds no more than memory.
pub(super) struct ThreadReader<L: Layout> {
    pub(super) epoch: u64,
    pub(super) state: ReaderState<L>,
}

impl<L: Layout> Inner<L> {
    /// A reader for a new thread, on the newest mapping: a fresh read if the segment is
    /// readable now, else the newest snapshot any reader of this value has seen (which the
    /// next call refreshes).
    #[cold]
    pub(super) fn new_thread_reader(&self) -> ThreadReader<L> {
        let mut state = self.seed.clone();
        let mut epoch = 0;
        self.with_replacement(&mut epoch, &mut state, |segment, state| {
            let (interval, grace) = state.cache.settings();
            match SnapshotCache::load(segment.cells(), segment.path(), interval, grace, false) {
                Ok(mut cache) => {
                    cache.share_into(Arc::clone(&self.newest));
                    state.cache = cache;
                }
                Err(_) => {
                    let (generation, snapshot) = self.newest.get();
                    state.cache.adopt(generation, snapshot);
                }
            }
        });
        ThreadReader { epoch, state }
    }

    /// One reader's `now()`, into `out`: its state on its mapping, following a reopened
    /// file when the snapshot looks dead.
    #[inline(always)]
    pub(super) fn now_from(
        &self,
        primary: &SegmentCells<L::Payload>,
        epoch: &mut u64,
        state: &mut ReaderState<L>,
        out: &mut TimeWindow,
    ) -> Result<(), ShmError> {
        if *epoch == 0 {
            state.now_into(primary, self.primary.path(), self.vmclock.as_ref(), out)?;
            if !state.cache.take_looks_dead() || !self.follow_reopened_file(epoch, state) {
                return Ok(());
            }
        }
        *out = self.now_on_replacement(epoch, state)?;
        Ok(())
    }

    /// [`now_from`](Self::now_from) for a reader on (or just moved to) a replacement
    /// mapping.
    #[cold]
    #[inline(never)]
    pub(super) fn now_on_replacement(
        &self,
        epoch: &mut u64,
        state: &mut ReaderState<L>,
    ) -> Result<TimeWindow, ShmError> {
        let mut window = self.with_replacement(epoch, state, |segment, state| {
            state.now(segment, self.vmclock.as_ref())
        })?;
        if state.cache.take_looks_dead() && self.follow_reopened_file(epoch, state) {
            window = self.with_replacement(epoch, state, |segment, state| {
                state.now(segment, self.vmclock.as_ref())
            })?;
        }
        Ok(window)
    }
}

impl<L: SharedLayout> Handle<L> {
    /// Runs `f` on this thread's reader for this value (the epoch of the mapping it reads,
    /// and the reader state), creating it on first use; a throwaway one when the thread is
    /// exiting and its thread-locals are gone.
    pub(super) fn with_thread_state<R>(
        &self,
        f: impl FnOnce(&mut u64, &mut ReaderState<L>) -> R,
    ) -> R {
        let mut f = Some(f);
        let run = |reader: &mut ThreadReader<L>| {
            f.take().map(|f| f(&mut reader.epoch, &mut reader.state))
        };
        if let Some(Some(result)) = ThreadSlots::with(
            L::thread_readers(),
            &self.inner,
            &self.inner.slot_key,
            || self.inner.new_thread_reader(),
            run,
        ) {
            return result;
        }
        let mut reader = self.inner.new_thread_reader();
        match f.take() {
            Some(f) => f(&mut reader.epoch, &mut reader.state),
            // `run` took `f` and returned its result above; it cannot be here without it.
            None => unreachable!("the closure runs once"),
        }
    }
}
