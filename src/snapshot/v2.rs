//! The bound arithmetic: a [`ClockErrorBound`] snapshot turned into a [`TimeWindow`].
//!
//! A snapshot says: at monotonic instant `as_of`, `CLOCK_REALTIME` was within `bound_nsec` of
//! true time, and it drifts by at most `max_drift_ppb` since then. So at any later monotonic
//! instant `mono`, with the realtime clock reading `real`,
//!
//! ```text
//! bound    = bound_nsec + (mono - as_of) * max_drift_ppb / 1e9     (rounded up)
//! earliest = real - bound
//! latest   = real + bound
//! ```
//!
//! and true time lies in `[earliest, latest]`. Everything here is integer arithmetic on
//! nanoseconds that saturates instead of overflowing, and rounds the bound *up*: a window may
//! be a nanosecond wider than the exact value, never narrower.

use std::time::Duration;

use super::{CAUSALITY_BLUR, FREE_RUNNING_GRACE};
use crate::error::{Malformed, ShmError};
use crate::time::{ClockStatus, TimeWindow};
use crate::time::{NANOS_PER_SEC, Timespec};

/// Snapshots younger than this many seconds take `now()`'s short arithmetic path (see
/// `ClockErrorBound::write_window_at`). The daemon writes about every second, so this is
/// every call in practice; the limit keeps the short path's sums far from overflow without
/// further checks (older snapshots take the general, saturating path).
const FAST_PATH_SECS: i64 = 16;

/// One snapshot of the segment's payload: the error bound at `as_of` and how it grows.
///
/// This is the 64-byte layout-2 payload (`repr(C)`, the field order and offsets of the wire
/// format), but it is never *read* from shared memory as a Rust value: the reader copies
/// words, validates every field, and only then builds one, so a `ClockErrorBound` always
/// holds a valid [`ClockStatus`] and `bool`.
///
/// With feature `serde` it is `{"layout": 2, "as_of": Timespec, "void_after": Timespec,
/// "bound_nsec": i64, "disruption_marker": u64, "max_drift_ppb": u32, "clock_status":
/// ClockStatus, "clock_disruption_support_enabled": bool}` (no padding). Deserialising
/// checks the fields as reading a segment does (nanoseconds in range, a bound of 0 or more,
/// a drift below 1e9 ppb), so a snapshot from JSON is one a reader could have returned.
///
/// ```
/// use clockbound_shm::{ClockErrorBound, ClockStatus, Timespec};
///
/// // The worked example of the protocol description.
/// let ceb = ClockErrorBound::builder()
///     .as_of(Timespec::new(0, 0))
///     .void_after(Timespec::new(10, 0))
///     .bound_nsec(10_000)
///     .max_drift_ppb(1_000)
///     .clock_status(ClockStatus::Synchronized)
///     .build();
/// let w = ceb.compute_bound_at(Timespec::new(2, 0), Timespec::new(2, 0))?;
/// assert_eq!(w.earliest, Timespec::new(1, 999_988_000));
/// assert_eq!(w.latest, Timespec::new(2, 12_000));
/// assert_eq!(w.clock_status, ClockStatus::Synchronized);
/// # Ok::<(), clockbound_shm::ShmError>(())
/// ```
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct ClockErrorBound {
    as_of: Timespec,
    void_after: Timespec,
    bound_nsec: i64,
    disruption_marker: u64,
    max_drift_ppb: u32,
    clock_status: ClockStatus,
    clock_disruption_support_enabled: bool,
    padding: [u8; 7],
}

// `ClockErrorBound` is documented as the payload layout: keep that true (offsets are the
// wire offsets minus the 16-byte header).
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<ClockErrorBound>() == 64);
    assert!(offset_of!(ClockErrorBound, void_after) == 32 - 16);
    assert!(offset_of!(ClockErrorBound, bound_nsec) == 48 - 16);
    assert!(offset_of!(ClockErrorBound, disruption_marker) == 56 - 16);
    assert!(offset_of!(ClockErrorBound, max_drift_ppb) == 64 - 16);
    assert!(offset_of!(ClockErrorBound, clock_status) == 68 - 16);
    assert!(offset_of!(ClockErrorBound, clock_disruption_support_enabled) == 72 - 16);
};

