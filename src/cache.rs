//! The snapshot cache: a reader's last good snapshot and the policy around the seqlock
//! (what to answer while the writer is mid-update, has wiped the segment or is gone; when to
//! re-read a snapshot whose generation looks unchanged). One per [`ShmReader`], one per
//! thread of a [`SharedClockBound`] under `ThreadLocal`, one behind the published snapshot
//! under `ArcSwap`. The rules are listed in [`docs::hazards`](crate::docs::hazards).
//!
//! [`ShmReader`]: crate::ShmReader
//! [`SharedClockBound`]: crate::SharedClockBound

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::{NotInitialized, ShmError};
use crate::layout::Layout;
use crate::seqlock::SegmentCells;
use crate::sync::Backoff;
use crate::time::TimeWindow;

/// Counters of what a reader did, for monitoring (see [`ShmReader::stats`]). Each reader
/// (each thread's cache, for a [`SharedClockBound`] under `ThreadLocal`) counts for itself,
/// in plain integers it owns: counting costs the hot path no shared write.
///
/// [`ShmReader::stats`]: crate::ShmReader::stats
/// [`SharedClockBound`]: crate::SharedClockBound
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReaderStats {
    /// Consistent payload copies taken from the segment (including the first, at open).
    pub full_reads: u64,
    /// Calls answered from the cached snapshot: generation unchanged, or a passing state
    /// (update in progress, wiped, contended) answered from the last good snapshot.
    pub cache_answers: u64,
    /// Back-off waits between read attempts (torn copies, or odd generations while
    /// opening).
    pub retries: u64,
    /// Times an odd generation (update in progress, or a writer that died mid-update) was
    /// seen.
    pub odd_generations: u64,
    /// Full re-reads forced because the cached snapshot was older than the recheck
    /// interval although the generation looked unchanged.
    pub rechecks: u64,
    /// Times the reader mapped the segment file again: the daemon recreated it (new
    /// file), or truncated it under a live mapping.
    pub reopens: u64,
    /// Daemon restarts that truncated the segment under this reader's mapping while it was
    /// being read, survived through the `SIGBUS` guard (see
    /// [`docs::hazards`](crate::docs::hazards)); each is followed by a reopen.
    pub truncations_survived: u64,
}

/// How old a cached snapshot may get before `now()` re-reads the payload in full even
/// though the generation looks unchanged: the guard against a generation that wrapped
/// round to the cached value, and how often a silent segment is looked at again.
pub const DEFAULT_RECHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How long opening keeps retrying while a busy writer keeps the generation moving (or odd)
/// before it gives up with [`NotInitialized::Contended`] / `UpdateInProgress`. A writer
/// preempted mid-update keeps the generation odd until the scheduler runs it again, which
/// on an overloaded machine can take several time slices: the patience must outlast that.
pub(crate) const OPEN_PATIENCE: Duration = Duration::from_millis(100);

/// Once a re-read leaves the snapshot this old (the daemon has missed several updates) or
/// finds the segment wiped, the owner checks whether the file was recreated or truncated.
const SILENT_AFTER: Duration = Duration::from_secs(5);

/// The newest snapshot any reader of one shared value has read: where a new thread starts
/// when it cannot read the segment itself at that moment.
pub(crate) struct NewestSnapshot<L: Layout> {
    newest: Mutex<(u16, L::Snapshot, L::Instant)>,
}

impl<L: Layout> NewestSnapshot<L> {
    pub(crate) fn new(cache: &SnapshotCache<L>) -> NewestSnapshot<L> {
        NewestSnapshot {
            newest: Mutex::new((
                cache.generation,
                cache.snapshot,
                L::as_of_instant(&cache.snapshot),
            )),
        }
    }

    /// Offers a snapshot just read; kept if it is newer. Never blocks: a busy lock means
    /// another reader is storing one at this moment, and either will do.
    fn offer(&self, generation: u16, snapshot: &L::Snapshot) {
        if let Some(mut newest) = self.newest.try_lock() {
            let as_of = L::as_of_instant(snapshot);
            if as_of >= newest.2 {
                *newest = (generation, *snapshot, as_of);
            }
        }
    }

    /// The newest snapshot seen, with its generation.
    pub(crate) fn get(&self) -> (u16, L::Snapshot) {
        let newest = self.newest.lock();
        (newest.0, newest.1)
    }
}

