//! [`SharedClockBound`]: one handle to the segment for any number of threads.
//!
//! Both strategies keep the hot path free of locks and of writes to memory another thread
//! reads: a thread that calls [`now`](SharedClockBound::now) while the segment is unchanged
//! only *reads* shared memory (the segment's generation, and for `ArcSwap` the published
//! snapshot), so threads do not slow each other down. Both keep a small per-thread slot for
//! each value a thread uses (see `thread_slot`): the usual case, one value per thread, finds
//! it with a thread-local access and one pointer compare.
//!
//! - [`Strategy::ThreadLocal`] gives each thread its own reader state (the snapshot cache
//!   and VMClock watch an [`ShmReader`](crate::ShmReader) keeps) in that slot, reading the
//!   value's one shared mapping. Cost over a plain reader: the slot lookup.
//! - [`Strategy::ArcSwap`] publishes one snapshot in an [`ArcSwap`], tagged with the
//!   generation it was read at, the mapping it came from, when it must be re-read, and the
//!   VMClock state. Each thread's slot holds an arc-swap [`Cache`](arc_swap::Cache)
//!   of it: one relaxed load of the `ArcSwap`'s pointer per call, where `ArcSwap::load`
//!   would take and release a debt slot with two read-modify-write instructions (about 13
//!   ns on the machine in `BENCHMARKS.md`, half the cost of the whole call). Readers
//!   compare the tags with the segment and answer from the published snapshot while they
//!   match (or while an update is in progress). On a change, callers refresh it one at a
//!   time under a mutex: the first reads the segment and publishes, the ones queued behind
//!   it find the new snapshot already published. The mutex is only taken when something
//!   moved (about once per daemon update), and held for one 64-byte copy.
//!
//! What the per-thread slots cost in memory: under `ThreadLocal`, 192 bytes per thread
//! and value (compile-time assertions hold both figures); under `ArcSwap`, 64 bytes, plus
//! the published snapshot the thread saw last, which its cache keeps alive (with the
//! mapping it was read from) until the thread calls again, opens another value, or exits.
//! A slot never keeps the value itself alive: slots of dropped values are pruned the next
//! time the thread adds one, and all of a thread's slots go when it exits.
//!
//! Why `ArcSwap` refreshes under a lock rather than letting a caller that finds the lock
//! taken read the segment for itself: such a private answer can be newer than the published
//! snapshot, and the same thread's next call, landing mid-update, would answer from the
//! published one, going back in time. `tests/stress.rs` catches exactly that. Serialising
//! refreshes keeps every answer at or behind the published snapshot, so each thread's
//! answers only move forward, as a [`ShmReader`](crate::ShmReader)'s do. The price is that a
//! caller can wait for another's 64-byte copy once per update (longer only if the holder is
//! descheduled inside that copy).
//!
//! Both strategies heal like a [`ShmReader`](crate::ShmReader) (a full re-read once the
//! snapshot is older than the recheck interval; following a recreated file, with one new
//! mapping for the whole value) and apply the same VMClock disruption check.

use std::fmt;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use parking_lot::Mutex;

use crate::bound::{ClockErrorBound, ClockStatus, TimeWindow};
use crate::clock;
use crate::error::ShmError;
use crate::mapping::SegmentMapping;
use crate::options::ReaderOptions;
use crate::reader::{MappedSegment, ReaderState};
use crate::seqlock::{ReaderStats, SegmentCells, SnapshotCache};
use crate::thread_slot::{self, ThreadSlots};
use crate::timespec::Timespec;
use crate::vmclock::MarkerWatch;
use crate::wait;

/// How a [`SharedClockBound`] keeps snapshots for its threads.
///
/// Both give the same answers, freshness and errors; they differ in cost. `ThreadLocal` is
/// the default: it is the cheaper of the two per call in `BENCHMARKS.md` (a plain reader
/// behind a thread-local lookup), it never makes one thread wait for another, and it
/// scales the same. `ArcSwap` suits programs with very many short-lived threads (a new
/// thread under `ThreadLocal` pays one fresh segment read and keeps 192 bytes until it
/// exits; under `ArcSwap` it picks up the published snapshot and keeps 64 bytes) and
/// callers that want to hold the shared snapshot itself
/// ([`SharedClockBound::snapshot_arc`]).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// One reader state per thread, created on the thread's first call, dropped when the
    /// thread exits.
    #[default]
    ThreadLocal,
    /// One snapshot for all threads, published through an [`ArcSwap`].
    ArcSwap,
}