/// Builds a [`ClockErrorBound`] field by field (see [`ClockErrorBound::builder`]): the
/// named alternative to [`ClockErrorBound::new`], whose seven positional arguments include
/// adjacent integers that are easy to swap.
///
/// Every field starts at zero (status Unknown, disruption support off). Nothing is
/// validated here: [`ClockErrorBound::compute_bound_at`] rejects what the arithmetic cannot
/// honestly use.
#[derive(Copy, Clone, Debug, PartialEq)]
#[must_use]
pub struct ClockErrorBoundBuilder {
    ceb: ClockErrorBound,
}

impl ClockErrorBoundBuilder {
    /// The `CLOCK_MONOTONIC_COARSE` instant at which the bound was computed.
    pub const fn as_of(mut self, as_of: Timespec) -> Self {
        self.ceb.as_of = as_of;
        self
    }

    /// The `CLOCK_MONOTONIC_COARSE` instant from which the snapshot must not be trusted.
    pub const fn void_after(mut self, void_after: Timespec) -> Self {
        self.ceb.void_after = void_after;
        self
    }

    /// Bound on the clock's error at `as_of`, in nanoseconds (0 or more).
    pub const fn bound_nsec(mut self, bound_nsec: i64) -> Self {
        self.ceb.bound_nsec = bound_nsec;
        self
    }

    /// The last VMClock disruption marker the daemon saw.
    pub const fn disruption_marker(mut self, disruption_marker: u64) -> Self {
        self.ceb.disruption_marker = disruption_marker;
        self
    }

    /// The clock's worst-case drift since `as_of`, in parts per billion (below 1e9).
    pub const fn max_drift_ppb(mut self, max_drift_ppb: u32) -> Self {
        self.ceb.max_drift_ppb = max_drift_ppb;
        self
    }

    /// The daemon's view of the clock.
    pub const fn clock_status(mut self, clock_status: ClockStatus) -> Self {
        self.ceb.clock_status = clock_status;
        self
    }

    /// Whether readers must check the VMClock disruption marker.
    pub const fn clock_disruption_support_enabled(mut self, enabled: bool) -> Self {
        self.ceb.clock_disruption_support_enabled = enabled;
        self
    }

    /// The snapshot.
    #[must_use]
    pub const fn build(self) -> ClockErrorBound {
        self.ceb
    }
}

impl ClockErrorBound {
    /// A value to overwrite: all zero, status Unknown.
    pub(crate) const PLACEHOLDER: ClockErrorBound = ClockErrorBound::new(
        Timespec::ZERO,
        Timespec::ZERO,
        0,
        0,
        0,
        ClockStatus::Unknown,
        false,
    );

    /// A builder with every field zero, status Unknown: the readable way to make a snapshot
    /// (for writers, simulators and tests).
    pub const fn builder() -> ClockErrorBoundBuilder {
        ClockErrorBoundBuilder {
            ceb: ClockErrorBound::PLACEHOLDER,
        }
    }

    /// A builder holding this snapshot's fields: a variant of it in one expression.
    ///
    /// ```
    /// use clockbound_shm::{ClockErrorBound, ClockStatus};
    ///
    /// let synced = ClockErrorBound::builder().clock_status(ClockStatus::Synchronized).build();
    /// let lost = synced.to_builder().clock_status(ClockStatus::FreeRunning).build();
    /// assert_eq!(lost.bound_nsec(), synced.bound_nsec());
    /// assert_eq!(lost.clock_status(), ClockStatus::FreeRunning);
    /// ```
    pub const fn to_builder(self) -> ClockErrorBoundBuilder {
        ClockErrorBoundBuilder { ceb: self }
    }

    /// Builds a snapshot from its fields, in the released 2.0.3 client's argument order
    /// ([`builder`](Self::builder) names them instead).
    ///
    /// Nothing is validated here; [`compute_bound_at`](Self::compute_bound_at) rejects a
    /// negative `bound_nsec` or a drift of 1e9 ppb or more.
    #[allow(clippy::too_many_arguments)]
    #[must_use]
    pub const fn new(
        as_of: Timespec,
        void_after: Timespec,
        bound_nsec: i64,
        disruption_marker: u64,
        max_drift_ppb: u32,
        clock_status: ClockStatus,
        clock_disruption_support_enabled: bool,
    ) -> ClockErrorBound {
        ClockErrorBound {
            as_of,
            void_after,
            bound_nsec,
            disruption_marker,
            max_drift_ppb,
            clock_status,
            clock_disruption_support_enabled,
            padding: [0; 7],
        }
    }

    /// `CLOCK_MONOTONIC_COARSE` instant at which the bound was computed.
    #[must_use]
    pub const fn as_of(&self) -> Timespec {
        self.as_of
    }

