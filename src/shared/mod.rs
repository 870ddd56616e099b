//! [`SharedClockBound`]: one handle to a segment for any number of threads, with two
//! strategies for keeping snapshots ([`Strategy`]); how they work, what they cost and when
//! to pick which is in [`docs::strategies`](crate::docs::strategies).
//!
//! The handle chooses its layout at open ([`SharedClockBound::open_default`] prefers the 3.x
//! daemon's `shm1`) and dispatches on it once per call; everything below is generic over
//! the layout.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::thread::LocalKey;
use std::time::Duration;

use ::arc_swap::{ArcSwap, ArcSwapOption};
use parking_lot::Mutex;

use self::arc_swap::{PublishedCache, PublishedSnapshot, Refresher};
use self::thread_local::ThreadReader;
use crate::cache::{NewestSnapshot, ReaderStats};
use crate::error::ShmError;
use crate::layout::{Layout, Layout2, Layout3, LayoutVersion, SegmentHeader};
use crate::mapping::SegmentMapping;
use crate::options::{ReaderOptions, Strategy};
use crate::reader::{
    CLOCKBOUND_SHM_DEFAULT_PATH, CLOCKBOUND_SHM1_DEFAULT_PATH, ReaderState, vmclock_source,
};
use crate::segment::MappedSegment;
use crate::snapshot::{ClockErrorBound, ClockErrorBoundV3};
use crate::thread_slot::{self, SlotKey, ThreadSlots};
use crate::time::ClockStatus;
use crate::time::TimeWindow;
use crate::time::Timespec;
use crate::vmclock::VmClockSource;
use crate::wait;

mod arc_swap;
#[cfg(feature = "tokio")]
mod async_wait;
mod thread_local;

/// A snapshot of either layout, as [`SharedClockBound::snapshot`] returns it.
///
/// With feature `serde` it is the form of the snapshot it holds, whose `"layout"` (2 or 3)
/// says which on the way back.
#[derive(Copy, Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum AnySnapshot {
    /// A layout 2 (`shm0`) snapshot.
    V2(ClockErrorBound),
    /// A layout 3 (`shm1`) snapshot.
    V3(ClockErrorBoundV3),
}

impl AnySnapshot {
    /// The status the daemon wrote (before any degradation for age).
    #[must_use]
    pub fn clock_status(&self) -> ClockStatus {
        match self {
            AnySnapshot::V2(s) => s.clock_status(),
            AnySnapshot::V3(s) => s.clock_status(),
        }
    }

    /// The layout the snapshot was read from.
    #[must_use]
    pub fn layout(&self) -> LayoutVersion {
        match self {
            AnySnapshot::V2(_) => LayoutVersion::V2,
            AnySnapshot::V3(_) => LayoutVersion::V3,
        }
    }

    /// When the snapshot was computed, on its layout's clock: `CLOCK_MONOTONIC_COARSE` for
    /// layout 2, the daemon's UTC time (the `CLOCK_REALTIME` scale) for layout 3. Compare
    /// only snapshots of one layout.
    #[must_use]
    pub fn as_of(&self) -> Timespec {
        match self {
            AnySnapshot::V2(s) => s.as_of(),
            AnySnapshot::V3(s) => s.as_of(),
        }
    }

    /// The bound at `as_of`, in nanoseconds.
    #[must_use]
    pub fn bound_nsec(&self) -> i64 {
        match self {
            AnySnapshot::V2(s) => s.bound_nsec(),
            AnySnapshot::V3(s) => s.bound_nsec(),
        }
    }

    /// The last VMClock disruption marker the daemon saw.
    #[must_use]
    pub fn disruption_marker(&self) -> u64 {
        match self {
            AnySnapshot::V2(s) => s.disruption_marker(),
            AnySnapshot::V3(s) => s.disruption_marker(),
        }
    }

