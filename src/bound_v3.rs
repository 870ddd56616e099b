//! The layout-3 bound arithmetic: a [`ClockErrorBoundV3`] snapshot turned into a
//! [`TimeWindow`] at a CPU counter value.
//!
//! A layout-3 snapshot says: when the counter read `as_of_tsc`, true time was `as_of` (the
//! daemon's estimate, UTC) give or take `bound_nsec`; a tick lasts
//! `period = period_frac / 2^(64 + period_shift)` seconds, an estimate whose relative error
//! is `period_err = period_err_frac / 2^(64 + period_err_shift)`; and the oscillator drifts by
//! at most `max_drift_ppb`. At a later counter value `counter`:
//!
//! ```text
//! elapsed  = (counter - as_of_tsc) * period                        (seconds)
//! t        = as_of + elapsed
//! bound    = bound_nsec + elapsed * max_drift_ppb + elapsed * period_err    (nanoseconds)
//! earliest = t - bound,   latest = t + bound
//! ```
//!
//! Everything is exact integer arithmetic: `t` is rounded to the nearest nanosecond (halves
//! up) and the half-width is the exact bound plus that rounding, rounded up, so the window
//! holds the exact one and is less than 2 ns wider on each side. No system clock is read.

use std::time::Duration;

use crate::bound::{CAUSALITY_BLUR, TimeWindow};
use crate::error::{Malformed, ShmError};
use crate::status::ClockStatus;
use crate::timespec::{NANOS_PER_SEC, Timespec};

/// How long after `as_of` a Synchronized / FreeRunning layout-3 snapshot keeps its status
/// before it is reported FreeRunning (the 3.x clients' grace, aligned with the daemon, which
/// may go 16 s between updates).
pub(crate) const DEFAULT_FREE_RUNNING_GRACE: Duration = Duration::from_secs(60);

/// The short path takes fewer ticks than this: about 16 s at 4.3 GHz, 64 s at 1 GHz.
const FAST_MAX_TICKS: u64 = 1 << 36;
/// ... counters of at most 2^35 Hz (`period_shift` up to 34; at least 1 so the rounding bit
/// lies above the 64 fractional bits every shift has) ...
const FAST_MAX_SHIFT: u32 = 34;
/// ... drifts under 2^28 ppb (27 %) ...
const FAST_MAX_DRIFT: u32 = 1 << 28;
/// ... and bounds under 2^30 ns (1.07 s). Within these limits every intermediate fits a
/// `u128` (see `recent_parts`).
const FAST_MAX_BOUND: u64 = 1 << 30;
/// 1e9 = 2^9 * 5^9: the short path multiplies by 5^9 and folds 2^9 into the shifts, which
/// keeps the product for the period error within 128 bits.
const FIVE_POW_9: u128 = 1_953_125;
const _: () = assert!(FIVE_POW_9 << 9 == NANOS_PER_SEC as u128);