    /// `CLOCK_MONOTONIC_COARSE` instant after which the snapshot must not be trusted.
    #[must_use]
    pub const fn void_after(&self) -> Timespec {
        self.void_after
    }

    /// Bound on `|CLOCK_REALTIME - true time|` at [`as_of`](Self::as_of), in nanoseconds.
    #[must_use]
    pub const fn bound_nsec(&self) -> i64 {
        self.bound_nsec
    }

    /// The last VMClock disruption marker the daemon saw.
    #[must_use]
    pub const fn disruption_marker(&self) -> u64 {
        self.disruption_marker
    }

    /// Worst-case drift of the clock since `as_of`, in parts per billion.
    #[must_use]
    pub const fn max_drift_ppb(&self) -> u32 {
        self.max_drift_ppb
    }

    /// The status the daemon wrote (before any degradation for age).
    #[must_use]
    pub const fn clock_status(&self) -> ClockStatus {
        self.clock_status
    }

    /// Whether the daemon runs with clock-disruption (VMClock) support.
    #[must_use]
    pub const fn clock_disruption_support_enabled(&self) -> bool {
        self.clock_disruption_support_enabled
    }

    /// The window for the current instant: reads `CLOCK_REALTIME`, then
    /// `CLOCK_MONOTONIC_COARSE` (a late monotonic read only widens the window), and applies
    /// [`compute_bound_at`](Self::compute_bound_at).
    ///
    /// # Errors
    /// [`ShmError::SegmentMalformed`] for a negative bound or a drift of 1e9 ppb or more,
    /// [`ShmError::CausalityBreach`] when the monotonic clock reads before `as_of` by more
    /// than [`CAUSALITY_BLUR`].
    #[inline]
    pub fn now(&self) -> Result<TimeWindow, ShmError> {
        let real = crate::time::clock::realtime();
        let mono = crate::time::clock::monotonic_coarse();
        self.compute_bound_at(real, mono)
    }

    /// The window at the instant when `CLOCK_REALTIME` read `real` and
    /// `CLOCK_MONOTONIC_COARSE` read `mono` (read in that order, as [`now`](Self::now)
    /// does).
    ///
    /// The status: Unknown and Disrupted pass through. Synchronized and FreeRunning become
    /// Unknown once `mono` reaches `void_after`, and otherwise FreeRunning once `mono`
    /// reaches `as_of` + [`FREE_RUNNING_GRACE`].
    ///
    /// # Errors
    /// As [`now`](Self::now).
    #[inline(always)]
    pub fn compute_bound_at(&self, real: Timespec, mono: Timespec) -> Result<TimeWindow, ShmError> {
        self.compute_bound_with_grace(real, mono, FREE_RUNNING_GRACE)
    }

    /// [`compute_bound_at`](Self::compute_bound_at) with another free-running grace (for
    /// example [`FREE_RUNNING_GRACE_2_0_3`](crate::FREE_RUNNING_GRACE_2_0_3), the released 2.0.3 client's).
    ///
    /// # Errors
    /// As [`now`](Self::now).
    #[inline(always)]
    pub fn compute_bound_with_grace(
        &self,
        real: Timespec,
        mono: Timespec,
        grace: Duration,
    ) -> Result<TimeWindow, ShmError> {
        let mut window = TimeWindow::UNTRUSTED;
        self.write_window_at(real, mono, grace, &mut window)?;
        Ok(window)
    }

