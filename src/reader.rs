//! [`ShmReader`]: one process's zero-copy view of the segment, for one thread at a time.

use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::bound::{ClockErrorBound, ClockStatus, TimeWindow};
use crate::error::{Malformed, NotInitialized, ShmError};
use crate::layout::{self, LAYOUT_VERSION, SEGMENT_LEN, SegmentHeader};
use crate::mapping::SegmentMapping;
use crate::options::{DisruptionCheck, ReaderOptions};
use crate::seqlock::{ReaderStats, SegmentCells, SnapshotCache};
use crate::timespec::Timespec;
use crate::vmclock::{MarkerWatch, VmClockReader};
use crate::wait;

/// The default path of the ClockBound daemon's segment (layout version 2).
pub const CLOCKBOUND_SHM_DEFAULT_PATH: &str = "/var/run/clockbound/shm0";

/// An opened, validated segment: the file's mapping and its path. Clones share the one
/// mapping ([`ShmReader`] owns one; a `SharedClockBound` shares it between all its threads
/// and published snapshots).
#[derive(Clone, Debug)]
pub(crate) struct MappedSegment {
    path: Arc<Path>,
    mapping: SegmentMapping,
    /// `(st_dev, st_ino)` of the mapped file: a daemon that recreates the segment makes the
    /// path name another file, and this mapping would never see an update again.
    identity: (u64, u64),
}

impl MappedSegment {
    /// Opens, checks and maps the segment at `path`, and takes a first snapshot.
    ///
    /// # Errors
    /// See [`ShmReader::open`].
    pub(crate) fn open(path: &Path) -> Result<(MappedSegment, SnapshotCache), ShmError> {
        let path: Arc<Path> = Arc::from(path);
        let io_error = |operation: &'static str| {
            let path = Arc::clone(&path);
            move |source: io::Error| ShmError::Io {
                operation,
                path,
                source,
            }
        };
        // Look before opening: opening a FIFO for reading would block until a writer came.
        if !std::fs::metadata(&path)
            .map_err(io_error("open"))?
            .is_file()
        {
            let source = io::Error::new(io::ErrorKind::InvalidInput, "not a regular file");
            return Err(io_error("open")(source));
        }
        let file = File::open(&path).map_err(io_error("open"))?;
        let metadata = file.metadata().map_err(io_error("stat"))?;
        // Checked again on the opened file, which may not be the one looked at.
        if !metadata.is_file() {
            let source = io::Error::new(io::ErrorKind::InvalidInput, "not a regular file");
            return Err(io_error("map")(source));
        }
        let file_len = metadata.len();
        let identity = (metadata.dev(), metadata.ino());
        if file_len == 0 {
            return Err(ShmError::SegmentNotInitialized {
                path,
                reason: NotInitialized::EmptyFile,
            });
        }
        if file_len < SEGMENT_LEN as u64 {
            let problem = Malformed::FileTooShort {
                len: file_len,
                needed: SEGMENT_LEN as u64,
            };
            return Err(ShmError::malformed(Some(&path), problem));
        }
        let mapping = SegmentMapping::read_only(&file, file_len, true).map_err(io_error("map"))?;
        // The mapping outlives the descriptor: close it now rather than hold it for years.
        drop(file);