/// One layout-3 snapshot: where true time was at a counter value, and how to carry it
/// forward with the counter.
///
/// The fields are those of the 88-byte layout-3 payload, in its order (`repr(C)`, the wire
/// offsets minus the 16-byte header). As with [`ClockErrorBound`](crate::ClockErrorBound),
/// a reader never takes one from shared memory as a Rust value: it copies words, validates
/// every field and then builds one.
///
/// Unlike layout 2, `as_of` and `void_after` are on the `CLOCK_REALTIME` (UTC) scale, the
/// daemon's own estimate of true time, and `now()` reads no system clock: the window does
/// not move when `CLOCK_REALTIME` is stepped, and its midpoint may differ from
/// `CLOCK_REALTIME` by the daemon's residual offset.
///
/// ```
/// use clockbound_shm::{ClockErrorBoundV3, ClockStatus, Timespec};
/// use std::time::Duration;
///
/// // A counter of 2^30 Hz (a tick is exactly 2^-30 s), 10 µs bound, 1000 ppb drift.
/// let ceb = ClockErrorBoundV3::builder()
///     .as_of_tsc(1_000)
///     .as_of(Timespec::new(1_700_000_000, 0))
///     .void_after(Timespec::new(1_700_001_000, 0))
///     .period_frac(1 << 63)
///     .period_shift(29)
///     .bound_nsec(10_000)
///     .max_drift_ppb(1_000)
///     .clock_status(ClockStatus::Synchronized)
///     .build();
/// // Two seconds of ticks later: 2 µs of drift on top of the 10 µs.
/// let w = ceb.compute_bound_at(1_000 + (2 << 30), Duration::from_secs(60))?;
/// assert_eq!(w.earliest, Timespec::new(1_700_000_001, 999_988_000));
/// assert_eq!(w.latest, Timespec::new(1_700_000_002, 12_000));
/// assert_eq!(w.clock_status, ClockStatus::Synchronized);
/// # Ok::<(), clockbound_shm::ShmError>(())
/// ```
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClockErrorBoundV3 {
    as_of_tsc: u64,
    as_of: Timespec,
    void_after: Timespec,
    period_frac: u64,
    period_err_frac: u64,
    bound_nsec: i64,
    disruption_marker: u64,
    max_drift_ppb: u32,
    clock_status: ClockStatus,
    clock_disruption_support_enabled: bool,
    period_shift: u8,
    period_err_shift: u8,
    padding: [u8; 5],
}

// Keep the struct what its documentation says: the layout-3 payload (offsets are the wire
// offsets minus the 16-byte header).
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<ClockErrorBoundV3>() == crate::layout::v3::PAYLOAD_LEN);
    assert!(offset_of!(ClockErrorBoundV3, as_of) == 24 - 16);
    assert!(offset_of!(ClockErrorBoundV3, void_after) == 40 - 16);
    assert!(offset_of!(ClockErrorBoundV3, period_frac) == 56 - 16);
    assert!(offset_of!(ClockErrorBoundV3, period_err_frac) == 64 - 16);
    assert!(offset_of!(ClockErrorBoundV3, bound_nsec) == 72 - 16);
    assert!(offset_of!(ClockErrorBoundV3, disruption_marker) == 80 - 16);
    assert!(offset_of!(ClockErrorBoundV3, max_drift_ppb) == 88 - 16);
    assert!(offset_of!(ClockErrorBoundV3, clock_status) == 92 - 16);
    assert!(offset_of!(ClockErrorBoundV3, clock_disruption_support_enabled) == 96 - 16);
    assert!(offset_of!(ClockErrorBoundV3, period_shift) == 97 - 16);
    assert!(offset_of!(ClockErrorBoundV3, period_err_shift) == 98 - 16);
};

/// Builds a [`ClockErrorBoundV3`] field by field (see [`ClockErrorBoundV3::builder`]).
///
/// Every field starts at zero (status Unknown, disruption support off). Nothing is
/// validated here: [`ClockErrorBoundV3::compute_bound_at`] rejects what the arithmetic
/// cannot honestly use.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[must_use]
pub struct ClockErrorBoundV3Builder {
    ceb: ClockErrorBoundV3,
}

impl ClockErrorBoundV3Builder {
    /// The counter value at which `as_of` was true.
    pub const fn as_of_tsc(mut self, counter: u64) -> Self {
        self.ceb.as_of_tsc = counter;
        self
    }

    /// True time (UTC, `CLOCK_REALTIME` scale) at `as_of_tsc`.
    pub const fn as_of(mut self, as_of: Timespec) -> Self {
        self.ceb.as_of = as_of;
        self
    }

    /// The instant (same scale as `as_of`) from which the snapshot must not be trusted; the
    /// daemon writes `as_of + 1000 s`.
    pub const fn void_after(mut self, void_after: Timespec) -> Self {
        self.ceb.void_after = void_after;
        self
    }

