//! The two kernel clocks `now()` reads, through the vDSO (no system call on Linux).

use super::timespec::Timespec;
use rustix::time::{ClockId, clock_gettime};

/// `CLOCK_REALTIME`: the wall clock the window is centred on.
#[inline(always)]
pub(crate) fn realtime() -> Timespec {
    from_kernel(clock_gettime(ClockId::Realtime))
}

/// `CLOCK_MONOTONIC_COARSE`: the clock the daemon stamps `as_of` and `void_after` with.
/// Coarse (a scheduler tick), but cheap and what the protocol prescribes.
#[inline(always)]
pub(crate) fn monotonic_coarse() -> Timespec {
    from_kernel(clock_gettime(ClockId::MonotonicCoarse))
}

// The public way to read them.
impl Timespec {
    /// `CLOCK_MONOTONIC_COARSE` now: the clock a layout 2 segment's `as_of` and
    /// `void_after` are on (through the vDSO, no system call). For writers and simulators
    /// that stamp snapshots.
    #[must_use]
    pub fn monotonic_coarse_now() -> Timespec {
        monotonic_coarse()
    }

    /// `CLOCK_REALTIME` now: the clock a layout 2 window is centred on, and the scale of a
    /// layout 3 segment's `as_of`.
    #[must_use]
    pub fn realtime_now() -> Timespec {
        realtime()
    }
}

#[inline(always)]
fn from_kernel(t: rustix::time::Timespec) -> Timespec {
    #[allow(clippy::useless_conversion)] // `tv_nsec` is `i64` on 64-bit targets only.
    let (sec, nsec) = (t.tv_sec, i64::from(t.tv_nsec));
    // The kernel hands out normalised values: take them as they are (no division), and
    // normalise only what would not be.
    match Timespec::from_normalised(sec, nsec) {
        Some(t) => t,
        None => Timespec::new(sec, nsec),
    }
}