    /// Whether the daemon asks readers to check the VMClock disruption marker.
    #[must_use]
    pub fn clock_disruption_support_enabled(&self) -> bool {
        match self {
            AnySnapshot::V2(s) => s.clock_disruption_support_enabled(),
            AnySnapshot::V3(s) => s.clock_disruption_support_enabled(),
        }
    }
}

impl PartialEq<ClockErrorBound> for AnySnapshot {
    fn eq(&self, other: &ClockErrorBound) -> bool {
        matches!(self, AnySnapshot::V2(s) if s == other)
    }
}

impl PartialEq<ClockErrorBoundV3> for AnySnapshot {
    fn eq(&self, other: &ClockErrorBoundV3) -> bool {
        matches!(self, AnySnapshot::V3(s) if s == other)
    }
}

/// Error-bounded time for many threads: `Clone + Send + Sync`, one mapping of the segment
/// shared by every clone, no lock on the hot path, either layout.
///
/// [`open_default`](Self::open_default) reads the 3.x daemon's layout 3 segment when there
/// is one, else the layout 2 segment; [`open`](Self::open) reads the segment at a path, as
/// the layout its header declares.
///
/// Clones are cheap (two reference counts) and share everything; open once and hand clones
/// to workers. Answers, freshness, self-healing and errors are those of [`ShmReader`](crate::ShmReader):
/// each call sees the last update completed before it started (or the previous one while an
/// update is in progress), and passing states answer from the last good snapshot.
///
/// ```no_run
/// use clockbound_shm::{ReaderOptions, SharedClockBound, Strategy};
///
/// let options = ReaderOptions::new().strategy(Strategy::ArcSwap);
/// let clock = SharedClockBound::open_with("/var/run/clockbound/shm0", &options)?;
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
    handle: AnyHandle,
    /// Turn an untrusted status into [`ShmError::ClockNotTrusted`].
    require_trusted: bool,
}

/// The value behind a handle, for the layout it reads.
#[derive(Clone)]
enum AnyHandle {
    V2(Handle<Layout2>),
    V3(Handle<Layout3>),
}

/// A handle to one layout's shared value.
struct Handle<L: SharedLayout> {
    inner: Arc<Inner<L>>,
    /// `inner.primary`'s mapping again: the hot path reaches the segment from the handle
    /// one pointer hop sooner than through `inner`.
    primary: SegmentMapping<L::Payload>,
}

impl<L: SharedLayout> Clone for Handle<L> {
    fn clone(&self) -> Self {
        Handle {
            inner: Arc::clone(&self.inner),
            primary: self.primary.clone(),
        }
    }
}

struct Inner<L: Layout> {
    path: Arc<Path>,
    /// The file opened first: what every reader uses until the file must be reopened.
    primary: MappedSegment<L>,
    /// The newest mapping since, once the daemon recreated the file or truncated it under
    /// the mapping. Readers note which mapping they read by its epoch (0 for `primary`), so
    /// that per-thread state never holds a mapping alive after the value is dropped.
    replacement: ArcSwapOption<Replacement<L>>,
    /// Held while mapping a replacement, so two threads noticing it map it once.
    reopening: Mutex<()>,
    /// The VMClock page for the disruption check (`None` with the check off), here rather
    /// than in per-thread state for the same reason as the mappings: readers reach it
    /// through the value they are called on, so it goes with the value.
    vmclock: Option<VmClockSource>,
    /// The state new threads start from: settings, the VMClock watch, and a first snapshot.
    seed: ReaderState<L>,
    /// The newest snapshot any reader of this value has read: a new thread that cannot read
    /// the segment at that moment starts from it.
    newest: Arc<NewestSnapshot<L>>,
    sigbus_guard: bool,
    mode: Mode<L>,
    /// This value's index into every thread's slot table.
    slot_key: SlotKey,
}

/// A mapping made after the first one.
struct Replacement<L: Layout> {
    /// 1 for the first replacement, then counting up.
    epoch: u64,
    segment: MappedSegment<L>,
    /// The mapping it replaced had been truncated under it (the `SIGBUS` guard tripped).
    after_fault: bool,
}