/// A snapshot as published by the [`Strategy::ArcSwap`] strategy: the payload and the
/// generation it was read at. Dereferences to the [`ClockErrorBound`].
///
/// Holding one keeps the mapping it was read from alive (80 bytes of address space), not
/// the value that published it.
pub struct PublishedSnapshot {
    generation: u16,
    bound: ClockErrorBound,
    /// The mapping this snapshot was read from: the one readers check the generation of.
    segment: MappedSegment,
    /// When `now()` must re-read in full although the generation looks unchanged.
    recheck_at: Timespec,
    /// The VMClock `seq_count` the disruption verdict below answers for.
    vmclock_seq: u32,
    /// The VMClock marker differed from the snapshot's when this was published.
    disrupted: bool,
    /// `segment` is the value's primary mapping: readers then check the generation through
    /// their handle's copy of it, which is nearer than this snapshot's (the check can start
    /// before the snapshot is reached).
    on_primary: bool,
}

impl PublishedSnapshot {
    /// The segment generation this snapshot was read at.
    #[must_use]
    pub fn generation(&self) -> u16 {
        self.generation
    }

    /// The snapshot.
    #[must_use]
    pub fn bound(&self) -> &ClockErrorBound {
        &self.bound
    }

    fn new(
        segment: MappedSegment,
        state: &ReaderState,
        primary: &MappedSegment,
    ) -> PublishedSnapshot {
        PublishedSnapshot {
            on_primary: segment.same_mapping(primary),
            generation: state.cache.generation(),
            bound: *state.cache.cached(),
            segment,
            recheck_at: state.cache.recheck_at(),
            vmclock_seq: state
                .vmclock
                .as_ref()
                .map_or(0, MarkerWatch::seen_seq_count),
            disrupted: state.disrupted(),
        }
    }

    /// The window this snapshot gives at (`real`, `mono`), with its disruption verdict,
    /// into `out`.
    #[inline(always)]
    fn write_window_at(
        &self,
        real: Timespec,
        mono: Timespec,
        out: &mut TimeWindow,
    ) -> Result<(), ShmError> {
        self.bound.write_window_at(real, mono, out)?;
        if self.disrupted {
            out.clock_status = ClockStatus::Disrupted;
        }
        Ok(())
    }

    /// Whether `other` would answer exactly as this one does.
    fn same_as(&self, other: &PublishedSnapshot) -> bool {
        self.generation == other.generation
            && self.bound == other.bound
            && self.segment.same_mapping(&other.segment)
            && self.recheck_at == other.recheck_at
            && self.vmclock_seq == other.vmclock_seq
            && self.disrupted == other.disrupted
    }
}

impl Deref for PublishedSnapshot {
    type Target = ClockErrorBound;

    fn deref(&self) -> &ClockErrorBound {
        &self.bound
    }
}

impl fmt::Debug for PublishedSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublishedSnapshot")
            .field("generation", &self.generation)
            .field("bound", &self.bound)
            .finish_non_exhaustive()
    }
}