/// A reader's last good snapshot and the generation it was read at, with the settings that
/// decide how it ages.
#[derive(Clone)]
pub(crate) struct SnapshotCache<L: Layout> {
    generation: u16,
    snapshot: L::Snapshot,
    /// Instant (on the layout's age clock) from which [`now_into`](Self::now_into)
    /// re-reads in full.
    recheck_at: L::Instant,
    recheck_interval: Duration,
    grace: Duration,
    /// Set by a re-read that left the snapshot silent for [`SILENT_AFTER`] or found the
    /// segment wiped: the owner's cue to check the file.
    looks_dead: bool,
    stats: ReaderStats,
    /// Where fresh snapshots are also offered (shared values only).
    newest: Option<Arc<NewestSnapshot<L>>>,
}

impl<L: Layout> std::fmt::Debug for SnapshotCache<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotCache")
            .field("generation", &self.generation)
            .field("snapshot", &self.snapshot)
            .finish_non_exhaustive()
    }
}

/// What stopped a fresh read.
enum CopyFailure {
    /// A state that passes (wiped, never written, update in progress, contention): answer
    /// from the last snapshot if there is one.
    NotReady(NotInitialized),
    /// A real error: reported even when an older snapshot exists.
    Error(ShmError),
}

impl<L: Layout> SnapshotCache<L> {
    /// Takes a first snapshot. With `patient` (opening: nothing to fall back on), retries
    /// for up to [`OPEN_PATIENCE`] while an update is in progress or the copy keeps
    /// tearing; without (a caller that has a snapshot to fall back on), gives up after a
    /// short back-off.
    ///
    /// # Errors
    /// [`ShmError::SegmentNotInitialized`] when no consistent snapshot could be read,
    /// [`ShmError::SegmentVersionNotSupported`] / [`ShmError::SegmentMalformed`] for bad
    /// content.
    pub(crate) fn load(
        cells: &SegmentCells<L::Payload>,
        path: &Arc<Path>,
        recheck_interval: Duration,
        grace: Duration,
        patient: bool,
    ) -> Result<SnapshotCache<L>, ShmError> {
        let mut stats = ReaderStats::default();
        let mut snapshot = L::PLACEHOLDER;
        let deadline = patient.then(|| Instant::now() + OPEN_PATIENCE);
        match copy_snapshot::<L>(cells, path, deadline, &mut stats, &mut snapshot) {
            Ok(generation) => {
                let as_of = L::as_of_instant(&snapshot);
                Ok(SnapshotCache {
                    generation,
                    snapshot,
                    recheck_at: L::instant_after(&snapshot, as_of, recheck_interval),
                    recheck_interval,
                    grace,
                    looks_dead: false,
                    stats,
                    newest: None,
                })
            }
            Err(CopyFailure::NotReady(reason)) => Err(ShmError::SegmentNotInitialized {
                path: Arc::clone(path),
                reason,
            }),
            Err(CopyFailure::Error(e)) => Err(e),
        }
    }

    /// Also offer every fresh snapshot to `newest`, starting with the one held now: a new
    /// thread's first read is fresh too, and may be the newest any thread has read (while
    /// the generation stays put, nothing else would offer it).
    pub(crate) fn share_into(&mut self, newest: Arc<NewestSnapshot<L>>) {
        newest.offer(self.generation, &self.snapshot);
        self.newest = Some(newest);
    }

    /// Where this cache offers its fresh snapshots, if anywhere.
    pub(crate) fn newest(&self) -> Option<Arc<NewestSnapshot<L>>> {
        self.newest.clone()
    }

    /// Starts from `snapshot` read at `generation` by someone else (it is re-read at the
    /// next call if the segment moved since).
    pub(crate) fn adopt(&mut self, generation: u16, snapshot: L::Snapshot) {
        self.snapshot = snapshot;
        self.replaced(generation);
    }

    /// The current snapshot: the cached one while the generation is unchanged (one atomic
    /// load and a compare), a fresh copy otherwise.
    ///
    /// # Errors
    /// As [`load`](Self::load), except that passing states answer from the cache.
    #[inline]
    pub(crate) fn snapshot(
        &mut self,
        cells: &SegmentCells<L::Payload>,
        path: &Arc<Path>,
    ) -> Result<&L::Snapshot, ShmError> {
        let generation = cells.load_generation();
        if generation == self.generation {
            self.stats.cache_answers = self.stats.cache_answers.wrapping_add(1);
        } else {
            self.reread(cells, path)?;
        }
        Ok(&self.snapshot)
    }

