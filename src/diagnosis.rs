//! [`Diagnosis`]: one look at a segment with everything an operator's tool shows: the
//! header, the snapshot, the clock readings, the window computed from exactly those, and the
//! VMClock disruption check. The `clockbound-shm` CLI renders it; it is here so that the
//! numbers and the verdict have one source.
//!
//! Readers' `now()` is the fast path; this is the explaining one. It reads the clocks
//! itself so that it can show them, and it runs the VMClock check whether or not the
//! reader was opened with it, so a missing or unreadable page is reported next to the
//! segment rather than instead of it.

use std::path::{Path, PathBuf};

use crate::error::ShmError;
use crate::layout::vmclock::VmClockSnapshot;
use crate::layout::{Layout2, Layout3, SegmentHeader};
use crate::reader::SegmentReader;
use crate::shared::AnySnapshot;
use crate::snapshot::ClockErrorBoundV3;
use crate::time::{ClockStatus, TimeWindow, Timespec};
use crate::version::LayoutVersion;
use crate::vmclock::VmClockReader;

/// The clock readings a [`Diagnosis`] window was computed from.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClockReadings {
    /// Layout 2: `CLOCK_REALTIME`, then `CLOCK_MONOTONIC_COARSE`.
    Layout2 {
        /// `CLOCK_REALTIME`: the window's midpoint.
        realtime: Timespec,
        /// `CLOCK_MONOTONIC_COARSE`: the clock `as_of` is on.
        monotonic: Timespec,
    },
    /// Layout 3: `CLOCK_REALTIME` (for comparison only: the window does not use it), then
    /// the CPU counter.
    Layout3 {
        /// `CLOCK_REALTIME`, read between two counter reads.
        realtime: Timespec,
        /// The CPU counter the window is computed at.
        counter: u64,
        /// Ticks from the snapshot's `as_of_tsc` to `counter` (negative when behind it).
        ticks: i128,
    },
}

/// What the VMClock disruption check found, in a [`Diagnosis`].
#[derive(Debug)]
#[non_exhaustive]
pub enum VmClockCheck {
    /// Not run: the probe was told to skip it.
    Skipped,
    /// Not run: the snapshot does not ask for it and the probe was not told to always run.
    NotNeeded,
    /// The page was read. `applied` when the snapshot asks for the check, so that a marker
    /// mismatch makes the status Disrupted.
    Read {
        /// The VMClock device (or file).
        path: PathBuf,
        /// The page's contents.
        page: VmClockSnapshot,
        /// The snapshot asks for the check.
        applied: bool,
    },
    /// The page could not be read. `applied` when the snapshot asks for the check: the
    /// status shown is then the segment's alone, and cannot be trusted.
    Failed {
        /// The VMClock device (or file).
        path: PathBuf,
        /// Why it could not be read.
        error: ShmError,
        /// The snapshot asks for the check.
        applied: bool,
    },
}

impl VmClockCheck {
    /// A short name: `skipped`, `not_needed`, `done` or `failed`.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            VmClockCheck::Skipped => "skipped",
            VmClockCheck::NotNeeded => "not_needed",
            VmClockCheck::Read { .. } => "done",
            VmClockCheck::Failed { .. } => "failed",
        }
    }

    /// The error of a check the snapshot asked for and that could not run.
    #[must_use]
    pub fn required_failure(&self) -> Option<&ShmError> {
        match self {
            VmClockCheck::Failed {
                error,
                applied: true,
                ..
            } => Some(error),
            _ => None,
        }
    }
}