    /// The counter period's fraction: a tick lasts `period_frac / 2^(64 + period_shift)` s.
    pub const fn period_frac(mut self, period_frac: u64) -> Self {
        self.ceb.period_frac = period_frac;
        self
    }

    /// The counter period's scale, 0..=63 (see [`period_frac`](Self::period_frac)).
    pub const fn period_shift(mut self, period_shift: u8) -> Self {
        self.ceb.period_shift = period_shift;
        self
    }

    /// Sets `period_frac` and `period_shift` for a counter of `hz` ticks per second, as a
    /// ClockBound writer does: `period_shift = floor(log2(hz))` (so `period_frac` keeps 64
    /// significant bits) and `period_frac = floor(2^(64 + period_shift) / hz)`, which lies
    /// in `(2^63, 2^64]`; the one value that does not fit, 2^64 (`hz` a power of two), is
    /// stored as `u64::MAX`, as the writer's float conversion saturates. Rounding down makes
    /// the period short by less than one part in 2^63. `hz = 0` stores a zero period.
    pub const fn with_frequency_hz(mut self, hz: u64) -> Self {
        if hz == 0 {
            self.ceb.period_frac = 0;
            self.ceb.period_shift = 0;
            return self;
        }
        let shift = 63 - hz.leading_zeros();
        let frac = (1u128 << (64 + shift)) / hz as u128;
        self.ceb.period_frac = if frac > u64::MAX as u128 {
            u64::MAX
        } else {
            frac as u64
        };
        self.ceb.period_shift = shift as u8;
        self
    }

    /// The period error's fraction: the relative error of the period is
    /// `period_err_frac / 2^(64 + period_err_shift)` (dimensionless, below 1).
    pub const fn period_err_frac(mut self, period_err_frac: u64) -> Self {
        self.ceb.period_err_frac = period_err_frac;
        self
    }

    /// The period error's scale, 0..=63 (see [`period_err_frac`](Self::period_err_frac)).
    pub const fn period_err_shift(mut self, period_err_shift: u8) -> Self {
        self.ceb.period_err_shift = period_err_shift;
        self
    }

    /// Bound on the error of `as_of`, in nanoseconds (0 or more).
    pub const fn bound_nsec(mut self, bound_nsec: i64) -> Self {
        self.ceb.bound_nsec = bound_nsec;
        self
    }

    /// The last VMClock disruption marker the daemon saw.
    pub const fn disruption_marker(mut self, disruption_marker: u64) -> Self {
        self.ceb.disruption_marker = disruption_marker;
        self
    }

    /// Worst-case oscillator drift since `as_of`, parts per billion (below 1e9).
    pub const fn max_drift_ppb(mut self, max_drift_ppb: u32) -> Self {
        self.ceb.max_drift_ppb = max_drift_ppb;
        self
    }

    /// The status the daemon reports.
    pub const fn clock_status(mut self, clock_status: ClockStatus) -> Self {
        self.ceb.clock_status = clock_status;
        self
    }

    /// Whether the daemon runs with clock-disruption (VMClock) support.
    pub const fn clock_disruption_support_enabled(mut self, enabled: bool) -> Self {
        self.ceb.clock_disruption_support_enabled = enabled;
        self
    }

    /// The snapshot.
    #[must_use]
    pub const fn build(self) -> ClockErrorBoundV3 {
        self.ceb
    }
}

impl ClockErrorBoundV3 {
    /// A builder with every field zero, status Unknown.
    pub const fn builder() -> ClockErrorBoundV3Builder {
        ClockErrorBoundV3Builder {
            ceb: ClockErrorBoundV3 {
                as_of_tsc: 0,
                as_of: Timespec::ZERO,
                void_after: Timespec::ZERO,
                period_frac: 0,
                period_err_frac: 0,
                bound_nsec: 0,
                disruption_marker: 0,
                max_drift_ppb: 0,
                clock_status: ClockStatus::Unknown,
                clock_disruption_support_enabled: false,
                period_shift: 0,
                period_err_shift: 0,
                padding: [0; 5],
            },
        }
    }