    /// [`compute_bound_at`](Self::compute_bound_at), writing the window into `out` (left
    /// alone on error). The readers' hot paths use this form: a 40-byte window returned
    /// inside a `Result` travels through memory, stored in 8-byte pieces and reloaded in
    /// 16-byte ones, and the store-forwarding stalls that causes cost more than the
    /// arithmetic. Written in place, it is stored once, field by field, where it is read.
    ///
    /// The arithmetic's latency is paid on every call (the next clock read waits for it),
    /// so the usual case takes a short path: a snapshot less than [`FAST_PATH_SECS`] old
    /// and a bound under one second need one multiplication, one division by a constant
    /// and no carries across seconds. Everything else takes the general path, with the
    /// same results.
    #[inline(always)]
    pub(crate) fn write_window_at(
        &self,
        real: Timespec,
        mono: Timespec,
        grace: Duration,
        out: &mut TimeWindow,
    ) -> Result<(), ShmError> {
        self.check_arithmetic_fields()
            .map_err(|problem| ShmError::malformed(None, problem))?;
        if let Some((secs, nanos)) = self.recent_elapsed(mono) {
            let drift_ppb = u64::from(self.max_drift_ppb);
            // The drift is ceil(elapsed * drift_ppb / 1e9) with elapsed = secs * 1e9 + nanos,
            // computed as (secs - 1) * drift_ppb + ceil((nanos + 1e9) * drift_ppb / 1e9): the
            // rounded part then waits for one addition after the clock read, not for
            // `secs * 1e9`, and nanos + 1e9 is in (0, 2e9).
            // The product is below 2e18. Adding just under one divisor rounds up without
            // the remainder test and branch of `div_ceil` on the hot path.
            #[allow(clippy::manual_div_ceil)]
            let part = ((nanos + NANOS_PER_SEC) as u64 * drift_ppb + (NANOS_PER_SEC as u64 - 1))
                / NANOS_PER_SEC as u64;
            // bound_nsec >= 0 (checked above) and the drift is below 1.6e10, so the true
            // bound fits a u64; the wrapping steps only reorder the sum (the partial sum
            // can dip below zero when secs is 0, and part >= drift_ppb makes up for it).
            let bound = (self.bound_nsec as u64 + secs * drift_ppb)
                .wrapping_sub(drift_ppb)
                .wrapping_add(part);
            out.earliest = real.saturating_sub_nanos(bound);
            out.latest = real.saturating_add_nanos(bound);
            out.clock_status = self.status_at_recent(mono, secs, nanos, grace);
            return Ok(());
        }
        // Not inlined, and given no pointer to `out` (which would keep the window in memory).
        *out = self.window_general(real, mono, grace)?;
        Ok(())
    }

    /// The time from `as_of` to `mono` as whole seconds (`0..FAST_PATH_SECS`) and a
    /// nanosecond part (`-1e9..1e9`, never negative when the seconds are 0), when it is that
    /// short and not negative (the usual case); else `None`.
    #[inline(always)]
    fn recent_elapsed(&self, mono: Timespec) -> Option<(u64, i64)> {
        let secs = mono.sec().checked_sub(self.as_of.sec())?;
        // Both normalised: the nanosecond part is in (-1e9, 1e9).
        let nanos = mono.nsec() - self.as_of.nsec();
        if (1..FAST_PATH_SECS).contains(&secs) || (secs == 0 && nanos >= 0) {
            return Some((secs as u64, nanos));
        }
        None
    }

    /// [`status_at`](Self::status_at) for `mono` = `as_of` + `secs` s + `nanos` ns (as
    /// [`recent_elapsed`](Self::recent_elapsed) gives them).
    #[inline(always)]
    fn status_at_recent(
        &self,
        mono: Timespec,
        secs: u64,
        nanos: i64,
        grace: Duration,
    ) -> ClockStatus {
        match self.clock_status {
            ClockStatus::Unknown | ClockStatus::Disrupted => self.clock_status,
            ClockStatus::Synchronized | ClockStatus::FreeRunning => {
                if mono >= self.void_after {
                    ClockStatus::Unknown
                // secs < FAST_PATH_SECS: the elapsed time fits an i64 of nanoseconds, and a
                // grace of FAST_PATH_SECS or more is not reached on this path.
                } else if grace.as_secs() < FAST_PATH_SECS as u64
                    && (secs as i64) * NANOS_PER_SEC + nanos
                        >= grace.as_secs() as i64 * NANOS_PER_SEC + i64::from(grace.subsec_nanos())
                {
                    ClockStatus::FreeRunning
                } else {
                    self.clock_status
                }
            }
        }
    }

    /// The window by the general arithmetic: any age (including `mono` before `as_of`
    /// within the blur) and any bound, saturating. Fields already checked.
    #[cold]
    #[inline(never)]
    fn window_general(
        &self,
        real: Timespec,
        mono: Timespec,
        grace: Duration,
    ) -> Result<TimeWindow, ShmError> {
        let bound = self.bound_nsec as u64; // non-negative, checked by the caller
        let bound = bound.saturating_add(self.drift_since_as_of(mono)?);
        Ok(TimeWindow {
            earliest: real.saturating_sub_nanos(bound),
            latest: real.saturating_add_nanos(bound),
            clock_status: self.status_at(mono, grace),
        })
    }

    /// The fields the arithmetic relies on; also checked when a snapshot is taken from a
    /// segment, so a bad segment fails at `snapshot()` already.
    #[inline(always)]
    pub(crate) const fn check_arithmetic_fields(&self) -> Result<(), Malformed> {
        if self.max_drift_ppb >= NANOS_PER_SEC as u32 {
            return Err(Malformed::DriftTooLarge {
                found: self.max_drift_ppb,
            });
        }
        if self.bound_nsec < 0 {
            return Err(Malformed::NegativeBound {
                found: self.bound_nsec,
            });
        }
        Ok(())
    }