/// Error-bounded time for many threads: `Clone + Send + Sync`, one mapping of the segment
/// shared by every clone, no lock on the hot path.
///
/// Clones are cheap (two reference counts) and share everything; open once and hand clones
/// to workers. Answers, freshness, self-healing and errors are those of [`ShmReader`](crate::ShmReader):
/// each call sees the last update completed before it started (or the previous one while an
/// update is in progress), and passing states answer from the last good snapshot.
///
/// ```no_run
/// use clockbound_shm::{SharedClockBound, Strategy};
///
/// let clock = SharedClockBound::with_strategy("/var/run/clockbound/shm0", Strategy::ArcSwap)?;
/// std::thread::scope(|s| {
///     for _ in 0..4 {
///         s.spawn(|| clock.now().map(|w| w.latest));
///     }
/// });
/// # Ok::<(), clockbound_shm::ShmError>(())
/// ```
///
/// It is `Send + Sync`:
///
/// ```
/// fn assert_send_sync<T: Send + Sync + Clone>() {}
/// assert_send_sync::<clockbound_shm::SharedClockBound>();
/// ```
///
/// so any number of threads can borrow one value:
///
/// ```no_run
/// # let path = "/var/run/clockbound/shm0";
/// let clock = clockbound_shm::SharedClockBound::open(path)?;
/// std::thread::scope(|s| {
///     s.spawn(|| clock.now());
///     s.spawn(|| clock.now());
/// });
/// # Ok::<(), clockbound_shm::ShmError>(())
/// ```
///
/// which one [`ShmReader`](crate::ShmReader) cannot offer: each thread would need it by
/// `&mut`, and only one can have that.
///
/// ```compile_fail,E0499
/// # let path = "/var/run/clockbound/shm0";
/// let mut reader = clockbound_shm::ShmReader::open(path)?;
/// std::thread::scope(|s| {
///     s.spawn(|| reader.now());
///     s.spawn(|| reader.now()); // error: `reader` is already borrowed mutably
/// });
/// # Ok::<(), clockbound_shm::ShmError>(())
/// ```
#[derive(Clone)]
pub struct SharedClockBound {
    inner: Arc<Inner>,
    /// Turn an untrusted status into [`ShmError::ClockNotTrusted`] (this handle and its
    /// clones).
    require_trusted: bool,
    /// `inner.primary`'s mapping again: the hot path reaches the segment from the handle
    /// one pointer hop sooner than through `inner`.
    primary: SegmentMapping,
}

struct Inner {
    path: Arc<Path>,
    /// The file opened first: what every reader uses until the daemon recreates the file.
    primary: MappedSegment,
    /// The newest file mapped since, once the daemon has recreated the segment. Readers
    /// note which mapping they read by its epoch (0 for `primary`), so that per-thread
    /// state never holds a mapping alive after the value is dropped.
    replacement: ArcSwapOption<Replacement>,
    /// Held while mapping a replacement, so two threads noticing the new file map it once.
    reopening: Mutex<()>,
    /// The state a new thread starts from when the segment cannot be read at that moment,
    /// and the source of its VMClock watch.
    seed: ReaderState,
    mode: Mode,
}

/// A file mapped after the daemon recreated the segment.
struct Replacement {
    /// 1 for the first replacement, then counting up.
    epoch: u64,
    segment: MappedSegment,
}

// One per opened value, inside its `Arc` and never moved: the size difference is moot.
#[allow(clippy::large_enum_variant)]
enum Mode {
    ThreadLocal,
    ArcSwap {
        published: Arc<ArcSwap<PublishedSnapshot>>,
        /// The refresher's state: what `published` holds, with the state to refresh it. Only
        /// its holder stores into `published`, so published snapshots only move forward.
        refresher: Refresher,
    },
}

/// The `ArcSwap` strategy's refresher: the reader state behind the published snapshot, and
/// the epoch of the mapping it reads.
type Refresher = Mutex<(u64, ReaderState)>;

/// A thread's reader under [`Strategy::ThreadLocal`]: the reader state, and which mapping
/// it reads (0 for the value's primary one).
struct ThreadReader {
    epoch: u64,
    state: ReaderState,
}

/// A thread's view of the published snapshot under [`Strategy::ArcSwap`]: the snapshot it
/// last answered from, revalidated on each call by one relaxed load of the `ArcSwap`'s
/// pointer (arc-swap's [`Cache`](arc_swap::Cache)).
type PublishedCache = arc_swap::Cache<Arc<ArcSwap<PublishedSnapshot>>, Arc<PublishedSnapshot>>;