    /// The counter value (TSC on x86-64, `CNTVCT_EL0` on aarch64) at which `as_of` was true.
    #[must_use]
    pub const fn as_of_tsc(&self) -> u64 {
        self.as_of_tsc
    }

    /// The daemon's estimate of true time at `as_of_tsc`, on the `CLOCK_REALTIME` (UTC)
    /// scale. Not a monotonic-clock reading, unlike layout 2's `as_of`.
    #[must_use]
    pub const fn as_of(&self) -> Timespec {
        self.as_of
    }

    /// The instant, on the same scale as [`as_of`](Self::as_of), from which the snapshot
    /// must not be trusted (the daemon writes `as_of + 1000 s`).
    #[must_use]
    pub const fn void_after(&self) -> Timespec {
        self.void_after
    }

    /// The counter period as a fraction: one tick lasts
    /// `period_frac / 2^(64 + period_shift)` seconds.
    #[must_use]
    pub const fn period_frac(&self) -> u64 {
        self.period_frac
    }

    /// The scale of [`period_frac`](Self::period_frac); a writer picks
    /// `floor(log2(counter frequency))`, e.g. 29 near 1 GHz.
    #[must_use]
    pub const fn period_shift(&self) -> u8 {
        self.period_shift
    }

    /// The relative error of the period estimate as a fraction:
    /// `period_err_frac / 2^(64 + period_err_shift)`, dimensionless, below 1. The bound grows
    /// by `elapsed * period_err`.
    #[must_use]
    pub const fn period_err_frac(&self) -> u64 {
        self.period_err_frac
    }

    /// The scale of [`period_err_frac`](Self::period_err_frac).
    #[must_use]
    pub const fn period_err_shift(&self) -> u8 {
        self.period_err_shift
    }

    /// Bound on `|as_of - true time|` at `as_of_tsc`, in nanoseconds.
    #[must_use]
    pub const fn bound_nsec(&self) -> i64 {
        self.bound_nsec
    }

    /// The last VMClock disruption marker the daemon saw.
    #[must_use]
    pub const fn disruption_marker(&self) -> u64 {
        self.disruption_marker
    }

    /// Worst-case oscillator drift since `as_of`, in parts per billion.
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

    /// The window for the current instant: reads the CPU counter and applies
    /// [`compute_bound_at`](Self::compute_bound_at) with the 60 s grace of the ClockBound
    /// 3.x clients.
    ///
    /// # Errors
    /// As [`compute_bound_at`](Self::compute_bound_at), and
    /// [`ShmError::CounterUnavailable`] on architectures other than x86-64 and aarch64.
    #[inline]
    pub fn now(&self) -> Result<TimeWindow, ShmError> {
        if !crate::counter::COUNTER_SUPPORTED {
            return Err(ShmError::CounterUnavailable {
                arch: crate::counter::TARGET_ARCH,
            });
        }
        self.compute_bound_at(crate::counter::read_counter(), DEFAULT_FREE_RUNNING_GRACE)
    }

