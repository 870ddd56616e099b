//! The [`ArcSwap`](crate::Strategy::ArcSwap) strategy: one published snapshot for all
//! threads, refreshed by one caller at a time ([`docs::strategies`](crate::docs::strategies)).

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use super::Inner;
use crate::error::ShmError;
use crate::layout::Layout;
use crate::reader::ReaderState;
use crate::segment::MappedSegment;
use crate::seqlock::SegmentCells;
use crate::time::{ClockStatus, TimeWindow};
use crate::vmclock::VmClockSource;

/// The `ArcSwap` strategy's refresher: the reader state behind the published snapshot, and
/// the epoch of the mapping it reads.
pub(super) type Refresher<L> = Mutex<(u64, ReaderState<L>)>;

/// A snapshot as the `ArcSwap` strategy publishes it: the payload, the generation it was
/// read at and what readers compare to decide it is still current.
pub(super) struct PublishedSnapshot<L: Layout> {
    pub(super) generation: u16,
    pub(super) snapshot: L::Snapshot,
    /// The mapping this snapshot was read from: the one readers check the generation of.
    segment: MappedSegment<L>,
    /// When `now()` must re-read in full although the generation looks unchanged.
    recheck_at: L::Instant,
    grace: Duration,
    /// The VMClock `seq_count` the disruption verdict answers for; `None` while the
    /// snapshot does not ask for the check.
    vmclock_seq: Option<u32>,
    /// The VMClock marker differed from the snapshot's when this was published.
    disrupted: bool,
    /// `segment` is the value's primary mapping: readers then check the generation through
    /// their handle's copy of it, which is nearer.
    on_primary: bool,
}

impl<L: Layout> PublishedSnapshot<L> {
    pub(super) fn new(
        segment: MappedSegment<L>,
        state: &ReaderState<L>,
        primary: &MappedSegment<L>,
    ) -> PublishedSnapshot<L> {
        let snapshot = *state.cache.cached();
        PublishedSnapshot {
            on_primary: segment.same_mapping(primary),
            generation: state.cache.generation(),
            snapshot,
            segment,
            recheck_at: state.cache.recheck_at(),
            grace: state.cache.grace(),
            vmclock_seq: if L::disruption_support(&snapshot) {
                state.vmclock.as_ref().map(|w| w.seen_seq_count())
            } else {
                None
            },
            disrupted: state.disrupted(),
        }
    }

    /// The window this snapshot gives at `reading`, with its disruption verdict, into `out`.
    #[inline(always)]
    pub(super) fn write_window(
        &self,
        reading: L::Reading,
        out: &mut TimeWindow,
    ) -> Result<(), ShmError> {
        L::write_window(&self.snapshot, reading, self.grace, out)?;
        if self.disrupted {
            out.clock_status = ClockStatus::Disrupted;
        }
        Ok(())
    }

    /// Whether `other` would answer exactly as this one does.
    pub(super) fn same_as(&self, other: &PublishedSnapshot<L>) -> bool {
        self.generation == other.generation
            && self.snapshot == other.snapshot
            && self.segment.same_mapping(&other.segment)
            && self.recheck_at == other.recheck_at
            && self.vmclock_seq == other.vmclock_seq
            && self.disrupted == other.disrupted
    }
}

/// A thread's view of the published snapshot under [`Strategy::ArcSwap`]: the snapshot it
/// last answered from, revalidated on each call by one relaxed load of the `ArcSwap`'s
/// pointer (arc-swap's [`Cache`](arc_swap::Cache)).
pub(super) type PublishedCache<L> =
    arc_swap::Cache<Arc<ArcSwap<PublishedSnapshot<L>>>, Arc<PublishedSnapshot<L>>>;

impl<L: Layout> Inner<L> {
    /// `ArcSwap`'s `now()` from `current` (the published snapshot as this caller last saw
    /// it), into `out`: `current` while it is current, else a refresh.
    #[inline(always)]
    pub(super) fn now_from_published(
        &self,
        primary: &SegmentCells<L::Payload>,
        current: &PublishedSnapshot<L>,
        published: &ArcSwap<PublishedSnapshot<L>>,
        refresher: &Refresher<L>,
        out: &mut TimeWindow,
    ) -> Result<(), ShmError> {
        let cells = if current.on_primary {
            primary
        } else {
            current.segment.cells()
        };
        let generation = cells.load_generation();
        // Mid-update (odd) answers from the last snapshot, as every reader does.
        let segment_moved = generation != current.generation && generation % 2 == 0;
        let vmclock_moved = current.vmclock_seq.is_some_and(|seen| {
            self.vmclock
                .as_ref()
                .and_then(VmClockSource::current_seq_count)
                != Some(seen)
        });
        // The clocks are read after the snapshot is chosen, never before: a snapshot written
        // after our reading could have an `as_of` past it.
        let reading = L::read_clocks();
        if !segment_moved && !vmclock_moved && L::instant(reading) < current.recheck_at {
            return current.write_window(reading, out);
        }
        let fresh = self.refresh_published(published, refresher, Some(L::instant(reading)))?;
        fresh.write_window(L::read_clocks(), out)
    }

    /// `ArcSwap`'s `snapshot()`: `f` of the published snapshot while its generation
    /// matches, else of a refreshed one.
    pub(super) fn with_published_snapshot<R>(
        &self,
        published: &ArcSwap<PublishedSnapshot<L>>,
        refresher: &Refresher<L>,
        f: impl FnOnce(&Arc<PublishedSnapshot<L>>) -> R,
    ) -> Result<R, ShmError> {
        let current = published.load();
        let generation = current.segment.cells().load_generation();
        if generation == current.generation || generation % 2 == 1 {
            return Ok(f(&current));
        }
        drop(current);
        self.refresh_published(published, refresher, None)
            .map(|snapshot| f(&snapshot))
    }

    /// Something moved since the published snapshot: refresh it, one caller at a time (see
    /// [`docs::strategies`](crate::docs::strategies) for why), and return what is published
    /// afterwards. With `now`, also run the recheck (and follow a reopened file) when that
    /// instant has reached the recheck time.
    #[cold]
    #[inline(never)]
    pub(super) fn refresh_published(
        &self,
        published: &ArcSwap<PublishedSnapshot<L>>,
        refresher: &Refresher<L>,
        now: Option<L::Instant>,
    ) -> Result<Arc<PublishedSnapshot<L>>, ShmError> {
        let mut guard = refresher.lock();
        let (epoch, state) = &mut *guard;
        let looks_dead = self.with_segment(epoch, state, |segment, state| {
            state.catch_up(segment, now, self.vmclock.as_ref())
        })?;
        if looks_dead && self.follow_reopened_file(epoch, state) {
            self.with_segment(epoch, state, |segment, state| {
                state.catch_up(segment, None, self.vmclock.as_ref())
            })?;
        }
        let fresh = self.with_segment(epoch, state, |segment, state| {
            PublishedSnapshot::new(segment.clone(), state, &self.primary)
        });
        let current = published.load_full();
        if current.same_as(&fresh) {
            return Ok(current);
        }
        let fresh = Arc::new(fresh);
        published.store(Arc::clone(&fresh));
        Ok(fresh)
    }
}