// One per opened value, inside its `Arc` and never moved: the size difference is moot.
#[allow(clippy::large_enum_variant)]
enum Mode<L: Layout> {
    ThreadLocal,
    ArcSwap {
        published: Arc<ArcSwap<PublishedSnapshot<L>>>,
        /// The refresher's state: what `published` holds, with the state to refresh it. Only
        /// its holder stores into `published`, so published snapshots only move forward.
        refresher: Refresher<L>,
    },
}

type ReaderSlots<L> = ThreadSlots<Inner<L>, ThreadReader<L>>;
type CacheSlots<L> = ThreadSlots<Inner<L>, PublishedCache<L>>;

thread_local! {
    static THREAD_READERS_V2: ReaderSlots<Layout2> = const { ThreadSlots::new() };
    static PUBLISHED_CACHES_V2: CacheSlots<Layout2> = const { ThreadSlots::new() };
    static THREAD_READERS_V3: ReaderSlots<Layout3> = const { ThreadSlots::new() };
    static PUBLISHED_CACHES_V3: CacheSlots<Layout3> = const { ThreadSlots::new() };
}

/// A layout a [`SharedClockBound`] can read: the per-thread slots of that layout.
trait SharedLayout: Layout {
    fn thread_readers() -> &'static LocalKey<ReaderSlots<Self>>;
    fn published_caches() -> &'static LocalKey<CacheSlots<Self>>;
}

impl SharedLayout for Layout2 {
    fn thread_readers() -> &'static LocalKey<ReaderSlots<Self>> {
        &THREAD_READERS_V2
    }
    fn published_caches() -> &'static LocalKey<CacheSlots<Self>> {
        &PUBLISHED_CACHES_V2
    }
}

impl SharedLayout for Layout3 {
    fn thread_readers() -> &'static LocalKey<ReaderSlots<Self>> {
        &THREAD_READERS_V3
    }
    fn published_caches() -> &'static LocalKey<CacheSlots<Self>> {
        &PUBLISHED_CACHES_V3
    }
}

/// Per-thread state: within the 256-byte budget in `BENCHMARKS.md`.
const _: () = assert!(thread_slot::slot_bytes::<Inner<Layout2>, ThreadReader<Layout2>>() <= 256);
const _: () = assert!(thread_slot::slot_bytes::<Inner<Layout3>, ThreadReader<Layout3>>() <= 256);
const _: () = assert!(thread_slot::slot_bytes::<Inner<Layout2>, PublishedCache<Layout2>>() <= 64);
const _: () = assert!(thread_slot::slot_bytes::<Inner<Layout3>, PublishedCache<Layout3>>() <= 64);

/// Runs `$body` with `$h` bound to the layout's handle.
macro_rules! on_handle {
    ($self:expr, $h:ident => $body:expr) => {
        match &$self.handle {
            AnyHandle::V2($h) => $body,
            AnyHandle::V3($h) => $body,
        }
    };
}

impl SharedClockBound {
    /// Opens the segment at `path` with the default [`ReaderOptions`] (strategy
    /// `ThreadLocal`), as the layout its header declares: layout 3 for a header version of
    /// `0x0303` (the 3.x daemon's `shm1`), layout 2 otherwise.
    ///
    /// # Errors
    /// As [`ShmReader::open`](crate::ShmReader::open) (or
    /// [`ShmReaderV3::open`](crate::ShmReaderV3) for a layout 3 segment).
    pub fn open(path: impl AsRef<Path>) -> Result<SharedClockBound, ShmError> {
        SharedClockBound::open_with(path, &ReaderOptions::default())
    }

    /// Opens the segment at `path` with `options`, as the layout its header declares (see
    /// [`open`](Self::open)).
    ///
    /// # Errors
    /// As [`ShmReader::open_with`](crate::ShmReader::open_with).
    pub fn open_with(
        path: impl AsRef<Path>,
        options: &ReaderOptions,
    ) -> Result<SharedClockBound, ShmError> {
        let path = path.as_ref();
        match crate::segment::peek_header(path) {
            Some(header) if header.version == LayoutVersion::V3.wire_version() => {
                SharedClockBound::open_layout::<Layout3>(path, options)
            }
            _ => SharedClockBound::open_layout::<Layout2>(path, options),
        }
    }