    /// The window at the instant the CPU counter read `counter`.
    ///
    /// `t = as_of + (counter - as_of_tsc) * period`, rounded to the nearest nanosecond
    /// (halves up), is the window's midpoint; the half-width is `bound_nsec` plus the growth
    /// by drift and period error, plus the rounding of `t`, rounded up. So the window holds
    /// the exact window, and is less than 2 ns wider on each side. Results saturate at
    /// [`Timespec::MIN`] / [`Timespec::MAX`]; no field values overflow or panic.
    ///
    /// A counter behind `as_of_tsc` by ticks worth at most 1 µs counts as no time elapsed
    /// (counters on different CPUs may disagree by a little).
    ///
    /// The status: Unknown and Disrupted pass through. Synchronized and FreeRunning become
    /// Unknown once `t` reaches `void_after`, and otherwise FreeRunning once `t` reaches
    /// `as_of + grace`.
    ///
    /// # Errors
    /// [`ShmError::SegmentMalformed`] for a field the arithmetic cannot honestly use (a
    /// negative bound, a drift of 1e9 ppb or more, a shift above 63, a zero period under a
    /// trusted status); [`ShmError::CounterBehindSnapshot`] when `counter` is behind
    /// `as_of_tsc` by more than 1 µs worth of ticks.
    #[inline(always)]
    pub fn compute_bound_at(&self, counter: u64, grace: Duration) -> Result<TimeWindow, ShmError> {
        let mut window = TimeWindow::UNTRUSTED;
        self.write_window_at(counter, grace, &mut window)?;
        Ok(window)
    }

    /// [`compute_bound_at`](Self::compute_bound_at), writing the window into `out` (left
    /// alone on error): a window returned inside a `Result` travels through memory in
    /// pieces of other sizes than it is read in, and the store-forwarding stalls cost more
    /// than the arithmetic.
    ///
    /// The usual case (a snapshot younger than 2^36 ticks, a counter of at most 2^35 Hz, a
    /// bound under 2^30 ns, ordinary drift and period error) takes a short path of
    /// 128-bit multiplications and shifts: no division, no loop. Everything else takes the
    /// general path, with identical results.
    #[inline(always)]
    pub(crate) fn write_window_at(
        &self,
        counter: u64,
        grace: Duration,
        out: &mut TimeWindow,
    ) -> Result<(), ShmError> {
        self.check_arithmetic_fields()
            .map_err(|problem| ShmError::malformed(None, problem))?;
        // A counter behind `as_of_tsc` wraps to a huge count and takes the general path.
        if let Some((t, half_width)) = self.recent_parts(counter.wrapping_sub(self.as_of_tsc)) {
            out.earliest = t.saturating_sub_nanos(half_width);
            out.latest = t.saturating_add_nanos(half_width);
            out.clock_status = self.status_at(t, grace);
            return Ok(());
        }
        // Not inlined, and given no pointer to `out` (which would keep the window in memory).
        *out = self.window_general(counter, grace)?;
        Ok(())
    }