thread_local! {
    static THREAD_READERS: ThreadSlots<Inner, ThreadReader> = const { ThreadSlots::new() };
    static PUBLISHED_CACHES: ThreadSlots<Inner, PublishedCache> = const { ThreadSlots::new() };
}

/// Per-thread state: within the 256-byte budget in `BENCHMARKS.md`, and the figures the
/// module docs give.
const _: () = assert!(thread_slot::slot_bytes::<Inner, ThreadReader>() <= 192);
const _: () = assert!(thread_slot::slot_bytes::<Inner, PublishedCache>() <= 64);

impl SharedClockBound {
    /// Opens the segment at `path` with the default [`Strategy`] (`ThreadLocal`) and
    /// default [`ReaderOptions`].
    ///
    /// # Errors
    /// As [`ShmReader::open`](crate::ShmReader::open).
    pub fn open(path: impl AsRef<Path>) -> Result<SharedClockBound, ShmError> {
        SharedClockBound::with_options(path, Strategy::default(), &ReaderOptions::default())
    }

    /// Opens the segment at `path` with the given strategy.
    ///
    /// # Errors
    /// As [`ShmReader::open`](crate::ShmReader::open).
    pub fn with_strategy(
        path: impl AsRef<Path>,
        strategy: Strategy,
    ) -> Result<SharedClockBound, ShmError> {
        SharedClockBound::with_options(path, strategy, &ReaderOptions::default())
    }

    /// Opens the segment at `path` with the given strategy and options (VMClock disruption
    /// check, recheck interval).
    ///
    /// # Errors
    /// As [`ShmReader::open_with`](crate::ShmReader::open_with).
    pub fn with_options(
        path: impl AsRef<Path>,
        strategy: Strategy,
        options: &ReaderOptions,
    ) -> Result<SharedClockBound, ShmError> {
        let (primary, seed, _vmclock) = ReaderState::open(path.as_ref(), options)?;
        let path = Arc::clone(primary.path());
        let mode = match strategy {
            Strategy::ThreadLocal => Mode::ThreadLocal,
            Strategy::ArcSwap => Mode::ArcSwap {
                published: Arc::new(ArcSwap::from_pointee(PublishedSnapshot::new(
                    primary.clone(),
                    &seed,
                    &primary,
                ))),
                refresher: Mutex::new((0, seed.clone())),
            },
        };
        let inner = Inner {
            path,
            primary,
            replacement: ArcSwapOption::empty(),
            reopening: Mutex::new(()),
            seed,
            mode,
        };
        Ok(SharedClockBound {
            primary: inner.primary.mapping().clone(),
            inner: Arc::new(inner),
            require_trusted: false,
        })
    }

    /// Waits for the segment at `path` to appear, become valid and report Synchronized,
    /// then returns it opened with the default strategy and options (see
    /// [`ShmReader::wait_for_sync`](crate::ShmReader::wait_for_sync)).
    ///
    /// # Errors
    /// [`ShmError::Timeout`] after `timeout`, carrying the last attempt's error if it failed.
    pub fn wait_for_sync(
        path: impl AsRef<Path>,
        timeout: Duration,
    ) -> Result<SharedClockBound, ShmError> {
        let path = path.as_ref();
        wait::for_sync(
            timeout,
            || SharedClockBound::open(path),
            |clock| Ok(clock.now()?.clock_status),
        )
    }

    /// This handle, set to refuse untrusted windows: with `true`, [`now`](Self::now) (and the
    /// queries built on it) return [`ShmError::ClockNotTrusted`] instead of a window whose
    /// status is Unknown or Disrupted. Clones made afterwards inherit the setting; other
    /// handles to the same value keep theirs.
    ///
    /// ```no_run
    /// # use clockbound_shm::SharedClockBound;
    /// let strict = SharedClockBound::open("/var/run/clockbound/shm0")?.require_trusted(true);
    /// let w = strict.now()?; // Err(ClockNotTrusted { .. }) rather than an Unknown window
    /// assert!(w.clock_status.is_trusted());
    /// # Ok::<(), clockbound_shm::ShmError>(())
    /// ```
    #[must_use]
    pub fn require_trusted(mut self, on: bool) -> SharedClockBound {
        self.require_trusted = on;
        self
    }