        let cells = mapping.cells();
        let (magic, segsize, version) = cells.header();
        layout::check_header(magic, segsize, file_len)
            .map_err(|p| ShmError::malformed(Some(&path), p))?;
        match version {
            LAYOUT_VERSION => {}
            0 => {
                return Err(ShmError::SegmentNotInitialized {
                    path,
                    reason: NotInitialized::Wiped,
                });
            }
            found => {
                return Err(ShmError::SegmentVersionNotSupported {
                    path,
                    found,
                    expected: LAYOUT_VERSION,
                });
            }
        }
        let cache = SnapshotCache::load(cells, &path)?;
        Ok((
            MappedSegment {
                path,
                mapping,
                identity,
            },
            cache,
        ))
    }

    #[inline(always)]
    pub(crate) fn cells(&self) -> &SegmentCells {
        self.mapping.cells()
    }

    pub(crate) fn path(&self) -> &Arc<Path> {
        &self.path
    }

    /// The mapping (a handle: clones share it).
    pub(crate) fn mapping(&self) -> &SegmentMapping {
        &self.mapping
    }

    /// Whether `other` is a handle to the same mapping. (Two live mappings never share an
    /// address, and each handle keeps its mapping alive.)
    pub(crate) fn same_mapping(&self, other: &MappedSegment) -> bool {
        std::ptr::eq(self.cells(), other.cells())
    }

    /// Whether the path now names another file than the one mapped (one `stat`). A missing
    /// file is not "another file": the daemon may be gone, and the old snapshot, ageing, is
    /// the best answer until a new file appears.
    pub(crate) fn replaced_on_disk(&self) -> bool {
        std::fs::metadata(&*self.path).is_ok_and(|m| (m.dev(), m.ino()) != self.identity)
    }
}

/// Everything one reader keeps besides the mapping: the snapshot cache and, when the
/// disruption check is on, its watch on the VMClock marker. One per [`ShmReader`], one per
/// thread of a [`SharedClockBound`](crate::SharedClockBound) under `ThreadLocal`.
#[derive(Clone, Debug)]
pub(crate) struct ReaderState {
    pub(crate) cache: SnapshotCache,
    pub(crate) vmclock: Option<MarkerWatch>,
}

impl ReaderState {
    /// Opens the segment at `path` as `options` say: the mapping, a first snapshot, and the
    /// VMClock page when the disruption check applies (returned whole, so that a shared
    /// owner can hand out more watches).
    ///
    /// # Errors
    /// As [`ShmReader::open_with`].
    pub(crate) fn open(
        path: &Path,
        options: &ReaderOptions,
    ) -> Result<(MappedSegment, ReaderState, Option<VmClockReader>), ShmError> {
        let (segment, mut cache) = MappedSegment::open(path)?;
        cache.set_recheck_interval(options.recheck_interval);
        let vmclock = match &options.disruption_check {
            DisruptionCheck::WhenEnabled { vmclock_path }
                if cache.cached().clock_disruption_support_enabled() =>
            {
                Some(VmClockReader::open(vmclock_path)?)
            }
            _ => None,
        };
        let state = ReaderState {
            cache,
            vmclock: vmclock.as_ref().map(VmClockReader::watch),
        };
        Ok((segment, state, vmclock))
    }

    /// The window for the current instant with the self-healing recheck (see
    /// [`ShmReader::now`]) and the disruption check: when the VMClock marker differs from
    /// the snapshot's, the status is Disrupted. With the check off that is one branch on an
    /// `Option`; with it on, one more atomic load and compare while nothing changed.
    #[inline(always)]
    pub(crate) fn now_into(
        &mut self,
        segment: &MappedSegment,
        out: &mut TimeWindow,
    ) -> Result<(), ShmError> {
        self.now_into_cells(segment.cells(), segment.path(), out)
    }

    /// [`now_into`](Self::now_into) given the segment's cells and path apart (a caller
    /// may hold the cells one pointer hop nearer than the segment).
    #[inline(always)]
    pub(crate) fn now_into_cells(
        &mut self,
        cells: &SegmentCells,
        path: &Arc<Path>,
        out: &mut TimeWindow,
    ) -> Result<(), ShmError> {
        self.cache.now_into(cells, path, out)?;
        if let Some(watch) = &mut self.vmclock {
            // Only while the snapshot itself says the daemon tracks disruptions: a daemon
            // restarted without that support stops updating its marker.
            let snapshot = self.cache.cached();
            if snapshot.clock_disruption_support_enabled()
                && watch.marker()? != snapshot.disruption_marker()
            {
                out.clock_status = ClockStatus::Disrupted;
            }
        }
        Ok(())
    }

