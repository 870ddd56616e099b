//! [`ShmReader`]: one process's zero-copy view of a segment, for one thread at a time, and
//! the per-reader state it shares with each thread of a
//! [`SharedClockBound`](crate::SharedClockBound).

use std::ffi::{CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::cache::{ReaderStats, SnapshotCache};
use crate::error::ShmError;
use crate::layout::{Layout, Layout2, LayoutVersion, SegmentHeader};
use crate::options::{DisruptionCheck, ReaderOptions};
use crate::segment::MappedSegment;
use crate::seqlock::SegmentCells;
use crate::time::ClockStatus;
use crate::time::TimeWindow;
use crate::time::Timespec;
use crate::vmclock::{MarkerWatch, VmClockSource};
use crate::wait;

#[cfg(feature = "tokio")]
mod async_wait;

/// The default path of the ClockBound daemon's layout 2 segment (`shm0`: ClockBound 2.x,
/// and 3.x for older clients).
pub const CLOCKBOUND_SHM_DEFAULT_PATH: &str = "/var/run/clockbound/shm0";

/// The default path of the ClockBound 3.x daemon's layout 3 segment (`shm1`).
pub const CLOCKBOUND_SHM1_DEFAULT_PATH: &str = "/var/run/clockbound/shm1";

/// Everything one reader keeps besides the mappings: the snapshot cache and the disruption
/// check's state. One per [`ShmReader`], one per thread of a
/// [`SharedClockBound`](crate::SharedClockBound) under `ThreadLocal`.
///
/// Plain data apart from the cache: the segment and the VMClock page belong to the reader or
/// the shared value, which passes them in at each call, so that per-thread state never keeps
/// a mapping alive after its value is dropped.
#[derive(Clone, Debug)]
pub(crate) struct ReaderState<L: Layout> {
    pub(crate) cache: SnapshotCache<L>,
    /// The watch on the VMClock page, once a snapshot asked for the check (the page is the
    /// owner's [`VmClockSource`]).
    pub(crate) vmclock: Option<MarkerWatch>,
}

/// The VMClock source `options` ask for: `None` with the check off.
pub(crate) fn vmclock_source(options: &ReaderOptions) -> Option<VmClockSource> {
    match &options.disruption_check {
        DisruptionCheck::WhenEnabled { vmclock_path } => Some(VmClockSource::new(vmclock_path)),
        DisruptionCheck::Off => None,
    }
}

impl<L: Layout> ReaderState<L> {
    /// Opens the segment at `path` as `options` say: the mapping, a first snapshot, and the
    /// VMClock page (from `vmclock`, the owner's source) when that snapshot asks for the
    /// disruption check.
    ///
    /// # Errors
    /// As [`ShmReader::open_with`].
    pub(crate) fn open(
        path: &Path,
        options: &ReaderOptions,
        vmclock: Option<&VmClockSource>,
    ) -> Result<(MappedSegment<L>, ReaderState<L>), ShmError> {
        let segment = MappedSegment::<L>::open(path, options.sigbus_guard)?;
        let cache = SnapshotCache::load(
            segment.cells(),
            segment.path(),
            options.recheck_interval,
            options.free_running_grace,
            true,
        )?;
        let mut state = ReaderState {
            cache,
            vmclock: None,
        };
        if let Some(source) = vmclock {
            if L::disruption_support(state.cache.cached()) {
                state.vmclock = Some(source.attach()?.1);
            }
        }
        Ok((segment, state))
    }

    /// The window for the current instant with the self-healing recheck (see
    /// [`ShmReader::now`]) and the disruption check against `vmclock` (the owner's source,
    /// `None` with the check off): while the snapshot says the daemon tracks disruptions, a
    /// VMClock marker that differs from the snapshot's makes the status Disrupted. With the
    /// check off or the flag clear that is one branch.
    #[inline(always)]
    pub(crate) fn now_into(
        &mut self,
        cells: &SegmentCells<L::Payload>,
        path: &Arc<Path>,
        vmclock: Option<&VmClockSource>,
        out: &mut TimeWindow,
    ) -> Result<(), ShmError> {
        self.cache.now_into(cells, path, out)?;
        let snapshot = self.cache.cached();
        if let Some(source) = vmclock {
            if L::disruption_support(snapshot) {
                let marker = L::disruption_marker(snapshot);
                if self.vmclock_marker(source)? != marker {
                    out.clock_status = ClockStatus::Disrupted;
                }
            }
        }
        Ok(())
    }

    /// The VMClock marker now, through this state's watch on `source`'s page: the page's
    /// `seq_count` against the watch's while both exist (the hot path: the source's one
    /// acquire load, then the watch's compare), else attach first.
    #[inline(always)]
    fn vmclock_marker(&mut self, source: &VmClockSource) -> Result<u64, ShmError> {
        match (source.get(), &mut self.vmclock) {
            (Some(page), Some(watch)) => watch.marker(page),
            _ => attach_vmclock(&mut self.vmclock, source),
        }
    }

    /// [`now_into`](Self::now_into) returning the window (off the hot path).
    pub(crate) fn now(
        &mut self,
        segment: &MappedSegment<L>,
        vmclock: Option<&VmClockSource>,
    ) -> Result<TimeWindow, ShmError> {
        let mut window = TimeWindow::UNTRUSTED;
        self.now_into(segment.cells(), segment.path(), vmclock, &mut window)?;
        Ok(window)
    }

    /// Brings the state up to date without computing a window (for a publisher): the
    /// generation check, the full re-read once `now` has reached the recheck instant, the
    /// VMClock marker (of `vmclock`, the owner's source). Returns whether the owner should
    /// look at the file.
    ///
    /// # Errors
    /// As [`ShmReader::snapshot`], and VMClock errors.
    pub(crate) fn catch_up(
        &mut self,
        segment: &MappedSegment<L>,
        now: Option<L::Instant>,
        vmclock: Option<&VmClockSource>,
    ) -> Result<bool, ShmError> {
        self.cache.snapshot(segment.cells(), segment.path())?;
        let mut looks_dead = false;
        if let Some(now) = now.filter(|n| *n >= self.cache.recheck_at()) {
            looks_dead = self.cache.recheck(segment.cells(), segment.path(), now)?;
        }
        if let Some(source) = vmclock {
            if L::disruption_support(self.cache.cached()) {
                self.vmclock_marker(source)?;
            }
        }
        Ok(looks_dead)
    }

    /// Whether the VMClock marker (as last read) says the snapshot's clock was disrupted.
    pub(crate) fn disrupted(&self) -> bool {
        let snapshot = self.cache.cached();
        L::disruption_support(snapshot)
            && self
                .vmclock
                .as_ref()
                .is_some_and(|w| w.cached_marker() != L::disruption_marker(snapshot))
    }

    /// The snapshot looked dead and the file needs reopening: map it again. `None` while
    /// the file is not readable yet (the daemon is still writing it).
    #[cold]
    pub(crate) fn reopen(
        &self,
        old: &MappedSegment<L>,
        guard: bool,
    ) -> Option<(MappedSegment<L>, ReaderState<L>)> {
        let segment = MappedSegment::<L>::open(old.path(), guard).ok()?;
        let state = self.rebase(&segment, old.faulted())?;
        Some((segment, state))
    }

    /// A state for `segment` (a new mapping of the file), keeping the counters (one more
    /// reopen, and one more truncation survived when the old mapping had faulted), the
    /// settings and the VMClock watch.
    #[cold]
    pub(crate) fn rebase(
        &self,
        segment: &MappedSegment<L>,
        faulted: bool,
    ) -> Option<ReaderState<L>> {
        let (interval, grace) = self.cache.settings();
        let mut cache =
            SnapshotCache::load(segment.cells(), segment.path(), interval, grace, false).ok()?;
        let mut stats = self.cache.stats();
        stats.reopens += 1;
        stats.truncations_survived += u64::from(faulted);
        stats.full_reads += cache.stats().full_reads;
        *cache.stats_mut() = stats;
        if let Some(newest) = self.cache.newest() {
            cache.share_into(newest);
        }
        Some(ReaderState {
            cache,
            vmclock: self.vmclock,
        })
    }
}

/// A snapshot asked for the disruption check and the reader has no watch yet (or the page is
/// not open yet): open the page if no one has (the same rules as at open: an error while it
/// cannot be read), start a watch unless there is one, and read the marker.
#[cold]
#[inline(never)]
fn attach_vmclock(
    watch: &mut Option<MarkerWatch>,
    source: &VmClockSource,
) -> Result<u64, ShmError> {
    let (page, first) = source.attach()?;
    watch.get_or_insert(first).marker(page)
}

/// Reads a ClockBound segment: the fastest way to error-bounded time, for one thread.
///
/// Generic over the segment's [`Layout`]: [`ShmReader`] (= `SegmentReader<Layout2>`) reads
/// `shm0` and hands out [`ClockErrorBound`](crate::ClockErrorBound)s, exactly the shape of the released 2.0.3
/// reader; [`ShmReaderV3`] (= `SegmentReader<Layout3>`) reads the 3.x daemon's `shm1` and
/// hands out [`ClockErrorBoundV3`](crate::ClockErrorBoundV3)s. To pick the segment at run time, use
/// [`SharedClockBound::open_default`](crate::SharedClockBound::open_default).
///
/// `snapshot()` hands out a reference to the reader's last consistent snapshot and refreshes
/// it only when the segment's generation has moved, so the common call is one atomic load
/// and a compare: no lock, no copy, no system call. It needs `&mut self`, so a reader serves
/// one thread at a time; it is `Send`, so it can move between threads. To share one reader's
/// worth of state between many threads, use [`SharedClockBound`](crate::SharedClockBound).
///
/// Answers follow the ClockBound reader protocol: while the daemon is mid-update (odd
/// generation), has wiped the segment (version or generation 0), or keeps the generation
/// moving through every retry, `snapshot()` answers from the last good snapshot, whose
/// [`now`](crate::ClockErrorBound::now) degrades to FreeRunning and then Unknown as it ages. It
/// never answers with a torn or unvalidated payload.
///
/// ```no_run
/// use clockbound_shm::{ClockStatus, ShmReader, CLOCKBOUND_SHM_DEFAULT_PATH};
///
/// let mut reader = ShmReader::open(CLOCKBOUND_SHM_DEFAULT_PATH)?;
/// let window = reader.snapshot()?.now()?;
/// if window.clock_status == ClockStatus::Synchronized {
///     println!("true time is in [{}, {}]", window.earliest, window.latest);
/// }
/// # Ok::<(), clockbound_shm::ShmError>(())
/// ```
///
/// A snapshot reference cannot be held across the next `snapshot()` call (it borrows the
/// reader mutably), so the cache can never change under a caller:
///
/// ```compile_fail,E0499
/// # fn f(mut reader: clockbound_shm::ShmReader) -> Result<(), clockbound_shm::ShmError> {
/// let first = reader.snapshot()?;
/// let second = reader.snapshot()?; // error: `reader` is still borrowed by `first`
/// assert_eq!(first, second);
/// # Ok(()) }
/// ```
///
/// Copy the snapshot (it is `Copy`, 64 bytes) to keep it:
///
/// ```
/// # fn f(mut reader: clockbound_shm::ShmReader) -> Result<(), clockbound_shm::ShmError> {
/// let first = *reader.snapshot()?;
/// let second = reader.snapshot()?;
/// assert!(first.as_of() <= second.as_of());
/// # Ok(()) }
/// ```
///
/// A reader is `Send` and `Sync`, but sharing one by reference gets a thread nothing: every
/// read needs `&mut self`, so readers are moved or lent exclusively, never read through `&`:
///
/// ```
/// use clockbound_shm::ShmReader;
/// fn assert_send_sync<T: Send + Sync>() {}
/// assert_send_sync::<ShmReader>();
/// fn read(reader: &mut ShmReader) -> bool {
///     reader.snapshot().is_ok()
/// }
/// ```
///
/// ```compile_fail,E0596
/// use clockbound_shm::ShmReader;
/// fn read(reader: &ShmReader) -> bool {
///     reader.snapshot().is_ok() // error: `reader` is a `&` reference
/// }
/// ```
pub struct SegmentReader<L: Layout> {
    state: ReaderState<L>,
    segment: MappedSegment<L>,
    /// The VMClock page for the disruption check; `None` with the check off.
    vmclock: Option<VmClockSource>,
    require_trusted: bool,
    sigbus_guard: bool,
}

/// The layout 2 reader (`shm0`), with the released 2.0.3 reader's shape:
/// [`new`](SegmentReader::new)`(&CStr)` and [`snapshot`](SegmentReader::snapshot)` ->
/// &ClockErrorBound`.
pub type ShmReader = SegmentReader<Layout2>;

/// The layout 3 reader (`shm1`, ClockBound 3.x): snapshots are
/// [`ClockErrorBoundV3`](crate::ClockErrorBoundV3).
pub type ShmReaderV3 = SegmentReader<crate::layout::Layout3>;

impl SegmentReader<Layout2> {
    /// Opens the layout 2 segment at `path`, given as a C string, the way the released
    /// `clock-bound-shm` 2.0.3 reader does: the segment alone, without the VMClock
    /// disruption check (code moving from that crate keeps working where no VMClock device
    /// is readable, as in most containers). [`open`](Self::open) adds the check.
    ///
    /// # Errors
    /// As [`open`](Self::open), without the VMClock errors.
    pub fn new(path: &CStr) -> Result<ShmReader, ShmError> {
        SegmentReader::open_with(
            Path::new(OsStr::from_bytes(path.to_bytes())),
            &ReaderOptions::new().disruption_check(DisruptionCheck::Off),
        )
    }
}

impl<L: Layout> SegmentReader<L> {
    /// Opens the segment at `path` with the default [`ReaderOptions`], checks it and takes a
    /// first snapshot.
    ///
    /// # Errors
    /// - [`ShmError::Io`]: the file cannot be opened, read or mapped (errno kept;
    ///   `ENOENT` usually means the daemon is not running, `EACCES` a permissions problem,
    ///   `EISDIR`/`EINVAL`/`ENODEV` that it is not a regular file).
    /// - [`ShmError::SegmentNotInitialized`]: the file is empty or shorter than a header,
    ///   wiped (version 0), never written (generation 0), or kept mid-update through
    ///   every retry. The daemon is starting or restarting: retry later
    ///   ([`ShmError::is_transient`]).
    /// - [`ShmError::SegmentMalformed`]: bad magic, a `segsize` or file length that
    ///   cannot hold the layout, or a payload with invalid fields.
    /// - [`ShmError::SegmentVersionNotSupported`]: another layout version than `L`'s.
    /// - [`ShmError::LayoutNotSupported`]: layout 3 on a CPU whose counter this crate
    ///   cannot read (only x86-64 and aarch64 are supported).
    /// - [`ShmError::VmClockIo`] / [`ShmError::VmClockMalformed`]: the segment says the
    ///   daemon runs with clock-disruption support, but the VMClock page
    ///   ([`VMCLOCK_DEFAULT_PATH`](crate::VMCLOCK_DEFAULT_PATH)) cannot be read; see
    ///   [`open_with`](Self::open_with) to point elsewhere or turn the check off.
    pub fn open(path: impl AsRef<Path>) -> Result<SegmentReader<L>, ShmError> {
        SegmentReader::open_with(path, &ReaderOptions::default())
    }

    /// Opens the segment at `path` with `options`.
    ///
    /// # Errors
    /// As [`open`](Self::open); the VMClock errors only when the check applies.
    pub fn open_with(
        path: impl AsRef<Path>,
        options: &ReaderOptions,
    ) -> Result<SegmentReader<L>, ShmError> {
        let vmclock = vmclock_source(options);
        let (segment, state) = ReaderState::open(path.as_ref(), options, vmclock.as_ref())?;
        Ok(SegmentReader {
            state,
            segment,
            vmclock,
            require_trusted: options.require_trusted,
            sigbus_guard: options.sigbus_guard,
        })
    }

    /// The current snapshot: the cached one while the segment's generation is unchanged,
    /// otherwise a fresh, validated, consistent copy. For layout 2 a [`ClockErrorBound`](crate::ClockErrorBound),
    /// for layout 3 a [`ClockErrorBoundV3`](crate::ClockErrorBoundV3), both borrowed from
    /// the reader (no copy).
    ///
    /// # Errors
    /// - [`ShmError::SegmentMalformed`]: the writer published invalid fields.
    /// - [`ShmError::SegmentVersionNotSupported`]: the writer changed the layout version.
    ///
    /// Passing states (update in progress, wiped, contended) are not errors: the previous
    /// snapshot is returned.
    #[inline]
    pub fn snapshot(&mut self) -> Result<&L::Snapshot, ShmError> {
        self.state
            .cache
            .snapshot(self.segment.cells(), self.segment.path())
    }

    /// The window for the current instant: [`snapshot`](Self::snapshot) and the layout's
    /// arithmetic, plus the disruption check (while the snapshot says the daemon tracks
    /// disruptions, a VMClock marker that differs from the snapshot's makes the status
    /// Disrupted; see [`DisruptionCheck`]) and the self-healing checks that cost the hot path
    /// one comparison:
    ///
    /// - once the cached snapshot is older than the recheck interval
    ///   ([`DEFAULT_RECHECK_INTERVAL`](crate::DEFAULT_RECHECK_INTERVAL), 1 s), the payload
    ///   is re-read in full even if the generation looks unchanged, so a 16-bit generation
    ///   that wrapped round to the cached value cannot serve a stale snapshot for long;
    /// - if that re-read finds the segment silent for several seconds or wiped, the reader
    ///   checks (at most once per recheck interval) whether the file was recreated (the
    ///   path names another file) or truncated under the mapping, and if so maps it again
    ///   and continues from it.
    ///
    /// The rules are gathered in [`docs::hazards`](crate::docs::hazards).
    ///
    /// # Errors
    /// As [`snapshot`](Self::snapshot); [`ShmError::CausalityBreach`] (layout 2) or
    /// [`ShmError::CounterBehindSnapshot`] (layout 3) when the clock reads before the
    /// snapshot by more than [`CAUSALITY_BLUR`](crate::CAUSALITY_BLUR); VMClock errors
    /// when the check applies; [`ShmError::ClockNotTrusted`] with
    /// [`ReaderOptions::require_trusted`] and a window that is not trusted.
    #[inline]
    pub fn now(&mut self) -> Result<TimeWindow, ShmError> {
        let mut window = TimeWindow::UNTRUSTED;
        self.state.now_into(
            self.segment.cells(),
            self.segment.path(),
            self.vmclock.as_ref(),
            &mut window,
        )?;
        if self.state.cache.take_looks_dead() {
            window = self.follow_reopened_file(window)?;
        }
        if self.require_trusted && !window.clock_status.is_trusted() {
            return Err(ShmError::not_trusted(window.clock_status));
        }
        Ok(window)
    }

    /// The snapshot looks dead: if the file was recreated or truncated under the mapping,
    /// map it again.
    #[cold]
    #[inline(never)]
    fn follow_reopened_file(&mut self, window: TimeWindow) -> Result<TimeWindow, ShmError> {
        if !self.segment.needs_reopen() {
            return Ok(window);
        }
        match self.state.reopen(&self.segment, self.sigbus_guard) {
            Some((segment, state)) => {
                self.segment = segment;
                self.state = state;
                self.state.now(&self.segment, self.vmclock.as_ref())
            }
            // The file is not ready yet (the daemon is writing it): keep answering from
            // the old snapshot, whose status keeps degrading, and look again later.
            None => Ok(window),
        }
    }

    /// True only when `t` has certainly passed (`t < earliest` of [`now`](Self::now)), on a
    /// clock that can be trusted.
    ///
    /// # Errors
    /// As [`now`](Self::now), and [`ShmError::ClockNotTrusted`] when the status is Unknown
    /// or Disrupted: the answer carries no status, so it is refused rather than given from a
    /// window that may not contain true time ([`TimeWindow::after`](crate::TimeWindow::after)
    /// answers from any window).
    pub fn after(&mut self, t: Timespec) -> Result<bool, ShmError> {
        Ok(wait::trusted(self.now()?)?.after(t))
    }

    /// True only when `t` has certainly not arrived (`t > latest` of [`now`](Self::now)), on
    /// a clock that can be trusted.
    ///
    /// # Errors
    /// As [`after`](Self::after).
    pub fn before(&mut self, t: Timespec) -> Result<bool, ShmError> {
        Ok(wait::trusted(self.now()?)?.before(t))
    }

    /// Commit-wait: blocks until `t` has certainly passed and returns the first window
    /// whose `earliest` is after `t`. Sleeps through the remaining uncertainty and spins
    /// only for the last few microseconds.
    ///
    /// ```no_run
    /// # use clockbound_shm::{ShmReader, Timespec};
    /// # use std::time::Duration;
    /// let mut clock: ShmReader = ShmReader::open(clockbound_shm::CLOCKBOUND_SHM_DEFAULT_PATH)?;
    /// let commit_ts = clock.now()?.latest; // a timestamp no other node can have passed yet
    /// clock.wait_until_after(commit_ts, Duration::from_millis(100))?;
    /// // Now every node's clock is past `commit_ts`: safe to acknowledge the commit.
    /// # Ok::<(), clockbound_shm::ShmError>(())
    /// ```
    ///
    /// # Errors
    /// [`ShmError::Timeout`] when `t` has not certainly passed within `timeout`;
    /// [`ShmError::ClockNotTrusted`] as soon as a window has status Unknown or Disrupted
    /// (waiting on an untrusted clock proves nothing); otherwise as [`now`](Self::now).
    pub fn wait_until_after(
        &mut self,
        t: Timespec,
        timeout: Duration,
    ) -> Result<TimeWindow, ShmError> {
        wait::until_after(t, timeout, || self.now())
    }

    /// Waits for the segment at `path` to appear, become valid and report Synchronized,
    /// then returns the opened reader: what a service calls at start-up instead of failing
    /// while the daemon boots. Errors that cannot go away by waiting (a malformed segment,
    /// no permission, no VMClock device) are returned at once.
    ///
    /// # Errors
    /// [`ShmError::Timeout`] after `timeout`, carrying the last attempt's error if it
    /// failed (e.g. the file is still missing); a non-transient error at once.
    pub fn wait_for_sync(
        path: impl AsRef<Path>,
        timeout: Duration,
    ) -> Result<SegmentReader<L>, ShmError> {
        SegmentReader::wait_for_sync_with(path, &ReaderOptions::default(), timeout)
    }

    /// [`wait_for_sync`](Self::wait_for_sync) with `options`.
    ///
    /// # Errors
    /// As [`wait_for_sync`](Self::wait_for_sync).
    pub fn wait_for_sync_with(
        path: impl AsRef<Path>,
        options: &ReaderOptions,
        timeout: Duration,
    ) -> Result<SegmentReader<L>, ShmError> {
        let path = path.as_ref();
        // The wait must see untrusted statuses to keep waiting through them; the reader it
        // returns refuses them again if the options say so.
        let probing = options.clone().require_trusted(false);
        let mut reader = wait::for_sync(
            timeout,
            || SegmentReader::open_with(path, &probing),
            |reader| Ok(reader.now()?.clock_status),
        )?;
        reader.require_trusted = options.require_trusted;
        Ok(reader)
    }

    /// What this reader has done so far (reads, cache answers, retries, reopens, ...).
    #[must_use]
    pub fn stats(&self) -> ReaderStats {
        self.state.cache.stats()
    }

    /// The segment file this reader maps.
    #[must_use]
    pub fn path(&self) -> &Path {
        self.segment.path()
    }

    /// The layout this reader reads.
    #[must_use]
    pub fn layout(&self) -> LayoutVersion {
        L::TAG
    }

    /// The segment's header as it is in the mapping right now: magic, `segsize`, version
    /// and the *current* generation (which may differ from [`generation`](Self::generation),
    /// the one of the snapshot held). For diagnostics; four atomic loads, no validation.
    #[must_use]
    pub fn header(&self) -> SegmentHeader {
        self.segment.header()
    }

    /// The generation of the snapshot the reader holds; 0 once it has seen the segment
    /// wiped (it still answers from the snapshot it holds, and re-reads on the next
    /// update).
    #[must_use]
    pub fn generation(&self) -> u16 {
        self.state.cache.generation()
    }

    /// The free-running grace this reader applies.
    pub(crate) fn free_running_grace(&self) -> std::time::Duration {
        self.state.cache.grace()
    }
}

impl<L: Layout> std::fmt::Debug for SegmentReader<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmReader")
            .field("path", self.segment.path())
            .field("layout", &L::TAG)
            .field("generation", &self.state.cache.generation())
            .field("snapshot", self.state.cache.cached())
            .finish()
    }
}