    /// Opens the daemon's segment without knowing its version: the layout 3 segment
    /// [`CLOCKBOUND_SHM1_DEFAULT_PATH`] when it exists, holds a valid layout 3 segment
    /// (ClockBound 3.x, and this machine's CPU counter can be read) and is being kept up to
    /// date, else the layout 2 segment [`CLOCKBOUND_SHM_DEFAULT_PATH`] (the rules in
    /// [`open_preferring`](Self::open_preferring)). [`layout`](Self::layout) and
    /// [`path`](Self::path) say which it reads. Default [`ReaderOptions`].
    ///
    /// # Errors
    /// The error of opening `shm0` when neither can be opened.
    pub fn open_default() -> Result<SharedClockBound, ShmError> {
        SharedClockBound::open_default_with(&ReaderOptions::default())
    }

    /// [`open_default`](Self::open_default) with `options`.
    ///
    /// # Errors
    /// As [`open_default`](Self::open_default).
    pub fn open_default_with(options: &ReaderOptions) -> Result<SharedClockBound, ShmError> {
        SharedClockBound::open_preferring(
            CLOCKBOUND_SHM1_DEFAULT_PATH,
            CLOCKBOUND_SHM_DEFAULT_PATH,
            options,
        )
    }

    /// [`open_default_with`](Self::open_default_with) for segments at other paths: the
    /// layout 3 segment at `shm1` if it opens and reads Synchronized; else the layout 2
    /// segment at `shm0` if that one does (a `shm1` left behind by a stopped 3.x daemon,
    /// next to a 2.x daemon writing `shm0`); else `shm1` if it opened at all (a 3.x daemon
    /// still starting), else `shm0`.
    ///
    /// # Errors
    /// The error of opening `shm0` when neither can be opened.
    pub fn open_preferring(
        shm1: impl AsRef<Path>,
        shm0: impl AsRef<Path>,
        options: &ReaderOptions,
    ) -> Result<SharedClockBound, ShmError> {
        let synchronized = |clock: &SharedClockBound| {
            clock
                .now()
                .is_ok_and(|w| w.clock_status == ClockStatus::Synchronized)
        };
        let v3 = SharedClockBound::open_layout::<Layout3>(shm1.as_ref(), options);
        if v3.as_ref().is_ok_and(synchronized) {
            return v3;
        }
        let v2 = SharedClockBound::open_layout::<Layout2>(shm0.as_ref(), options);
        match (v3, v2) {
            (_, Ok(v2)) if synchronized(&v2) => Ok(v2),
            (Ok(v3), _) => Ok(v3),
            (Err(_), v2) => v2,
        }
    }

    /// Waits for the segment at `path` (either layout, see [`open`](Self::open)) to appear,
    /// become valid and report Synchronized, then returns it opened with the default options
    /// (see
    /// [`ShmReader::wait_for_sync`](crate::ShmReader::wait_for_sync)).
    ///
    /// # Errors
    /// [`ShmError::Timeout`] after `timeout`, carrying the last attempt's error if it
    /// failed; a non-transient error at once.
    pub fn wait_for_sync(
        path: impl AsRef<Path>,
        timeout: Duration,
    ) -> Result<SharedClockBound, ShmError> {
        SharedClockBound::wait_for_sync_with(path, &ReaderOptions::default(), timeout)
    }