    /// [`now_into`](Self::now_into) returning the window (off the hot path).
    pub(crate) fn now(&mut self, segment: &MappedSegment) -> Result<TimeWindow, ShmError> {
        let mut window = TimeWindow::UNTRUSTED;
        self.now_into(segment, &mut window)?;
        Ok(window)
    }

    /// Brings the state up to date without computing a window (for a publisher): the
    /// generation check, the full re-read once `mono` has reached the recheck instant, the
    /// VMClock marker. Returns whether the snapshot looks dead, which only a re-read tells.
    ///
    /// # Errors
    /// As [`ShmReader::snapshot`], and VMClock errors.
    pub(crate) fn refresh(
        &mut self,
        segment: &MappedSegment,
        mono: Option<Timespec>,
    ) -> Result<bool, ShmError> {
        self.cache.snapshot(segment.cells(), segment.path())?;
        let mut looks_dead = false;
        if let Some(mono) = mono.filter(|m| *m >= self.cache.recheck_at()) {
            looks_dead = self.cache.recheck(segment.cells(), segment.path(), mono)?;
        }
        if let Some(watch) = &mut self.vmclock {
            watch.marker()?;
        }
        Ok(looks_dead)
    }

    /// Whether the VMClock marker (as last read) says the snapshot's clock was disrupted.
    pub(crate) fn disrupted(&self) -> bool {
        let snapshot = self.cache.cached();
        snapshot.clock_disruption_support_enabled()
            && self
                .vmclock
                .as_ref()
                .is_some_and(|w| w.cached_marker() != snapshot.disruption_marker())
    }

    /// The snapshot looked dead and the path names another file: map the new one. `None`
    /// while the new file is not readable yet (the daemon is still writing it).
    #[cold]
    pub(crate) fn reopen(&self, path: &Path) -> Option<(MappedSegment, ReaderState)> {
        // `open` already took the new file's first snapshot: keep it rather than read again.
        let (segment, cache) = MappedSegment::open(path).ok()?;
        Some((segment, self.carried_over_to(cache)))
    }

    /// A state for `segment` (another file than this state read), keeping the counters (one
    /// more reopen), the recheck interval and the VMClock watch.
    #[cold]
    pub(crate) fn rebase(&self, segment: &MappedSegment) -> Option<ReaderState> {
        let cache = SnapshotCache::load(segment.cells(), segment.path()).ok()?;
        Some(self.carried_over_to(cache))
    }

    /// This state's settings and counters, moved onto `cache` (a first read of a new file).
    fn carried_over_to(&self, mut cache: SnapshotCache) -> ReaderState {
        cache.set_recheck_interval(self.cache.recheck_interval());
        let mut stats = self.cache.stats();
        stats.reopens += 1;
        stats.full_reads += cache.stats().full_reads;
        *cache.stats_mut() = stats;
        ReaderState {
            cache,
            vmclock: self.vmclock.clone(),
        }
    }
}

/// Reads the ClockBound segment: the fastest way to error-bounded time, for one thread.
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
/// [`now`](ClockErrorBound::now) degrades to FreeRunning and then Unknown as it ages. It
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
pub struct ShmReader {
    state: ReaderState,
    segment: MappedSegment,
}

impl ShmReader {
    /// Opens the segment at `path`, given as a C string the way the released client takes
    /// it. Equivalent to [`open`](Self::open).
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn new(path: &CStr) -> Result<ShmReader, ShmError> {
        ShmReader::open(Path::new(OsStr::from_bytes(path.to_bytes())))
    }