    /// The window for the current instant, into `out`: [`snapshot`](Self::snapshot), the
    /// clock readings, and, once the snapshot is older than the recheck interval, a full
    /// re-read first (one comparison on the hot path). When that re-read finds the segment
    /// silent or wiped, [`take_looks_dead`](Self::take_looks_dead) says so afterwards.
    ///
    /// # Errors
    /// As [`snapshot`](Self::snapshot), and the layout's arithmetic errors.
    #[inline(always)]
    pub(crate) fn now_into(
        &mut self,
        cells: &SegmentCells<L::Payload>,
        path: &Arc<Path>,
        out: &mut TimeWindow,
    ) -> Result<(), ShmError> {
        self.snapshot(cells, path)?;
        let mut reading = L::read_clocks();
        if L::instant(reading) >= self.recheck_at {
            self.looks_dead = self.recheck(cells, path, L::instant(reading))?;
            // The re-read may have installed a snapshot written after that reading: read
            // the clocks again, after it, as on every path.
            reading = L::read_clocks();
        }
        L::write_window(&self.snapshot, reading, self.grace, out)
    }

    /// Makes the next [`snapshot`](Self::snapshot) re-read, whatever the generation (0 is
    /// never a written generation), keeping the snapshot until then.
    pub(crate) fn forget_generation(&mut self) {
        self.generation = 0;
    }

    /// Whether the last [`now_into`](Self::now_into) found the snapshot dead after a
    /// re-read (and forget it).
    #[inline(always)]
    pub(crate) fn take_looks_dead(&mut self) -> bool {
        std::mem::take(&mut self.looks_dead)
    }

    /// Full re-read whatever the generation says; returns whether the owner should look at
    /// the file (the snapshot is silent for [`SILENT_AFTER`], or the segment reads as wiped).
    #[cold]
    #[inline(never)]
    pub(crate) fn recheck(
        &mut self,
        cells: &SegmentCells<L::Payload>,
        path: &Arc<Path>,
        now: L::Instant,
    ) -> Result<bool, ShmError> {
        self.stats.rechecks += 1;
        let mut wiped = false;
        match copy_snapshot::<L>(cells, path, None, &mut self.stats, &mut self.snapshot) {
            Ok(generation) => self.replaced(generation),
            Err(CopyFailure::NotReady(reason)) => wiped = self.note_not_ready(reason),
            Err(CopyFailure::Error(e)) => return Err(e),
        }
        // At most one re-read per interval, even when the daemon stopped writing.
        let as_of = L::as_of_instant(&self.snapshot);
        self.recheck_at = L::instant_after(&self.snapshot, as_of.max(now), self.recheck_interval);
        Ok(wiped || now >= L::instant_after(&self.snapshot, as_of, SILENT_AFTER))
    }

    /// The instant from which [`now_into`](Self::now_into) re-reads in full.
    pub(crate) fn recheck_at(&self) -> L::Instant {
        self.recheck_at
    }

    /// The recheck interval and the free-running grace.
    pub(crate) fn settings(&self) -> (Duration, Duration) {
        (self.recheck_interval, self.grace)
    }

    /// The cached snapshot, without looking at the segment.
    #[inline(always)]
    pub(crate) fn cached(&self) -> &L::Snapshot {
        &self.snapshot
    }

    /// The free-running grace this cache applies.
    #[inline(always)]
    pub(crate) fn grace(&self) -> Duration {
        self.grace
    }

    /// The generation the cached snapshot was read at.
    pub(crate) fn generation(&self) -> u16 {
        self.generation
    }

    pub(crate) fn stats(&self) -> ReaderStats {
        self.stats
    }

    pub(crate) fn stats_mut(&mut self) -> &mut ReaderStats {
        &mut self.stats
    }

    /// A fresh snapshot was read into `self.snapshot` at `generation`.
    fn replaced(&mut self, generation: u16) {
        self.generation = generation;
        self.recheck_at = L::instant_after(
            &self.snapshot,
            L::as_of_instant(&self.snapshot),
            self.recheck_interval,
        );
        if let Some(newest) = &self.newest {
            newest.offer(generation, &self.snapshot);
        }
    }