    /// The midpoint `t` and the half-width for `ticks` ticks after `as_of_tsc`, when all
    /// fits the short path's limits; `None` otherwise. The same numbers as
    /// [`exact_parts`](Self::exact_parts), with `k = 64 + period_shift`:
    ///
    /// - `a = ticks * period_frac` (< 2^100); elapsed = `a / 2^k` s: whole seconds
    ///   `a >> k`, and `f = (a mod 2^k) * 1e9` (< 2^128 as `k <= 98`) the rest in ns * 2^k;
    /// - the nanoseconds rounded: `(f + 2^(k-1)) >> k` (0..=1e9); the rounding's size in
    ///   units of 2^-k ns: the low `k` bits of `f`, or 2^k minus them when rounded up;
    /// - drift growth * 2^k = `a * max_drift_ppb` (< 2^128 for drift < 2^28);
    /// - period-error growth * 2^k = `a * 1e9 * period_err_frac / 2^(64 + period_err_shift)`
    ///   = `y * period_err_frac / 2^(55 + period_err_shift)` with `y = a * 5^9` (< 2^122): the
    ///   192-bit product as a high `u128` and a low word, shifted; the bits shifted out only
    ///   matter as "some were non-zero" (they round the half-width up);
    /// - half-width = ceil of the sum / 2^k, with checked additions.
    #[inline(always)]
    fn recent_parts(&self, ticks: u64) -> Option<(Timespec, u64)> {
        let shift = u32::from(self.period_shift);
        let err_shift = u32::from(self.period_err_shift);
        if ticks >= FAST_MAX_TICKS
            || shift == 0
            || shift > FAST_MAX_SHIFT
            || self.max_drift_ppb >= FAST_MAX_DRIFT
            || self.bound_nsec as u64 >= FAST_MAX_BOUND
            || (err_shift < 9 && self.period_err_frac != 0)
        {
            return None;
        }
        let k = 64 + shift;
        let mask = (1u128 << k) - 1;
        let half = 1u128 << (k - 1);
        let a = u128::from(ticks) * u128::from(self.period_frac);
        let secs = (a >> k) as u64;
        let f = (a & mask) * NANOS_PER_SEC as u128;
        let nanos = ((f + half) >> k) as u64;
        let below = f & mask;
        let rounding = if below >= half {
            (1u128 << k) - below
        } else {
            below
        };
        let drift = a * u128::from(self.max_drift_ppb);
        let y = a * FIVE_POW_9;
        let err = u128::from(self.period_err_frac);
        let low = (y as u64 as u128) * err;
        let high = (y >> 64) * err + (low >> 64);
        // err_shift >= 9 here, or the product is zero and any shift gives zero.
        let s = err_shift.saturating_sub(9);
        let period_growth = high >> s;
        let period_cut = (low as u64 != 0) | (high & ((1u128 << s) - 1) != 0);
        let (sum, o1) = ((self.bound_nsec as u128) << k).overflowing_add(drift);
        let (sum, o2) = sum.overflowing_add(rounding);
        let (sum, o3) = sum.overflowing_add(period_growth);
        if o1 | o2 | o3 {
            return None;
        }
        let half_width = (sum >> k) as u64 + u64::from(period_cut | (sum & mask != 0));
        // t = as_of + secs s + nanos ns; nanos <= 1e9, so one carry at most.
        let mut sec = self.as_of.sec().checked_add(secs as i64)?;
        let mut nsec = self.as_of.nsec() + nanos as i64;
        if nsec >= NANOS_PER_SEC {
            nsec -= NANOS_PER_SEC;
            sec = sec.checked_add(1)?;
        }
        Some((Timespec::from_normalised(sec, nsec)?, half_width))
    }

    /// The window by the general arithmetic: any counter (behind `as_of_tsc` within the
    /// blur included), any field values. Fields already checked.
    #[cold]
    #[inline(never)]
    fn window_general(&self, counter: u64, grace: Duration) -> Result<TimeWindow, ShmError> {
        let ticks = self.ticks_since_as_of(counter)?;
        let (elapsed, half_width) = self.exact_parts(ticks);
        // elapsed < 2^95 and half_width < 2^97 (see `exact_parts`): no overflow in i128.
        let mid = self.as_of.as_nanos() + elapsed as i128;
        let half_width = half_width as i128;
        Ok(TimeWindow {
            earliest: Timespec::from_nanos(mid - half_width),
            latest: Timespec::from_nanos(mid + half_width),
            clock_status: self.status_at(Timespec::from_nanos(mid), grace),
        })
    }

    /// Ticks from `as_of_tsc` to `counter`; a counter behind by at most
    /// [`CAUSALITY_BLUR`] worth of ticks counts as 0.
    fn ticks_since_as_of(&self, counter: u64) -> Result<u64, ShmError> {
        let Some(behind) = self.as_of_tsc.checked_sub(counter) else {
            return Ok(counter - self.as_of_tsc);
        };
        // behind * period <= blur  <=>  behind * period_frac * 1e9 <= blur_ns * 2^k
        let k = 64 + u32::from(self.period_shift);
        let gap = U256::product(
            u128::from(behind) * u128::from(self.period_frac),
            NANOS_PER_SEC as u64,
        );
        if gap <= U256::from(CAUSALITY_BLUR.as_nanos()).shl(k) {
            Ok(0)
        } else {
            Err(ShmError::CounterBehindSnapshot {
                as_of_tsc: self.as_of_tsc,
                counter,
            })
        }
    }