    /// Opens the segment at `path`, checks its header and takes a first snapshot.
    ///
    /// # Errors
    /// - [`ShmError::Io`]: the file cannot be opened, stat'ed or mapped (errno kept;
    ///   `ENOENT` usually means the daemon is not running, `EACCES` a permissions problem),
    ///   or it is not a regular file.
    /// - [`ShmError::SegmentNotInitialized`]: the file is empty, wiped (version 0), never
    ///   written (generation 0), or stuck mid-update with no earlier snapshot. The daemon
    ///   is starting or restarting: retry later.
    /// - [`ShmError::SegmentMalformed`]: shorter than 80 bytes, bad magic, `segsize` below
    ///   80 or beyond the file, or a payload with invalid fields.
    /// - [`ShmError::SegmentVersionNotSupported`]: a layout version other than 2.
    /// - [`ShmError::VmClockIo`] / [`ShmError::VmClockMalformed`]: the segment says the
    ///   daemon runs with clock-disruption support, but the VMClock page
    ///   ([`VMCLOCK_DEFAULT_PATH`](crate::VMCLOCK_DEFAULT_PATH)) cannot be read; see
    ///   [`open_with`](Self::open_with) to point elsewhere or turn the check off.
    pub fn open(path: impl AsRef<Path>) -> Result<ShmReader, ShmError> {
        ShmReader::open_with(path, &ReaderOptions::default())
    }

    /// Opens the segment at `path` with `options` (VMClock disruption check, recheck
    /// interval).
    ///
    /// # Errors
    /// As [`open`](Self::open); the VMClock errors only when the check applies.
    pub fn open_with(
        path: impl AsRef<Path>,
        options: &ReaderOptions,
    ) -> Result<ShmReader, ShmError> {
        let (segment, state, _) = ReaderState::open(path.as_ref(), options)?;
        Ok(ShmReader { state, segment })
    }

    /// The current snapshot: the cached one while the segment's generation is unchanged,
    /// otherwise a fresh, validated, consistent copy.
    ///
    /// # Errors
    /// - [`ShmError::SegmentMalformed`]: the writer published invalid fields.
    /// - [`ShmError::SegmentVersionNotSupported`]: the writer changed the layout version.
    ///
    /// Passing states (update in progress, wiped, contended) are not errors: the previous
    /// snapshot is returned.
    #[inline]
    pub fn snapshot(&mut self) -> Result<&ClockErrorBound, ShmError> {
        self.state
            .cache
            .snapshot(self.segment.cells(), self.segment.path())
    }

    /// The window for the current instant: [`snapshot`](Self::snapshot) and
    /// [`ClockErrorBound::now`], plus the disruption check (when the segment asks for it:
    /// a VMClock marker that differs from the snapshot's makes the status Disrupted; see
    /// [`DisruptionCheck`]) and two self-healing checks that cost the hot path one
    /// comparison:
    ///
    /// - once the cached snapshot's `as_of` is older than the recheck interval
    ///   ([`DEFAULT_RECHECK_INTERVAL`](crate::DEFAULT_RECHECK_INTERVAL), 1 s), the payload
    ///   is re-read in full even if the generation looks unchanged, so a 16-bit generation
    ///   that wrapped round to the cached value cannot serve a stale snapshot for long;
    /// - if the snapshot is still older than [`STALE_AFTER`](crate::STALE_AFTER) after that
    ///   re-read, the reader checks (at most once per recheck interval, one `stat`) whether
    ///   the path now names another file, as when the daemon recreated the segment, and if
    ///   so maps the new file and continues from it.
    ///
    /// `reader.snapshot()?.now()` skips all three checks; prefer this call.
    ///
    /// # Errors
    /// As [`snapshot`](Self::snapshot) and [`ClockErrorBound::now`].
    #[inline]
    pub fn now(&mut self) -> Result<TimeWindow, ShmError> {
        let mut window = TimeWindow::UNTRUSTED;
        self.state.now_into(&self.segment, &mut window)?;
        if self.state.cache.take_looks_dead() {
            return self.follow_recreated_file(window);
        }
        Ok(window)
    }

