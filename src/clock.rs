//! The two kernel clocks `now()` reads, through the vDSO (no system call on Linux).

use crate::timespec::Timespec;
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