    /// [`wait_for_sync`](Self::wait_for_sync) with `options`.
    ///
    /// # Errors
    /// As [`wait_for_sync`](Self::wait_for_sync).
    pub fn wait_for_sync_with(
        path: impl AsRef<Path>,
        options: &ReaderOptions,
        timeout: Duration,
    ) -> Result<SharedClockBound, ShmError> {
        let path = path.as_ref();
        let require_trusted = options.require_trusted;
        let probing = options.clone().require_trusted(false);
        let clock = wait::for_sync(
            timeout,
            || SharedClockBound::open_with(path, &probing),
            |clock| Ok(clock.now()?.clock_status),
        )?;
        Ok(clock.require_trusted(require_trusted))
    }

    /// Waits for the daemon's segment, chosen as [`open_default`](Self::open_default)
    /// does (at each attempt), to report Synchronized.
    ///
    /// # Errors
    /// As [`wait_for_sync`](Self::wait_for_sync).
    pub fn wait_for_sync_default(
        options: &ReaderOptions,
        timeout: Duration,
    ) -> Result<SharedClockBound, ShmError> {
        let require_trusted = options.require_trusted;
        let probing = options.clone().require_trusted(false);
        let clock = wait::for_sync(
            timeout,
            || SharedClockBound::open_default_with(&probing),
            |clock| Ok(clock.now()?.clock_status),
        )?;
        Ok(clock.require_trusted(require_trusted))
    }

    fn open_layout<L: SharedLayout>(
        path: &Path,
        options: &ReaderOptions,
    ) -> Result<SharedClockBound, ShmError>
    where
        Handle<L>: Into<AnyHandle>,
    {
        let vmclock = vmclock_source(options);
        let (primary, mut seed) = ReaderState::<L>::open(path, options, vmclock.as_ref())?;
        let newest = Arc::new(NewestSnapshot::new(&seed.cache));
        seed.cache.share_into(Arc::clone(&newest));
        let path = Arc::clone(primary.path());
        let mode = match options.strategy {
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
            vmclock,
            seed,
            newest,
            sigbus_guard: options.sigbus_guard,
            mode,
            slot_key: SlotKey::new(),
        };
        let handle = Handle {
            primary: inner.primary.mapping().clone(),
            inner: Arc::new(inner),
        };
        Ok(SharedClockBound {
            handle: handle.into(),
            require_trusted: options.require_trusted,
        })
    }

    /// This handle, set to refuse untrusted windows or not ([`ReaderOptions::require_trusted`]
    /// is the public way): what the waits use to hand back a handle with the caller's setting
    /// after probing without it.
    #[must_use]
    pub(crate) fn require_trusted(mut self, on: bool) -> SharedClockBound {
        self.require_trusted = on;
        self
    }

    /// The window for the current instant, with the self-healing and disruption checks of
    /// [`ShmReader::now`](crate::ShmReader::now).
    ///
    /// # Errors
    /// As [`ShmReader::now`](crate::ShmReader::now), and [`ShmError::ClockNotTrusted`] when
    /// this handle [requires a trusted clock](crate::ReaderOptions::require_trusted) and the status is
    /// Unknown or Disrupted.
    #[inline(always)]
    pub fn now(&self) -> Result<TimeWindow, ShmError> {
        // The window is built in place, as in `ShmReader::now` (see `docs::performance`).
        let mut window = TimeWindow::UNTRUSTED;
        on_handle!(self, h => h.now_into(&mut window))?;
        if self.require_trusted && !window.clock_status.is_trusted() {
            return Err(ShmError::not_trusted(window.clock_status));
        }
        Ok(window)
    }

    /// True only when `t` has certainly passed (`t < earliest` of [`now`](Self::now)), on a
    /// clock that can be trusted (see [`ShmReader::after`](crate::ShmReader::after)).
    ///
    /// # Errors
    /// As [`now`](Self::now), and [`ShmError::ClockNotTrusted`] when the status is Unknown
    /// or Disrupted.
    pub fn after(&self, t: Timespec) -> Result<bool, ShmError> {
        Ok(wait::trusted(self.now()?)?.after(t))
    }