    /// The window for the current instant, with the self-healing and disruption checks of
    /// [`ShmReader::now`](crate::ShmReader::now).
    ///
    /// # Errors
    /// As [`ShmReader::now`](crate::ShmReader::now), and [`ShmError::ClockNotTrusted`] when
    /// this handle [requires a trusted clock](Self::require_trusted) and the status is
    /// Unknown or Disrupted.
    #[inline(always)]
    pub fn now(&self) -> Result<TimeWindow, ShmError> {
        // Inlined whole into the caller, with the window built in place and only cold
        // paths out of line (taking and returning values, never the window's address), so
        // that the window stays in registers, as in `ShmReader::now` (see
        // `ClockErrorBound::write_window_at` for what a copy through memory costs).
        let inner = &*self.inner;
        let mut window = TimeWindow::UNTRUSTED;
        // The closures below return nothing: an error is parked here instead, so that no
        // `Result` has to be kept (in memory) while the thread-local slot is put back.
        let mut failed = None;
        let mut fail = |result: Result<(), ShmError>| {
            if let Err(e) = result {
                failed = Some(e);
            }
        };
        let done = match &inner.mode {
            Mode::ThreadLocal => self.try_with_thread_state(
                #[inline(always)]
                |reader| {
                    fail(inner.now_from(
                        self.primary.cells(),
                        &mut reader.epoch,
                        &mut reader.state,
                        &mut window,
                    ));
                },
            ),
            Mode::ArcSwap {
                published,
                refresher,
            } => self.try_with_published_cache(
                published,
                #[inline(always)]
                |cache| {
                    fail(inner.now_from_published(
                        self.primary.cells(),
                        cache.load(),
                        published,
                        refresher,
                        &mut window,
                    ));
                },
            ),
        };
        if done.is_none() {
            return self.now_without_thread_state();
        }
        if let Some(e) = failed {
            return Err(e);
        }
        self.trusted(window)
    }

    /// `window`, or [`ShmError::ClockNotTrusted`] if this handle requires a trusted clock
    /// and the window's status is not.
    #[inline(always)]
    fn trusted(&self, window: TimeWindow) -> Result<TimeWindow, ShmError> {
        if self.require_trusted && !window.clock_status.is_trusted() {
            return Err(not_trusted(window.clock_status));
        }
        Ok(window)
    }

    /// [`now`](Self::now) for a thread whose thread-locals are gone (it is exiting): on a
    /// throwaway reader state, or from the published snapshot directly.
    #[cold]
    #[inline(never)]
    fn now_without_thread_state(&self) -> Result<TimeWindow, ShmError> {
        let inner = &*self.inner;
        let mut window = TimeWindow::UNTRUSTED;
        match &inner.mode {
            Mode::ThreadLocal => self.with_thread_state(|epoch, state| {
                inner.now_from(self.primary.cells(), epoch, state, &mut window)
            })?,
            Mode::ArcSwap {
                published,
                refresher,
            } => {
                let current = published.load();
                inner.now_from_published(
                    self.primary.cells(),
                    &current,
                    published,
                    refresher,
                    &mut window,
                )?;
            }
        }
        self.trusted(window)
    }

    /// True only when `t` has certainly passed (`t < earliest` of [`now`](Self::now)).
    ///
    /// # Errors
    /// As [`now`](Self::now).
    pub fn after(&self, t: Timespec) -> Result<bool, ShmError> {
        Ok(self.now()?.after(t))
    }

    /// True only when `t` has certainly not arrived (`t > latest` of [`now`](Self::now)).
    ///
    /// # Errors
    /// As [`now`](Self::now).
    pub fn before(&self, t: Timespec) -> Result<bool, ShmError> {
        Ok(self.now()?.before(t))
    }

