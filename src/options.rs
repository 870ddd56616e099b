//! [`ReaderOptions`]: how a reader is opened (the VMClock disruption check, the recheck
//! interval, the free-running grace, the `SIGBUS` guard, trusted windows only), for
//! [`ShmReader`](crate::ShmReader) and [`SharedClockBound`](crate::SharedClockBound) alike.

use std::path::PathBuf;
use std::time::Duration;

use crate::cache::DEFAULT_RECHECK_INTERVAL;
use crate::snapshot::FREE_RUNNING_GRACE;
use crate::vmclock::VMCLOCK_DEFAULT_PATH;

/// Whether `now()` also checks the VMClock page for a clock disruption (live migration,
/// snapshot restore) that the daemon has not caught up with yet.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DisruptionCheck {
    /// Read the VMClock page at `vmclock_path` when the segment says
    /// `clock_disruption_support_enabled`, as the released client does. When its disruption
    /// marker differs from the segment's, the window's status is
    /// [`Disrupted`](crate::ClockStatus::Disrupted). When the flag is set and the page
    /// cannot be opened, opening the reader fails. The default, with
    /// [`VMCLOCK_DEFAULT_PATH`].
    WhenEnabled {
        /// The VMClock device (or a file with its layout).
        vmclock_path: PathBuf,
    },
    /// Never read the VMClock page: trust the segment alone.
    Off,
}

impl Default for DisruptionCheck {
    fn default() -> DisruptionCheck {
        DisruptionCheck::WhenEnabled {
            vmclock_path: PathBuf::from(VMCLOCK_DEFAULT_PATH),
        }
    }
}

/// How a [`SharedClockBound`](crate::SharedClockBound) keeps snapshots for its threads. Both give the same answers,
/// freshness and errors; they differ in cost and memory
/// ([`docs::strategies`](crate::docs::strategies)).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// One reader state per thread, created on the thread's first call, dropped when the
    /// thread exits. The cheaper per call; the default.
    #[default]
    ThreadLocal,
    /// One snapshot for all threads, published through an [`ArcSwap`](arc_swap::ArcSwap): less memory per
    /// thread, suits very many short-lived threads.
    ArcSwap,
}

/// How a reader is opened. The defaults are what the released client does, plus this
/// crate's self-healing.
///
/// ```no_run
/// use clockbound_shm::{DisruptionCheck, ReaderOptions, ShmReader};
/// use std::time::Duration;
///
/// let options = ReaderOptions::new()
///     .disruption_check(DisruptionCheck::Off)
///     .recheck_interval(Duration::from_millis(500));
/// let reader = ShmReader::open_with("/var/run/clockbound/shm0", &options)?;
/// # Ok::<(), clockbound_shm::ShmError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReaderOptions {
    pub(crate) disruption_check: DisruptionCheck,
    pub(crate) recheck_interval: Duration,
    pub(crate) free_running_grace: Duration,
    pub(crate) sigbus_guard: bool,
    pub(crate) require_trusted: bool,
    pub(crate) strategy: Strategy,
}

impl Default for ReaderOptions {
    fn default() -> ReaderOptions {
        ReaderOptions {
            disruption_check: DisruptionCheck::default(),
            recheck_interval: DEFAULT_RECHECK_INTERVAL,
            free_running_grace: FREE_RUNNING_GRACE,
            sigbus_guard: true,
            require_trusted: false,
            strategy: Strategy::ThreadLocal,
        }
    }
}

impl ReaderOptions {
    /// The defaults: [`DisruptionCheck::WhenEnabled`] at [`VMCLOCK_DEFAULT_PATH`],
    /// [`DEFAULT_RECHECK_INTERVAL`], [`FREE_RUNNING_GRACE`], the `SIGBUS` guard on, windows
    /// of any status returned.
    #[must_use]
    pub fn new() -> ReaderOptions {
        ReaderOptions::default()
    }

    /// Sets the VMClock disruption check.
    #[must_use]
    pub fn disruption_check(mut self, check: DisruptionCheck) -> ReaderOptions {
        self.disruption_check = check;
        self
    }

    /// Sets how old a cached snapshot's `as_of` may get before `now()` re-reads the payload
    /// in full even though the generation looks unchanged (the guard against a wrapped
    /// generation, and how often a silent daemon's file is checked for replacement).
    #[must_use]
    pub fn recheck_interval(mut self, interval: Duration) -> ReaderOptions {
        self.recheck_interval = interval;
        self
    }

    /// Sets how long after a snapshot's `as_of` its Synchronized status holds before the
    /// window is reported FreeRunning (the daemon has stopped updating). Default
    /// [`FREE_RUNNING_GRACE`] (60 s, as the ClockBound 3.x clients); the released 2.0.3
    /// client used [`FREE_RUNNING_GRACE_2_0_3`](crate::FREE_RUNNING_GRACE_2_0_3) (5 s).
    /// Only the status depends on it: the window grows with the drift either way.
    #[must_use]
    pub fn free_running_grace(mut self, grace: Duration) -> ReaderOptions {
        self.free_running_grace = grace;
        self
    }

    /// Turns the process-wide `SIGBUS` guard on (the default) or off for this reader's
    /// mapping. With it on, a daemon that truncates the segment while this process reads
    /// it (every ClockBound 3.x start does that to `shm0`) cannot kill the process: the
    /// reader answers from its last snapshot and maps the file again. With it off, such a
    /// restart can end the process with `SIGBUS`, as it does for the released clients.
    /// How it works and what it does to other `SIGBUS` handlers:
    /// [`docs::hazards`](crate::docs::hazards).
    #[must_use]
    pub fn sigbus_guard(mut self, on: bool) -> ReaderOptions {
        self.sigbus_guard = on;
        self
    }

    /// With `true`, `now()` (and the queries built on it) return
    /// [`ShmError::ClockNotTrusted`](crate::ShmError::ClockNotTrusted) instead of a window
    /// whose status is Unknown or Disrupted.
    #[must_use]
    pub fn require_trusted(mut self, on: bool) -> ReaderOptions {
        self.require_trusted = on;
        self
    }

    /// Sets how a [`SharedClockBound`](crate::SharedClockBound) keeps snapshots for its
    /// threads (default [`Strategy::ThreadLocal`](crate::Strategy::ThreadLocal)); an
    /// [`ShmReader`](crate::ShmReader) has no threads to serve and ignores it.
    #[must_use]
    pub fn strategy(mut self, strategy: Strategy) -> ReaderOptions {
        self.strategy = strategy;
        self
    }
}