    /// The snapshot looks dead: if the daemon recreated the file, switch to the new one.
    #[cold]
    #[inline(never)]
    fn follow_recreated_file(&mut self, window: TimeWindow) -> Result<TimeWindow, ShmError> {
        if !self.segment.replaced_on_disk() {
            return Ok(window);
        }
        match self.state.reopen(self.segment.path()) {
            Some((segment, state)) => {
                self.segment = segment;
                self.state = state;
                self.state.now(&self.segment)
            }
            // The new file is not ready yet (the daemon is writing it): keep answering from
            // the old snapshot, whose status keeps degrading, and look again later.
            None => Ok(window),
        }
    }

    /// True only when `t` has certainly passed (`t < earliest` of [`now`](Self::now)).
    /// Check the status too if you need a trusted answer, or use
    /// [`wait_until_after`](Self::wait_until_after).
    ///
    /// # Errors
    /// As [`now`](Self::now).
    pub fn after(&mut self, t: Timespec) -> Result<bool, ShmError> {
        Ok(self.now()?.after(t))
    }

    /// True only when `t` has certainly not arrived (`t > latest` of [`now`](Self::now)).
    ///
    /// # Errors
    /// As [`now`](Self::now).
    pub fn before(&mut self, t: Timespec) -> Result<bool, ShmError> {
        Ok(self.now()?.before(t))
    }

    /// Commit-wait: blocks until `t` has certainly passed and returns the first window
    /// whose `earliest` is after `t`. Sleeps through the remaining uncertainty and spins
    /// only for the last few microseconds.
    ///
    /// ```no_run
    /// # use clockbound_shm::{ShmReader, Timespec};
    /// # use std::time::Duration;
    /// let mut clock = ShmReader::open(clockbound_shm::CLOCKBOUND_SHM_DEFAULT_PATH)?;
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
    /// while the daemon boots.
    ///
    /// # Errors
    /// [`ShmError::Timeout`] after `timeout`, carrying the last attempt's error if it
    /// failed (e.g. the file is still missing).
    pub fn wait_for_sync(path: impl AsRef<Path>, timeout: Duration) -> Result<ShmReader, ShmError> {
        let path = path.as_ref();
        wait::for_sync(
            timeout,
            || ShmReader::open(path),
            |reader| Ok(reader.now()?.clock_status),
        )
    }

    /// What this reader has done so far (reads, cache answers, retries, ...).
    #[must_use]
    pub fn stats(&self) -> ReaderStats {
        self.state.cache.stats()
    }

    /// Sets how old the cached snapshot's `as_of` may get before [`now`](Self::now)
    /// re-reads it in full (default [`DEFAULT_RECHECK_INTERVAL`](crate::DEFAULT_RECHECK_INTERVAL)).
    /// Shorter heals faster and costs a 64-byte copy per interval while the daemon is
    /// silent.
    pub fn set_recheck_interval(&mut self, interval: Duration) {
        self.state.cache.set_recheck_interval(interval);
    }

    /// The segment file this reader maps.
    #[must_use]
    pub fn path(&self) -> &Path {
        self.segment.path()
    }

    /// The segment's header as it is in the mapping right now: magic, `segsize`, version
    /// and the *current* generation (which may differ from [`generation`](Self::generation),
    /// the one of the snapshot held). For diagnostics such as the `clockbound-shm status`
    /// command; four atomic loads, no validation (the header was validated at open).
    #[must_use]
    pub fn header(&self) -> SegmentHeader {
        let cells = self.segment.cells();
        let (magic, segsize, version) = cells.header();
        SegmentHeader {
            magic,
            segsize,
            version,
            generation: cells.load_generation(),
        }
    }

    /// The generation of the snapshot the reader holds; 0 once it has seen the segment
    /// wiped (it still answers from the snapshot it holds, and re-reads on the next
    /// update).
    #[must_use]
    pub fn generation(&self) -> u16 {
        self.state.cache.generation()
    }
}

impl std::fmt::Debug for ShmReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmReader")
            .field("path", self.segment.path())
            .field("generation", &self.state.cache.generation())
            .field("snapshot", self.state.cache.cached())
            .finish()
    }
}