/// Everything one look at a segment found (see [`ShmReader::diagnose`](crate::ShmReader::diagnose)).
#[derive(Debug)]
#[non_exhaustive]
pub struct Diagnosis {
    /// The segment file.
    pub path: PathBuf,
    /// Its layout.
    pub layout: LayoutVersion,
    /// The header as read at the moment of the look.
    pub header: SegmentHeader,
    /// The snapshot the window is computed from.
    pub snapshot: AnySnapshot,
    /// The generation the snapshot was read at.
    pub generation: u16,
    /// The clock readings the window is computed at.
    pub clocks: ClockReadings,
    /// The window from the snapshot alone, before the VMClock check.
    pub window: TimeWindow,
    /// Nanoseconds since the snapshot's `as_of`: layout 2, monotonic now minus `as_of`;
    /// layout 3, the window's midpoint minus `as_of`. Slightly negative within the blur
    /// readers allow.
    pub age_ns: i128,
    /// The VMClock check.
    pub vmclock: VmClockCheck,
    /// The window's status after the VMClock check: Disrupted when the snapshot asks for the
    /// check and the page's marker differs from the snapshot's; the window's own otherwise.
    pub status: ClockStatus,
}

impl Diagnosis {
    /// Whether the page's disruption marker differs from the snapshot's; `None` when the
    /// page was not read.
    #[must_use]
    pub fn markers_differ(&self) -> Option<bool> {
        match &self.vmclock {
            VmClockCheck::Read { page, .. } => {
                Some(page.disruption_marker != self.snapshot.disruption_marker())
            }
            _ => None,
        }
    }

    /// A trusted status, and every check the snapshot asks for ran.
    #[must_use]
    pub fn trusted(&self) -> bool {
        self.status.is_trusted() && self.vmclock.required_failure().is_none()
    }
}

/// How [`diagnose`](crate::ShmReader::diagnose) runs the VMClock check: which page, and
/// whether to read it when the snapshot does not ask for it. Keeps the page open between
/// looks, and tries to open it again at each look until it can (a device that appears, or
/// is made readable, is picked up).
#[derive(Debug)]
pub struct VmClockProbe {
    path: Option<PathBuf>,
    always: bool,
    reader: Option<VmClockReader>,
}

impl VmClockProbe {
    /// Reads the page at `path` when the snapshot asks for the check, or at every look when
    /// `always` (to show it).
    #[must_use]
    pub fn new(path: impl AsRef<Path>, always: bool) -> VmClockProbe {
        VmClockProbe {
            path: Some(path.as_ref().to_owned()),
            always,
            reader: None,
        }
    }

    /// Never reads the page: the status is the segment's alone.
    #[must_use]
    pub fn skip() -> VmClockProbe {
        VmClockProbe {
            path: None,
            always: false,
            reader: None,
        }
    }

    fn check(&mut self, applied: bool) -> VmClockCheck {
        let Some(path) = self.path.clone() else {
            return VmClockCheck::Skipped;
        };
        if !applied && !self.always {
            return VmClockCheck::NotNeeded;
        }
        let page = match &mut self.reader {
            Some(reader) => reader.snapshot(),
            None => VmClockReader::open(&path).and_then(|r| self.reader.insert(r).snapshot()),
        };
        match page {
            Ok(page) => VmClockCheck::Read {
                path,
                page,
                applied,
            },
            Err(error) => VmClockCheck::Failed {
                path,
                error,
                applied,
            },
        }
    }
}

/// The parts of a diagnosis that depend on the layout.
struct Look {
    snapshot: AnySnapshot,
    clocks: ClockReadings,
    window: TimeWindow,
    age_ns: i128,
}

fn finish<L: crate::layout::Layout>(
    reader: &SegmentReader<L>,
    look: Look,
    vmclock: &mut VmClockProbe,
) -> Diagnosis {
    let check = vmclock.check(look.snapshot.clock_disruption_support_enabled());
    let mut status = look.window.clock_status;
    if let VmClockCheck::Read {
        page,
        applied: true,
        ..
    } = &check
    {
        if page.disruption_marker != look.snapshot.disruption_marker() {
            status = ClockStatus::Disrupted;
        }
    }
    Diagnosis {
        path: reader.path().to_owned(),
        layout: reader.layout(),
        header: reader.header(),
        snapshot: look.snapshot,
        generation: reader.generation(),
        clocks: look.clocks,
        window: look.window,
        age_ns: look.age_ns,
        vmclock: check,
        status,
    }
}

