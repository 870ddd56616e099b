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
//! Everything is exact integer arithmetic, and only the ends are rounded, outwards:
//! `earliest` down and `latest` up to whole nanoseconds. So the window holds the exact one,
//! each end lies less than 1 ns from the exact end, and each end is a non-decreasing function
//! of the counter, as the exact ends are (`latest` always; `earliest` whenever drift and
//! period error together grow the bound no faster than time passes, as every real snapshot
//! does). No system clock is read.

use std::time::Duration;

use super::{CAUSALITY_BLUR, FREE_RUNNING_GRACE};
use crate::error::{Malformed, ShmError};
use crate::time::ClockStatus;
use crate::time::TimeWindow;
use crate::time::{NANOS_PER_SEC, Timespec};

/// The short path takes fewer ticks than this: 16 s at 4.3 GHz, 69 s at 1 GHz.
const FAST_MAX_TICKS: u64 = 1 << 36;
/// ... counters under 2^33 Hz, 8.6 GHz (`period_shift` up to 32) ...
const FAST_MAX_SHIFT: u32 = 32;
/// ... drifts under 2^25 ppb (3.4 %) ...
const FAST_MAX_DRIFT: u32 = 1 << 25;
/// ... and bounds under 2^30 ns (1.07 s). Within these limits every intermediate, and every
/// sum of them, fits a `u128` with room to spare: no overflow checks (see `recent_parts`).
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
/// With feature `serde` it is [`ClockErrorBound`](crate::ClockErrorBound)'s form with
/// `"layout": 3` and the counter fields, in the payload's order: `{"layout": 3,
/// "as_of_tsc": u64, "as_of", "void_after", "period_frac": u64, "period_err_frac": u64,
/// "bound_nsec", "disruption_marker", "max_drift_ppb", "clock_status",
/// "clock_disruption_support_enabled", "period_shift": u8, "period_err_shift": u8}`.
/// Deserialising checks the fields as reading a segment does (shifts of 63 at most, a
/// period under a trusted status, ...).
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
    assert!(size_of::<ClockErrorBoundV3>() == 88);
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

    /// Sets `period_frac` and `period_shift` for a counter of `hz` ticks per second, scaled
    /// as a ClockBound writer scales them: `period_shift = floor(log2(hz))`, so that
    /// `period_frac = floor(2^(64 + period_shift) / hz)` lies in `(2^63, 2^64]` and keeps 64
    /// significant bits; the one value that does not fit, 2^64 (`hz` a power of two), is
    /// stored as `u64::MAX`, as the writer's float conversion saturates. Rounding down makes
    /// the period short by less than one part in 2^63. (The released writer goes through a
    /// 64-bit float, so its `period_frac` has only 53 significant bits and can differ from
    /// this one in the low 11.) `hz = 0` stores a zero period.
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

    /// Sets `period_err_frac` and `period_err_shift` for a relative period error of `ppb`
    /// parts per billion, scaled as a ClockBound writer scales them: the largest
    /// `period_err_shift` (up to 63) that leaves `period_err_frac` below 2^64, so the
    /// fraction keeps its significant bits, rounded up so the error is never stated
    /// smaller than `ppb`. That is also the form readers compute fastest (the short
    /// arithmetic path wants `period_err_shift` of 9 or more, which every error under 0.19 %
    /// gets). `ppb = 0` stores a zero error; 1e9 or more stores just under 1.
    ///
    /// ```
    /// use clockbound_shm::ClockErrorBoundV3;
    ///
    /// let s = ClockErrorBoundV3::builder().with_period_error_ppb(120).build();
    /// assert_eq!(s.period_err_shift(), 22);
    /// // period_err_frac / 2^(64 + 22), in ppb: 120 (rounded up in the last bit).
    /// let stated = s.period_err_frac() as f64 / 2f64.powi(64 + 22) * 1e9;
    /// assert!((stated - 120.0).abs() < 1e-6);
    /// ```
    pub const fn with_period_error_ppb(mut self, ppb: u64) -> Self {
        const BILLION: u128 = 1_000_000_000;
        let (frac, shift) = if ppb == 0 {
            (0, 0)
        } else if ppb as u128 >= BILLION {
            (u64::MAX, 0)
        } else {
            // q = ppb * 2^64 < 2^94; the fraction for shift s is ceil(q * 2^s / 1e9), below
            // 2^64 exactly when q * 2^s < 1e9 * 2^64 (up to rounding, checked below).
            let q = (ppb as u128) << 64;
            let mut shift = ((BILLION << 64) / q).ilog2();
            if shift > 63 {
                shift = 63;
            }
            loop {
                let frac = (q << shift).div_ceil(BILLION);
                if frac <= u64::MAX as u128 || shift == 0 {
                    break (
                        if frac > u64::MAX as u128 {
                            u64::MAX
                        } else {
                            frac as u64
                        },
                        shift,
                    );
                }
                shift -= 1;
            }
        };
        self.ceb.period_err_frac = frac;
        self.ceb.period_err_shift = shift as u8;
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
        if !crate::time::counter::COUNTER_SUPPORTED {
            return Err(ShmError::CounterUnavailable {
                arch: crate::time::counter::TARGET_ARCH,
            });
        }
        // The counter read is closed after the arithmetic, which may thus overlap it; the
        // caller's next instruction still waits for the read (see `start_counter_read`).
        // The window stays a local of its own across the fence (a `Result` holding it would
        // be kept in memory there, the error being dropped by address).
        let counter = crate::time::counter::start_counter_read();
        let mut window = TimeWindow::UNTRUSTED;
        let result = self.write_window_at(counter, FREE_RUNNING_GRACE, &mut window);
        crate::time::counter::finish_counter_read();
        result.map(|()| window)
    }

    /// The window at the instant the CPU counter read `counter`.
    ///
    /// With `t = as_of + (counter - as_of_tsc) * period` and `bound` = `bound_nsec` plus the
    /// growth by drift and period error, both exact (fractions of a nanosecond included),
    /// `earliest` is `t - bound` rounded down and `latest` is `t + bound` rounded up, to whole
    /// nanoseconds. So the window holds the exact window, and each end lies less than 1 ns
    /// from the exact end. Results saturate at [`Timespec::MIN`] / [`Timespec::MAX`]; no
    /// field values overflow or panic.
    ///
    /// As the counter advances, `latest` never decreases, and neither does `earliest` as long
    /// as `max_drift_ppb / 1e9 + period_err <= 1`, that is, while the bound grows no faster
    /// than time passes (real snapshots: some parts per million). Windows taken one after the
    /// other, on one counter, therefore never step back: if `earliest` has passed an instant,
    /// it stays past it. (A snapshot beyond that rate is accepted, and its exact `earliest`
    /// itself moves back as time passes; this one follows it.)
    ///
    /// A counter behind `as_of_tsc` by ticks worth at most 1 µs counts as no time elapsed
    /// (counters on different CPUs may disagree by a little).
    ///
    /// The status is judged on the exact `t`, never on a rounded one, so it is never fresher
    /// than the truth: Unknown and Disrupted pass through; Synchronized and FreeRunning become
    /// Unknown at the first counter value at which the exact `t` reaches `void_after`, and
    /// otherwise FreeRunning at the first at which it reaches `as_of + grace`.
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
    /// Both ends are the exact ends rounded outwards (`earliest` down, `latest` up), and the
    /// status is judged on the exact `t`; see [`compute_bound_at`](Self::compute_bound_at).
    /// The usual case (a snapshot younger than 2^36 ticks, a counter under 2^33 Hz, a bound
    /// under 2^30 ns, ordinary drift and period error) takes a short path of 128-bit
    /// multiplications, additions and shifts: no division, no loop, no overflow check.
    /// Everything else takes the general path, with identical results.
    #[inline(always)]
    pub(crate) fn write_window_at(
        &self,
        counter: u64,
        grace: Duration,
        out: &mut TimeWindow,
    ) -> Result<(), ShmError> {
        if let Some(window) = self.recent_window(counter, grace) {
            *out = window;
            return Ok(());
        }
        self.check_arithmetic_fields()
            .map_err(|problem| ShmError::malformed(None, problem))?;
        // Not inlined, and given no pointer to `out` (which would keep the window in memory).
        *out = self.window_general(counter, grace)?;
        Ok(())
    }

    /// The short path's window at `counter`, by value; `None` for fields that fail
    /// [`check_arithmetic_fields`](Self::check_arithmetic_fields) and wherever the short path
    /// does not apply (see [`recent_parts`](Self::recent_parts)). The checks only branch on
    /// the snapshot's fields, so they are settled while the counter is still being read.
    #[inline(always)]
    pub(crate) fn recent_window(&self, counter: u64, grace: Duration) -> Option<TimeWindow> {
        self.check_arithmetic_fields().ok()?;
        let (t, below, above) = self.recent_parts(counter)?;
        Some(TimeWindow {
            earliest: t.saturating_sub_nanos(below),
            latest: t.saturating_add_nanos(above),
            clock_status: self.status_at(t, grace),
        })
    }

    /// At `counter`, when it is not behind `as_of_tsc` and all fits the short path's limits
    /// (`None` otherwise): `t`, the exact `t` rounded down to a whole nanosecond, and how far
    /// `earliest` lies below it and `latest` above it, in whole nanoseconds. The same numbers
    /// as [`exact_parts`](Self::exact_parts), with `k = 64 + s`, `s = period_shift` in
    /// 0..=32. Every quantity in units of 2^-k ns is a high word and a low word: the high
    /// word holds the bits from 2^64 up, so dividing by 2^k is a shift of the high word by
    /// `s`.
    ///
    /// - `a = ticks * period_frac` (< 2^100): whole seconds `a_hi >> s`, and `f = (a mod
    ///   2^k) * 1e9` (< 2^128) the rest in units of 2^-k ns: whole nanoseconds `f >> k`
    ///   (below 1e9), and `frac`, the low `k` bits of `f`, the part of `t` rounded off;
    /// - both growths at once, in units of 2^-k ns: drift growth = `a * max_drift_ppb`
    ///   (< 2^125 for drift < 2^25), period-error growth = `a * 1e9 * period_err_frac /
    ///   2^(64 + period_err_shift)` = `a * 5^9 * period_err_frac / 2^(64 + c)` with
    ///   `c = period_err_shift - 9` (< 2^122). Their sum is `ticks * g / 2^128` with the
    ///   per-snapshot factor `g = period_frac * (max_drift_ppb * 2^128 + 5^9 *
    ///   period_err_frac * 2^(64 - c))` (< 2^218; `2^(64 - c)` is a whole number as
    ///   `c <= 54`): the product's top 128 bits are the sum rounded down, and its low 128
    ///   bits only matter as "some were non-zero" (`cut`: the exact growth lies strictly
    ///   between two multiples of 2^-k). `g` does not depend on the counter, so it is worked
    ///   out while the counter is being read, and after the read only four independent
    ///   multiplications by `ticks` remain, one level deep;
    /// - `growth` = bound (< 2^126 for s <= 32) + both growths, `< 2^127`;
    /// - with `m = 2^k - 1 + cut` (< 2^97): `latest - t = ceil((growth + cut + frac) / 2^k)`
    ///   `= (growth + m + frac) >> k`, and `t - earliest = ceil((growth + cut - frac) / 2^k)`
    ///   `= (growth + m - frac) >> k`. The second holds when `growth < frac` too: the exact
    ///   value then lies in (-1, 0) ns and rounds to 0, and so does the shift, as `m - frac`
    ///   is at least `cut`. No sum comes near 2^128, and nothing is negative.
    #[inline(always)]
    fn recent_parts(&self, counter: u64) -> Option<(Timespec, u64, u64)> {
        let ticks = counter.checked_sub(self.as_of_tsc)?;
        let s = u32::from(self.period_shift);
        let err_shift = u32::from(self.period_err_shift);
        if ticks >= FAST_MAX_TICKS
            || s > FAST_MAX_SHIFT
            || self.max_drift_ppb >= FAST_MAX_DRIFT
            || self.bound_nsec as u64 >= FAST_MAX_BOUND
            || (err_shift < 9 && self.period_err_frac != 0)
            || err_shift > 63
        {
            return None;
        }
        let low_mask = (1u64 << s) - 1; // bits of the high word below 2^k
        let wide = |x: u64, y: u64| u128::from(x) * u128::from(y);
        let split = |x: u128| ((x >> 64) as u64, x as u64);

        // Per-snapshot factors first: they do not wait for the counter, so they are worked
        // out while it is being read (the read is closed after all this, see `now`).
        // g = period_frac * (max_drift_ppb * 2^128 + 5^9 * period_err_frac * 2^(64 - c)),
        // c = period_err_shift - 9 (0 when the product is zero): the bound's growth per tick
        // in units of 2^-(128 + k) ns. e = period_frac * 5^9 * period_err_frac < 2^149.
        let p5 = u128::from(self.period_frac) * FIVE_POW_9; // < 2^85
        let (e_carry, e0) = split(wide(p5 as u64, self.period_err_frac));
        let e_hi = (p5 >> 64) * u128::from(self.period_err_frac) + u128::from(e_carry); // < 2^85
        let e_lo = (e_hi << 64) | u128::from(e0); // e mod 2^128
        let e_top = e_hi >> 64; // e >> 128, < 2^21
        let up = 64 - err_shift.saturating_sub(9); // 10..=64
        let g_lo = e_lo << up; // g mod 2^128
        // g >> 128 < 2^90: e's bits shifted up past 2^128, plus period_frac * drift.
        let g_hi = (e_lo >> (128 - up))
            + (e_top << up)
            + wide(self.period_frac, u64::from(self.max_drift_ppb));
        let (g0, g1, g2, g3) = (
            g_lo as u64,
            (g_lo >> 64) as u64,
            g_hi as u64,
            (g_hi >> 64) as u64,
        );

        let (a_hi, a_lo) = split(wide(ticks, self.period_frac)); // a_hi < 2^36
        let secs = a_hi >> s;
        let (f_hi, f_lo) = split(wide(a_lo, NANOS_PER_SEC as u64));
        // (a mod 2^k) * 1e9 < 2^(96 + 30): no carry out of the high word.
        let f_hi = f_hi + (a_hi & low_mask) * NANOS_PER_SEC as u64;
        let nanos = f_hi >> s;
        let frac = (u128::from(f_hi & low_mask) << 64) | u128::from(f_lo);

        // Both growths at once, four independent multiplications by `ticks`: ticks * g
        // < 2^(36 + 218); its top 128 bits are the growth in units of 2^-k ns (< 2^126), and
        // the 128 below say whether bits were cut (`cut`).
        let (p0_hi, p0_lo) = split(wide(ticks, g0));
        let (p1_hi, p1_lo) = split(wide(ticks, g1));
        let (mid, carry) = p0_hi.overflowing_add(p1_lo);
        let growth = wide(ticks, g2)
            + (u128::from(ticks * g3) << 64) // g3 < 2^26
            + u128::from(p1_hi)
            + u128::from(carry);
        let cut = (p0_lo | mid) != 0;

        // bound < 2^30 and s <= 32: bound * 2^s < 2^62 fits the high word.
        let bound = u128::from((self.bound_nsec as u64) << s) << 64;
        let m = ((u128::from(low_mask) << 64) | u128::from(u64::MAX)) + u128::from(cut);
        let rounded_up = bound + growth + m;
        let above = ((rounded_up + frac) >> 64) as u64 >> s;
        let below = ((rounded_up - frac) >> 64) as u64 >> s;

        // t = as_of + secs s + nanos ns; nanos < 1e9, so one carry at most.
        let mut sec = self.as_of.sec().checked_add(secs as i64)?;
        let mut nsec = self.as_of.nsec() + nanos as i64;
        if nsec >= NANOS_PER_SEC {
            nsec -= NANOS_PER_SEC;
            sec = sec.checked_add(1)?;
        }
        Some((Timespec::from_normalised(sec, nsec)?, below, above))
    }

    /// The window by the general arithmetic: any counter (behind `as_of_tsc` within the
    /// blur included), any field values. Fields already checked.
    #[cold]
    #[inline(never)]
    fn window_general(&self, counter: u64, grace: Duration) -> Result<TimeWindow, ShmError> {
        let ticks = self.ticks_since_as_of(counter)?;
        let (elapsed, below, above) = self.exact_parts(ticks);
        // |as_of| < 2^94, elapsed < 2^95, below and above < 2^97 (see `exact_parts`): no
        // overflow in i128.
        let t = self.as_of.as_nanos() + elapsed as i128;
        Ok(TimeWindow {
            earliest: Timespec::from_nanos(t - below as i128),
            latest: Timespec::from_nanos(t + above as i128),
            // `t` is at least `as_of`: saturation can only meet `Timespec::MAX`, which every
            // threshold is at or below, as the exact `t` then is too.
            clock_status: self.status_at(Timespec::from_nanos(t), grace),
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

    /// The exact arithmetic for `ticks` ticks: the elapsed nanoseconds rounded down, and
    /// how far the exact `earliest` and `latest` lie below and above that, each rounded up to
    /// whole nanoseconds (so both ends round outwards).
    ///
    /// With `k = 64 + period_shift`, everything but the period-error growth is a multiple of
    /// 2^-k ns, so rounding to whole nanoseconds needs that growth only to 2^-k ns: its floor
    /// in units of 2^-k plus `cut`, "were any bits cut" (the exact growth then lies strictly
    /// between two units). Bounds: `ticks * period_frac < 2^128`, `elapsed * 2^k < 2^158`,
    /// the period-error product < 2^222, the growth plus the fraction < 2^191; elapsed
    /// < 2^95 ns, and both distances < 2^63 + 2^95 + 2^95 + 2 < 2^97 ns.
    fn exact_parts(&self, ticks: u64) -> (u128, u128, u128) {
        let k = 64 + u32::from(self.period_shift);
        let a = u128::from(ticks) * u128::from(self.period_frac);
        let elapsed = U256::product(a, NANOS_PER_SEC as u64);
        let whole = elapsed.shr(k).low_u128();
        let frac = elapsed.low_bits(k);
        let drift = U256::product(a, u64::from(self.max_drift_ppb));
        let period_err = elapsed.mul(self.period_err_frac);
        let err_scale = 64 + u32::from(self.period_err_shift);
        let period_growth = period_err.shr(err_scale);
        let cut = !period_err.low_bits(err_scale).is_zero();
        let growth = U256::from(self.bound_nsec as u128)
            .shl(k)
            .add(drift)
            .add(period_growth);
        // ceil((x + cut) / 2^k), x >= 0.
        let ceil_k = |x: U256| x.shr(k).low_u128() + u128::from(cut || !x.low_bits(k).is_zero());
        let above = ceil_k(growth.add(frac));
        // growth + cut - frac, when negative, is above -2^k: `earliest` rounds down to `t`.
        let below = if growth >= frac {
            ceil_k(growth.sub(frac))
        } else {
            0
        };
        (whole, below, above)
    }

    /// The status at `t`, the exact `t` rounded down: Unknown and Disrupted pass through;
    /// Synchronized and FreeRunning become Unknown from `void_after`, else FreeRunning from
    /// `as_of + grace`. Both thresholds are whole nanoseconds, so the rounded `t` reaches one
    /// exactly when the exact `t` does.
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
    /// `as_of_tsc`, exactly (so `counter_at(grace)` is where the status turns FreeRunning),
    /// saturating at `u64::MAX`; `u64::MAX` when the period is 0. The reader uses it to know
    /// when a snapshot that the writer has not replaced needs another look.
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

/// `t + d`, saturating at [`Timespec::MAX`], without division.
#[inline(always)]
fn add_saturating(t: Timespec, d: Duration) -> Timespec {
    let sum = i64::try_from(d.as_secs())
        .ok()
        .and_then(|secs| t.sec().checked_add(secs));
    let Some(mut sec) = sum else {
        return Timespec::MAX;
    };
    // Both nanosecond parts are below 1e9: one carry at most.
    let mut nsec = t.nsec() + i64::from(d.subsec_nanos());
    if nsec >= NANOS_PER_SEC {
        nsec -= NANOS_PER_SEC;
        sec = match sec.checked_add(1) {
            Some(sec) => sec,
            None => return Timespec::MAX,
        };
    }
    Timespec::from_normalised(sec, nsec).unwrap_or(Timespec::MAX)
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
mod tests {
    use super::*;

    /// A period error set through `with_period_error_ppb` is never stated smaller than asked,
    /// keeps its precision, and (below 0.19 %) takes the short arithmetic path, as a real
    /// daemon's does.
    #[test]
    fn period_error_ppb_is_scaled_as_a_writer_scales_it() {
        for ppb in [
            1u64,
            7,
            120,
            212,
            1_000,
            15_000,
            1_000_000,
            1_953_124,
            999_999_999,
        ] {
            let ceb = ClockErrorBoundV3::builder()
                .with_frequency_hz(2_596_145_856)
                .with_period_error_ppb(ppb)
                .bound_nsec(50_000)
                .max_drift_ppb(15_000)
                .clock_status(ClockStatus::Synchronized)
                .build();
            let (frac, shift) = (ceb.period_err_frac(), u32::from(ceb.period_err_shift()));
            // stated = frac / 2^(64 + shift) >= ppb / 1e9, and less than one unit of frac more.
            let stated = u128::from(frac) * 1_000_000_000;
            let asked = u128::from(ppb) << (64 + shift).min(127);
            assert!(shift <= 63, "{ppb}");
            if 64 + shift <= 127 {
                assert!(stated >= asked, "{ppb}: understated");
                assert!(
                    stated - asked < 1_000_000_000,
                    "{ppb}: more than one unit over"
                );
            }
            assert!(frac >= 1 << 62, "{ppb}: precision lost ({frac:#x})");
            if ppb < 1_953_125 {
                assert!(shift >= 9, "{ppb}");
                assert!(
                    ceb.recent_window(1 << 20, FREE_RUNNING_GRACE).is_some(),
                    "{ppb}"
                );
            }
        }
        let zero = ClockErrorBoundV3::builder()
            .with_period_error_ppb(0)
            .build();
        assert_eq!((zero.period_err_frac(), zero.period_err_shift()), (0, 0));
        let one = ClockErrorBoundV3::builder()
            .with_period_error_ppb(2_000_000_000)
            .build();
        assert_eq!(
            (one.period_err_frac(), one.period_err_shift()),
            (u64::MAX, 0)
        );
    }
    use num_bigint::BigInt;
    use proptest::prelude::*;

    fn ts(sec: i64, nsec: i64) -> Timespec {
        Timespec::new(sec, nsec)
    }

    const GRACE: Duration = FREE_RUNNING_GRACE;

    /// A counter of exactly 2^30 Hz: one tick is 2^-30 s = 0.931322574615478515625 ns.
    fn exact_clock() -> ClockErrorBoundV3Builder {
        ClockErrorBoundV3::builder()
            .as_of_tsc(1_000_000)
            .as_of(ts(1_700_000_002, 500_000_000))
            .void_after(ts(1_700_001_002, 500_000_000))
            .period_frac(1 << 63)
            .period_shift(29)
            .clock_status(ClockStatus::Synchronized)
    }

    fn window(earliest: Timespec, latest: Timespec, clock_status: ClockStatus) -> TimeWindow {
        TimeWindow {
            earliest,
            latest,
            clock_status,
        }
    }

    /// The relative error `ppb / 1e9` encoded as a writer does (shift = floor(log2(1/err))),
    /// rounded up.
    fn err_from_ppb(ppb: u32) -> (u64, u8) {
        let shift = 63 - (1_000_000_000 / u64::from(ppb)).leading_zeros();
        let frac = (u128::from(ppb) << (64 + shift)).div_ceil(1_000_000_000);
        (u64::try_from(frac).unwrap_or(u64::MAX), shift as u8)
    }

    #[test]
    fn worked_example_by_hand() {
        // 10 µs bound, 1000 ppb drift, period error 2^63 / 2^(64+19) = 2^-20.
        let c = exact_clock()
            .bound_nsec(10_000)
            .max_drift_ppb(1_000)
            .period_err_frac(1 << 63)
            .period_err_shift(19)
            .build();
        // 2^31 ticks = exactly 2 s: drift 2000 ns, period error 2e9 * 2^-20 =
        // 1907.3486328125 ns, so the half-width is ceil(13907.3486328125) = 13908 ns.
        let w = c.compute_bound_at(1_000_000 + (1 << 31), GRACE).unwrap();
        assert_eq!(
            w,
            window(
                ts(1_700_000_004, 499_986_092),
                ts(1_700_000_004, 500_013_908),
                ClockStatus::Synchronized
            )
        );
        // One tick more: elapsed 2.000000000931322574615478515625 s, midpoint rounded up to
        // ...001 (rounding 0.068677425 ns); drift 2000.000000931, period error
        // 1907.348633701: ceil(10000 + 2000.000000931 + 1907.348633701 + 0.068677425) = 13908.
        let w = c.compute_bound_at(1_000_001 + (1 << 31), GRACE).unwrap();
        assert_eq!(
            w,
            window(
                ts(1_700_000_004, 499_986_093),
                ts(1_700_000_004, 500_013_909),
                ClockStatus::Synchronized
            )
        );
        assert_eq!(w.midpoint(), ts(1_700_000_004, 500_000_001));
        // At as_of_tsc itself: the bound alone.
        let w = c.compute_bound_at(1_000_000, GRACE).unwrap();
        assert_eq!(
            (w.earliest, w.latest),
            (
                ts(1_700_000_002, 499_990_000),
                ts(1_700_000_002, 500_010_000)
            )
        );
    }

    #[test]
    fn ends_round_outwards_to_whole_nanoseconds() {
        // Bound 0: the window is the exact t, rounded down and up.
        let c = exact_clock().build();
        let at = |ticks: u64| {
            let w = c.compute_bound_at(1_000_000 + ticks, GRACE).unwrap();
            (
                w.earliest.as_nanos() - c.as_of().as_nanos(),
                w.latest.as_nanos() - c.as_of().as_nanos(),
            )
        };
        // 2^20 ticks = 976562.5 ns exactly.
        assert_eq!(at(1 << 20), (976_562, 976_563));
        // 2^20 - 1 ticks = 976561.568677425384521484375 ns.
        assert_eq!(at((1 << 20) - 1), (976_561, 976_562));
        // 2^21 ticks = 1953125 ns exactly: nothing to round, a window of zero width.
        assert_eq!(at(1 << 21), (1_953_125, 1_953_125));
        // 3 ticks = 2.793967723846435546875 ns.
        assert_eq!(at(3), (2, 3));
        assert_eq!(at(0), (0, 0));
        // A period error far below 2^-k ns (2^-127 of 1953125 ns) on a whole-nanosecond t:
        // only the "bits were cut" flag says the bound is not zero, and both ends must still
        // move out by 1 ns, on both paths (the second with a bound past the short path's).
        let tiny = exact_clock()
            .period_err_frac(1)
            .period_err_shift(63)
            .build();
        let counter = 1_000_000 + (1 << 21);
        for bound in [0, FAST_MAX_BOUND as i64] {
            let c = ClockErrorBoundV3 {
                bound_nsec: bound,
                ..tiny
            };
            assert_eq!(c.recent_parts(counter).is_some(), bound == 0);
            let w = c.compute_bound_at(counter, GRACE).unwrap();
            let b = i128::from(bound);
            assert_eq!(
                (
                    w.earliest.as_nanos() - c.as_of().as_nanos(),
                    w.latest.as_nanos() - c.as_of().as_nanos()
                ),
                (1_953_124 - b, 1_953_126 + b)
            );
        }
        // A bound of 1 ns and 1e6 ppb over 2^20 ticks (976.5625 ns of drift): t - bound =
        // 975584.9375 and t + bound = 977540.0625.
        let d = exact_clock().bound_nsec(1).max_drift_ppb(1_000_000).build();
        let w = d.compute_bound_at(1_000_000 + (1 << 20), GRACE).unwrap();
        assert_eq!(
            (w.earliest, w.latest),
            (
                ts(1_700_000_002, 500_975_584),
                ts(1_700_000_002, 500_977_541)
            )
        );
        // The general path (here: a tick count beyond the short path's limit) agrees.
        let far = 1_000_000 + (1u64 << 40) + (1 << 20);
        assert!(c.recent_parts(far).is_none());
        let (e, l, _) = reference_parts(&c, far).unwrap();
        assert_eq!(
            c.compute_bound_at(far, GRACE).unwrap(),
            window(e, l, ClockStatus::Unknown)
        );
    }

    /// The window from the reference, as `Timespec`s (saturated), for exact comparisons.
    fn reference_parts(
        c: &ClockErrorBoundV3,
        counter: u64,
    ) -> Result<(Timespec, Timespec, Timespec), ShmError> {
        let r = reference(c, counter, GRACE).map_err(|()| ShmError::CounterBehindSnapshot {
            as_of_tsc: c.as_of_tsc(),
            counter,
        })?;
        Ok((
            Timespec::from_nanos(r.floor_earliest),
            Timespec::from_nanos(r.ceil_latest),
            Timespec::from_nanos(r.floor_t),
        ))
    }

    #[test]
    fn status_boundaries() {
        let c = exact_clock()
            .void_after(ts(1_700_000_102, 500_000_000)) // as_of + 100 s
            .build();
        let at = |ticks: u64, grace: Duration| {
            c.compute_bound_at(1_000_000 + ticks, grace)
                .unwrap()
                .clock_status
        };
        let second = 1u64 << 30;
        // The midpoint reaches as_of + 60 s at exactly 60 * 2^30 ticks.
        assert_eq!(at(60 * second - 1, GRACE), ClockStatus::Synchronized);
        assert_eq!(at(60 * second, GRACE), ClockStatus::FreeRunning);
        // ... and void_after at 100 * 2^30 ticks (the general path).
        assert_eq!(at(100 * second - 1, GRACE), ClockStatus::FreeRunning);
        assert_eq!(at(100 * second, GRACE), ClockStatus::Unknown);
        // Another grace, on the short path.
        assert_eq!(
            at(5 * second - 1, Duration::from_secs(5)),
            ClockStatus::Synchronized
        );
        assert_eq!(
            at(5 * second, Duration::from_secs(5)),
            ClockStatus::FreeRunning
        );
        // The exact t is what counts, not a rounded one: 1 tick is 0.93 ns, short of 1 ns;
        // 2 ticks, 1.86 ns, are past it.
        assert_eq!(at(0, Duration::from_nanos(1)), ClockStatus::Synchronized);
        assert_eq!(at(1, Duration::from_nanos(1)), ClockStatus::Synchronized);
        assert_eq!(at(2, Duration::from_nanos(1)), ClockStatus::FreeRunning);
        // And it agrees with `counter_at`, the first counter value with that much elapsed.
        for grace in [1, 2, 3, 1_000, 999_999_999].map(Duration::from_nanos) {
            let turn = c.counter_at(grace) - 1_000_000;
            assert_eq!(at(turn - 1, grace), ClockStatus::Synchronized, "{grace:?}");
            assert_eq!(at(turn, grace), ClockStatus::FreeRunning, "{grace:?}");
        }
        assert_eq!(at(0, Duration::ZERO), ClockStatus::FreeRunning);
        assert_eq!(at(0, Duration::MAX), ClockStatus::Synchronized);
        // void_after is checked first.
        let early_void = exact_clock()
            .void_after(ts(1_700_000_003, 500_000_000))
            .clock_status(ClockStatus::FreeRunning)
            .build();
        let s = |ticks| {
            early_void
                .compute_bound_at(1_000_000 + ticks, Duration::ZERO)
                .unwrap()
                .clock_status
        };
        assert_eq!(s(second - 1), ClockStatus::FreeRunning);
        assert_eq!(s(second), ClockStatus::Unknown);
        // Unknown and Disrupted pass through at any age.
        for status in [ClockStatus::Unknown, ClockStatus::Disrupted] {
            let c = exact_clock().clock_status(status).build();
            for ticks in [0, 70 * second, u64::MAX - 1_000_000] {
                assert_eq!(
                    c.compute_bound_at(1_000_000 + ticks, GRACE)
                        .unwrap()
                        .clock_status,
                    status
                );
            }
        }
    }

    #[test]
    fn causality_blur_and_breach() {
        let c = exact_clock()
            .bound_nsec(10)
            .max_drift_ppb(1_000_000)
            .build();
        // 1073 ticks = 999.29 ns behind: within the 1 µs blur, no time elapsed.
        let w = c.compute_bound_at(1_000_000 - 1073, GRACE).unwrap();
        assert_eq!(
            (w.earliest, w.latest),
            (
                ts(1_700_000_002, 499_999_990),
                ts(1_700_000_002, 500_000_010)
            )
        );
        // 1074 ticks = 1000.24 ns behind: a breach naming both counter values.
        match c.compute_bound_at(1_000_000 - 1074, GRACE) {
            Err(ShmError::CounterBehindSnapshot { as_of_tsc, counter }) => {
                assert_eq!((as_of_tsc, counter), (1_000_000, 1_000_000 - 1074));
            }
            other => panic!("expected a breach, got {other:?}"),
        }
        let far = exact_clock().as_of_tsc(u64::MAX).build();
        assert!(matches!(
            far.compute_bound_at(0, GRACE),
            Err(ShmError::CounterBehindSnapshot { .. })
        ));
        // A zero period (allowed for an untrusted status) turns any gap into no time.
        let frozen = exact_clock()
            .period_frac(0)
            .clock_status(ClockStatus::Unknown)
            .build();
        let w = frozen.compute_bound_at(0, GRACE).unwrap();
        assert_eq!(w.midpoint(), ts(1_700_000_002, 500_000_000));
        let w = frozen.compute_bound_at(u64::MAX, GRACE).unwrap();
        assert_eq!(w.midpoint(), ts(1_700_000_002, 500_000_000));
    }

    #[test]
    fn malformed_arithmetic_fields() {
        let cases = [
            (
                exact_clock().max_drift_ppb(1_000_000_000).build(),
                Malformed::DriftTooLarge {
                    found: 1_000_000_000,
                },
            ),
            (
                exact_clock().bound_nsec(-1).build(),
                Malformed::NegativeBound { found: -1 },
            ),
            (
                exact_clock().period_shift(64).build(),
                Malformed::ShiftTooLarge {
                    field: "period_shift",
                    found: 64,
                },
            ),
            (
                exact_clock().period_err_shift(200).build(),
                Malformed::ShiftTooLarge {
                    field: "period_err_shift",
                    found: 200,
                },
            ),
            (
                exact_clock().period_frac(0).build(),
                Malformed::ZeroPeriod { clock_status: 1 },
            ),
        ];
        for (c, problem) in cases {
            assert_eq!(c.check_arithmetic_fields(), Err(problem));
            match c.compute_bound_at(1_000_000, GRACE) {
                Err(ShmError::SegmentMalformed {
                    path: None,
                    problem: p,
                }) => {
                    assert_eq!(p, problem);
                }
                other => panic!("expected {problem:?}, got {other:?}"),
            }
        }
        assert_eq!(exact_clock().build().check_arithmetic_fields(), Ok(()));
    }

    #[test]
    fn huge_values_saturate_without_panicking() {
        let worst = ClockErrorBoundV3::builder()
            .as_of_tsc(0)
            .as_of(Timespec::MAX)
            .void_after(Timespec::MAX)
            .period_frac(u64::MAX)
            .period_shift(0)
            .period_err_frac(u64::MAX)
            .period_err_shift(0)
            .bound_nsec(i64::MAX)
            .max_drift_ppb(999_999_999)
            .clock_status(ClockStatus::Synchronized)
            .build();
        let w = worst.compute_bound_at(u64::MAX, GRACE).unwrap();
        assert_eq!(w.latest, Timespec::MAX);
        assert_eq!(w.clock_status, ClockStatus::Unknown);
        check_against_reference(&worst, u64::MAX, GRACE).unwrap();
        // From the earliest instant, with the largest half-width: earliest saturates.
        let low = ClockErrorBoundV3 {
            as_of: Timespec::MIN,
            ..worst
        };
        let w = low.compute_bound_at(u64::MAX, GRACE).unwrap();
        assert_eq!(w.earliest, Timespec::MIN);
        check_against_reference(&low, u64::MAX, GRACE).unwrap();
        // Every shift, with the largest counts.
        for shift in 0..=63 {
            for err_shift in [0, 9, 63] {
                let c = ClockErrorBoundV3 {
                    period_shift: shift,
                    period_err_shift: err_shift,
                    as_of: ts(0, 0),
                    ..worst
                };
                for counter in [0, 1, 1 << 36, u64::MAX] {
                    check_against_reference(&c, counter, GRACE).unwrap();
                }
            }
        }
    }

    /// Every field at the edge of the short path's limits: its sums, unchecked, must not
    /// overflow (a debug build would panic), and the result must still be exact.
    #[test]
    fn short_path_limits_leave_room() {
        for shift in 0..=FAST_MAX_SHIFT as u8 {
            for as_of in [ts(0, 999_999_999), ts(1_700_000_000, 0)] {
                let c = ClockErrorBoundV3::builder()
                    .as_of_tsc(1)
                    .as_of(as_of)
                    .void_after(Timespec::MAX)
                    .period_frac(u64::MAX)
                    .period_shift(shift)
                    .period_err_frac(u64::MAX)
                    .period_err_shift(9)
                    .bound_nsec(FAST_MAX_BOUND as i64 - 1)
                    .max_drift_ppb(FAST_MAX_DRIFT - 1)
                    .clock_status(ClockStatus::Synchronized)
                    .build();
                for ticks in [0, 1, FAST_MAX_TICKS - 1] {
                    assert!(c.recent_parts(1 + ticks).is_some(), "shift {shift}");
                    check_against_reference(&c, 1 + ticks, GRACE).unwrap();
                }
                // One step past each limit takes the general path.
                let past = [
                    ClockErrorBoundV3 {
                        period_shift: FAST_MAX_SHIFT as u8 + 1,
                        ..c
                    },
                    ClockErrorBoundV3 {
                        max_drift_ppb: FAST_MAX_DRIFT,
                        ..c
                    },
                    ClockErrorBoundV3 {
                        bound_nsec: FAST_MAX_BOUND as i64,
                        ..c
                    },
                    ClockErrorBoundV3 {
                        period_err_shift: 8,
                        ..c
                    },
                ];
                for p in past {
                    assert!(p.recent_parts(1).is_none());
                    check_against_reference(&p, 1, GRACE).unwrap();
                }
                assert!(c.recent_parts(1 + FAST_MAX_TICKS).is_none());
            }
        }
    }

    #[test]
    fn now_reads_the_counter() {
        let c = ClockErrorBoundV3::builder()
            .as_of_tsc(crate::time::counter::read_counter())
            .as_of(ts(1_700_000_000, 0))
            .void_after(ts(1_700_001_000, 0))
            .with_frequency_hz(1_000_000_000)
            .bound_nsec(1_000)
            .max_drift_ppb(15_000)
            .clock_status(ClockStatus::Synchronized)
            .build();
        let w = c.now().unwrap();
        assert!(w.earliest <= w.latest);
        assert!(w.midpoint() >= ts(1_700_000_000, 0));
        assert!(w.midpoint() < ts(1_700_000_010, 0), "{w:?}");
        assert_eq!(w.clock_status, ClockStatus::Synchronized);
    }

    #[test]
    fn with_frequency_hz_encodes_like_a_writer() {
        let enc = |hz| {
            let c = ClockErrorBoundV3::builder().with_frequency_hz(hz).build();
            (c.period_frac(), c.period_shift())
        };
        assert_eq!(enc(1_000_000_000), (9_903_520_314_283_042_199, 29));
        assert_eq!(enc(3), (12_297_829_382_473_034_410, 1));
        assert_eq!(enc(1 << 30), (u64::MAX, 30));
        assert_eq!(enc(1), (u64::MAX, 0));
        assert_eq!(enc(u64::MAX), (1 << 63, 63));
        assert_eq!(enc(0), (0, 0));
        // Every frequency's period_frac has its top bit set (64 significant bits).
        for hz in [25_000_000, 1_050_000_000, 2_899_999_999, 4_000_000_000] {
            assert!(enc(hz).0 >> 63 == 1);
        }
    }

    #[test]
    fn counter_at_finds_the_first_tick() {
        let c = exact_clock().build();
        let second = 1u64 << 30;
        assert_eq!(c.counter_at(Duration::ZERO), 1_000_000);
        assert_eq!(
            c.counter_at(Duration::from_secs(60)),
            1_000_000 + 60 * second
        );
        // One tick is 0.93 ns: 1 ns needs two.
        assert_eq!(c.counter_at(Duration::from_nanos(1)), 1_000_002);
        assert_eq!(c.counter_at(Duration::MAX), u64::MAX);
        let late = exact_clock().as_of_tsc(u64::MAX - 5).build();
        assert_eq!(late.counter_at(Duration::from_secs(1)), u64::MAX);
        let frozen = exact_clock()
            .period_frac(0)
            .clock_status(ClockStatus::Unknown)
            .build();
        assert_eq!(frozen.counter_at(Duration::ZERO), u64::MAX);
    }

    #[test]
    fn u256_matches_big_integers() {
        let values = [0u128, 1, u64::MAX as u128, 1 << 100, u128::MAX];
        for &x in &values {
            for m in [0u64, 1, 1_000_000_000, u64::MAX] {
                let p = U256::product(x, m);
                assert_eq!(to_big(p), BigInt::from(x) * m);
                let p2 = p.mul(m);
                if BigInt::from(x) * m * m < (BigInt::from(1) << 256) {
                    assert_eq!(to_big(p2), BigInt::from(x) * m * m);
                }
                for n in [0, 1, 63, 64, 127, 128, 129, 200, 255] {
                    let mask = (BigInt::from(1) << 256) - 1;
                    assert_eq!(to_big(p.shl(n)), (to_big(p) << n) & &mask, "shl {n}");
                    assert_eq!(to_big(p.shr(n)), to_big(p) >> n, "shr {n}");
                    assert_eq!(
                        to_big(p.low_bits(n)),
                        to_big(p) & ((BigInt::from(1) << n) - 1),
                        "low_bits {n}"
                    );
                }
            }
        }
    }

    fn to_big(v: U256) -> BigInt {
        (BigInt::from(v.hi) << 128) + BigInt::from(v.lo)
    }

    /// The exact window by big-integer rationals, written from the formulas (not from the
    /// code above): every quantity over the common denominator 2^(128 + s + r).
    struct Reference {
        den: BigInt,
        /// Exact earliest and latest, in ns * den.
        earliest: BigInt,
        latest: BigInt,
        /// The exact earliest rounded down, latest rounded up and t rounded down, in ns.
        floor_earliest: i128,
        ceil_latest: i128,
        floor_t: i128,
        /// From the exact t.
        status: ClockStatus,
    }

    /// floor(x / d), d > 0 (BigInt's `/` truncates toward zero).
    fn floor_div(x: &BigInt, d: &BigInt) -> BigInt {
        if x.sign() == num_bigint::Sign::Minus {
            let up: BigInt = (-x + d - 1) / d;
            -up
        } else {
            x / d
        }
    }

    fn reference(c: &ClockErrorBoundV3, counter: u64, grace: Duration) -> Result<Reference, ()> {
        let big = |v: u128| BigInt::from(v);
        let pow2 = |n: u32| BigInt::from(1) << n;
        let s = u32::from(c.period_shift());
        let r = u32::from(c.period_err_shift());
        let period = big(c.period_frac().into());
        let nano = BigInt::from(1_000_000_000u64);
        let ticks = if counter >= c.as_of_tsc() {
            big((counter - c.as_of_tsc()).into())
        } else {
            // The gap in ns is behind * period_frac * 1e9 / 2^(64+s).
            let behind = big((c.as_of_tsc() - counter).into());
            if behind * &period * &nano > BigInt::from(1_000) * pow2(64 + s) {
                return Err(());
            }
            BigInt::from(0)
        };
        let den = pow2(128 + s + r);
        // elapsed (ns) = ticks * period_frac * 1e9 / 2^(64+s)
        let elapsed = &ticks * &period * &nano * pow2(64 + r);
        // drift = elapsed * ppb / 1e9 = ticks * period_frac * ppb / 2^(64+s)
        let drift = &ticks * &period * BigInt::from(c.max_drift_ppb()) * pow2(64 + r);
        // period error = elapsed * err_frac / 2^(64+r)
        let period_err = &ticks * &period * &nano * BigInt::from(c.period_err_frac());
        let bound = BigInt::from(c.bound_nsec()) * &den + drift + period_err;
        let t = BigInt::from(c.as_of().as_nanos()) * &den + &elapsed;
        let earliest = &t - &bound;
        let latest = &t + &bound;
        let to_i128 = |v: BigInt| i128::try_from(v).unwrap();
        let floor_earliest = to_i128(floor_div(&earliest, &den));
        let ceil_latest = to_i128(-floor_div(&-&latest, &den));
        let floor_t = to_i128(floor_div(&t, &den));
        let reached = |at: Timespec| t >= BigInt::from(at.as_nanos()) * &den;
        let status = match c.clock_status() {
            s @ (ClockStatus::Unknown | ClockStatus::Disrupted) => s,
            s => {
                if reached(c.void_after()) {
                    ClockStatus::Unknown
                } else if reached(c.as_of().saturating_add(grace)) {
                    ClockStatus::FreeRunning
                } else {
                    s
                }
            }
        };
        Ok(Reference {
            den,
            earliest,
            latest,
            floor_earliest,
            ceil_latest,
            floor_t,
            status,
        })
    }

    /// Ours against the reference: same error, or the same status (judged on the exact t)
    /// and a window that holds the exact one (after saturation), each end less than 1 ns
    /// from the exact end: the exact ends rounded outwards. The short and general paths
    /// agree.
    fn check_against_reference(
        c: &ClockErrorBoundV3,
        counter: u64,
        grace: Duration,
    ) -> Result<(), TestCaseError> {
        let ours = c.compute_bound_at(counter, grace);
        let exact = match reference(c, counter, grace) {
            Err(()) => {
                prop_assert!(
                    matches!(ours, Err(ShmError::CounterBehindSnapshot { as_of_tsc, counter: k })
                        if as_of_tsc == c.as_of_tsc() && k == counter),
                    "{ours:?}"
                );
                return Ok(());
            }
            Ok(exact) => exact,
        };
        let w = ours.map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(w.clock_status, exact.status);
        let den = &exact.den;
        let min = BigInt::from(Timespec::MIN.as_nanos()) * den;
        let max = BigInt::from(Timespec::MAX.as_nanos()) * den;
        let clamp = |v: &BigInt| v.clone().clamp(min.clone(), max.clone());
        let (lo, hi) = (clamp(&exact.earliest), clamp(&exact.latest));
        let e = BigInt::from(w.earliest.as_nanos()) * den;
        let l = BigInt::from(w.latest.as_nanos()) * den;
        prop_assert!(e <= lo, "earliest after the exact one");
        prop_assert!(l >= hi, "latest before the exact one");
        prop_assert!(e > &lo - den, "earliest 1 ns or more early");
        prop_assert!(l < &hi + den, "latest 1 ns or more late");
        // Which pins them down: the exact ends rounded outwards, then saturated.
        prop_assert_eq!(w.earliest, Timespec::from_nanos(exact.floor_earliest));
        prop_assert_eq!(w.latest, Timespec::from_nanos(exact.ceil_latest));
        // The general path gives the same result on every input.
        prop_assert_eq!(c.window_general(counter, grace).ok(), Some(w));
        Ok(())
    }

    /// Whether the bound grows no faster than time passes: `max_drift_ppb / 1e9 +
    /// period_err <= 1`, exactly. Then the exact `earliest` never moves back.
    fn bound_grows_slower_than_time(c: &ClockErrorBoundV3) -> bool {
        let scale = BigInt::from(1) << (64 + u32::from(c.period_err_shift()));
        let nano = BigInt::from(1_000_000_000u64);
        BigInt::from(c.max_drift_ppb()) * &scale + &nano * BigInt::from(c.period_err_frac())
            <= nano * scale
    }

    /// Status ages one way: Synchronized, then FreeRunning, then Unknown.
    fn staleness(s: ClockStatus) -> u8 {
        match s {
            ClockStatus::Synchronized => 0,
            ClockStatus::FreeRunning => 1,
            ClockStatus::Unknown => 2,
            ClockStatus::Disrupted => 3,
        }
    }

    /// The window at `counter` against the one at a later counter: neither end steps back
    /// (`earliest` only when the bound grows slower than time, as the exact one then does),
    /// and the status never gets fresher.
    fn check_later(
        c: &ClockErrorBoundV3,
        counter: u64,
        later: u64,
        grace: Duration,
    ) -> Result<(), TestCaseError> {
        let Ok(w) = c.compute_bound_at(counter, grace) else {
            return Ok(());
        };
        let v = c
            .compute_bound_at(later, grace)
            .map_err(|e| TestCaseError::fail(format!("{e} at the later counter {later}")))?;
        prop_assert!(
            v.latest >= w.latest,
            "latest stepped back: {w:?} then {v:?}"
        );
        if bound_grows_slower_than_time(c) {
            prop_assert!(
                v.earliest >= w.earliest,
                "earliest stepped back: {w:?} then {v:?}"
            );
        }
        prop_assert!(staleness(v.clock_status) >= staleness(w.clock_status));
        Ok(())
    }

    fn status_from(n: u8) -> ClockStatus {
        [
            ClockStatus::Unknown,
            ClockStatus::Synchronized,
            ClockStatus::FreeRunning,
            ClockStatus::Disrupted,
        ][usize::from(n % 4)]
    }

    /// (period_frac, period_shift): real counter frequencies, dyadic periods (exact ties
    /// and boundaries) and anything at all.
    fn period() -> impl Strategy<Value = (u64, u8)> {
        prop_oneof![
            (1_000_000u64..5_000_000_000).prop_map(|hz| {
                let c = ClockErrorBoundV3::builder().with_frequency_hz(hz).build();
                (c.period_frac(), c.period_shift())
            }),
            (0u32..64, 20u8..34).prop_map(|(bit, shift)| (1u64 << bit, shift)),
            (any::<u64>(), 0u8..=63),
        ]
    }

    /// (period_err_frac, period_err_shift): none, realistic errors, anything.
    fn period_err() -> impl Strategy<Value = (u64, u8)> {
        prop_oneof![
            Just((0, 0)),
            (1u32..100_000).prop_map(err_from_ppb),
            (any::<u64>(), 0u8..=63),
        ]
    }

    /// Ticks after as_of_tsc (positive) or before it (negative, near the blur).
    fn offset() -> impl Strategy<Value = i128> {
        prop_oneof![
            4 => 0i128..(1 << 36),
            1 => ((1i128 << 36) - 1_000)..((1 << 36) + 1_000),
            1 => 0i128..(1 << 20),
            1 => (0u64..=u64::MAX).prop_map(i128::from),
            1 => -3_000i128..0,
        ]
    }

    #[test]
    fn usual_snapshots_take_the_short_path() {
        for hz in [
            25_000_000,
            1_000_000_000,
            1_050_000_000,
            2_900_000_000,
            4_294_967_295,
        ] {
            for err_ppb in [0, 1, 100, 10_000] {
                let (err, err_shift) = if err_ppb == 0 {
                    (0, 0)
                } else {
                    err_from_ppb(err_ppb)
                };
                let c = exact_clock()
                    .with_frequency_hz(hz)
                    .period_err_frac(err)
                    .period_err_shift(err_shift)
                    .bound_nsec(999_999_999)
                    .max_drift_ppb(100_000)
                    .build();
                // Up to 16 s old.
                for ticks in [0, 1, hz, 16 * hz] {
                    assert!(
                        c.recent_parts(1_000_000 + ticks).is_some(),
                        "{hz} Hz, {err_ppb} ppb, {ticks} ticks"
                    );
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Usual snapshots only (the short path; drift up to 0.1 %): same checks, more cases
        /// where it matters.
        #[test]
        fn short_path_matches_exact_arithmetic(
            as_of_tsc in 0u64..1 << 62,
            ticks in 0u64..1 << 36,
            hz in 1_000_000u64..5_000_000_000,
            err_ppb in 0u32..100_000,
            drift in 0u32..1_000_000,
            bound in 0i64..1 << 30,
            as_of_nsec in 0i64..1_000_000_000,
            status in 0u8..4,
        ) {
            let (err, err_shift) = if err_ppb == 0 { (0, 0) } else { err_from_ppb(err_ppb) };
            let c = ClockErrorBoundV3::builder()
                .as_of_tsc(as_of_tsc)
                .as_of(ts(1_700_000_000, as_of_nsec))
                .void_after(ts(1_700_000_010, 0))
                .with_frequency_hz(hz)
                .period_err_frac(err)
                .period_err_shift(err_shift)
                .bound_nsec(bound)
                .max_drift_ppb(drift)
                .clock_status(status_from(status))
                .build();
            prop_assert!(c.recent_parts(as_of_tsc + ticks).is_some());
            check_against_reference(&c, as_of_tsc + ticks, Duration::from_secs(5))?;
        }

        #[test]
        fn window_matches_exact_arithmetic(
            as_of_tsc in prop_oneof![any::<u64>(), 0u64..1 << 40],
            offset in offset(),
            (period_frac, period_shift) in period(),
            (period_err_frac, period_err_shift) in period_err(),
            drift in prop_oneof![0u32..100_000, 0u32..1_000_000_000],
            bound in prop_oneof![0i64..1_000_000_000, 0i64..(1 << 31), 0i64..=i64::MAX],
            as_of_sec in prop_oneof![1_600_000_000i64..1_900_000_000, any::<i64>()],
            as_of_nsec in 0i64..1_000_000_000,
            void_in in prop_oneof![-10i64..2_000, any::<i64>()],
            status in 0u8..4,
            grace in prop_oneof![
                Just(GRACE),
                (0u64..100_000_000_000).prop_map(Duration::from_nanos),
                Just(Duration::MAX),
            ],
        ) {
            let as_of = ts(as_of_sec, as_of_nsec);
            let void_after = Timespec::from_nanos(
                as_of.as_nanos().saturating_add(i128::from(void_in) * 1_000_000_000),
            );
            let status = status_from(status);
            let period_frac = if period_frac == 0 && status.is_trusted() { 1 } else { period_frac };
            let c = ClockErrorBoundV3::builder()
                .as_of_tsc(as_of_tsc)
                .as_of(as_of)
                .void_after(void_after)
                .period_frac(period_frac)
                .period_shift(period_shift)
                .period_err_frac(period_err_frac)
                .period_err_shift(period_err_shift)
                .bound_nsec(bound)
                .max_drift_ppb(drift)
                .clock_status(status)
                .build();
            let counter = (i128::from(as_of_tsc) + offset).clamp(0, i128::from(u64::MAX)) as u64;
            check_against_reference(&c, counter, grace)?;
        }

        /// Dyadic periods and tick counts with trailing zeros: elapsed times that are whole
        /// or exactly half nanoseconds, where rounding mistakes show.
        #[test]
        fn ties_and_whole_nanoseconds(
            bit in 40u32..64,
            shift in 20u8..34,
            odd in 0u64..1 << 16,
            zeros in 0u32..20,
            bound in 0i64..1_000,
            drift in prop_oneof![Just(0u32), 0u32..1_000_000],
            err_bit in prop_oneof![Just(None), (0u32..64).prop_map(Some)],
            err_shift in 9u8..40,
        ) {
            let (err, err_shift) = err_bit.map_or((0, 0), |b| (1u64 << b, err_shift));
            let c = exact_clock()
                .period_frac(1 << bit)
                .period_shift(shift)
                .bound_nsec(bound)
                .max_drift_ppb(drift)
                .period_err_frac(err)
                .period_err_shift(err_shift)
                .build();
            let ticks = (2 * odd + 1) << zeros;
            check_against_reference(&c, c.as_of_tsc() + ticks, GRACE)?;
        }

        /// Realistic snapshots (the short path, mostly): along a run of adjacent counter
        /// values and to a random later one, neither end steps back.
        #[test]
        fn ends_never_step_back_on_usual_snapshots(
            as_of_tsc in 0u64..1 << 62,
            ticks in prop_oneof![0u64..1 << 36, 0u64..1 << 40],
            delta in prop_oneof![1u64..1_000, 1u64..1 << 36],
            hz in 1_000_000u64..5_000_000_000,
            err_ppb in 0u32..100_000,
            drift in 0u32..1_000_000,
            bound in 0i64..1 << 30,
            as_of_nsec in 0i64..1_000_000_000,
            status in 0u8..4,
        ) {
            let (err, err_shift) = if err_ppb == 0 { (0, 0) } else { err_from_ppb(err_ppb) };
            let c = ClockErrorBoundV3::builder()
                .as_of_tsc(as_of_tsc)
                .as_of(ts(1_700_000_000, as_of_nsec))
                .void_after(ts(1_700_000_100, 0))
                .with_frequency_hz(hz)
                .period_err_frac(err)
                .period_err_shift(err_shift)
                .bound_nsec(bound)
                .max_drift_ppb(drift)
                .clock_status(status_from(status))
                .build();
            prop_assert!(bound_grows_slower_than_time(&c));
            let start = as_of_tsc + ticks;
            for counter in start..start + 64 {
                check_later(&c, counter, counter + 1, GRACE)?;
            }
            check_later(&c, start, start + delta, GRACE)?;
        }

        /// Any snapshot, any counter: the next counter value and a later one.
        #[test]
        fn ends_never_step_back(
            as_of_tsc in prop_oneof![any::<u64>(), 0u64..1 << 40],
            offset in offset(),
            delta in prop_oneof![1u64..1_000, 1u64..1 << 36, any::<u64>()],
            (period_frac, period_shift) in period(),
            (period_err_frac, period_err_shift) in period_err(),
            drift in prop_oneof![0u32..100_000, 0u32..1_000_000_000],
            bound in prop_oneof![0i64..1_000_000_000, 0i64..=i64::MAX],
            as_of_sec in prop_oneof![1_600_000_000i64..1_900_000_000, any::<i64>()],
            as_of_nsec in 0i64..1_000_000_000,
            void_in in prop_oneof![-10i64..2_000, any::<i64>()],
            status in 0u8..4,
            grace in prop_oneof![
                Just(GRACE),
                (0u64..100_000_000_000).prop_map(Duration::from_nanos),
            ],
        ) {
            let as_of = ts(as_of_sec, as_of_nsec);
            let void_after = Timespec::from_nanos(
                as_of.as_nanos().saturating_add(i128::from(void_in) * 1_000_000_000),
            );
            let status = status_from(status);
            let period_frac = if period_frac == 0 && status.is_trusted() { 1 } else { period_frac };
            let c = ClockErrorBoundV3::builder()
                .as_of_tsc(as_of_tsc)
                .as_of(as_of)
                .void_after(void_after)
                .period_frac(period_frac)
                .period_shift(period_shift)
                .period_err_frac(period_err_frac)
                .period_err_shift(period_err_shift)
                .bound_nsec(bound)
                .max_drift_ppb(drift)
                .clock_status(status)
                .build();
            let counter = (i128::from(as_of_tsc) + offset).clamp(0, i128::from(u64::MAX)) as u64;
            for later in [counter.checked_add(1), counter.checked_add(delta)].into_iter().flatten() {
                check_later(&c, counter, later, grace)?;
            }
        }

        /// counter_at gives the first counter value at which the exact elapsed time reaches
        /// the target.
        #[test]
        fn counter_at_is_the_first_reaching_tick(
            as_of_tsc in prop_oneof![0u64..1 << 40, any::<u64>()],
            (period_frac, period_shift) in period(),
            since in prop_oneof![0u64..100_000_000_000, any::<u64>()],
        ) {
            let c = exact_clock()
                .as_of_tsc(as_of_tsc)
                .period_frac(period_frac.max(1))
                .period_shift(period_shift)
                .build();
            let since = Duration::from_nanos(since);
            let at = c.counter_at(since);
            let k = 64 + u32::from(period_shift);
            let reached = |counter: u64| {
                BigInt::from(counter - as_of_tsc) * BigInt::from(period_frac.max(1))
                    * BigInt::from(1_000_000_000u64)
                    >= BigInt::from(since.as_nanos()) << k
            };
            prop_assert!(at >= as_of_tsc);
            if at < u64::MAX {
                prop_assert!(reached(at));
            }
            if at > as_of_tsc && at < u64::MAX {
                prop_assert!(!reached(at - 1));
            }
            if at == u64::MAX {
                prop_assert!(at == as_of_tsc || !reached(u64::MAX - 1) || as_of_tsc == u64::MAX
                    || reached(u64::MAX));
            }
        }
    }
}