    /// Commit-wait: blocks until `t` has certainly passed; see
    /// [`ShmReader::wait_until_after`](crate::ShmReader::wait_until_after).
    ///
    /// # Errors
    /// [`ShmError::Timeout`], [`ShmError::ClockNotTrusted`], or as [`now`](Self::now).
    pub fn wait_until_after(&self, t: Timespec, timeout: Duration) -> Result<TimeWindow, ShmError> {
        wait::until_after(t, timeout, || self.now())
    }

    /// A copy of the current snapshot (the generation check only; see
    /// [`ShmReader::snapshot`](crate::ShmReader::snapshot)).
    ///
    /// # Errors
    /// As [`ShmReader::snapshot`](crate::ShmReader::snapshot).
    pub fn snapshot(&self) -> Result<ClockErrorBound, ShmError> {
        let inner = &*self.inner;
        match &inner.mode {
            Mode::ThreadLocal => self.with_thread_state(|epoch, state| {
                inner.with_segment(epoch, state, |segment, state| {
                    state
                        .cache
                        .snapshot(segment.cells(), segment.path())
                        .copied()
                })
            }),
            Mode::ArcSwap {
                published,
                refresher,
            } => inner.with_published_snapshot(published, refresher, |snapshot| snapshot.bound),
        }
    }

    /// The current snapshot as a shared `Arc`, to hold without copying. Under
    /// [`Strategy::ArcSwap`] this is the published snapshot itself; under `ThreadLocal` it
    /// is a new `Arc` holding a copy.
    ///
    /// # Errors
    /// As [`ShmReader::snapshot`](crate::ShmReader::snapshot).
    pub fn snapshot_arc(&self) -> Result<Arc<PublishedSnapshot>, ShmError> {
        let inner = &*self.inner;
        match &inner.mode {
            Mode::ThreadLocal => self.with_thread_state(|epoch, state| {
                inner.with_segment(epoch, state, |segment, state| {
                    state.cache.snapshot(segment.cells(), segment.path())?;
                    Ok(Arc::new(PublishedSnapshot::new(
                        segment.clone(),
                        state,
                        &inner.primary,
                    )))
                })
            }),
            Mode::ArcSwap {
                published,
                refresher,
            } => inner.with_published_snapshot(published, refresher, Arc::clone),
        }
    }

    /// What the reading has done so far: under `ThreadLocal`, the calling thread's counters
    /// for this value; under `ArcSwap`, the refresher's (reads, retries, rechecks, reopens;
    /// answers from the published snapshot are not counted, to keep the hot path free of
    /// shared writes).
    #[must_use]
    pub fn stats(&self) -> ReaderStats {
        match &self.inner.mode {
            Mode::ThreadLocal => self.with_thread_state(|_, state| state.cache.stats()),
            Mode::ArcSwap { refresher, .. } => refresher.lock().1.cache.stats(),
        }
    }

    /// The strategy this value was opened with.
    #[must_use]
    pub fn strategy(&self) -> Strategy {
        match self.inner.mode {
            Mode::ThreadLocal => Strategy::ThreadLocal,
            Mode::ArcSwap { .. } => Strategy::ArcSwap,
        }
    }

    /// The segment file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on this thread's reader for this value (the epoch of the mapping it reads,
    /// and the reader state), creating it on first use; a throwaway one when the thread is
    /// exiting and its thread-locals are gone.
    fn with_thread_state<R>(&self, f: impl FnOnce(&mut u64, &mut ReaderState) -> R) -> R {
        let mut f = Some(f);
        let run = |reader: &mut ThreadReader| {
            (f.take().expect("called once"))(&mut reader.epoch, &mut reader.state)
        };
        if let Some(result) = self.try_with_thread_state(run) {
            return result;
        }
        let mut reader = self.inner.new_thread_reader();
        (f.take().expect("not called when thread-locals are gone"))(
            &mut reader.epoch,
            &mut reader.state,
        )
    }

    /// Runs `f` on this thread's reader for this value, creating it on first use; `None`
    /// (and `f` not run) when the thread is exiting and its thread-locals are gone.
    #[inline(always)]
    fn try_with_thread_state<R>(&self, f: impl FnOnce(&mut ThreadReader) -> R) -> Option<R> {
        ThreadSlots::with(
            &THREAD_READERS,
            &self.inner,
            || self.inner.new_thread_reader(),
            f,
        )
    }