impl SegmentReader<Layout2> {
    /// One look at the segment for an operator: runs `now()` (and so the self-healing
    /// checks), then computes the window from the snapshot at clock readings it keeps, and
    /// runs the VMClock check as `vmclock` says.
    ///
    /// # Errors
    /// Those of [`now`](Self::now).
    ///
    /// ```no_run
    /// use clockbound_shm::{DisruptionCheck, ReaderOptions, ShmReader, VmClockProbe};
    ///
    /// let options = ReaderOptions::new().disruption_check(DisruptionCheck::Off);
    /// let mut reader = ShmReader::open_with("/var/run/clockbound/shm0", &options)?;
    /// let look = reader.diagnose(&mut VmClockProbe::new("/dev/vmclock0", false))?;
    /// println!("{:?} ({} ns old), VMClock check {}", look.status, look.age_ns, look.vmclock.name());
    /// # Ok::<(), clockbound_shm::ShmError>(())
    /// ```
    pub fn diagnose(&mut self, vmclock: &mut VmClockProbe) -> Result<Diagnosis, ShmError> {
        self.now()?;
        let snapshot = *self.snapshot()?;
        let realtime = Timespec::realtime_now();
        let monotonic = Timespec::monotonic_coarse_now();
        let window =
            snapshot.compute_bound_with_grace(realtime, monotonic, self.free_running_grace())?;
        let look = Look {
            snapshot: AnySnapshot::V2(snapshot),
            clocks: ClockReadings::Layout2 {
                realtime,
                monotonic,
            },
            window,
            age_ns: monotonic.as_nanos() - snapshot.as_of().as_nanos(),
        };
        Ok(finish(self, look, vmclock))
    }
}

impl SegmentReader<Layout3> {
    /// One look at the segment for an operator (see
    /// [`ShmReader::diagnose`](crate::ShmReader::diagnose)). The window is computed at the
    /// counter value shown, with this reader's free-running grace.
    ///
    /// # Errors
    /// Those of [`now`](Self::now).
    pub fn diagnose(&mut self, vmclock: &mut VmClockProbe) -> Result<Diagnosis, ShmError> {
        self.now()?;
        let snapshot = *self.snapshot()?;
        let (realtime, counter) = realtime_and_counter(&snapshot)?;
        let window = snapshot.compute_bound_at(counter, self.free_running_grace())?;
        let look = Look {
            snapshot: AnySnapshot::V3(snapshot),
            clocks: ClockReadings::Layout3 {
                realtime,
                counter,
                ticks: i128::from(counter) - i128::from(snapshot.as_of_tsc()),
            },
            window,
            age_ns: window.midpoint().as_nanos() - snapshot.as_of().as_nanos(),
        };
        Ok(finish(self, look, vmclock))
    }
}

/// `CLOCK_REALTIME` (for comparison with a layout 3 window), then the counter the window is
/// computed at, read close together: a counter read before both notices a preemption between
/// them (more than 20 µs of ticks at the snapshot's frequency), which would make the
/// comparison meaningless, and the pair is read again, up to three times.
fn realtime_and_counter(snapshot: &ClockErrorBoundV3) -> Result<(Timespec, u64), ShmError> {
    let read = || {
        crate::time::counter::cpu_counter().ok_or(ShmError::CounterUnavailable {
            arch: std::env::consts::ARCH,
        })
    };
    let max_gap = if snapshot.period_frac() == 0 {
        u64::MAX
    } else {
        let hz = 2f64.powi(64 + i32::from(snapshot.period_shift())) / snapshot.period_frac() as f64;
        (hz * 20e-6) as u64
    };
    let mut tries = 0;
    loop {
        let before = read()?;
        let realtime = Timespec::realtime_now();
        let counter = read()?;
        tries += 1;
        if counter.wrapping_sub(before) <= max_gap || tries == 3 {
            return Ok((realtime, counter));
        }
    }
}