    /// The exact arithmetic for `ticks` ticks: the elapsed nanoseconds rounded to nearest
    /// (halves up), and the half-width = ceil(bound_nsec + drift growth + period-error growth
    /// + |rounding|).
    ///
    /// With `k = 64 + period_shift`, everything but the period-error growth is a multiple of
    /// 2^-k ns, so the ceiling needs that growth only to 2^-k ns, rounded up: its floor in
    /// units of 2^-k plus "were any bits cut". Bounds: `ticks * period_frac < 2^128`, elapsed
    /// * 2^k < 2^158, the period-error product < 2^222, the sum < 2^191; elapsed < 2^95 ns and
    /// the half-width < 2^63 + 2^95 + 2^95 + 1 < 2^97 ns.
    fn exact_parts(&self, ticks: u64) -> (u128, u128) {
        let k = 64 + u32::from(self.period_shift);
        let a = u128::from(ticks) * u128::from(self.period_frac);
        let elapsed = U256::product(a, NANOS_PER_SEC as u64);
        let half = U256::from(1).shl(k - 1);
        let rounded = elapsed.add(half).shr(k).low_u128();
        let below = elapsed.low_bits(k);
        let rounding = if below >= half {
            U256::from(1).shl(k).sub(below)
        } else {
            below
        };
        let drift = U256::product(a, u64::from(self.max_drift_ppb));
        let period_err = elapsed.mul(self.period_err_frac);
        let err_scale = 64 + u32::from(self.period_err_shift);
        let period_growth = period_err.shr(err_scale);
        let period_cut = !period_err.low_bits(err_scale).is_zero();
        let sum = U256::from(self.bound_nsec as u128)
            .shl(k)
            .add(drift)
            .add(rounding)
            .add(period_growth);
        let half_width =
            sum.shr(k).low_u128() + u128::from(period_cut || !sum.low_bits(k).is_zero());
        (rounded, half_width)
    }

    /// The status at midpoint `t`: Unknown and Disrupted pass through; Synchronized and
    /// FreeRunning become Unknown from `void_after`, else FreeRunning from `as_of + grace`.
    #[inline(always)]
    fn status_at(&self, t: Timespec, grace: Duration) -> ClockStatus {
        match self.clock_status {
            ClockStatus::Unknown | ClockStatus::Disrupted => self.clock_status,
            ClockStatus::Synchronized | ClockStatus::FreeRunning => {
                if t >= self.void_after {
                    ClockStatus::Unknown
                } else if t >= add_saturating(self.as_of, grace) {
                    ClockStatus::FreeRunning
                } else {
                    self.clock_status
                }
            }
        }
    }