    /// Nanoseconds of drift accrued from `as_of` to `mono`, rounded up, saturating.
    fn drift_since_as_of(&self, mono: Timespec) -> Result<u64, ShmError> {
        // Both are normalised, so the difference splits into whole seconds and a
        // nanosecond part in (-1e9, 1e9) that we bring into [0, 1e9).
        let mut secs = mono.sec().saturating_sub(self.as_of.sec());
        let mut nanos = mono.nsec() - self.as_of.nsec();
        if nanos < 0 {
            nanos += NANOS_PER_SEC;
            secs = secs.saturating_sub(1);
        }
        if secs < 0 {
            return self.blurred_causality(mono);
        }
        let drift = u64::from(self.max_drift_ppb);
        // drift ppb over one second is exactly `drift` nanoseconds.
        let from_secs = (secs as u64).saturating_mul(drift);
        // nanos < 1e9 and drift < 1e9, so the product is below 1e18 and fits.
        let from_nanos = (nanos as u64 * drift).div_ceil(NANOS_PER_SEC as u64);
        Ok(from_secs.saturating_add(from_nanos))
    }

    /// `mono` is before `as_of`: within the blur it counts as no time elapsed, beyond it
    /// something is wrong with the clocks or the snapshot.
    #[cold]
    fn blurred_causality(&self, mono: Timespec) -> Result<u64, ShmError> {
        let behind = self.as_of.as_nanos() - mono.as_nanos();
        if behind <= CAUSALITY_BLUR.as_nanos() as i128 {
            Ok(0)
        } else {
            Err(ShmError::CausalityBreach {
                as_of: self.as_of,
                mono,
            })
        }
    }