    /// Runs `f` on this thread's cache of the published snapshot, creating it on first use;
    /// `None` (and `f` not run) when the thread is exiting and its thread-locals are gone.
    #[inline(always)]
    fn try_with_published_cache<R>(
        &self,
        published: &Arc<ArcSwap<PublishedSnapshot>>,
        f: impl FnOnce(&mut PublishedCache) -> R,
    ) -> Option<R> {
        ThreadSlots::with(
            &PUBLISHED_CACHES,
            &self.inner,
            || arc_swap::Cache::new(Arc::clone(published)),
            f,
        )
    }
}

impl Inner {
    /// A reader for a new thread, on the newest mapping: a fresh read if the segment is
    /// readable now, else the seed (which the next call refreshes).
    #[cold]
    fn new_thread_reader(&self) -> ThreadReader {
        let mut state = self.seed.clone();
        let mut epoch = 0;
        self.with_replacement(&mut epoch, &mut state, |segment, state| {
            if let Ok(mut cache) = SnapshotCache::load(segment.cells(), segment.path()) {
                cache.set_recheck_interval(state.cache.recheck_interval());
                state.cache = cache;
            }
        });
        ThreadReader { epoch, state }
    }

    /// Runs `f` with the mapping the reader at `epoch` reads: the primary one (no
    /// synchronisation at all: the hot path) until the reader has moved to a replacement,
    /// then the newest replacement (moving the reader onto it when it was on an older one).
    /// A reader on the primary mapping moves in `follow_recreated_file`, once its snapshot
    /// looks dead.
    #[inline(always)]
    fn with_segment<R>(
        &self,
        epoch: &mut u64,
        state: &mut ReaderState,
        f: impl FnOnce(&MappedSegment, &mut ReaderState) -> R,
    ) -> R {
        if *epoch == 0 {
            return f(&self.primary, state);
        }
        self.with_replacement(epoch, state, f)
    }

    /// [`with_segment`](Self::with_segment) off the hot path: the newest mapping, moving
    /// the reader onto it if needed (from the primary one too).
    #[cold]
    #[inline(never)]
    fn with_replacement<R>(
        &self,
        epoch: &mut u64,
        state: &mut ReaderState,
        f: impl FnOnce(&MappedSegment, &mut ReaderState) -> R,
    ) -> R {
        let replacement = self.replacement.load();
        let Some(newest) = replacement.as_ref() else {
            return f(&self.primary, state);
        };
        if newest.epoch != *epoch {
            match state.rebase(&newest.segment) {
                Some(rebased) => *state = rebased,
                // The new file cannot be read right now: keep the old snapshot, but forget
                // its generation, which means nothing in the new file, so the next call
                // re-reads it.
                None => state.cache.forget_generation(),
            }
            *epoch = newest.epoch;
        }
        f(&newest.segment, state)
    }