    /// The smallest counter value at which at least `since_as_of` has elapsed since
    /// `as_of_tsc` (exactly; the rounded midpoint can get there up to half a nanosecond
    /// sooner), saturating at `u64::MAX`; `u64::MAX` when the period is 0. The reader uses it
    /// to know when a snapshot that the writer has not replaced needs another look.
    #[allow(dead_code)] // Used by the reader once it reads layout 3.
    pub(crate) fn counter_at(&self, since_as_of: Duration) -> u64 {
        if self.period_frac == 0 {
            return u64::MAX;
        }
        let k = 64 + u32::from(self.period_shift);
        // ticks * period >= since  <=>  ticks * period_frac * 1e9 >= since_ns * 2^k
        let target = U256::from(since_as_of.as_nanos()).shl(k);
        let reaches = |ticks: u64| {
            U256::product(
                u128::from(ticks) * u128::from(self.period_frac),
                NANOS_PER_SEC as u64,
            ) >= target
        };
        if reaches(0) {
            return self.as_of_tsc;
        }
        if !reaches(u64::MAX) {
            return u64::MAX;
        }
        // Binary search: `reaches(hi)`, `!reaches(lo)`. Off the hot path.
        let (mut lo, mut hi) = (0u64, u64::MAX);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if reaches(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        self.as_of_tsc.saturating_add(hi)
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
        if self.period_shift > 63 {
            return Err(Malformed::ShiftTooLarge {
                field: "period_shift",
                found: self.period_shift,
            });
        }
        if self.period_err_shift > 63 {
            return Err(Malformed::ShiftTooLarge {
                field: "period_err_shift",
                found: self.period_err_shift,
            });
        }
        if self.period_frac == 0 && self.clock_status.is_trusted() {
            return Err(Malformed::ZeroPeriod {
                clock_status: self.clock_status.to_wire(),
            });
        }
        Ok(())
    }
}

/// `t + d`, saturating at [`Timespec::MAX`], without 128-bit division.
#[inline(always)]
fn add_saturating(t: Timespec, d: Duration) -> Timespec {
    let Ok(secs) = i64::try_from(d.as_secs()) else {
        return Timespec::MAX;
    };
    match t.sec().checked_add(secs) {
        // nsec < 2e9: `new` carries and saturates.
        Some(sec) => Timespec::new(sec, t.nsec() + i64::from(d.subsec_nanos())),
        None => Timespec::MAX,
    }
}

/// An unsigned 256-bit integer, just enough for the general path's exact products. Every
/// use keeps its values below 2^256 (bounds in [`ClockErrorBoundV3::exact_parts`]); the
/// operations wrap rather than panic if that were ever wrong.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct U256 {
    // Field order makes the derived ordering numeric.
    hi: u128,
    lo: u128,
}

impl U256 {
    const fn from(v: u128) -> U256 {
        U256 { hi: 0, lo: v }
    }

    /// `x * m`, exact.
    const fn product(x: u128, m: u64) -> U256 {
        let m = m as u128;
        let p0 = (x as u64 as u128) * m;
        let p1 = (x >> 64) * m;
        let (lo, carry) = p0.overflowing_add(p1 << 64);
        U256 {
            hi: (p1 >> 64) + carry as u128,
            lo,
        }
    }

    /// `self * m`.
    const fn mul(self, m: u64) -> U256 {
        let low = U256::product(self.lo, m);
        let high = U256::product(self.hi, m);
        U256 {
            hi: low.hi.wrapping_add(high.lo),
            lo: low.lo,
        }
    }

    const fn add(self, other: U256) -> U256 {
        let (lo, carry) = self.lo.overflowing_add(other.lo);
        U256 {
            hi: self.hi.wrapping_add(other.hi).wrapping_add(carry as u128),
            lo,
        }
    }

    const fn sub(self, other: U256) -> U256 {
        let (lo, borrow) = self.lo.overflowing_sub(other.lo);
        U256 {
            hi: self.hi.wrapping_sub(other.hi).wrapping_sub(borrow as u128),
            lo,
        }
    }

    /// `self << n`, `n < 256`.
    const fn shl(self, n: u32) -> U256 {
        match n {
            0 => self,
            1..128 => U256 {
                hi: (self.hi << n) | (self.lo >> (128 - n)),
                lo: self.lo << n,
            },
            _ => U256 {
                hi: self.lo << (n - 128),
                lo: 0,
            },
        }
    }

    /// `self >> n`, `n < 256`.
    const fn shr(self, n: u32) -> U256 {
        match n {
            0 => self,
            1..128 => U256 {
                hi: self.hi >> n,
                lo: (self.lo >> n) | (self.hi << (128 - n)),
            },
            _ => U256 {
                hi: 0,
                lo: self.hi >> (n - 128),
            },
        }
    }

    /// `self mod 2^n`, `n < 256`.
    const fn low_bits(self, n: u32) -> U256 {
        self.sub(self.shr(n).shl(n))
    }

    const fn is_zero(self) -> bool {
        self.hi == 0 && self.lo == 0
    }

    /// The low 128 bits (the caller knows the value fits).
    const fn low_u128(self) -> u128 {
        self.lo
    }
}

#[cfg(test)]
mod tests {}