    fn status_at(&self, mono: Timespec, grace: Duration) -> ClockStatus {
        match self.clock_status {
            ClockStatus::Unknown | ClockStatus::Disrupted => self.clock_status,
            ClockStatus::Synchronized | ClockStatus::FreeRunning => {
                if mono >= self.void_after {
                    ClockStatus::Unknown
                } else if mono >= self.as_of.saturating_add(grace) {
                    ClockStatus::FreeRunning
                } else {
                    self.clock_status
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::FREE_RUNNING_GRACE_2_0_3;

    /// The grace the arithmetic tests use (the released client's, so that the status
    /// steps fall inside the short path's 16 s).
    const G: Duration = FREE_RUNNING_GRACE_2_0_3;

    fn ts(sec: i64, nsec: i64) -> Timespec {
        Timespec::new(sec, nsec)
    }

    fn ceb(
        as_of: Timespec,
        void_after: Timespec,
        bound: i64,
        drift: u32,
        status: ClockStatus,
    ) -> ClockErrorBound {
        ClockErrorBound::new(as_of, void_after, bound, 0, drift, status, false)
    }

    fn window(e: Timespec, l: Timespec, s: ClockStatus) -> TimeWindow {
        TimeWindow {
            earliest: e,
            latest: l,
            clock_status: s,
        }
    }

    #[test]
    fn protocol_worked_example() {
        let c = ceb(
            ts(0, 0),
            ts(10, 0),
            10_000,
            1_000,
            ClockStatus::Synchronized,
        );
        let w = c.compute_bound_with_grace(ts(2, 0), ts(2, 0), G).unwrap();
        assert_eq!(
            w,
            window(ts(1, 999_988_000), ts(2, 12_000), ClockStatus::Synchronized)
        );
        assert_eq!(w.bound(), Duration::from_nanos(12_000));
        assert_eq!(w.midpoint(), ts(2, 0));
    }

    #[test]
    fn drift_rounds_up_never_down() {
        // 1 ns elapsed at 1 ppb is 1e-9 ns of drift: rounds up to a whole nanosecond.
        let c = ceb(ts(100, 0), ts(200, 0), 0, 1, ClockStatus::Synchronized);
        let w = c.compute_bound_with_grace(ts(5, 0), ts(100, 1), G).unwrap();
        assert_eq!((w.earliest, w.latest), (ts(4, 999_999_999), ts(5, 1)));
        // No time elapsed: no drift at all.
        let w = c.compute_bound_with_grace(ts(5, 0), ts(100, 0), G).unwrap();
        assert_eq!((w.earliest, w.latest), (ts(5, 0), ts(5, 0)));
        // 1.5 s at 999_999_999 ppb, across a nanosecond borrow.
        let c = ceb(
            ts(100, 600_000_000),
            ts(200, 0),
            7,
            999_999_999,
            ClockStatus::Synchronized,
        );
        let w = c
            .compute_bound_with_grace(ts(50, 0), ts(102, 100_000_000), G)
            .unwrap();
        let exact: i128 = 7 + (1_500_000_000u128 * 999_999_999).div_ceil(1_000_000_000) as i128;
        assert_eq!(w.latest.as_nanos() - ts(50, 0).as_nanos(), exact);
    }

    #[test]
    fn status_boundaries() {
        let c = ceb(ts(100, 0), ts(110, 0), 0, 0, ClockStatus::Synchronized);
        let at = |mono: Timespec| {
            c.compute_bound_with_grace(ts(0, 0), mono, G)
                .unwrap()
                .clock_status
        };
        assert_eq!(at(ts(104, 999_999_999)), ClockStatus::Synchronized);
        assert_eq!(at(ts(105, 0)), ClockStatus::FreeRunning);
        assert_eq!(at(ts(109, 999_999_999)), ClockStatus::FreeRunning);
        assert_eq!(at(ts(110, 0)), ClockStatus::Unknown);
        // void_after is checked first: a void_after inside the grace period wins.
        let early_void = ceb(ts(100, 0), ts(101, 0), 0, 0, ClockStatus::FreeRunning);
        assert_eq!(
            early_void
                .compute_bound_with_grace(ts(0, 0), ts(100, 999_999_999), G)
                .unwrap()
                .clock_status,
            ClockStatus::FreeRunning
        );
        assert_eq!(
            early_void
                .compute_bound_with_grace(ts(0, 0), ts(101, 0), G)
                .unwrap()
                .clock_status,
            ClockStatus::Unknown
        );
        // Unknown and Disrupted pass through whatever the age.
        for s in [ClockStatus::Unknown, ClockStatus::Disrupted] {
            let c = ceb(ts(100, 0), ts(110, 0), 0, 0, s);
            for mono in [ts(100, 0), ts(106, 0), ts(500, 0)] {
                assert_eq!(
                    c.compute_bound_with_grace(ts(0, 0), mono, G)
                        .unwrap()
                        .clock_status,
                    s
                );
            }
        }
    }

    #[test]
    fn causality_blur_and_breach() {
        let c = ceb(
            ts(100, 500),
            ts(110, 0),
            10,
            1_000_000,
            ClockStatus::Synchronized,
        );
        // Up to 1 µs early counts as "no time elapsed".
        let w = c
            .compute_bound_with_grace(ts(7, 0), ts(99, 999_999_500), G)
            .unwrap();
        assert_eq!((w.earliest, w.latest), (ts(6, 999_999_990), ts(7, 10)));
        // One nanosecond more is a breach, with both instants in the error.
        match c.compute_bound_with_grace(ts(7, 0), ts(99, 999_999_499), G) {
            Err(ShmError::CausalityBreach { as_of, mono }) => {
                assert_eq!((as_of, mono), (ts(100, 500), ts(99, 999_999_499)));
            }
            other => panic!("expected a causality breach, got {other:?}"),
        }
        assert!(matches!(
            c.compute_bound_with_grace(ts(7, 0), Timespec::MIN, G),
            Err(ShmError::CausalityBreach { .. })
        ));
    }

    #[test]
    fn malformed_arithmetic_fields() {
        let drift = ceb(
            ts(0, 0),
            ts(10, 0),
            0,
            1_000_000_000,
            ClockStatus::Synchronized,
        );
        assert!(matches!(
            drift.compute_bound_with_grace(ts(0, 0), ts(0, 0), G),
            Err(ShmError::SegmentMalformed {
                path: None,
                problem: Malformed::DriftTooLarge {
                    found: 1_000_000_000
                }
            })
        ));
        let negative = ceb(ts(0, 0), ts(10, 0), -1, 0, ClockStatus::Synchronized);
        assert!(matches!(
            negative.compute_bound_with_grace(ts(0, 0), ts(0, 0), G),
            Err(ShmError::SegmentMalformed {
                problem: Malformed::NegativeBound { found: -1 },
                ..
            })
        ));
        assert_eq!(
            negative.check_arithmetic_fields(),
            Err(Malformed::NegativeBound { found: -1 })
        );
    }

    #[test]
    fn huge_values_saturate_without_panicking() {
        let max_drift = 999_999_999;
        let c = ceb(
            Timespec::MIN,
            Timespec::MAX,
            i64::MAX,
            max_drift,
            ClockStatus::Synchronized,
        );
        let w = c
            .compute_bound_with_grace(ts(0, 0), Timespec::MAX, G)
            .unwrap();
        assert_eq!(
            (w.earliest, w.latest),
            (
                ts(0, 0).saturating_sub_nanos(u64::MAX),
                ts(0, 0).saturating_add_nanos(u64::MAX)
            )
        );
        assert_eq!(w.clock_status, ClockStatus::Unknown);
        // Extremes of `real` saturate instead of wrapping.
        let c = ceb(ts(0, 0), ts(10, 0), i64::MAX, 0, ClockStatus::Synchronized);
        let w = c
            .compute_bound_with_grace(Timespec::MAX, ts(0, 0), G)
            .unwrap();
        assert_eq!(w.latest, Timespec::MAX);
        let w = c
            .compute_bound_with_grace(Timespec::MIN, ts(0, 0), G)
            .unwrap();
        assert_eq!(w.earliest, Timespec::MIN);
        assert!(w.earliest <= w.latest);
        // as_of near MAX: the grace period saturates rather than wrapping to the past.
        let c = ceb(
            Timespec::MAX,
            Timespec::MAX,
            0,
            0,
            ClockStatus::Synchronized,
        );
        assert_eq!(
            c.compute_bound_with_grace(ts(0, 0), Timespec::MAX, G)
                .unwrap()
                .clock_status,
            ClockStatus::Unknown
        );
        // Negative instants are ordinary instants.
        let c = ceb(ts(-10, 0), ts(-5, 0), 1, 0, ClockStatus::Synchronized);
        let w = c.compute_bound_with_grace(ts(-3, 0), ts(-9, 0), G).unwrap();
        assert_eq!(
            (w.earliest, w.latest, w.clock_status),
            (ts(-4, 999_999_999), ts(-3, 1), ClockStatus::Synchronized)
        );
    }

    #[test]
    fn now_reads_the_clocks() {
        let mono = crate::time::clock::monotonic_coarse();
        let c = ceb(
            mono,
            mono.saturating_add(Duration::from_secs(1000)),
            1_000,
            1_000,
            ClockStatus::Synchronized,
        );
        let before = crate::time::clock::realtime();
        let w = c.now().unwrap();
        let after = crate::time::clock::realtime();
        assert!(w.earliest <= w.latest);
        // The window is centred on a realtime reading taken between `before` and `after`.
        assert!(
            before <= w.midpoint() && w.midpoint() <= after,
            "{before} {w:?} {after}"
        );
        assert_eq!(w.clock_status, ClockStatus::Synchronized);
    }

    /// The protocol's arithmetic in exact 128-bit nanoseconds, written independently of the
    /// fast and general paths: what `compute_bound_at` must return.
    fn reference_window(
        c: &ClockErrorBound,
        real: Timespec,
        mono: Timespec,
    ) -> Result<TimeWindow, ShmError> {
        let mut elapsed = mono.as_nanos() - c.as_of().as_nanos();
        if elapsed < 0 {
            if -elapsed > 1_000 {
                return Err(ShmError::CausalityBreach {
                    as_of: c.as_of(),
                    mono,
                });
            }
            elapsed = 0;
        }
        // ceil(elapsed * ppb / 1e9)
        let drift = (elapsed * i128::from(c.max_drift_ppb()) + 999_999_999) / 1_000_000_000;
        let bound = i128::from(c.bound_nsec()) + drift;
        let status = match c.clock_status() {
            s @ (ClockStatus::Unknown | ClockStatus::Disrupted) => s,
            s => {
                if mono >= c.void_after() {
                    ClockStatus::Unknown
                } else if mono.as_nanos() >= c.as_of().as_nanos() + 5_000_000_000 {
                    ClockStatus::FreeRunning
                } else {
                    s
                }
            }
        };
        Ok(TimeWindow {
            earliest: Timespec::from_nanos(real.as_nanos() - bound),
            latest: Timespec::from_nanos(real.as_nanos() + bound),
            clock_status: status,
        })
    }

    fn status_from(n: u8) -> ClockStatus {
        [
            ClockStatus::Unknown,
            ClockStatus::Synchronized,
            ClockStatus::FreeRunning,
            ClockStatus::Disrupted,
        ][usize::from(n % 4)]
    }

    proptest::proptest! {
        /// Snapshots of every age around the short path's limits (0 and 16 s, the 5 s
        /// staleness step, `mono` just before `as_of`), bounds on both sides of one second:
        /// the short and the general path agree with the exact arithmetic.
        #[test]
        fn compute_bound_at_matches_exact_arithmetic(
            as_of_sec in -1_000_000_000_000i64..1_000_000_000_000,
            as_of_nsec in 0i64..1_000_000_000,
            age_ns in -2_000i64..20_000_000_000,
            far in proptest::bool::weighted(0.1),
            void_in_ns in -1_000_000_000i64..30_000_000_000,
            bound in proptest::prop_oneof![0i64..1_000_000_000, 0i64..100_000_000_000_000],
            ppb in proptest::prop_oneof![0u32..100_000, 0u32..1_000_000_000],
            real_sec in 0i64..4_000_000_000,
            real_nsec in 0i64..1_000_000_000,
            status in 0u8..4,
        ) {
            let as_of = ts(as_of_sec, as_of_nsec);
            // Now and then a very old snapshot (days), for the general path's carries.
            let age = if far { age_ns.saturating_mul(10_000) } else { age_ns };
            let mono = Timespec::from_nanos(as_of.as_nanos() + i128::from(age));
            let void_after = Timespec::from_nanos(as_of.as_nanos() + i128::from(void_in_ns));
            let c = ClockErrorBound::new(as_of, void_after, bound, 0, ppb, status_from(status), false);
            let real = ts(real_sec, real_nsec);
            let ours = c.compute_bound_with_grace(real, mono, G);
            let exact = reference_window(&c, real, mono);
            match (ours, exact) {
                (Ok(a), Ok(b)) => proptest::prop_assert_eq!(a, b),
                (Err(ShmError::CausalityBreach { .. }), Err(ShmError::CausalityBreach { .. })) => {}
                (a, b) => proptest::prop_assert!(false, "{a:?} vs {b:?}"),
            }
        }
    }

    #[test]
    fn short_path_limits_agree_with_exact_arithmetic() {
        // Ages exactly at the limits the short path tests: 0, just under and at 5 s and
        // 16 s, with the nanosecond part on both sides of `as_of`'s.
        let as_of = ts(100, 600_000_000);
        for age in [
            0,
            1,
            999_999_999,
            1_000_000_000,
            4_999_999_999,
            5_000_000_000,
            15_999_999_999,
            16_000_000_000,
            16_000_000_001,
        ] {
            for (bound, ppb) in [
                (0, 0),
                (999_999_999, 999_999_999),
                (5_000, 15_000),
                (1_000_000_000, 7),
            ] {
                let c = ceb(as_of, ts(200, 0), bound, ppb, ClockStatus::Synchronized);
                let mono = Timespec::from_nanos(as_of.as_nanos() + age);
                let real = ts(1_700_000_000, 999_999_999);
                assert_eq!(
                    c.compute_bound_with_grace(real, mono, G).unwrap(),
                    reference_window(&c, real, mono).unwrap(),
                    "age {age} bound {bound} ppb {ppb}"
                );
            }
        }
    }

    #[test]
    fn default_grace_is_sixty_seconds() {
        let c = ceb(ts(100, 0), ts(1100, 0), 0, 0, ClockStatus::Synchronized);
        let at = |mono: Timespec| c.compute_bound_at(ts(0, 0), mono).unwrap().clock_status;
        assert_eq!(FREE_RUNNING_GRACE, Duration::from_secs(60));
        assert_eq!(at(ts(116, 0)), ClockStatus::Synchronized); // a 3.x daemon's 16 s cadence
        assert_eq!(at(ts(159, 999_999_999)), ClockStatus::Synchronized);
        assert_eq!(at(ts(160, 0)), ClockStatus::FreeRunning);
        let g = |mono| c.compute_bound_with_grace(ts(0, 0), mono, Duration::from_millis(1500));
        assert_eq!(
            g(ts(101, 499_999_999)).unwrap().clock_status,
            ClockStatus::Synchronized
        );
        assert_eq!(
            g(ts(101, 500_000_000)).unwrap().clock_status,
            ClockStatus::FreeRunning
        );
    }

    #[test]
    fn wire_values_round_trip() {
        for v in 0..=3 {
            assert_eq!(ClockStatus::from_wire(v).map(ClockStatus::to_wire), Some(v));
        }
        for v in [-1, 4, i32::MAX, i32::MIN] {
            assert_eq!(ClockStatus::from_wire(v), None);
        }
    }
}