    /// The last good snapshot stands. But if the segment was wiped, forget its generation:
    /// the writer's next update may land on the very generation we cached (a wipe restarts
    /// the count at 0), and must not look like "unchanged". Generation 0 is never a
    /// written one, so the fast path keeps answering from the cache until that update.
    /// Returns whether the segment reads as wiped.
    fn note_not_ready(&mut self, reason: NotInitialized) -> bool {
        let wiped = matches!(reason, NotInitialized::Wiped | NotInitialized::NeverWritten);
        if wiped {
            self.generation = 0;
        }
        wiped
    }

    /// The generation moved: read the new snapshot, or keep the old one through a passing
    /// state.
    #[inline(never)]
    fn reread(
        &mut self,
        cells: &SegmentCells<L::Payload>,
        path: &Arc<Path>,
    ) -> Result<(), ShmError> {
        match copy_snapshot::<L>(cells, path, None, &mut self.stats, &mut self.snapshot) {
            Ok(generation) => {
                self.replaced(generation);
                Ok(())
            }
            // Wiped, odd, zero or contended: the last good snapshot stands, and ages. A
            // segment that reads as wiped may be a mapping lost to a truncation: the owner
            // looks at the file once now rather than at the next periodic re-read.
            Err(CopyFailure::NotReady(reason)) => {
                self.looks_dead |= self.note_not_ready(reason);
                self.stats.cache_answers += 1;
                Ok(())
            }
            Err(CopyFailure::Error(e)) => Err(e),
        }
    }
}

/// One seqlock read, from R1 to a validated snapshot written into `out` (left alone on
/// failure). A copy is confirmed by a second one (see
/// [`SegmentCells::copy_payload_confirmed`]).
///
/// With a `deadline` (opening: no snapshot to fall back on) odd generations and torn copies
/// are retried until then; without one an odd generation answers at once, as the released
/// reader does, and torn copies get a short bounded back-off.
fn copy_snapshot<L: Layout>(
    cells: &SegmentCells<L::Payload>,
    path: &Arc<Path>,
    deadline: Option<Instant>,
    stats: &mut ReaderStats,
    out: &mut L::Snapshot,
) -> Result<u16, CopyFailure> {
    let mut backoff = Backoff::new();
    // A writer that never pauses may leave no gap long enough for two copies. Once the first
    // round of back-off is spent, a patient read settles for one accepted copy: that is the
    // plain seqlock guarantee, and the confirmation only narrows a race with a fence-less
    // writer on weakly ordered CPUs (see `docs::memory_model`).
    let mut confirm = true;
    loop {
        let generation = cells.load_generation();
        let failure = if generation == 0 {
            return Err(CopyFailure::NotReady(NotInitialized::NeverWritten));
        } else if generation % 2 == 1 {
            stats.odd_generations += 1;
            if deadline.is_none() {
                return Err(CopyFailure::NotReady(NotInitialized::UpdateInProgress {
                    generation,
                }));
            }
            NotInitialized::UpdateInProgress { generation }
        } else {
            match cells.load_version() {
                v if v == L::VERSION => {}
                0 => return Err(CopyFailure::NotReady(NotInitialized::Wiped)),
                found => {
                    return Err(CopyFailure::Error(ShmError::SegmentVersionNotSupported {
                        path: Arc::clone(path),
                        found,
                        expected: L::VERSION,
                    }));
                }
            }
            let copy = if confirm {
                cells.copy_payload_confirmed(generation)
            } else {
                cells.copy_payload_if_unchanged(generation)
            };
            if let Some(words) = copy {
                stats.full_reads += 1;
                // Decoded straight into its destination, and only once every field is
                // valid (see `docs::performance` for why in place).
                return match L::decode(&words) {
                    Ok(snapshot) => {
                        *out = snapshot;
                        Ok(generation)
                    }
                    Err(problem) => {
                        Err(CopyFailure::Error(ShmError::malformed(Some(path), problem)))
                    }
                };
            }
            NotInitialized::Contended
        };
        if !backoff.wait() {
            match deadline {
                Some(deadline) if Instant::now() < deadline => {
                    // Off the CPU and off the segment's cache line for a moment: a writer
                    // preempted mid-update gets to finish it, a running one is not slowed.
                    std::thread::sleep(Duration::from_micros(50));
                    backoff = Backoff::new();
                    confirm = false;
                }
                _ => return Err(CopyFailure::NotReady(failure)),
            }
        }
        stats.retries += 1;
    }
}