    /// True only when `t` has certainly not arrived (`t > latest` of [`now`](Self::now)), on
    /// a clock that can be trusted.
    ///
    /// # Errors
    /// As [`after`](Self::after).
    pub fn before(&self, t: Timespec) -> Result<bool, ShmError> {
        Ok(wait::trusted(self.now()?)?.before(t))
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
    pub fn snapshot(&self) -> Result<AnySnapshot, ShmError> {
        match &self.handle {
            AnyHandle::V2(h) => h.snapshot().map(AnySnapshot::V2),
            AnyHandle::V3(h) => h.snapshot().map(AnySnapshot::V3),
        }
    }

    /// What the reading has done so far: under `ThreadLocal`, the calling thread's counters
    /// for this value; under `ArcSwap`, the refresher's (reads, retries, rechecks, reopens;
    /// answers from the published snapshot are not counted, to keep the hot path free of
    /// shared writes).
    #[must_use]
    pub fn stats(&self) -> ReaderStats {
        on_handle!(self, h => h.stats())
    }

    /// The segment's header as it is in the mapping read now: magic, `segsize`, version and
    /// the *current* generation (see [`ShmReader::header`](crate::ShmReader::header)). For
    /// diagnostics; four atomic loads, no validation.
    #[must_use]
    pub fn header(&self) -> SegmentHeader {
        on_handle!(self, h => h.inner.newest_segment(|segment| segment.header()))
    }

    /// The generation of the snapshot this handle answers from: under `ThreadLocal`, the
    /// calling thread's; under `ArcSwap`, the published one's (see
    /// [`ShmReader::generation`](crate::ShmReader::generation)).
    #[must_use]
    pub fn generation(&self) -> u16 {
        on_handle!(self, h => h.generation())
    }

    /// The strategy this value was opened with.
    #[must_use]
    pub fn strategy(&self) -> Strategy {
        on_handle!(self, h => match h.inner.mode {
            Mode::ThreadLocal => Strategy::ThreadLocal,
            Mode::ArcSwap { .. } => Strategy::ArcSwap,
        })
    }

    /// The segment file.
    #[must_use]
    pub fn path(&self) -> &Path {
        on_handle!(self, h => &h.inner.path)
    }

    /// The layout of the segment this value reads.
    #[must_use]
    pub fn layout(&self) -> LayoutVersion {
        match &self.handle {
            AnyHandle::V2(_) => LayoutVersion::V2,
            AnyHandle::V3(_) => LayoutVersion::V3,
        }
    }
}

impl From<Handle<Layout2>> for AnyHandle {
    fn from(h: Handle<Layout2>) -> AnyHandle {
        AnyHandle::V2(h)
    }
}

impl From<Handle<Layout3>> for AnyHandle {
    fn from(h: Handle<Layout3>) -> AnyHandle {
        AnyHandle::V3(h)
    }
}

impl<L: SharedLayout> Handle<L> {
    /// One layout's `now()`: inlined whole into the caller, with the window built in place
    /// and only cold paths out of line (see [`docs::performance`](crate::docs::performance)).
    #[inline(always)]
    fn now_into(&self, out: &mut TimeWindow) -> Result<(), ShmError> {
        let inner = &*self.inner;
        // The closures below return nothing: an error is parked here instead, so that no
        // `Result` has to be kept while the thread-local slot is put back.
        let mut failed = None;
        let mut fail = |result: Result<(), ShmError>| {
            if let Err(e) = result {
                failed = Some(e);
            }
        };
        let done = match &inner.mode {
            Mode::ThreadLocal => ThreadSlots::with(
                L::thread_readers(),
                &self.inner,
                &inner.slot_key,
                || inner.new_thread_reader(),
                #[inline(always)]
                |reader| {
                    fail(inner.now_from(
                        self.primary.cells(),
                        &mut reader.epoch,
                        &mut reader.state,
                        out,
                    ));
                },
            ),
            Mode::ArcSwap {
                published,
                refresher,
            } => ThreadSlots::with(
                L::published_caches(),
                &self.inner,
                &inner.slot_key,
                || ::arc_swap::Cache::new(Arc::clone(published)),
                #[inline(always)]
                |cache| {
                    fail(inner.now_from_published(
                        self.primary.cells(),
                        cache.load(),
                        published,
                        refresher,
                        out,
                    ));
                },
            ),
        };
        if done.is_none() {
            *out = self.now_without_thread_state()?;
            return Ok(());
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// [`now_into`](Self::now_into) for a thread whose thread-locals are gone (it is exiting): on a
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
        Ok(window)
    }

    fn snapshot(&self) -> Result<L::Snapshot, ShmError> {
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
            } => inner.with_published_snapshot(published, refresher, |snapshot| snapshot.snapshot),
        }
    }