    /// One reader's `now()`, into `out`: its state on its mapping, following a recreated
    /// file when the snapshot looks dead.
    ///
    /// The reader on the primary mapping is the hot path, inlined; everything else is out of
    /// line and never sees `out`'s address (which would keep the window in memory).
    #[inline(always)]
    fn now_from(
        &self,
        primary: &SegmentCells,
        epoch: &mut u64,
        state: &mut ReaderState,
        out: &mut TimeWindow,
    ) -> Result<(), ShmError> {
        if *epoch == 0 {
            state.now_into_cells(primary, self.primary.path(), out)?;
            if !state.cache.take_looks_dead() || !self.follow_recreated_file(epoch, state) {
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
    fn now_on_replacement(
        &self,
        epoch: &mut u64,
        state: &mut ReaderState,
    ) -> Result<TimeWindow, ShmError> {
        let mut window = TimeWindow::UNTRUSTED;
        self.with_replacement(epoch, state, |segment, state| {
            state.now_into(segment, &mut window)
        })?;
        if state.cache.take_looks_dead() && self.follow_recreated_file(epoch, state) {
            self.with_replacement(epoch, state, |segment, state| {
                state.now_into(segment, &mut window)
            })?;
        }
        Ok(window)
    }

    /// `ArcSwap`'s `now()` from `current` (the published snapshot as this caller last saw
    /// it), into `out`: `current` while its tags match, else a refresh.
    #[inline(always)]
    fn now_from_published(
        &self,
        primary: &SegmentCells,
        current: &PublishedSnapshot,
        published: &ArcSwap<PublishedSnapshot>,
        refresher: &Refresher,
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
        let vmclock_moved = self
            .seed
            .vmclock
            .as_ref()
            .is_some_and(|w| w.current_seq_count() != current.vmclock_seq);
        // The clocks are read after the snapshot is chosen, never before: a snapshot written
        // after our monotonic reading could have an `as_of` past it.
        let real = clock::realtime();
        let mono = clock::monotonic_coarse();
        if !segment_moved && !vmclock_moved && mono < current.recheck_at {
            return current.write_window_at(real, mono, out);
        }
        let fresh = self.refresh_published(published, refresher, Some(mono))?;
        fresh.write_window_at(clock::realtime(), clock::monotonic_coarse(), out)
    }

    /// `ArcSwap`'s `snapshot()`: `f` of the published snapshot while its generation
    /// matches, else of a refreshed one.
    fn with_published_snapshot<R>(
        &self,
        published: &ArcSwap<PublishedSnapshot>,
        refresher: &Refresher,
        f: impl FnOnce(&Arc<PublishedSnapshot>) -> R,
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
    /// the module docs for why), and return what is published afterwards. With `mono`, also
    /// run the recheck (and follow a recreated file) when that instant has reached the
    /// recheck time. A caller queued behind another refresher usually finds the update
    /// already published, and its refresh reads nothing but the generation.
    #[cold]
    #[inline(never)]
    fn refresh_published(
        &self,
        published: &ArcSwap<PublishedSnapshot>,
        refresher: &Refresher,
        mono: Option<Timespec>,
    ) -> Result<Arc<PublishedSnapshot>, ShmError> {
        let mut guard = refresher.lock();
        let (epoch, state) = &mut *guard;
        let looks_dead =
            self.with_segment(epoch, state, |segment, state| state.refresh(segment, mono))?;
        if looks_dead && self.follow_recreated_file(epoch, state) {
            self.with_segment(epoch, state, |segment, state| state.refresh(segment, None))?;
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

    /// A reader's snapshot looked dead: if the path now names another file, map it (once
    /// for the whole value, whoever notices first) and move the reader onto it. Returns
    /// whether the reader moved.
    #[cold]
    #[inline(never)]
    fn follow_recreated_file(&self, epoch: &mut u64, state: &mut ReaderState) -> bool {
        let newest_epoch = || self.replacement.load().as_ref().map_or(0, |r| r.epoch);
        if newest_epoch() == *epoch {
            if !self.with_segment(epoch, state, |segment, _| segment.replaced_on_disk()) {
                return false;
            }
            let _reopening = self.reopening.lock();
            let newest = newest_epoch();
            if newest == *epoch {
                // Still ours to do. The new file may not be readable yet (the daemon is
                // writing it): keep answering from the old snapshot and look again later.
                let Ok((segment, _)) = MappedSegment::open(&self.path) else {
                    return false;
                };
                self.replacement.store(Some(Arc::new(Replacement {
                    epoch: newest + 1,
                    segment,
                })));
            }
        }
        let before = *epoch;
        self.with_replacement(epoch, state, |_, _| ());
        *epoch != before
    }
}

/// The error for an untrusted status (out of line: the hot path only tests for it).
#[cold]
fn not_trusted(status: ClockStatus) -> ShmError {
    ShmError::ClockNotTrusted { status }
}

impl fmt::Debug for SharedClockBound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedClockBound")
            .field("path", &self.path())
            .field("strategy", &self.strategy())
            .field("require_trusted", &self.require_trusted)
            .finish_non_exhaustive()
    }
}
