//! [`ReaderOptions`]: how a reader is opened (the VMClock disruption check, the recheck
//! interval), for [`ShmReader`](crate::ShmReader) and
//! [`SharedClockBound`](crate::SharedClockBound) alike.

use std::path::PathBuf;
use std::time::Duration;

use crate::seqlock::DEFAULT_RECHECK_INTERVAL;
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
}

impl Default for ReaderOptions {
    fn default() -> ReaderOptions {
        ReaderOptions {
            disruption_check: DisruptionCheck::default(),
            recheck_interval: DEFAULT_RECHECK_INTERVAL,
        }
    }
}

impl ReaderOptions {
    /// The defaults: [`DisruptionCheck::WhenEnabled`] at [`VMCLOCK_DEFAULT_PATH`], and
    /// [`DEFAULT_RECHECK_INTERVAL`].
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
}