    fn stats(&self) -> ReaderStats {
        match &self.inner.mode {
            Mode::ThreadLocal => self.with_thread_state(|_, state| state.cache.stats()),
            Mode::ArcSwap { refresher, .. } => refresher.lock().1.cache.stats(),
        }
    }

    fn generation(&self) -> u16 {
        match &self.inner.mode {
            Mode::ThreadLocal => self.with_thread_state(|_, state| state.cache.generation()),
            Mode::ArcSwap { published, .. } => published.load().generation,
        }
    }
}

impl<L: Layout> Inner<L> {
    /// Runs `f` on the newest mapping: the latest replacement, else the primary one.
    fn newest_segment<R>(&self, f: impl FnOnce(&MappedSegment<L>) -> R) -> R {
        match self.replacement.load().as_ref() {
            Some(newest) => f(&newest.segment),
            None => f(&self.primary),
        }
    }

    /// Runs `f` with the mapping the reader at `epoch` reads: the primary one (no
    /// synchronisation at all: the hot path) until the reader has moved to a replacement,
    /// then the newest replacement (moving the reader onto it when it was on an older one).
    #[inline(always)]
    fn with_segment<R>(
        &self,
        epoch: &mut u64,
        state: &mut ReaderState<L>,
        f: impl FnOnce(&MappedSegment<L>, &mut ReaderState<L>) -> R,
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
        state: &mut ReaderState<L>,
        f: impl FnOnce(&MappedSegment<L>, &mut ReaderState<L>) -> R,
    ) -> R {
        let replacement = self.replacement.load();
        let Some(newest) = replacement.as_ref() else {
            return f(&self.primary, state);
        };
        if newest.epoch != *epoch {
            match state.rebase(&newest.segment, newest.after_fault) {
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

    /// A reader's snapshot looked dead: if the file was recreated or truncated under the
    /// mapping, map it again (once for the whole value, whoever notices first) and move the
    /// reader onto it. Returns whether the reader moved.
    #[cold]
    #[inline(never)]
    fn follow_reopened_file(&self, epoch: &mut u64, state: &mut ReaderState<L>) -> bool {
        let newest_epoch = || self.replacement.load().as_ref().map_or(0, |r| r.epoch);
        if newest_epoch() == *epoch {
            let Some(faulted) = self.with_segment(epoch, state, |segment, _| {
                segment.needs_reopen().then(|| segment.faulted())
            }) else {
                return false;
            };
            let _reopening = self.reopening.lock();
            let newest = newest_epoch();
            if newest == *epoch {
                // Still ours to do. The file may not be readable yet (the daemon is
                // writing it): keep answering from the old snapshot and look again later.
                let Ok(segment) = MappedSegment::open(&self.path, self.sigbus_guard) else {
                    return false;
                };
                self.replacement.store(Some(Arc::new(Replacement {
                    epoch: newest + 1,
                    segment,
                    after_fault: faulted,
                })));
            }
        }
        let before = *epoch;
        self.with_replacement(epoch, state, |_, _| ());
        *epoch != before
    }
}

impl fmt::Debug for SharedClockBound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedClockBound")
            .field("path", &self.path())
            .field("layout", &self.layout())
            .field("strategy", &self.strategy())
            .field("require_trusted", &self.require_trusted)
            .finish_non_exhaustive()
    }
}
